"""The link's rarely used messages (heap, issue 12): the temp basal, settings, profiles,
schedules, the clock, the reservoir change and the calculator's commands, and the
history, totals, settings, alarms, sensor and statistics queries.

Loaded from .mpy files on a file system, a module's bytecode lives in RAM; these handlers
are not imported at boot but by `Link._on_cold` at the first such message, and stay
imported. An import the heap cannot hold is answered there with E_NO_MEMORY (detail: the
message id) and changes nothing; the tick never imports. This module imports, with
itself, the pump's and the settings' rarely used operations (firmware/pump_cold.py,
firmware/settings_cold.py) and the bolus calculator (firmware/calc.py), so that a handler
never fails on a later import half-way.

One function per message of protocol/spec.py, named as the message (`emulator`: the
emulator-only messages), called as a Link method would be (`self`: the Link). A
command's function returns its result code (the link answers RESULT); a query's writes
its answer.
"""

from firmware import pump_cold, settings_cold  # noqa: F401 (imported with this module)
from firmware.calc import Calculator  # noqa: F401 (imported with this module)
from firmware.cgm import CGM_READINGS
from firmware.compat import const
from firmware.link import STATS
from firmware.store import REC_SIZE
from firmware.wire import field_offset, field_values, get, get_int, store_le
from protocol.spec import (
    ALARM_COUNT,
    CALC_KINDS,
    CALC_SEGMENTS,
    CGM_PAGE,
    E_BAD_ARG,
    F_RESPONSE,
    HISTORY_PAGE,
    PROFILE_NAME_LEN,
    PROFILES,
    SET_SENSOR_ID,
    SETTINGS_COUNT,
    SLOTS,
)

# the answers' message ids (protocol/spec.py MESSAGES)
M_PROFILE_INFO = const(0x83)
M_SCHEDULE_INFO = const(0x84)
M_SETTINGS_INFO = const(0x85)
M_HISTORY_PAGE = const(0x86)
M_TOTALS_INFO = const(0x87)
M_ALARMS_INFO = const(0x88)
M_LINK_STATS = const(0x89)
M_CGM_PAGE = const(0x8A)
M_CALC_RESULT = const(0x8B)
M_CALC_SCHEDULE_INFO = const(0x8C)
M_SENSOR_STATS = const(0x8E)  # sensor branch (SNS-4)


def temp_basal(self, mid, seq):
    g = self._get
    return self.pump.set_temp_basal(g(mid, 1), g(mid, 2), g(mid, 3))


def cancel_temp_basal(self, mid, seq):
    return self.pump.cancel_temp_basal()


def set_profile(self, mid, seq):
    buf = self.dec.buf
    pump = self.pump
    count = get(buf, mid, 3)
    if count < 1 or count > SLOTS:
        pump.detail = 2  # the starts argument of Settings.set_profile
        return E_BAD_ARG
    at = field_offset(mid, 2)
    end = at + PROFILE_NAME_LEN
    while end > at and buf[end - 1] == 0:
        end -= 1
    name = bytes(buf[at:end])
    at = field_offset(mid, 4)
    starts = [buf[at + i] for i in range(count)]
    at = field_offset(mid, 5)
    rates = [get_int(buf, at + 2 * i, 2) for i in range(count)]
    return pump.settings.set_profile(get(buf, mid, 1), name, starts, rates)


def set_schedule(self, mid, seq):
    at = field_offset(mid, 1)
    buf = self.dec.buf
    return self.pump.settings.set_schedule([buf[at + i] for i in range(7)])


def set_setting(self, mid, seq):
    g = self._get
    return self.pump.settings.set(g(mid, 1), g(mid, 2))


def set_time(self, mid, seq):
    g = self._get
    return self.pump.set_time(g(mid, 1), g(mid, 2))


def rewind(self, mid, seq):
    return self.pump.rewind()


def fill(self, mid, seq):
    return self.pump.fill(self._get(mid, 1))


def prime(self, mid, seq):
    g = self._get
    return self.pump.prime(g(mid, 1), g(mid, 2))


