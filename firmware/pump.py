"""The therapy engine: basal, temp basal, boluses, limits, reservoir, battery, alarms.

`Pump.tick()` is the scheduler tick: integers only, no allocation, every value held
between ticks below 2**30. Public operations return a result code from protocol.spec
(OK or E_*) and set `pump.detail`; they never raise on user input and refuse
out-of-range values with a reason instead of clamping.

Units: insulin in mU or motor pulses, time in ms from the board clock (ticks_diff),
wall-clock time in seconds since 2020-01-01 UTC, local time as (day, ms of day).
"""

from array import array

from firmware.alarms import Alarms
from firmware.cgm import Cgm
from firmware.compat import const, ticks_diff, unimport
from firmware.doses import BUCKET_S, DOSES_LEN, Doses
from firmware.events import Events
from firmware.hal import (
    R_CGM,
    R_DOSES_A,
    R_DOSES_B,
    R_HISTORY,
    R_SETTINGS_A,
    R_SETTINGS_B,
    R_STATE_A,
    R_STATE_B,
    R_TOTALS,
)
from firmware.layout import (
    PRIME_DONE,
    PRIME_SKIPPED,
    S_BASAL_TODAY,
    S_BLOCKED_MU,
    S_BOLUS_ACC,
    S_BOLUS_ID,
    S_BOLUS_KIND,
    S_BOLUS_TODAY,
    S_BOOTS,
    S_BUCKET,
    S_DAY,
    S_EXT_ACC,
    S_EXT_DONE,
    S_EXT_DURATION,
    S_EXT_ELAPSED,
    S_EXT_REQ,
    S_LOCAL_DAY,
    S_MONO_S,
    S_NEXT_BOLUS_ID,
    S_NOW_DONE,
    S_NOW_REQ,
    S_PRIME,
    S_PRIME_TODAY,
    S_REMINDER_S,
    S_REWOUND,
    S_STOP,
    S_TEMP_KIND,
    S_TEMP_LEFT,
    S_TEMP_VALUE,
    SETTINGS_LEN,
    STATE_LEN,
    STATE_LEN_1,
    STATE_LEN_2,
    STATE_LEN_3,
)
from firmware.settings import EPOCH_WEEKDAY, Settings
from firmware.store import History, Slots, Totals
from protocol import spec as S  # the cold paths read ids through it: fewer globals (heap, issue 12)

DAY_MS = const(86400000)
HOUR_MS = const(3600000)
MIN_MS = const(60000)
_CHUNK_MS = const(1000)  # delivery is planned in steps of at most 1 s: products stay < 2**30
_CAP_MS = const(1 << 29)  # saturation of "time since" counters
_OCCLUSION_MU = const(2500)  # insulin pushed against a blocked line before the alarm (ALM-3)
_RES_VERY_LOW_MU = const(5000)
_BAT_LOW = const(20)
_BAT_VERY_LOW = const(5)
_BAT_HYSTERESIS = const(2)
_BAT_CHANGE_JUMP = const(10)  # a rise this big means a new battery
_AUTO_OFF_GRACE_MS = const(30000)
_HOUSEKEEPING_MS = const(1000)
_STORAGE_FAILURES_MAX = const(3)  # consecutive failed state saves before the safe state
_SET_AGE_REMIND_S = const(3 * 86400)
_SET_AGE_REPEAT_S = const(12 * 3600)
_IOB_PEAK_MIN = const(75)
CHECKPOINT_S = const(60)  # longest time between two state saves: timers and the clock
_RTC_SLACK_S = const(120)  # an RTC this far behind the pump's last known time is still trusted
_MAX_OUTAGE_S = const(400 * 86400)  # a longer gap by the RTC is taken as a broken RTC
_MOTOR_TEST_S = const(3600)  # periodic motor self-test (ALM-7)
# the tick's copies of the settings it reads (Pump.limits, see Pump._refresh)
_L_BOLUS_SPEED = const(0)
_L_RES_LOW = const(1)
_L_NO_DELIVERY_S = const(2)
_L_REMINDER_S = const(3)
_L_AUTO_OFF_H = const(4)
_L_MAX_TDD = const(5)
_L_UNIT_BASAL = const(6)  # constants: pulse * HOUR_MS, pulse * MIN_MS
_L_UNIT_BOLUS = const(7)
# the tick's counters (Pump.tk)
_T_SAVES = const(0)  # state and settings slot save() calls, failed ones too (store.Slots)
_T_LAST = const(1)  # board ticks_ms of the last tick
_T_MONO = const(2)  # ms towards the next monotonic second
_T_HOUSE = const(3)  # ms since the last 1-Hz housekeeping
_T_KEY = const(4)  # _T_SAVES when _refresh ran
_T_OWED = const(5)  # 1: a failed save may have left pulses owed (the tick looks then)
# The tick engine's state indexes and hot constants as names the compiler inlines: an
# imported S_* name is a globals-dict lookup at every use (~260 M0+ instructions for
# `st[S_X]` against ~195), and its cost moves with the dict's layout (issue 12). mpy-cross
# inlines a const only within its module, so these repeat firmware/layout.py's values
# (and hal's, spec's): tests/test_tick_consts.py checks each against its source.
_S_POS = const(1)
_S_PLAN_BASAL = const(2)
_S_PLAN_BOLUS = const(3)
_S_PLAN_PRIME = const(4)
_S_BASAL_TODAY = const(6)
_S_BOLUS_TODAY = const(7)
_S_BOLUS_ID = const(9)
_S_NOW_REQ = const(11)
_S_EXT_REQ = const(12)
_S_NOW_DONE = const(13)
_S_EXT_DONE = const(14)
_S_EXT_DURATION = const(15)
_S_EXT_ELAPSED = const(16)
_S_TEMP_KIND = const(17)
_S_TEMP_VALUE = const(18)
_S_TEMP_LEFT = const(19)
_S_STOP = const(20)
_S_LOCAL_DAY = const(21)
_S_LOCAL_MS = const(22)
_S_FILL = const(23)
_S_REWOUND = const(24)
_S_SET_AGE = const(25)
_S_BATTERY = const(28)
_S_BASAL_ACC = const(29)
_S_BOLUS_ACC = const(30)
_S_EXT_ACC = const(31)
_S_LAST_CMD = const(33)
_S_LAST_CODE = const(34)
_S_LAST_DETAIL = const(35)
_S_MONO_S = const(36)
_S_LAST_DELIVERY_S = const(38)
_S_INTERACTION_S = const(39)
_S_REMINDER_S = const(40)
_S_BLOCKED_MU = const(41)
_S_BUCKET_BOLUS = const(43)
_S_BUCKET_TOTAL = const(44)
_S_SBL = const(45)
_S_MOTOR_TEST_S = const(48)
_SLOT_MS = const(1800000)  # protocol.spec SLOT_MS
_BUTTON_ACK = const(1)  # firmware.hal BUTTON_ACK
_EV_BOLUS = const(2)  # protocol.spec EV_BOLUS
_S_BUCKET = const(42)
_BUCKET_S = const(300)  # firmware.doses BUCKET_S
# the alarms and self-test bit the 1-Hz housekeeping compares (protocol.spec)
_A_RESERVOIR_EMPTY = const(1)
_A_BATTERY_DEPLETED = const(2)
_A_NO_DELIVERY = const(3)
_A_MOTOR_FAULT = const(4)
_A_AUTO_OFF = const(6)
_A_RESERVOIR_LOW = const(8)
_A_RESERVOIR_VERY_LOW = const(9)
_A_BATTERY_LOW = const(10)
_A_BATTERY_VERY_LOW = const(11)
_A_SUSPEND_REMINDER = const(15)
_A_SET_CHANGE = const(16)
_A_DOSE_LIMIT = const(24)
_ST_MOTOR = const(4)
# the bolus command's accepted path (Pump.bolus): protocol.spec values and the limits'
# indexes in the settings array (firmware.settings at(SET_MAX_BOLUS), ...)
_OK = const(0)
_BOLUS_NORMAL = const(1)
_BOLUS_EXTENDED = const(2)
_BOLUS_DUAL = const(3)
_MIN_BOLUS = const(50)
_EXT_MIN_MIN = const(30)
_EXT_MAX_MIN = const(480)
_H_BOLUS_START = const(2)
_AT_MAX_BOLUS = const(1)
_AT_MAX_BOLUS_1H = const(3)
_AT_MAX_TDD = const(4)
_AT_UTC_OFFSET = const(13)
_S_NEXT_BOLUS_ID = const(26)
_S_BOLUS_KIND = const(10)



