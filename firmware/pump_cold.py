"""The pump's rarely used operations (heap, issue 12): setting the clock, the temp basal
commands and the reservoir change (rewind, fill, prime); the readers only the bench
console needs (local_seconds, local_day, rewound).

Loaded from .mpy files on a file system, a module's bytecode lives in RAM: these are not
imported at boot but at their first call, by the Pump method of the same name (the link
imports this module with firmware/link_cold.py, where a failed import is answered
E_NO_MEMORY). The tick never calls them. Each function is the Pump method of its name,
`self` the pump.
"""

from firmware.compat import const
from firmware.layout import (
    PRIME_DONE,
    PRIME_DUE,
    S_DAY,
    S_FILL,
    S_LAST_DELIVERY_S,
    S_LOCAL_DAY,
    S_LOCAL_MS,
    S_PRIME,
    S_PRIME_TODAY,
    S_REWOUND,
    S_RTC_STALE,
    S_SET_AGE,
    S_STOP,
    S_TEMP_KIND,
    S_TEMP_LEFT,
    S_TEMP_VALUE,
    S_TIME_LOST,
    S_TIME_SET,
)
from firmware.pump import MIN_MS
from protocol import spec as S

_SET_AGE_REMIND_S = const(3 * 86400)  # firmware/pump.py's (tests/test_tick_consts.py)


def set_time(self, utc_s, offset_min):
    """Set date, time and UTC offset. Moves the schedule, never delivery accounting."""
    self.interaction()
    lo, hi = S.SETTINGS[S.SET_UTC_OFFSET][2], S.SETTINGS[S.SET_UTC_OFFSET][3]
    if offset_min < lo or offset_min > hi:
        return self._refuse(S.E_OUT_OF_RANGE, 1)
    local = utc_s + offset_min * 60
    if utc_s < 0 or local < 0 or local >= (1 << 30):
        return self._refuse(S.E_OUT_OF_RANGE, 0)
    st = self.state
    old_local = st[S_LOCAL_DAY] * 86400 + st[S_LOCAL_MS] // 1000
    old_utc = self.utc_seconds()
    old_offset = self.setting(S.SET_UTC_OFFSET)
    if offset_min != old_offset and not self.settings.set_utc_offset(offset_min):
        return self._refuse(S.E_STORAGE, 0)
    day = local // 86400
    st[S_LOCAL_DAY] = day
    st[S_LOCAL_MS] = (local % 86400) * 1000
    st[S_TIME_SET] = 1
    after_loss = st[S_TIME_LOST]
    if after_loss:
        # The outage the pump could not measure, as far as the new time tells: it
        # counts as time without insulin (never as insulin action: IOB stays).
        if utc_s > old_utc:
            st[S_LAST_DELIVERY_S] -= utc_s - old_utc
        st[S_TIME_LOST] = 0
    if self.rtc is not None:
        # a failed write leaves the RTC's older time: the next boot must not take the
        # difference for an outage (it would age IOB in the patient's disfavour)
        st[S_RTC_STALE] = 1 if self.rtc.set(utc_s) is False else 0
    self._log(S.H_TIME_CHANGE, after_loss, old_local, local, offset_min)
    self.alarms.clear(S.A_TIME_UNSET, 0)  # logged after the change, in its time
    if day != st[S_DAY]:
        self._close_day(day)  # recorded after the change: history times stay in order
    self._commit(0, 0, 0)
    return S.OK


def set_temp_basal(self, kind, value, minutes):
    self.interaction()
    if kind != S.TEMP_ABSOLUTE and kind != S.TEMP_PERCENT:
        return self._refuse(S.E_BAD_ARG, 0)
    if minutes < S.TEMP_STEP_MIN or minutes > S.TEMP_MAX_MIN or minutes % S.TEMP_STEP_MIN:
        return self._refuse(S.E_OUT_OF_RANGE, 2)
    if value < 0 or value > (S.MAX_RATE if kind == S.TEMP_ABSOLUTE else S.TEMP_MAX_PERCENT):
        return self._refuse(S.E_OUT_OF_RANGE, 1)
    if self.settings.temp_peak(kind, value) > self.setting(S.SET_MAX_BASAL):
        return self._refuse(S.E_OVER_LIMIT, S.SET_MAX_BASAL)
    code = self._refuse_if_stopped()
    if code:
        return code
    st = self.state
    if st[S_TEMP_KIND]:
        self._end_temp(S.TEMP_END_CANCELLED)
    st[S_TEMP_KIND] = kind
    st[S_TEMP_VALUE] = value
    st[S_TEMP_LEFT] = minutes * MIN_MS
    self._log(S.H_TEMP_START, kind, value, minutes, 0)
    self._commit(0, 0, 0)
    return S.OK


