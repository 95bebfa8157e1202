"""Settings, basal profiles and the weekly schedule (THR-1, THR-6): `pump.settings`.

Outside the tick: the tick only reads from here (`get`, `profile_rate`, `temp_peak`). It
owns the settings array (`values`, layout V_* in firmware/layout.py; the bolus calculator's
schedules live in it too) and its two flash copies (`slots`). Changes are refused whole,
never clamped: the code is returned and the detail set through the pump (`pump.detail`).

The limits tie the settings to delivery: max basal must hold for every programmed profile
and for the running temp basal (a percent one on the weekly schedule). The running temp
basal and the local time are read from the pump's state array (layout S_* indexes,
read-only), the same way firmware/calc.py reads the time of day: the pump passes its state
at construction rather than every caller passing the tick's fields (docs/structure.md).

    s = pump.settings
    s.set(SET_MAX_BOLUS, 8000); s.get(SET_MAX_BOLUS)
    s.set_profile(0, b"day", [0, 12], [800, 1000]); s.set_schedule([0] * 7)
"""

from array import array

from firmware import layout as L  # the cold paths' indexes: fewer globals (heap, issue 12)
from firmware.layout import (
    S_LOCAL_DAY,
    S_LOCAL_MS,
    S_TIME_SET,
    SETTINGS_LO,
    V_RATES,
    V_SCHEDULE,
    V_SETTINGS,
    V_SETTINGS_HI,
)
from firmware.store import Slots
from protocol import spec as S  # one globals entry, not one per id (heap, issue 12)

EPOCH_WEEKDAY = 2  # 2020-01-01 was a Wednesday (Monday = 0)


def at(sid):
    """Index of setting `sid` in the settings array."""
    return V_SETTINGS + sid if sid < SETTINGS_LO else V_SETTINGS_HI - SETTINGS_LO + sid


class Settings:
    def __init__(self, pump, storage, region_a, region_b, scratch):
        self.pump = pump
        self.state = pump.state  # read-only here: the local time and the running temp basal
        self.values = array("i", [0] * L.SETTINGS_LEN)
        self.slots = Slots(storage, region_a, region_b, self.values, (L.SETTINGS_LEN_1,),
                           scratch)

    # ------------------------------------------------------------------ boot
    # (the load and the defaults: firmware/pump_boot.py, code that runs once)
    def _apply(self):
        """Settings that other parts hold a copy of (the alarms' repeat and snooze)."""
        al = self.pump.alarms
        al.repeat_ms = self.get(S.SET_ALARM_REPEAT) * 60000  # minutes -> ms
        al.snooze_ms = self.get(S.SET_SNOOZE) * 60000

    # ------------------------------------------------------------------ settings (THR-6)
    def get(self, sid):
        if sid < SETTINGS_LO:
            return self.values[V_SETTINGS + sid]
        return self.values[V_SETTINGS_HI - SETTINGS_LO + sid]

    # the rarely used operations are firmware/settings_cold.py's, imported at their first
    # call (heap, issue 12); these methods keep their names and arguments
    def set(self, sid, value):
        """Change setting `sid` (not the UTC offset: Pump.set_time sets it with the clock)."""
        import firmware.settings_cold

        return firmware.settings_cold.set(self, sid, value)

    def set_utc_offset(self, minutes):
        """Store the UTC offset (Pump.set_time checks it). False if it could not be saved."""
        return self._store(at(S.SET_UTC_OFFSET), minutes)

    def _store(self, i, value):
        """values[i] = value, saved; the old value back if the save failed."""
        v = self.values
        old = v[i]
        v[i] = value
        if self.slots.save():
            return True
        v[i] = old
        return False

    def save(self, old):
        """Save the array; if that fails, put `old` (a copy taken before the change) back.
        Returns whether it was saved."""
        if self.slots.save():
            return True
        self._revert(old)
        return False

    def _revert(self, old):
        v = self.values
        for i in range(L.SETTINGS_LEN):
            v[i] = old[i]

    # ------------------------------------------------------------------ profiles (THR-1)
    def _set_name(self, p, name):
        v = self.values
        base = L.V_NAMES + p * 4
        for i in range(4):
            lo = name[2 * i] if 2 * i < len(name) else 0
            hi = name[2 * i + 1] if 2 * i + 1 < len(name) else 0
            v[base + i] = lo | (hi << 8)

    def set_profile(self, p, name, starts, rates):
        """Program profile p: segments start at 30-min slots `starts` (first 0) with `rates`
        in mU/h. Refused whole if anything is wrong; nothing is clamped."""
        import firmware.settings_cold

        return firmware.settings_cold.set_profile(self, p, name, starts, rates)

    def get_profile(self, p):
        """(name, starts, rates) with adjacent equal slots merged; None if unused."""
        import firmware.settings_cold

        return firmware.settings_cold.get_profile(self, p)

    def _profile_max(self, p):
        v = self.values
        top = 0
        base = V_RATES + p * S.SLOTS
        for s in range(S.SLOTS):
            if v[base + s] > top:
                top = v[base + s]
        return top

    # ------------------------------------------------------------------ schedule (THR-1)
    def set_schedule(self, days):
        """Weekly schedule: 7 profile indexes, Monday first (THR-1)."""
        import firmware.settings_cold

        return firmware.settings_cold.set_schedule(self, days)

    def schedule(self):
        """The 7 profile indexes of the week, Monday first."""
        return [self.values[V_SCHEDULE + i] for i in range(7)]

    def schedule_into(self, buf, at):
        """The 7 profile indexes of the week, Monday first, as bytes at buf[at:] (the
        link's answer). Allocation-free."""
        v = self.values
        for i in range(7):
            buf[at + i] = v[V_SCHEDULE + i]

    def _running_temp_peak(self):
        st = self.state
        return self.temp_peak(st[L.S_TEMP_KIND], st[L.S_TEMP_VALUE])

    def temp_peak(self, kind, value):
        """Highest rate a temp basal (kind, value) reaches on the weekly schedule, mU/h."""
        if kind == S.TEMP_ABSOLUTE:
            return value
        if kind != S.TEMP_PERCENT:
            return 0
        top = 0
        v = self.values
        for d in range(7):
            m = self._profile_max(v[V_SCHEDULE + d])
            if m > top:
                top = m
        return top * value // 100

    def profile_rate(self):
        """Rate of the profile scheduled for the current local time, mU/h. While the time
        is not set (never, or lost at a power loss) the schedule cannot be followed: the
        24-h mean of the profile of the last known weekday, so a wrong time of day can
        neither give a night's rate in the morning nor the reverse (THR-13,
        docs/time-model.md)."""
        st = self.state
        v = self.values
        base = V_RATES + S.SLOTS * v[V_SCHEDULE + (st[S_LOCAL_DAY] + EPOCH_WEEKDAY) % 7]
        if st[S_TIME_SET]:
            return v[base + st[S_LOCAL_MS] // S.SLOT_MS]
        total = 0
        for s in range(S.SLOTS):
            total += v[base + s]
        return total // S.SLOTS