def set_calc_schedule(self, mid, seq):
    buf = self.dec.buf
    pump = self.pump
    count = get(buf, mid, 2)
    if count < 1 or count > CALC_SEGMENTS:
        pump.detail = 1  # the starts argument of Calculator.set_schedule
        return E_BAD_ARG
    s_at = field_offset(mid, 3)
    v_at = field_offset(mid, 4)
    h_at = field_offset(mid, 5)
    starts = [buf[s_at + i] for i in range(count)]
    values = [get_int(buf, v_at + 2 * i, 2) for i in range(count)]
    highs = [get_int(buf, h_at + 2 * i, 2) for i in range(count)]
    return pump.calculator().set_schedule(get(buf, mid, 1), starts, values, highs)


def get_profile(self, mid, seq):
    index = get(self.dec.buf, mid, 0)
    if index >= PROFILES:
        self._result(seq, 0, E_BAD_ARG, 0)
        return
    got = self.pump.settings.get_profile(index)
    e = self.enc
    buf = e.buf
    e.begin(M_PROFILE_INFO, seq, F_RESPONSE)
    e.put(0, index)
    for i in (1, 3, 4):
        e.clear(i)
    count = 0
    if got is not None:
        name, starts, rates = got
        at = field_offset(M_PROFILE_INFO, 1)
        for i in range(len(name)):
            buf[at + i] = name[i]
        count = len(starts)
        at = field_offset(M_PROFILE_INFO, 3)
        r_at = field_offset(M_PROFILE_INFO, 4)
        for i in range(count):
            buf[at + i] = starts[i]
            store_le(buf, r_at + 2 * i, rates[i], 2)
    e.put(2, count)
    self._send()


def get_schedule(self, mid, seq):
    e = self.enc
    e.begin(M_SCHEDULE_INFO, seq, F_RESPONSE)
    self.pump.settings.schedule_into(e.buf, field_offset(M_SCHEDULE_INFO, 0))
    self._send()


def get_settings(self, mid, seq):
    e = self.enc
    e.begin(M_SETTINGS_INFO, seq, F_RESPONSE)
    at = field_offset(M_SETTINGS_INFO, 0)
    pump = self.pump
    buf = e.buf
    e.clear(0)
    for i in range(SETTINGS_COUNT):
        store_le(buf, at, pump.setting(i), 4)
        at += 4
    self._send()


def get_history(self, mid, seq):
    """Up to HISTORY_PAGE stored records from `first` on (from the oldest stored if
    `first` is older), as stored (24 bytes each); unreadable records are skipped."""
    buf = self.dec.buf
    first = get(buf, mid, 0)
    want = get(buf, mid, 1)
    if want > HISTORY_PAGE:
        want = HISTORY_PAGE
    h = self.pump.history
    if first < h.first_seq:
        first = h.first_seq
    e = self.enc
    e.begin(M_HISTORY_PAGE, seq, F_RESPONSE)
    e.clear(2)
    out = e.buf
    at = field_offset(M_HISTORY_PAGE, 2)
    rec = self.rec
    if rec is None:
        rec = self.rec = bytearray(REC_SIZE)
    got = 0
    s = first
    while got < want and s < h.next_seq:
        if h.read(s, rec):
            for i in range(REC_SIZE):
                out[at + i] = rec[i]
            at += REC_SIZE
            got += 1
        s += 1
    e.put(0, first)
    e.put(1, got)
    self._send()


def get_totals(self, mid, seq):
    day = get(self.dec.buf, mid, 0)
    got = self.pump.day_totals(day)
    e = self.enc
    e.begin(M_TOTALS_INFO, seq, F_RESPONSE)
    e.put(0, day)
    if got is None:
        for i in (1, 2, 3, 4):
            e.put(i, 0)
    else:
        e.put(1, 1)
        e.put(2, got[0])
        e.put(3, got[1])
        e.put(4, got[2])
    self._send()


def get_alarms(self, mid, seq):
    al = self.pump.alarms
    e = self.enc
    e.begin(M_ALARMS_INFO, seq, F_RESPONSE)
    active = 0
    acked = 0
    at = field_offset(M_ALARMS_INFO, 2)
    buf = e.buf
    for i in range(ALARM_COUNT):
        if al.active[i]:
            active |= 1 << i
        if al.acked[i]:
            acked |= 1 << i
        buf[at + i] = al.level[i]
    e.put(0, active)
    e.put(1, acked)
    self._send()