def iob_permille(age_min, dia_min):
    """Insulin on board, per mille of a dose, `age_min` after delivery (THR-9).

    Action curve: a triangular activity profile rising linearly from 0 to its peak at 75 min
    and falling linearly to 0 at the duration of insulin action (DIA). The insulin left is one
    minus the area under it:
        t <= peak:        1 - t^2 / (peak * DIA)
        peak < t < DIA:   (DIA - t)^2 / (DIA * (DIA - peak))
        t >= DIA:         0
    """
    if age_min <= 0:
        return 1000
    if age_min >= dia_min:
        return 0
    if age_min <= _IOB_PEAK_MIN:
        return 1000 - age_min * age_min * 1000 // (_IOB_PEAK_MIN * dia_min)
    left = dia_min - age_min
    return left * left * 1000 // (dia_min * (dia_min - _IOB_PEAK_MIN))


def minutes_left(reservoir_mu, rate):
    """Minutes `reservoir_mu` lasts at `rate` mU/h; -1 at rate 0 (RES-1)."""
    if rate <= 0:
        return -1
    return reservoir_mu * 60 // rate


class Pump:
    def __init__(self, hw):
        self.hw = hw
        self.clock = hw.clock
        self.motor = hw.motor
        self.pressure = hw.pressure
        self.battery = hw.battery
        self.buttons = hw.buttons
        self.pulse = hw.pulse_mu
        self.occlusion_kpa = hw.occlusion_kpa
        self.state = array("i", [0] * STATE_LEN)
        # one save/load image for the three A/B slot pairs (store.Slots `scratch`)
        scratch = bytearray(4 * max(STATE_LEN, SETTINGS_LEN, DOSES_LEN) + 2)
        self.state_slots = Slots(hw.storage, R_STATE_A, R_STATE_B, self.state,
                                 (STATE_LEN_3, STATE_LEN_2, STATE_LEN_1), scratch)
        # settings, profiles, schedule (firmware/settings.py); `setting(sid)` reads one
        self.settings = Settings(self, hw.storage, R_SETTINGS_A, R_SETTINGS_B, scratch)
        self.setting = self.settings.get
        self.history = History(hw.storage, R_HISTORY)
        self.totals = Totals(hw.storage, R_TOTALS)
        self.doses = Doses(hw.storage, R_DOSES_A, R_DOSES_B, self.state, S_BUCKET, scratch)
        self.rtc = getattr(hw, "rtc", None)
        self.alarms = Alarms(hw.annunciator, self._log_alarm)
        self.cgm = Cgm(self, getattr(hw, "radio", None), History(hw.storage, R_CGM))
        self.calc = None  # the bolus calculator (THR-8): calculator() makes it
        self.events = Events()  # for the host, taken by the link
        self.detail = 0
        self.selftest_bits = 0
        # the tick's counters (_T_*): an array, not attributes (fewer instance lookups)
        self.tk = array("i", [0, 0, 0, 0, -1, 0])
        self.saved_s = 0  # S_MONO_S at the last state save (checkpoints)
        self.auto_off_grace = 0
        self.set_remind_s = _SET_AGE_REMIND_S
        self.set_ms = 0  # ms towards the next second of infusion-set age
        # basal_rate() and the settings the tick reads as _refresh last took them, and
        # the state and settings save attempts they were taken after
        self.basal_rate_now = 0
        self.limits = array("i", [0] * 8)
        # the state and settings slots count their saves into tk[_T_SAVES] (store.Slots
        # increments [0]): the tick's cache key, no attribute read per tick
        self.settings.slots.saves = self.state_slots.saves = self.tk
        self.limits[_L_UNIT_BASAL] = self.pulse * HOUR_MS  # accumulator units per pulse
        self.limits[_L_UNIT_BOLUS] = self.pulse * MIN_MS  # (mU*ms/h, mU*ms/min)
        # planned pulses of the running tick, and those a failed save left owed
        self.plan_basal = 0
        self.plan_now = 0
        self.plan_ext = 0
        self.owed_basal = 0
        self.owed_now = 0
        self.owed_ext = 0
        self.storage_failures = 0
        self.cmd = 0  # id of the link command being carried out (0: none), signed 32-bit
        self.cmd_saved = False  # a state save carried it

    # ----------------------------------------------------------------- boot (ALM-5, HIS-2)
    def boot(self):
        """Load state, recover from a power cut, run self-tests. Call once before ticking.
        The boot's code is firmware/pump_boot.py's, dropped once it ran (heap, issue 12)."""
        import firmware.pump_boot

        try:
            return firmware.pump_boot.boot(self)
        finally:
            unimport("pump_boot")

    def _recover_bolus(self):
        """A bolus cut off by power loss is recorded as interrupted, never resumed."""
        st = self.state
        if not st[S_BOLUS_ID]:
            self._recover_unsaved_start()
            return
        if not self._bolus_records(st[S_BOLUS_ID])[1]:
            self._end_bolus(S.BOLUS_INTERRUPTED)
        else:
            self._clear_bolus()

    def _bolus_records(self, bolus_id):
        """(start record or None, whether an end is logged) for `bolus_id`, searched among
        the last 32 history records back to its start."""
        rec = bytearray(24)
        h = self.history
        ended = False
        seq = h.next_seq - 1
        while seq >= h.first_seq and seq >= h.next_seq - 32:
            if h.read(seq, rec):
                r = h.decode(rec)
                if r[2] == S.H_BOLUS_END and r[4] == bolus_id:
                    ended = True
                elif r[2] == S.H_BOLUS_START and r[4] == bolus_id:
                    return r, ended
            seq -= 1
        return None, ended

    def _recover_unsaved_start(self):
        """Cut in bolus() after H_BOLUS_START was logged but before the state was saved: the
        bolus never ran (nothing moved). Close it as interrupted and never reuse its id."""
        st = self.state
        bolus_id = st[S_NEXT_BOLUS_ID]
        start, ended = self._bolus_records(bolus_id)
        if start is None:
            return
        st[S_NEXT_BOLUS_ID] = bolus_id + 1 if bolus_id < (1 << 29) else 1
        if not ended:  # else an earlier boot closed it; its id was not saved yet
            self._log(S.H_BOLUS_END, S.BOLUS_INTERRUPTED, bolus_id, 0, start[5] + start[6])
            self.events.put(S.EV_BOLUS_END, bolus_id, 0, S.BOLUS_INTERRUPTED)

    # ------------------------------------------------------------------- persistence
    def _commit(self, basal, bolus, prime, pos=None):
        """Save state with the movement about to happen from motor position `pos` (None:
        read it). Allocation-free."""
        st = self.state
        st[_S_POS] = self.motor.position() if pos is None else pos
        st[_S_PLAN_BASAL] = basal
        st[_S_PLAN_BOLUS] = bolus
        st[_S_PLAN_PRIME] = prime
        cmd = self.cmd
        if cmd:
            # Only a command that goes on to succeed saves state (every operation refuses
            # before its first save), so the save records the command as done (LNK-3).
            st[_S_LAST_CMD] = cmd
            st[_S_LAST_CODE] = _OK
            st[_S_LAST_DETAIL] = self.detail
        if self.state_slots.save():
            self.saved_s = st[_S_MONO_S]
            if cmd:
                self.cmd_saved = True
            return True
        return False

    # ------------------------------------------------------------------- link commands (LNK-3)
    def begin_command(self, cmd):
        """A link command `cmd` (signed 32-bit, not 0) is about to call an operation: the
        operation's own state saves will carry it (S_LAST_CMD)."""
        self.cmd = cmd
        self.cmd_saved = False
        self.detail = 0

    def end_command(self, code):
        """Record (cmd, code, detail) as the last command if the operation's own save did
        not (refusals, settings-only operations). Returns False if it could not be saved."""
        cmd = self.cmd
        self.cmd = 0
        st = self.state
        if (self.cmd_saved and st[_S_LAST_CMD] == cmd and st[_S_LAST_CODE] == code
                and st[_S_LAST_DETAIL] == self.detail):
            return True
        st[_S_LAST_CMD] = cmd
        st[_S_LAST_CODE] = code
        st[_S_LAST_DETAIL] = self.detail
        return self._commit(0, 0, 0)

    def last_command(self, out):
        """The last link command carried out, as saved with the state: out[0:3] = (cmd id
        signed 32-bit or 0, code, detail). Allocation-free (LNK-3)."""
        st = self.state
        out[0] = st[_S_LAST_CMD]
        out[1] = st[_S_LAST_CODE]
        out[2] = st[_S_LAST_DETAIL]

    def calculator(self):
        """The bolus calculator (THR-8, firmware/calc.py), made at its first use: only the
        link's and the console's rarely used paths need it (heap, issue 12)."""
        if self.calc is None:
            from firmware.calc import Calculator

            self.calc = Calculator(self)
        return self.calc

    def boots(self):
        """Boots since the state was new."""
        return self.state[S_BOOTS]

    def _log(self, kind, arg, v1, v2, v3):
        return self.history.append(self.utc_seconds(), kind, arg, v1, v2, v3)

    def _log_alarm(self, alarm, action, value):
        self._log(S.H_ALARM, action, alarm, value, 0)
        self.events.put(S.EV_ALARM, alarm, action, value)

    # ------------------------------------------------------------------- clock (THR-11)
    def utc_seconds(self):
        """Wall-clock seconds since 2020-01-01 UTC (0 while an unset clock is before it)."""
        st = self.state
        t = (st[_S_LOCAL_DAY] * 86400 + st[_S_LOCAL_MS] // 1000
             - self.settings.values[_AT_UTC_OFFSET] * 60)  # setting(SET_UTC_OFFSET)
        return t if t > 0 else 0

    def weekday(self):
        """Day of the week of the local date, Monday = 0."""
        return (self.state[S_LOCAL_DAY] + EPOCH_WEEKDAY) % 7

    # the rarely used operations are firmware/pump_cold.py's, imported at their first call
    # (heap, issue 12); these methods keep their names and arguments
    def set_time(self, utc_s, offset_min):
        """Set date, time and UTC offset. Moves the schedule, never delivery accounting."""
        import firmware.pump_cold

        return firmware.pump_cold.set_time(self, utc_s, offset_min)

    def _close_day(self, new_day):
        """Store the running day's totals and continue with `new_day`'s (THR-10). A day
        already recorded (the clock was set back, a time zone westward) continues from
        its stored totals: a day's total is merged, never overwritten (HIS-3)."""
        st = self.state
        self.totals.save(st[S_DAY], st[S_BASAL_TODAY], st[S_BOLUS_TODAY], st[S_PRIME_TODAY])
        self._log(S.H_DAY_TOTAL, 0, st[S_DAY], st[S_BASAL_TODAY], st[S_BOLUS_TODAY])
        st[S_DAY] = new_day
        if not self.totals.load_into(new_day, st, S_BASAL_TODAY):
            st[S_BASAL_TODAY] = 0
            st[S_BOLUS_TODAY] = 0
            st[S_PRIME_TODAY] = 0

    def day_totals(self, day):
        """(basal mU, bolus mU, prime mU) of a local day, or None if not recorded."""
        st = self.state
        if day == st[S_DAY]:
            return (st[S_BASAL_TODAY], st[S_BOLUS_TODAY], st[S_PRIME_TODAY])
        return self.totals.load(day)

    # ------------------------------------------------------------------- basal (THR-1)
    def basal_rate(self):
        """Basal rate being delivered now, mU/h (0 while stopped or suspended before a
        low, SNS-3)."""
        st = self.state
        if st[_S_STOP] or st[_S_SBL]:
            return 0
        kind = st[_S_TEMP_KIND]
        if kind == S.TEMP_ABSOLUTE:
            return st[_S_TEMP_VALUE]
        if kind == S.TEMP_PERCENT:
            return self.settings.profile_rate() * st[_S_TEMP_VALUE] // 100
        return self.settings.profile_rate()

    # ------------------------------------------------------------------- temp basal (THR-2)
    def set_temp_basal(self, kind, value, minutes):
        import firmware.pump_cold

        return firmware.pump_cold.set_temp_basal(self, kind, value, minutes)

    def cancel_temp_basal(self):
        import firmware.pump_cold

        return firmware.pump_cold.cancel_temp_basal(self)

    def _end_temp(self, ending):
        st = self.state
        st[S_TEMP_KIND] = S.TEMP_NONE
        st[S_TEMP_VALUE] = 0
        st[S_TEMP_LEFT] = 0
        self._log(S.H_TEMP_END, ending, 0, 0, 0)

    # ------------------------------------------------------------------- bolus (THR-3/4/6)
    def bolus(self, kind, now_mu, ext_mu, ext_minutes):
        """Start a normal, extended or dual-wave bolus. detail = bolus id on success.
        The accepted path reads the spec's values, the limits and the state through
        private consts (no globals lookup per use, issue 12); refusals keep S.*."""
        self.interaction()
        pulse = self.pulse
        if kind == _BOLUS_NORMAL:
            if ext_mu != 0 or ext_minutes != 0:
                return self._refuse(S.E_BAD_ARG, 2)
            if now_mu < _MIN_BOLUS:
                return self._refuse(S.E_OUT_OF_RANGE, 1)
        elif kind == _BOLUS_EXTENDED:
            if now_mu != 0:
                return self._refuse(S.E_BAD_ARG, 1)
            if ext_mu < _MIN_BOLUS:
                return self._refuse(S.E_OUT_OF_RANGE, 2)
        elif kind == _BOLUS_DUAL:
            if now_mu < _MIN_BOLUS:
                return self._refuse(S.E_OUT_OF_RANGE, 1)
            if ext_mu < _MIN_BOLUS:
                return self._refuse(S.E_OUT_OF_RANGE, 2)
        else:
            return self._refuse(S.E_BAD_ARG, 0)
        if kind != _BOLUS_NORMAL and (ext_minutes < _EXT_MIN_MIN or ext_minutes > _EXT_MAX_MIN):
            return self._refuse(S.E_OUT_OF_RANGE, 3)
        if now_mu % pulse or ext_mu % pulse:
            return self._refuse(S.E_INCREMENT, pulse)
        total = now_mu + ext_mu
        limit = self.settings.values  # setting(sid) is limit[_AT_*]: settings.at(sid)
        if total > limit[_AT_MAX_BOLUS]:
            return self._refuse(S.E_OVER_LIMIT, S.SET_MAX_BOLUS)
        st = self.state
        doses = self.doses
        owed = self._bolus_owed() if st[_S_BOLUS_ID] else 0  # _clear_bolus zeroes it all
        # bolus_last_hour() and dose_last_day() inline (issue 12: four calls fewer); the
        # windows as Doses.bolus_hour() and total_day() read them (tests/test_doses_hour.py)
        if doses.sum_hour + st[_S_BUCKET_BOLUS] + owed + total > limit[_AT_MAX_BOLUS_1H]:
            return self._refuse(S.E_OVER_LIMIT, S.SET_MAX_BOLUS_1H)
        if doses.sum_total + st[_S_BUCKET_TOTAL] + owed + total > limit[_AT_MAX_TDD]:
            return self._refuse(S.E_OVER_LIMIT, S.SET_MAX_TDD)
        if st[_S_STOP]:
            return self._refuse_if_stopped()
        if st[_S_BOLUS_ID]:
            return self._refuse(S.E_BOLUS_RUNNING, st[_S_BOLUS_ID])
        if total // pulse > self.reservoir_pulses():
            return self._refuse(S.E_RESERVOIR_EMPTY, self.reservoir_pulses() * pulse)
        bolus_id = st[_S_NEXT_BOLUS_ID]
        st[_S_NEXT_BOLUS_ID] = bolus_id + 1 if bolus_id < (1 << 29) else 1
        st[_S_BOLUS_ID] = bolus_id
        st[_S_BOLUS_KIND] = kind
        st[_S_NOW_REQ] = now_mu // pulse
        st[_S_EXT_REQ] = ext_mu // pulse
        st[_S_NOW_DONE] = 0
        st[_S_EXT_DONE] = 0
        st[_S_EXT_DURATION] = ext_minutes * MIN_MS
        st[_S_EXT_ELAPSED] = 0
        st[_S_BOLUS_ACC] = 0
        st[_S_EXT_ACC] = 0
        # _log() inline (issue 12: a call level less on the signed bolus)
        self.history.append(self.utc_seconds(), _H_BOLUS_START, kind, bolus_id, now_mu, ext_mu)
        self.detail = bolus_id  # before the save: it carries the link command's result
        if not self._commit(0, 0, 0):
            self._clear_bolus()
            return self._refuse(S.E_STORAGE, 0)
        self.events.put(_EV_BOLUS, bolus_id, 0, total)
        return _OK

    def cancel_bolus(self):
        """Stop the running bolus. It stops whatever happens; E_STORAGE (detail: the bolus
        id) says the state save failed: a reboot then finds it interrupted, never resumes
        it (HIS-2)."""
        self.interaction()
        bolus_id = self.state[S_BOLUS_ID]
        if not bolus_id:
            return self._refuse(S.E_NO_BOLUS, 0)
        self.detail = bolus_id
        self._end_bolus(S.BOLUS_CANCELLED)
        if not self._commit(0, 0, 0):
            return self._refuse(S.E_STORAGE, bolus_id)
        return S.OK

    def bolus_progress(self):
        """(bolus id, delivered mU, requested mU); id 0 when no bolus runs."""
        st = self.state
        p = self.pulse
        return (st[S_BOLUS_ID], (st[S_NOW_DONE] + st[S_EXT_DONE]) * p,
                (st[S_NOW_REQ] + st[S_EXT_REQ]) * p)

    def bolus_parts(self):
        """(immediate mU, extended mU, extended duration in min) the running bolus was
        asked for; zeros when no bolus runs."""
        st = self.state
        p = self.pulse
        return st[S_NOW_REQ] * p, st[S_EXT_REQ] * p, st[S_EXT_DURATION] // MIN_MS

    def _end_bolus(self, ending):
        """History first, then state: a cut in between is seen at boot (_recover_bolus)."""
        st = self.state
        p = self.pulse
        done = (st[S_NOW_DONE] + st[S_EXT_DONE]) * p
        req = (st[S_NOW_REQ] + st[S_EXT_REQ]) * p
        self._log(S.H_BOLUS_END, ending, st[S_BOLUS_ID], done, req)
        self.events.put(S.EV_BOLUS_END, st[S_BOLUS_ID], done, ending)
        self._clear_bolus()

    def _clear_bolus(self):
        st = self.state
        self.owed_now = 0  # pulses a failed save left owed never follow the bolus's end
        self.owed_ext = 0
        st[S_BOLUS_ID] = 0
        st[S_BOLUS_KIND] = S.BOLUS_NONE
        st[S_NOW_REQ] = 0
        st[S_EXT_REQ] = 0
        st[S_NOW_DONE] = 0
        st[S_EXT_DONE] = 0
        st[S_EXT_DURATION] = 0
        st[S_EXT_ELAPSED] = 0
        st[S_BOLUS_ACC] = 0
        st[S_EXT_ACC] = 0

    def _bolus_owed(self):
        """mU the running bolus has still to deliver."""
        st = self.state
        return (st[S_NOW_REQ] + st[S_EXT_REQ] - st[S_NOW_DONE] - st[S_EXT_DONE]) * self.pulse

    def bolus_last_hour(self):
        """Bolus insulin delivered in the last 60 min (monotonic clock: no clock change or
        reboot moves it) plus what the running bolus still owes."""
        return self.doses.bolus_hour() + self._bolus_owed()

    def dose_last_day(self):
        """Insulin (basal and bolus) delivered in the last 24 h on the monotonic clock
        plus what the running bolus still owes (THR-6: a rolling window)."""
        return self.doses.total_day() + self._bolus_owed()

    def iob(self):
        """Bolus insulin on board, mU (THR-9), from the monotonic dose ring."""
        return self.doses.iob(self.state[S_MONO_S] % BUCKET_S // 60, self.setting(S.SET_DIA),
                              iob_permille)

    # ------------------------------------------------------------------- suspend (THR-5)
    def suspend(self):
        """Stop delivery. It stops whatever happens; E_STORAGE says the state save failed
        (the pump then goes to the safe state after STORAGE_FAILURES_MAX failures)."""
        self.interaction()
        if self.state[S_STOP]:
            return self._refuse(S.E_SUSPENDED, self.state[S_STOP])
        if not self._stop(S.STOP_USER):
            return self._refuse(S.E_STORAGE, 0)
        return S.OK

    def stop_reason(self):
        """Why delivery is stopped: STOP_* (STOP_NONE: delivering)."""
        return self.state[S_STOP]

    def resume(self):
        """Resume delivery; also the manual resume of a suspension before low (SNS-3),
        which then waits SBL_WAIT_MIN before suspending again.

        After a fill whose tubing prime has not completed, delivery resumes (the person may
        know the line is full) but the prime-incomplete alarm (medium, A_PRIME_INCOMPLETE)
        says that the line may hold air, so insulin counted as given may not have flowed.
        It is persisted (S_PRIME) and raised again at every boot until a tubing prime
        completes or a new reservoir is filled; acknowledging it only snoozes it."""
        self.interaction()
        st = self.state
        stop = st[S_STOP]
        if not stop:
            if self.cgm.sbl:
                self.cgm.resume(S.SBL_MANUAL)
                return S.OK
            return self._refuse(S.E_NOT_SUSPENDED, 0)
        if stop == S.STOP_SELFTEST:
            return self._refuse(S.E_SAFE_STATE, self.selftest_bits)
        if st[S_REWOUND]:
            return self._refuse(S.E_NOT_FILLED, 0)
        if self.reservoir_pulses() <= 0:
            return self._refuse(S.E_RESERVOIR_EMPTY, 0)
        if self.battery.percent() <= 0:
            return self._refuse(S.E_BATTERY_DEPLETED, 0)
        self.cgm.resume(S.SBL_MANUAL)
        st[S_STOP] = S.STOP_NONE
        st[S_REMINDER_S] = st[S_MONO_S]
        st[S_BLOCKED_MU] = 0
        self.alarms.clear(S.A_OCCLUSION, 0)
        self.alarms.clear(S.A_AUTO_OFF, 0)
        self.alarms.clear(S.A_SUSPEND_REMINDER, 0)
        unprimed = st[S_PRIME] != PRIME_DONE
        if unprimed:
            st[S_PRIME] = PRIME_SKIPPED  # saved with the resume: a reboot raises it again
        self._commit(0, 0, 0)
        self._log(S.H_RESUME, stop, 0, 0, 0)
        self.events.put(S.EV_STATE, S.STOP_NONE, 0, 0)
        if unprimed:
            self.alarms.raise_(S.A_PRIME_INCOMPLETE, 0)
        return S.OK

    def _stop(self, reason):
        """Stop all delivery: a running bolus ends interrupted, a temp basal ends. Returns
        whether the stop was saved (it holds in RAM either way)."""
        st = self.state
        if st[S_STOP] == reason:
            return True
        if st[S_BOLUS_ID]:
            self._end_bolus(S.BOLUS_INTERRUPTED)
        if st[S_TEMP_KIND]:
            self._end_temp(S.TEMP_END_SUSPENDED)
        st[S_STOP] = reason
        st[S_REMINDER_S] = st[S_MONO_S]
        self.owed_basal = 0  # nothing owed is delivered after a stop (no surprise insulin)
        self.owed_now = 0
        self.owed_ext = 0
        saved = self._commit(0, 0, 0)  # state first: after a cut the pump stays stopped
        self._log(S.H_SUSPEND, reason, 0, 0, 0)
        self.events.put(S.EV_STATE, reason, 0, 0)
        return saved

    def _refuse_if_stopped(self):
        stop = self.state[S_STOP]
        if not stop:
            return S.OK
        if stop == S.STOP_SELFTEST:
            return self._refuse(S.E_SAFE_STATE, self.selftest_bits)
        if stop == S.STOP_RESERVOIR:
            return self._refuse(S.E_RESERVOIR_EMPTY, 0)
        if stop == S.STOP_BATTERY:
            return self._refuse(S.E_BATTERY_DEPLETED, 0)
        return self._refuse(S.E_SUSPENDED, stop)

    def _refuse(self, code, detail):
        self.detail = detail
        return code

    # ------------------------------------------------------------------- reservoir (THR-12)
    def reservoir_pulses(self):
        st = self.state
        if st[_S_REWOUND]:
            return 0
        left = st[_S_FILL] - self.motor.position()
        return left if left > 0 else 0

    def reservoir_mu(self):
        return self.reservoir_pulses() * self.pulse

    def rewind(self):
        import firmware.pump_cold

        return firmware.pump_cold.rewind(self)

    def fill(self, volume_mu):
        """A new reservoir holding volume_mu is in place (e.g. 200000 or 300000)."""
        import firmware.pump_cold

        return firmware.pump_cold.fill(self, volume_mu)

    def prime(self, kind, amount_mu):
        """Prime the tubing or fill the cannula: logged, not counted as given (THR-12)."""
        import firmware.pump_cold

        return firmware.pump_cold.prime(self, kind, amount_mu)

    # ------------------------------------------------------------------- alarms
    def ack_alarm(self, alarm):
        code = self.alarms.ack(alarm)  # before interaction(), which clears auto-off
        self.interaction()
        if code:
            return self._refuse(code, alarm)
        return S.OK

    def interaction(self):
        """Any command or button press: restarts the auto-off timer (ALM-4)."""
        st = self.state
        st[_S_INTERACTION_S] = st[_S_MONO_S]
        if self.alarms.active[_A_AUTO_OFF]:
            self.alarms.clear(_A_AUTO_OFF, 0)

    # ------------------------------------------------------------------- the tick
    def tick(self):
        """One scheduler step. Allocation-free; call it every 100 ms to 1 s.

        The firmware's hot path (issue 12): on a Cortex-M0+ every bytecode costs about
        100-250 instructions and a method call 1,000-2,500, so the step loop and the
        bolus accumulators are inline, the rare parts (midnight, a temp basal's end,
        housekeeping) are the calls, and basal_rate() and the settings it reads are
        copies (_refresh)."""
        ticks = self.clock.ticks_ms()
        tk = self.tk
        dt = ticks_diff(ticks, tk[_T_LAST])
        if dt <= 0:
            return
        tk[_T_LAST] = ticks
        st = self.state
        if tk[_T_KEY] != tk[_T_SAVES]:
            self._refresh()
        ms = tk[_T_MONO] + dt
        if ms >= 1000:
            secs = ms // 1000
            st[_S_MONO_S] += secs
            ms -= secs * 1000
            # a dose bucket closes only when a second passes (boot rolled the rings last);
            # Doses.roll's own first test inline: the call only when one closes
            if st[_S_MONO_S] // _BUCKET_S > st[_S_BUCKET]:
                self.doses.roll(st[_S_MONO_S])
        tk[_T_MONO] = ms
        if self.buttons.pressed() & _BUTTON_ACK:
            self.alarms.ack_top()
            self.interaction()
        # Battery, reservoir and timer alarms are housekeeping at 1 Hz: it keeps the
        # average tick cheap on a 100-ms loop (benchmarks/RESULTS.md).
        house_ms = tk[_T_HOUSE] + dt
        tk[_T_HOUSE] = house_ms
        house = house_ms >= _HOUSEKEEPING_MS
        if house:
            self._check_battery()
        planned = 0
        if tk[_T_OWED]:  # pulses a failed save left owed (_deliver), if a stop kept any
            tk[_T_OWED] = 0
            planned = self.owed_basal or self.owed_now or self.owed_ext
            if planned:
                self.plan_basal = self.owed_basal
                self.plan_now = self.owed_now
                self.plan_ext = self.owed_ext
                self.owed_basal = 0
                self.owed_now = 0
                self.owed_ext = 0
        lim = self.limits
        left = dt
        while left > 0:
            # the longest step that crosses no slot boundary, temp-basal end or bolus end
            step = left if left < _CHUNK_MS else _CHUNK_MS
            local = st[_S_LOCAL_MS]
            to_slot = _SLOT_MS - local % _SLOT_MS
            if to_slot < step:
                step = to_slot
            if st[_S_TEMP_KIND] and st[_S_TEMP_LEFT] < step:
                step = st[_S_TEMP_LEFT]
            # the extended part runs once the immediate part is planned (EXT_REQ: a bolus)
            ext = st[_S_EXT_REQ] and st[_S_NOW_DONE] + self.plan_now >= st[_S_NOW_REQ]
            if ext:
                ext = st[_S_EXT_DURATION] - st[_S_EXT_ELAPSED]  # ms left of it
                if 0 < ext < step:
                    step = ext
            # move the pulse accumulators, the wall clock and the temp basal by the step
            if not st[_S_STOP]:
                unit = lim[_L_UNIT_BASAL]
                acc = st[_S_BASAL_ACC] + step * self.basal_rate_now
                while acc >= unit:
                    acc -= unit
                    self.plan_basal += 1
                    planned = 1
                st[_S_BASAL_ACC] = acc
                if st[_S_BOLUS_ID]:
                    if ext > 0:  # the extended part: pulse k of N is due at k * duration / N
                        duration = st[_S_EXT_DURATION]
                        acc = st[_S_EXT_ACC] + step * st[_S_EXT_REQ]
                        if acc >= duration:
                            n = 0
                            while acc >= duration:
                                acc -= duration
                                n += 1
                            self.plan_ext += n
                            planned = 1
                        st[_S_EXT_ACC] = acc
                        st[_S_EXT_ELAPSED] += step
                    elif not ext:  # the immediate part, at the bolus speed
                        req = st[_S_NOW_REQ]
                        done = st[_S_NOW_DONE]
                        now = self.plan_now
                        if done + now < req:
                            unit = lim[_L_UNIT_BOLUS]
                            acc = st[_S_BOLUS_ACC] + step * lim[_L_BOLUS_SPEED]
                            while acc >= unit and done + now < req:
                                acc -= unit
                                now += 1
                            st[_S_BOLUS_ACC] = acc
                            if now != self.plan_now:
                                self.plan_now = now
                                planned = 1
            if local + step < DAY_MS:
                st[_S_LOCAL_MS] = local + step
                if step == to_slot:
                    self.basal_rate_now = self.basal_rate()  # the profile's next slot
            else:
                self._midnight(step, planned)
                planned = 0
            if st[_S_TEMP_KIND]:
                st[_S_TEMP_LEFT] -= step
                if st[_S_TEMP_LEFT] <= 0:
                    self._end_temp(S.TEMP_END_EXPIRED)
                    self.basal_rate_now = self.basal_rate()
            left -= step
        if planned:
            self._deliver()
        if house:
            self._timers(house_ms)
            self.cgm.tick(house_ms)
            tk[_T_HOUSE] = 0
        al = self.alarms
        pending = al.pending + dt
        if pending < al.due:  # (0 while the LED may change)
            al.pending = pending  # Alarms.tick's own first step, without the call
        else:
            al.tick(dt)

    def _refresh(self):
        """Take the basal rate and the settings the tick reads again: basal_rate() costs
        ~9,000 M0+ instructions and setting() ~2,500, and they change only by a command or
        suspend before low (each attempts a state or settings save: the key) or inside the
        tick (a slot boundary, midnight, a temp basal's end: taken there). Whatever changes
        basal_rate()'s or these settings' inputs outside the tick must save (or revert)."""
        self.tk[_T_KEY] = self.tk[_T_SAVES]
        self.basal_rate_now = self.basal_rate()
        lim = self.limits
        lim[_L_BOLUS_SPEED] = self.setting(S.SET_BOLUS_SPEED)
        lim[_L_RES_LOW] = self.setting(S.SET_RES_LOW)
        lim[_L_NO_DELIVERY_S] = self.setting(S.SET_NO_DELIVERY) * 60
        lim[_L_REMINDER_S] = self.setting(S.SET_SUSPEND_REMINDER) * 60
        lim[_L_AUTO_OFF_H] = self.setting(S.SET_AUTO_OFF)
        lim[_L_MAX_TDD] = self.setting(S.SET_MAX_TDD)

    def _midnight(self, step, planned):
        """The step reaches midnight: pulses due by then count for the day closing (THR-10),
        then the day closes."""
        st = self.state
        if planned:
            self._deliver()
        st[_S_LOCAL_MS] += step - DAY_MS
        st[_S_LOCAL_DAY] += 1
        self._close_day(st[_S_LOCAL_DAY])
        self.basal_rate_now = self.basal_rate()  # another day, maybe another profile

    def _deliver(self):
        """Save the plan, move the motor, then count what moved (HIS-2, THR-7, ALM-3).
        The plan is used up (it stays readable while the motor moves): a failed save owes
        it to the next tick."""
        st = self.state
        if st[_S_STOP]:
            self._unplan()
            return  # a stopped pump never moves, whatever its callers planned
        basal = 0 if st[_S_SBL] else self.plan_basal
        now = self.plan_now
        ext = self.plan_ext
        motor = self.motor
        pos = motor.position()
        room = 0 if st[_S_REWOUND] else st[_S_FILL] - pos  # reservoir_pulses() inline
        if room < 0:
            room = 0
        if basal > room:
            basal = room
        room -= basal
        if now > room:
            now = room
        room -= now
        if ext > room:
            ext = room
        room -= ext
        total = basal + now + ext
        if total:
            # the plan's own save changes nothing the tick's copies depend on (_refresh)
            fresh = self.tk[_T_KEY] == self.tk[_T_SAVES]
            if not self._commit(basal, now + ext, 0, pos):
                # Never move what could not be recorded: owe it to the next tick, and after
                # repeated failures stop in the safe state (storage fault, ALM-5).
                self._unplan()
                self.owed_basal = basal
                self.owed_now = now
                self.owed_ext = ext
                self.tk[_T_OWED] = 1
                self.storage_failures += 1
                if self.storage_failures >= _STORAGE_FAILURES_MAX:
                    self._safe_state(S.ST_STORAGE, S.A_SELFTEST, 0)
                return
            if fresh:
                self.tk[_T_KEY] += 1
        self.storage_failures = 0
        if total:
            # _step inline, from the position _commit saved
            motor.step(total)
            moved = motor.position()
            room = st[_S_FILL] - moved  # left in the reservoir (not rewound: room was > 0)
            moved -= pos
            if moved < 0:
                moved = 0
            elif moved > total:
                moved = total
        self.plan_basal = 0  # used up (_unplan, inline on the motor tick)
        self.plan_now = 0
        self.plan_ext = 0
        if total:
            b = basal if basal < moved else moved
            n = now if now < moved - b else moved - b
            self._count(b, n, moved - b - n)
            if moved < total or self.motor.fault():
                self._safe_state(S.ST_MOTOR, S.A_MOTOR_FAULT, total - moved)
                return
            p = self.pulse
            if now + ext:
                self.events.put(_EV_BOLUS, st[_S_BOLUS_ID],
                                (st[_S_NOW_DONE] + st[_S_EXT_DONE]) * p,
                                (st[_S_NOW_REQ] + st[_S_EXT_REQ]) * p)
            if self.pressure.read() >= self.occlusion_kpa:
                st[_S_BLOCKED_MU] += total * p
            else:
                st[_S_BLOCKED_MU] = 0
        if (st[_S_BOLUS_ID] and st[_S_NOW_DONE] >= st[_S_NOW_REQ]
                and st[_S_EXT_DONE] >= st[_S_EXT_REQ]):
            self._end_bolus(S.BOLUS_COMPLETED)
            self._commit(0, 0, 0)
        if st[_S_BLOCKED_MU] >= _OCCLUSION_MU:
            self.alarms.raise_(S.A_OCCLUSION, st[_S_BLOCKED_MU])
            self.motor.relieve()
            st[_S_BLOCKED_MU] = 0
            self._stop(S.STOP_OCCLUSION)  # no make-up delivery of what did not flow
        elif room <= 0:  # reservoir_pulses() == 0: nothing moved, or what moved emptied it
            self._stop(S.STOP_RESERVOIR)

    def _unplan(self):
        self.plan_basal = 0
        self.plan_now = 0
        self.plan_ext = 0

    def _step(self, n):
        """Move the plunger n pulses; the pulses that really moved, by its position."""
        motor = self.motor
        before = motor.position()
        motor.step(n)
        moved = motor.position() - before
        if moved < 0:
            return 0
        return moved if moved < n else n

    def _count(self, basal, now, ext):
        """Count pulses that moved: daily totals, bolus progress, dose windows (HIS-2)."""
        st = self.state
        p = self.pulse
        bolus = (now + ext) * p
        if basal:
            st[_S_BASAL_TODAY] += basal * p
        if bolus:
            st[_S_BOLUS_TODAY] += bolus
        if now:
            st[_S_NOW_DONE] += now
        if ext:
            st[_S_EXT_DONE] += ext
        if basal + now + ext:
            # the dose bucket being filled (firmware/doses.py), saved with the state
            st[_S_BUCKET_BOLUS] += bolus
            st[_S_BUCKET_TOTAL] += basal * p + bolus
            st[_S_LAST_DELIVERY_S] = st[_S_MONO_S]

    def _safe_state(self, bit, alarm, value):
        """The one way into the safe state for a fault found after boot: self-test bit
        `bit`, delivery stopped, then `alarm` raised (A_SELFTEST: with the self-test bits;
        A_MOTOR_FAULT, ALM-7: with `value`, the pulses that did not move)."""
        self.selftest_bits |= bit
        self._stop(S.STOP_SELFTEST)
        self.alarms.raise_(alarm, self.selftest_bits if alarm == S.A_SELFTEST else value)

    def _check_battery(self):
        # an alarm's condition is compared with its state first: set() is a call of ~1,500
        # M0+ instructions, and the condition rarely changes (issue 12)
        st = self.state
        level = self.battery.percent()
        if level >= st[_S_BATTERY] + _BAT_CHANGE_JUMP:
            self._log(S.H_BATTERY_CHANGE, 0, st[_S_BATTERY], level, 0)
        st[_S_BATTERY] = level
        al = self.alarms
        active = al.active
        low = active[_A_BATTERY_LOW]
        cond = level <= _BAT_LOW or (low and level <= _BAT_LOW + _BAT_HYSTERESIS)
        if cond != low:
            al.set(_A_BATTERY_LOW, cond, level)
        low = active[_A_BATTERY_VERY_LOW]
        cond = level <= _BAT_VERY_LOW or (low and level <= _BAT_VERY_LOW + _BAT_HYSTERESIS)
        if cond != low:
            al.set(_A_BATTERY_VERY_LOW, cond, level)
        if (level <= 0) != active[_A_BATTERY_DEPLETED]:
            al.set(_A_BATTERY_DEPLETED, level <= 0, level)
        if level <= 0 and st[_S_STOP] != S.STOP_BATTERY and st[_S_STOP] != S.STOP_SELFTEST:
            self._stop(S.STOP_BATTERY)

    def _timers(self, dt):
        """1-Hz housekeeping. Every timer runs on the monotonic clock (_S_MONO_S), so a
        reboot or an outage never restarts one (HIS-3). Conditions are compared with
        their alarm's state before calling set() (see _check_battery)."""
        st = self.state
        al = self.alarms
        active = al.active
        lim = self.limits
        mono = st[_S_MONO_S]
        # reservoir (RES-1)
        filled = not st[_S_REWOUND]
        left = st[_S_FILL] - self.motor.position() if filled else 0  # reservoir_pulses()
        left = left * self.pulse if left > 0 else 0
        cond = filled and 0 < left <= lim[_L_RES_LOW]
        if cond != active[_A_RESERVOIR_LOW]:
            al.set(_A_RESERVOIR_LOW, cond, left)
        cond = filled and 0 < left <= _RES_VERY_LOW_MU
        if cond != active[_A_RESERVOIR_VERY_LOW]:
            al.set(_A_RESERVOIR_VERY_LOW, cond, left)
        cond = filled and left == 0
        if cond != active[_A_RESERVOIR_EMPTY]:
            al.set(_A_RESERVOIR_EMPTY, cond, 0)
        # no delivery for too long (THR-5)
        gap = mono - st[_S_LAST_DELIVERY_S]
        cond = gap >= lim[_L_NO_DELIVERY_S]
        if cond != active[_A_NO_DELIVERY]:
            al.set(_A_NO_DELIVERY, cond, gap // 60)
        # suspend reminder (THR-5): re-raised every period while stopped
        if st[_S_STOP] and mono - st[_S_REMINDER_S] >= lim[_L_REMINDER_S]:
            st[_S_REMINDER_S] = mono
            al.clear(_A_SUSPEND_REMINDER, 0)
            al.raise_(_A_SUSPEND_REMINDER, st[_S_STOP])
        # auto-off (ALM-4)
        hours = lim[_L_AUTO_OFF_H]
        if hours:
            if not al.active[_A_AUTO_OFF]:
                if mono - st[_S_INTERACTION_S] >= hours * 3600:
                    al.raise_(_A_AUTO_OFF, hours)
                    self.auto_off_grace = _AUTO_OFF_GRACE_MS
            elif self.auto_off_grace > 0:
                self.auto_off_grace -= dt
                if self.auto_off_grace <= 0 and not st[_S_STOP]:
                    self._stop(S.STOP_AUTO_OFF)
        # the rolling 24-h dose (THR-6): basal goes on, boluses are refused
        day = self.doses.sum_total + st[_S_BUCKET_TOTAL]  # Doses.total_day() inline
        cond = day >= lim[_L_MAX_TDD]
        if cond != active[_A_DOSE_LIMIT]:
            al.set(_A_DOSE_LIMIT, cond, day)
        # motor: the driver's fault signal, and a self-test every hour (ALM-7)
        if not self.selftest_bits & _ST_MOTOR:
            fault = self.motor.fault()
            if not fault and mono - st[_S_MOTOR_TEST_S] >= _MOTOR_TEST_S:
                st[_S_MOTOR_TEST_S] = mono
                fault = not self.motor.self_test()
            if fault:
                self._safe_state(_ST_MOTOR, _A_MOTOR_FAULT, 0)
        # infusion set age (THR-12)
        self.set_ms += dt
        if self.set_ms >= 1000:
            secs = self.set_ms // 1000
            self.set_ms -= secs * 1000
            if st[_S_SET_AGE] < _CAP_MS:
                st[_S_SET_AGE] += secs
            if st[_S_SET_AGE] >= self.set_remind_s:
                self.set_remind_s = st[_S_SET_AGE] + _SET_AGE_REPEAT_S
                al.clear(_A_SET_CHANGE, 0)
                al.raise_(_A_SET_CHANGE, st[_S_SET_AGE] // 3600)
        # checkpoint: the clocks and timers reach flash at least once a minute
        if mono - self.saved_s >= CHECKPOINT_S:
            fresh = self.tk[_T_KEY] == self.tk[_T_SAVES]
            if self._commit(0, 0, 0) and fresh:
                self.tk[_T_KEY] += 1  # a checkpoint changes nothing the copies depend on

    # ------------------------------------------------------------------- status
    def status(self):
        """A snapshot for host tools and the demo (allocates; not for the tick): the
        fields of firmware/status.py's snapshot, which the link and the console read."""
        from firmware.status import snapshot

        snap = snapshot(self)
        snap.refresh()
        g = snap.get
        mask = g("alarms")
        return {
            "stop": g("stop"),
            "basal_rate": g("basal_rate"),
            "profile_rate": g("profile_rate"),
            "temp_kind": g("temp_kind"),
            "temp_value": g("temp_value"),
            "temp_left_min": g("temp_left_min"),
            "bolus_id": g("bolus_id"),
            "bolus_kind": g("bolus_kind"),
            "bolus_delivered": g("bolus_delivered"),
            "bolus_requested": g("bolus_requested"),
            "reservoir": g("reservoir"),
            "battery": g("battery"),
            "iob": g("iob"),
            "basal_today": g("basal_today"),
            "bolus_today": g("bolus_today"),
            "prime_today": g("prime_today"),
            "day": g("day"),
            "local_ms": g("local_ms"),
            "alarms": [i for i in range(len(self.alarms.active)) if mask >> i & 1],
            "history_next": g("history_next"),
            "selftest": g("selftest"),
            "glucose": g("glucose"),
            "glucose_age": g("glucose_age"),
            "trend": g("trend"),
            "cgm": g("cgm"),
        }

    def minutes_left(self):
        """Time the reservoir lasts at the current basal rate, minutes; -1 at rate 0 (RES-1)."""
        return minutes_left(self.reservoir_mu(), self.basal_rate())

    def fail_safe(self, bit, kind, arg):
        """Safe state for a fault found outside the power-on self-tests (lost link state,
        an exception that escaped the main loop: SEC-4): self-test bit `bit`, a history
        record (`kind`, `arg`, the bits), delivery stopped, the self-test alarm (high)."""
        self._log(kind, arg, self.selftest_bits | bit, 0, 0)
        self._safe_state(bit, S.A_SELFTEST, 0)