def cancel_temp_basal(self):
    self.interaction()
    if not self.state[S_TEMP_KIND]:
        return self._refuse(S.E_NO_TEMP_BASAL, 0)
    self._end_temp(S.TEMP_END_CANCELLED)
    self._commit(0, 0, 0)
    return S.OK


def rewind(self):
    self.interaction()
    st = self.state
    if not st[S_STOP]:
        return self._refuse(S.E_NOT_SUSPENDED, 0)
    if st[S_STOP] == S.STOP_SELFTEST:
        return self._refuse(S.E_SAFE_STATE, self.selftest_bits)
    st[S_REWOUND] = 1
    st[S_FILL] = 0
    self._commit(0, 0, 0)
    self.motor.rewind()
    self._commit(0, 0, 0)
    self._log(S.H_REWIND, 0, 0, 0, 0)
    return S.OK


def fill(self, volume_mu):
    """A new reservoir holding volume_mu is in place (e.g. 200000 or 300000)."""
    self.interaction()
    st = self.state
    if not st[S_REWOUND]:
        return self._refuse(S.E_NOT_REWOUND, 0)
    if volume_mu < 10000 or volume_mu > 400000:
        return self._refuse(S.E_OUT_OF_RANGE, 0)
    if volume_mu % self.pulse:
        return self._refuse(S.E_INCREMENT, self.pulse)
    st[S_FILL] = self.motor.position() + volume_mu // self.pulse
    st[S_REWOUND] = 0
    st[S_PRIME] = PRIME_DUE  # a new reservoir: its tubing is primed next
    self._commit(0, 0, 0)
    self._log(S.H_FILL, 0, volume_mu, 0, 0)
    self.alarms.clear(S.A_RESERVOIR_EMPTY, volume_mu)
    self.alarms.clear(S.A_PRIME_INCOMPLETE, volume_mu)  # it is due again, not skipped
    return S.OK


def prime(self, kind, amount_mu):
    """Prime the tubing or fill the cannula: logged, not counted as given (THR-12).

    A tubing prime completes when every pulse moved and its final state save holds it
    (S_PRIME back to PRIME_DONE, A_PRIME_INCOMPLETE cleared). A motor fault or a power
    cut part-way leaves it not completed. Filling the cannula does not prime the tubing.
    The prime runs inside this call, so no suspension or occlusion can cut it short."""
    self.interaction()
    st = self.state
    if kind != S.PRIME_TUBING and kind != S.PRIME_CANNULA:
        return self._refuse(S.E_BAD_ARG, 0)
    if not st[S_STOP]:
        return self._refuse(S.E_NOT_SUSPENDED, 0)
    if st[S_STOP] == S.STOP_SELFTEST:
        return self._refuse(S.E_SAFE_STATE, self.selftest_bits)
    if st[S_REWOUND]:
        return self._refuse(S.E_NOT_FILLED, 0)
    top = 30000 if kind == S.PRIME_TUBING else 3000
    if amount_mu < self.pulse or amount_mu > top:
        return self._refuse(S.E_OUT_OF_RANGE, 1)
    if amount_mu % self.pulse:
        return self._refuse(S.E_INCREMENT, self.pulse)
    n = amount_mu // self.pulse
    if n > self.reservoir_pulses():
        return self._refuse(S.E_RESERVOIR_EMPTY, self.reservoir_mu())
    self._commit(0, 0, n)
    moved = self._step(n)
    st[S_PRIME_TODAY] += moved * self.pulse
    if moved < n or self.motor.fault():
        self._safe_state(S.ST_MOTOR, S.A_MOTOR_FAULT, n - moved)
        self._log(S.H_PRIME, kind, moved * self.pulse, 0, 0)
        return self._refuse(S.E_SAFE_STATE, self.selftest_bits)
    if kind == S.PRIME_CANNULA:
        st[S_SET_AGE] = 0
        self.set_remind_s = _SET_AGE_REMIND_S
        self.alarms.clear(S.A_SET_CHANGE, 0)
    else:
        st[S_PRIME] = PRIME_DONE
    self._commit(0, 0, 0)
    self._log(S.H_PRIME, kind, amount_mu, 0, 0)
    if kind == S.PRIME_TUBING:
        self.alarms.clear(S.A_PRIME_INCOMPLETE, amount_mu)
    return S.OK


# readers only the bench console needs (firmware/console.py)
def local_seconds(self):
    """Local wall-clock seconds since 2020-01-01; -1 while the time is not set."""
    st = self.state
    if not st[S_TIME_SET]:
        return -1
    return st[S_LOCAL_DAY] * 86400 + st[S_LOCAL_MS] // 1000


def local_day(self):
    """The local day number (days since 2020-01-01) the pump counts totals in."""
    return self.state[S_LOCAL_DAY]


def rewound(self):
    """True from a rewind until a new reservoir is filled."""
    return self.state[S_REWOUND] != 0
