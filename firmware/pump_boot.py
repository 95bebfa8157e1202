"""The pump's boot (ALM-5, HIS-2, THR-13): `Pump.boot()` runs `boot(pump)` once, then
drops this module (firmware/compat.py unimport): loaded from .mpy files on a file system,
a module's bytecode lives in RAM, and this code never runs again until the next boot
(heap, issue 12). Each function is the Pump method it was, `self` the pump.
"""

from firmware import layout as L
from firmware.compat import const
from firmware.layout import (
    PRIME_SKIPPED,
    S_BATTERY,
    S_BOOTS,
    S_CGM_OFFSET,
    S_CGM_TX,
    S_DAY,
    S_LAST_DELIVERY_S,
    S_LOCAL_DAY,
    S_LOCAL_MS,
    S_MONO_S,
    S_NEXT_BOLUS_ID,
    S_NOW_DONE,
    S_NOW_REQ,
    S_PLAN_BASAL,
    S_PLAN_BOLUS,
    S_PLAN_PRIME,
    S_POS,
    S_PRIME,
    S_PRIME_TODAY,
    S_RTC_STALE,
    S_SBL_WAIT_S,
    S_SET_AGE,
    S_STOP,
    S_TEMP_KIND,
    S_TEMP_LEFT,
    S_TIME_LOST,
    S_TIME_SET,
    STATE_LEN,
    STATE_LEN_1,
)
from firmware.pump import CHECKPOINT_S
from firmware.settings import at
from protocol import spec as S
from protocol.spec import CGM_READINGS

# firmware/pump.py's (tests/test_tick_consts.py checks each against it)
_CAP_MS = const(1 << 29)
_BAT_CHANGE_JUMP = const(10)
_RTC_SLACK_S = const(120)
_MAX_OUTAGE_S = const(400 * 86400)
_T_LAST = const(1)


def boot(self):
    """Load state, recover from a power cut, run self-tests. Call once before ticking."""
    hw = self.hw
    st = self.state
    bits = 0
    if _load_settings(self.settings):
        bits |= S.ST_STORAGE
    valid, blank = self.state_slots.load()
    if valid == 0:
        for i in range(STATE_LEN):
            st[i] = 0
        st[S_STOP] = S.STOP_USER  # a new pump waits, suspended, for fill and resume
        st[S_NEXT_BOLUS_ID] = 1
        st[S_SBL_WAIT_S] = -1
        if not blank:
            bits |= S.ST_STORAGE
    elif self.state_slots.loaded_n == STATE_LEN_1:
        st[S_SBL_WAIT_S] = -1  # an older layout: the safety state starts here
    feed = hw.watchdog.feed
    self.history.scan(feed)
    self.cgm.log.scan(feed)
    dvalid, dblank = self.doses.load()
    if not dvalid and not dblank:
        bits |= S.ST_STORAGE  # the dose windows are unknown: never guess them low
    self.doses.adopt()
    _recover_movement(self)
    if hw.firmware_ok is not None and not hw.firmware_ok():
        bits |= S.ST_FIRMWARE
    if not hw.storage.self_test():
        bits |= S.ST_STORAGE
    if not self.motor.self_test():
        bits |= S.ST_MOTOR
    if not hw.annunciator.self_test():
        bits |= S.ST_BUZZER
    self.selftest_bits = bits
    st[S_BOOTS] += 1
    lost = _restore_time(self, valid)
    self._log(S.H_BOOT, hw.reset_cause, bits, st[S_BOOTS], 0)
    if lost is not None:
        self._log(S.H_TIME_LOST, 0, self.utc_seconds(), lost, 0)
    if st[S_TIME_LOST]:
        self.alarms.raise_(S.A_TIME_UNSET, 0)
    if st[S_PRIME] == PRIME_SKIPPED:
        self.alarms.raise_(S.A_PRIME_INCOMPLETE, 0)  # a reboot does not prime the line
    self._recover_bolus()
    if bits:
        self._stop(S.STOP_SELFTEST)
        self.alarms.raise_(S.A_SELFTEST, bits)
    elif st[S_STOP] == S.STOP_OCCLUSION:
        self.alarms.raise_(S.A_OCCLUSION, 0)
    elif st[S_STOP] == S.STOP_SELFTEST:
        st[S_STOP] = S.STOP_USER  # self-tests pass again: suspended until the user resumes
    level = self.battery.percent()
    # valid: a saved state (not a new pump), whose level may be 0 (depleted)
    if valid and level >= st[S_BATTERY] + _BAT_CHANGE_JUMP:
        self._log(S.H_BATTERY_CHANGE, 0, st[S_BATTERY], level, 0)
    st[S_BATTERY] = level
    self.doses.roll(st[S_MONO_S])
    restore_cgm(self.cgm)
    self._commit(0, 0, 0)
    self.tk[_T_LAST] = self.clock.ticks_ms()
    return bits