def get_cgm(self, mid, seq):
    """Up to CGM_PAGE readings with UTC minute >= `since`, oldest first (SNS-1)."""
    buf = self.dec.buf
    since = get(buf, mid, 0)
    want = get(buf, mid, 1)
    if want > CGM_PAGE:
        want = CGM_PAGE
    cgm = self.pump.cgm
    e = self.enc
    e.begin(M_CGM_PAGE, seq, F_RESPONSE)
    e.clear(2)
    e.clear(3)
    out = e.buf
    m_at = field_offset(M_CGM_PAGE, 2)
    v_at = field_offset(M_CGM_PAGE, 3)
    minutes = cgm.minutes
    values = cgm.values
    got = 0
    more = 0
    i = 0
    while i < cgm.count:
        at = (cgm.head - cgm.count + i) % CGM_READINGS
        i += 1
        m = minutes[at]
        if m < since:
            continue
        if got == want:
            more = 1
            break
        store_le(out, m_at, m, 4)
        store_le(out, v_at, values[at], 2)
        m_at += 4
        v_at += 2
        got += 1
    e.put(0, got)
    e.put(1, more)
    self._send()


def calc(self, mid, seq):
    """A bolus suggestion (THR-8): calc_result, or RESULT(0, code, detail) if refused.
    Nothing is delivered."""
    g = self._get
    pump = self.pump
    code = pump.calculator().calculate(g(mid, 0), g(mid, 1))
    if code:
        self._result(seq, 0, code, pump.detail)
        return
    out = pump.calculator().out
    e = self.enc
    e.begin(M_CALC_RESULT, seq, F_RESPONSE)
    for i in range(10):
        e.put(i, out[i])
    self._send()


def get_calc_schedule(self, mid, seq):
    kind = get(self.dec.buf, mid, 0)
    if kind >= len(CALC_KINDS):
        self._result(seq, 0, E_BAD_ARG, 0)
        return
    got = self.pump.calculator().get_schedule(kind)
    e = self.enc
    e.begin(M_CALC_SCHEDULE_INFO, seq, F_RESPONSE)
    e.put(0, kind)
    for i in (2, 3, 4):
        e.clear(i)
    count = 0
    if got is not None:
        starts, values, highs = got
        count = len(starts)
        buf = e.buf
        s_at = field_offset(M_CALC_SCHEDULE_INFO, 2)
        v_at = field_offset(M_CALC_SCHEDULE_INFO, 3)
        h_at = field_offset(M_CALC_SCHEDULE_INFO, 4)
        for i in range(count):
            buf[s_at + i] = starts[i]
            store_le(buf, v_at + 2 * i, values[i], 2)
            store_le(buf, h_at + 2 * i, highs[i], 2)
    e.put(1, count)
    self._send()


def get_link_stats(self, mid, seq):
    e = self.enc
    e.begin(M_LINK_STATS, seq, F_RESPONSE)
    st = self.stats
    for i in range(STATS):
        e.put(i, st[i])
    e.put(STATS, self.pump.events.dropped)
    self._send()


def get_sensor_stats(self, mid, seq):
    """The sensor link's counters (firmware/cgm_link.py), zeros without a CgmLink."""
    e = self.enc
    e.begin(M_SENSOR_STATS, seq, F_RESPONSE)
    radio = self.pump.cgm.radio
    stats = getattr(radio, "stats", None)
    e.put(0, self.pump.setting(SET_SENSOR_ID))
    e.put(1, getattr(radio, "foreign_id", 0))
    for i in range(10):
        e.put(2 + i, stats[i] if stats is not None and i < len(stats) else 0)
    self._send()


# emulator boards only (SEC-3): the emulator's clock and fault commands
def emulator(self, mid, seq):
    code, detail = self.emulator.command(mid, field_values(self.dec.buf, mid))
    self.pump.detail = detail
    return code
