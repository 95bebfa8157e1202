"""The settings' rarely used operations (heap, issue 12): changing a setting, programming
and reading a basal profile, the weekly schedule.

Loaded from .mpy files on a file system, a module's bytecode lives in RAM: these are not
imported at boot but at their first call, by the Settings method of the same name (the
link imports this module with firmware/link_cold.py, where a failed import is answered
E_NO_MEMORY). The tick never calls them. Each function is the Settings method of its
name, `self` the pump's Settings.
"""

from array import array

from firmware import layout as L
from firmware.layout import V_RATES, V_SCHEDULE
from firmware.settings import at
from protocol import spec as S


def set(self, sid, value):
    """Change setting `sid` (not the UTC offset: Pump.set_time sets it with the clock)."""
    pump = self.pump
    pump.interaction()
    if sid < 0 or sid >= S.SETTINGS_COUNT or sid == S.SET_UTC_OFFSET:
        return pump._refuse(S.E_BAD_ARG, 0)
    lo, hi = S.SETTINGS[sid][2], S.SETTINGS[sid][3]
    if value < lo or value > hi or (sid == S.SET_AUTO_OFF and 0 < value < S.AUTO_OFF_MIN_HOURS):
        return pump._refuse(S.E_OUT_OF_RANGE, sid)
    if sid == S.SET_MAX_BASAL:
        for p in range(S.PROFILES):
            if self._profile_max(p) > value:
                return pump._refuse(S.E_PROFILE_IN_USE_OVER_LIMIT, p)
        if self._running_temp_peak() > value:  # the running temp basal stays within it
            return pump._refuse(S.E_OVER_LIMIT, S.SET_MAX_BASAL)
    old = self.get(sid)
    if not self._store(at(sid), value):
        return pump._refuse(S.E_STORAGE, sid)
    self._apply()
    pump._log(S.H_SETTING, sid, old, value, 0)
    if sid == S.SET_SBL and not value:
        pump.cgm.resume(S.SBL_OFF)
    return S.OK


def profile_name(self, p):
    v = self.values
    out = bytearray()
    for i in range(4):
        w = v[L.V_NAMES + p * 4 + i]
        for b in (w & 0xFF, w >> 8):
            if b:
                out.append(b)
    return bytes(out)


def set_profile(self, p, name, starts, rates):
    """Program profile p: segments start at 30-min slots `starts` (first 0) with `rates`
    in mU/h. Refused whole if anything is wrong; nothing is clamped."""
    pump = self.pump
    pump.interaction()
    if not isinstance(p, int) or p < 0 or p >= S.PROFILES:
        return pump._refuse(S.E_BAD_ARG, 0)
    if len(name) == 0 or len(name) > S.PROFILE_NAME_LEN:
        return pump._refuse(S.E_BAD_ARG, 1)
    for b in name:
        if b < 0x20 or b > 0x7E:
            return pump._refuse(S.E_BAD_ARG, 1)
    n = len(starts)
    if n < 1 or n > S.SLOTS or len(rates) != n or starts[0] != 0:
        return pump._refuse(S.E_BAD_ARG, 2)
    for i in range(n):
        if starts[i] < 0 or starts[i] >= S.SLOTS or (i and starts[i] <= starts[i - 1]):
            return pump._refuse(S.E_BAD_ARG, 2)
        if rates[i] < 0 or rates[i] > S.MAX_RATE:
            return pump._refuse(S.E_OUT_OF_RANGE, 3)
        if rates[i] > self.get(S.SET_MAX_BASAL):
            return pump._refuse(S.E_OVER_LIMIT, S.SET_MAX_BASAL)
    v = self.values
    old = array("i", v)
    seg = 0
    base = V_RATES + p * S.SLOTS
    for s in range(S.SLOTS):
        if seg + 1 < n and starts[seg + 1] == s:
            seg += 1
        v[base + s] = rates[seg]
    self._set_name(p, name)
    v[L.V_SEGMENTS + p] = n
    code = _keep_basal_change(self, old)
    if code:
        return code
    pump._log(S.H_PROFILE, p, n, self._profile_max(p), 0)
    return S.OK


def get_profile(self, p):
    """(name, starts, rates) with adjacent equal slots merged; None if unused."""
    v = self.values
    if p < 0 or p >= S.PROFILES or not v[L.V_SEGMENTS + p]:
        return None
    starts = []
    rates = []
    base = V_RATES + p * S.SLOTS
    for s in range(S.SLOTS):
        r = v[base + s]
        if not rates or rates[-1] != r:
            starts.append(s)
            rates.append(r)
    return profile_name(self, p), starts, rates


def set_schedule(self, days):
    """Weekly schedule: 7 profile indexes, Monday first (THR-1)."""
    pump = self.pump
    pump.interaction()
    v = self.values
    if len(days) != 7:
        return pump._refuse(S.E_BAD_ARG, 0)
    for i in range(7):
        p = days[i]
        if p < 0 or p >= S.PROFILES or not v[L.V_SEGMENTS + p]:
            return pump._refuse(S.E_BAD_ARG, i)
    old = array("i", v)
    packed = 0
    for i in range(7):
        v[V_SCHEDULE + i] = days[i]
        packed |= days[i] << (3 * i)
    code = _keep_basal_change(self, old)
    if code:
        return code
    pump._log(S.H_SCHEDULE, 0, packed, 0, 0)
    return S.OK


def _keep_basal_change(self, old):
    """Keep a basal change only if a running percent temp basal stays within max basal
    with it, and it was saved; otherwise restore `old` and refuse."""
    pump = self.pump
    if self._running_temp_peak() > self.get(S.SET_MAX_BASAL):
        self._revert(old)
        return pump._refuse(S.E_OVER_LIMIT, S.SET_MAX_BASAL)
    if not self.save(old):
        return pump._refuse(S.E_STORAGE, 0)
    return S.OK