def _restore_time(self, valid):
    """What time is it after a reboot (THR-13)? The real-time clock says, if it is
    trustworthy: the gap since the last state save then passes on every clock (an
    outage counts as time without insulin, and ages IOB and the dose windows). Without
    it the time is lost: status says unset, the pump says so (A_TIME_UNSET) and runs
    the time-unknown basal (docs/time-model.md). Returns the RTC reading that was not
    trusted (-1: none) when the time was lost at this boot, else None."""
    st = self.state
    if not valid or not (st[S_TIME_SET] or st[S_TIME_LOST]):
        return None  # a new pump, or one whose time was never set: nothing to lose
    last = self.utc_seconds()
    head = self.history.head_time
    if head > last:
        last = head  # records written after the last state save
    rtc = self.rtc
    now = rtc.now() if rtc is not None else -1
    if (st[S_TIME_SET] and now >= 0 and not st[S_RTC_STALE]
            and last - _RTC_SLACK_S <= now <= last + _MAX_OUTAGE_S):
        _pass(self, now - last if now > last else 0, last)
        return None
    if st[S_TIME_LOST]:
        _pass(self, 0, last)
        return None  # lost at an earlier boot and not set since: already recorded
    st[S_TIME_SET] = 0
    st[S_TIME_LOST] = 1
    _pass(self, 0, last)
    # At most CHECKPOINT_S of powered time went unsaved; the outage itself is unknown
    # until the time is set again (set_time adds it then).
    st[S_LAST_DELIVERY_S] -= CHECKPOINT_S
    if st[S_TEMP_KIND]:
        self._end_temp(S.TEMP_END_TIME_LOST)  # its progress is unknown: never extend it
    return now


def _pass(self, gap_s, last):
    """Put the clocks `gap_s` seconds after `last` (UTC seconds): the wall clock, the
    monotonic clock and what runs on it (temp basal, infusion-set age)."""
    st = self.state
    local = last + gap_s + self.setting(S.SET_UTC_OFFSET) * 60
    day = local // 86400
    st[S_LOCAL_DAY] = day
    st[S_LOCAL_MS] = (local % 86400) * 1000
    if day != st[S_DAY]:
        self._close_day(day)  # after the clock moved: its record is not back in time
    if not gap_s:
        return
    st[S_MONO_S] += gap_s
    if st[S_SET_AGE] < _CAP_MS:
        st[S_SET_AGE] += gap_s
    if st[S_TEMP_KIND]:
        if gap_s >= st[S_TEMP_LEFT] // 1000:
            self._end_temp(S.TEMP_END_EXPIRED)
        else:
            st[S_TEMP_LEFT] -= gap_s * 1000


def _recover_movement(self):
    """Attribute pulses the motor made after the last save (power cut mid-tick)."""
    st = self.state
    moved = self.motor.position() - st[S_POS]
    planned = st[S_PLAN_BASAL] + st[S_PLAN_BOLUS] + st[S_PLAN_PRIME]
    if moved < 0 or planned == 0:
        return
    if moved > planned:
        moved = planned
    basal = moved if moved < st[S_PLAN_BASAL] else st[S_PLAN_BASAL]
    moved -= basal
    bolus = moved if moved < st[S_PLAN_BOLUS] else st[S_PLAN_BOLUS]
    prime = moved - bolus
    now = st[S_NOW_REQ] - st[S_NOW_DONE]
    if bolus < now:
        now = bolus
    self._count(basal, now, bolus - now)
    st[S_PRIME_TODAY] += prime * self.pulse


# the settings' boot: Settings methods they were, `self` the pump's Settings
def _load_settings(self):
    """Load the settings at boot (defaults where an older, shorter layout holds
    nothing). True if the stored copies were corrupt (the defaults are in use)."""
    _settings_defaults(self)
    valid, blank = self.slots.load()
    corrupt = False
    if valid == 0:
        _settings_defaults(self)
        corrupt = not blank
        self.slots.save()
    elif self.slots.loaded_n != L.SETTINGS_LEN:
        self.slots.save()  # upgraded to this layout
    self._apply()
    return corrupt


def _settings_defaults(self):
    v = self.values
    for i in range(L.SETTINGS_LEN):
        v[i] = 0
    for i in range(S.SETTINGS_COUNT):
        v[at(i)] = S.SETTINGS[i][1]
    # Profile 0 "default", 1 segment at 0 U/h: basal must be programmed before use.
    v[L.V_SEGMENTS] = 1
    self._set_name(0, b"default")


# the sensor readings' boot: the Cgm method it was, `self` the pump's Cgm
def restore_cgm(self):
    """At boot: the readings of the log back into the ring, the newest reading's
    value and monotonic second (signal-loss timing, HIS-3); a pairing radio gets its
    time-offset order back (SNS-4). Outside the tick."""
    if self.pairs:
        self.radio.restore_order(self.st[S_CGM_TX], self.st[S_CGM_OFFSET] - 1)
    log = self.log
    rec = bytearray(24)
    first = log.next_seq - CGM_READINGS
    if first < log.first_seq:
        first = log.first_seq
    if first < log.next_seq:
        self._ring()
    for seq in range(first, log.next_seq):
        if log.read(seq, rec):
            r = log.decode(rec)
            self._keep(r[1], r[5])
            self.last = r[5]
            self.last_s = r[4]
            self.readings += 1
