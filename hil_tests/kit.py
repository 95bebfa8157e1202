"""Helpers for the HIL tests: the baseline therapy, clock and fault control, raw frames.

Everything here talks to the pump through the protocol only (host_tools.client and
protocol.codec), so the same helpers drive the emulator and a real board. Clock control and
fault injection (`Sim`) exist only on the emulator (SEC-3).
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from host_tools import client as C
from protocol import codec
from protocol import spec as S

SECOND_MS = 1000
MIN_MS = 60 * SECOND_MS
HOUR_MS = 60 * MIN_MS
DAY_S = 86400
DAY_MS = DAY_S * SECOND_MS

# ---------------------------------------------------------------------------- baseline
# The known state every test starts from (the `pump` fixture brings the pump there).
# Weekday and weekend profiles differ (THR-1). Around 08:00, where every test starts, each
# profile holds one rate for hours: 1.2 U/h on weekdays (06:00-12:00), 1.5 U/h at weekends
# (07:00-22:00).
PROFILES = {
    0: ("weekday", (0, 12, 24, 36), (800, 1200, 1000, 900)),
    1: ("weekend", (0, 14, 44), (700, 1500, 600)),
}
SCHEDULE = (0, 0, 0, 0, 0, 1, 1)  # Monday first: Saturday and Sunday use profile 1
START_HOUR = 8  # every test starts at 08:00 local time on a day of its own
FIRST_DAY = 2192  # 2026-01-01: a fresh pump's clock is first set to this day or later
FILL_MU = 200000
PRIME_TUBING_MU = 500
PRIME_CANNULA_MU = 300
RESERVOIR_MU = FILL_MU - PRIME_TUBING_MU - PRIME_CANNULA_MU

# Settings: the firmware defaults, except the hourly bolus limit, raised to its maximum so
# that tests sharing one pump within an hour of pump time do not trip over each other's
# boluses. The limit tests set the limits they check themselves.
SETTINGS = {row[0]: row[1] for row in S.SETTINGS}
SETTINGS["max_bolus_1h"] = S.SETTINGS[S.SET_MAX_BOLUS_1H][3]
# the 24-h limit is a rolling window on the monotonic clock (THR-6): insulin of earlier
# tests on the same pump stays in it whatever the clock says, so the baseline is the top
SETTINGS["max_tdd"] = S.SETTINGS[S.SET_MAX_TDD][3]
SETTINGS_ORDER = [row[0] for row in S.SETTINGS if row[0] != "utc_offset"]

# Emulator faults in their neutral state (value that means "no fault").
NEUTRAL_FAULTS = (
    (S.FAULT_OCCLUSION, 0),
    (S.FAULT_BATTERY_LEVEL, 100),
    (S.FAULT_BATTERY_DRAIN, 1000),
    (S.FAULT_SENSOR_LOSS, 0),
    (S.FAULT_BUTTON_STUCK, 0),
    (S.FAULT_STORAGE_FAIL, 0),
    (S.FAULT_OUTAGE, 0),
    (S.FAULT_RTC_BACKUP, 1),
    (S.FAULT_MOTOR, S.MOTOR_OK),
    (S.FAULT_DROP_RX, 0),
    (S.FAULT_DROP_TX, 0),
    (S.FAULT_CORRUPT_RX, 0),
    (S.FAULT_CORRUPT_TX, 0),
)


def weekday(day: int) -> int:
    """Monday = 0 for a day number counted from 2020-01-01 (a Wednesday)."""
    return (day + 2) % 7


def segment_rate(profile: int, slot: int) -> int:
    _name, starts, rates = PROFILES[profile]
    rate = rates[0]
    for s, r in zip(starts, rates, strict=True):
        if s <= slot:
            rate = r
    return rate


def rate_at(local_s: int) -> int:
    """Programmed basal rate (mU/h) of the baseline schedule at local time `local_s`."""
    day, sec = divmod(local_s, DAY_S)
    return segment_rate(SCHEDULE[weekday(day)], sec // 1800)


def programmed_mu(local_start_ms: int, duration_ms: int,
                  rate: Callable[[int], int] | None = None) -> Fraction:
    """Exact integral (mU) of the programmed basal over `duration_ms` from local time
    `local_start_ms` (ms since 2020-01-01 local). `rate(local_s)` defaults to rate_at."""
    rate = rate or rate_at
    total = Fraction(0)
    t = local_start_ms
    end = local_start_ms + duration_ms
    while t < end:
        boundary = (t // S.SLOT_MS + 1) * S.SLOT_MS
        step = min(boundary, end) - t
        total += Fraction(rate(t // SECOND_MS) * step, HOUR_MS)
        t += step
    return total


def local_ms(st: C.Status) -> int:
    """The pump's local time from status, ms since 2020-01-01 local."""
    return (st.utc + st.offset * 60) * SECOND_MS


def next_day_at(st: C.Status, hour: int = START_HOUR, days: int = 1,
                want_weekday: int | None = None) -> int:
    """UTC seconds (offset 0) of `hour`:00 on the `days`-th day after the pump's current
    local day (at the earliest FIRST_DAY), or on the next `want_weekday` (Monday = 0) at
    least one day ahead."""
    day = max((st.utc + st.offset * 60) // DAY_S + days, FIRST_DAY)
    if want_weekday is not None:
        while weekday(day) != want_weekday:
            day += 1
    return day * DAY_S + hour * 3600


# ---------------------------------------------------------------------------- reading
def history(pump: C.Client, first: int, last: int | None = None) -> list[C.HistoryRecord]:
    """History records with sequence numbers first..last (default: up to the newest).
    The history reader over the protocol (tests/test_emulator.py uses it too); a Pump in
    the test process has tests/pumpkit.py history()."""
    if last is None:
        last = pump.status().history_next - 1
    if last < first:
        return []
    return pump.get_history(first, last - first + 1)


def records(recs: list[C.HistoryRecord], kind: int) -> list[C.HistoryRecord]:
    return [r for r in recs if r.kind == kind]


def raw_history_page(pump: C.Client, first: int, count: int) -> list[bytes]:
    """The stored 24-byte records (CRC included) of one history page."""
    m = pump.query("get_history", {"first": first, "count": count}, expect="history_page")
    return [bytes(m["records"][24 * i:24 * i + 24]) for i in range(m["count"])]


def record_crc_ok(rec: bytes) -> bool:
    return codec.crc16(rec[:22]) == struct.unpack_from("<H", rec, 22)[0]


def drain_events(pump: C.Client) -> list[C.Event]:
    """Events the pump queued so far: a status round trip flushes them (the pump sends its
    queued events before it reads the next request), then the client's queue is emptied."""
    pump.status()
    out = list(pump.events_queue)
    pump.events_queue.clear()
    return out


def alarm_events(events: list[C.Event], alarm: int, action: int | None = None) -> list[C.Event]:
    return [e for e in events if e.kind == S.EV_ALARM and e.a == alarm
            and (action is None or e.b == action)]


def active(st: C.Status, alarm: int) -> bool:
    return bool(st.alarms >> alarm & 1)


@contextlib.contextmanager
def patience(pump: C.Client, timeout: float, retries: int | None = None) -> Iterator[None]:
    """Temporarily change the client's answer timeout (and retries)."""
    old = pump.timeout, pump.retries
    pump.timeout = timeout
    if retries is not None:
        pump.retries = retries
    try:
        yield
    finally:
        pump.timeout, pump.retries = old


# ---------------------------------------------------------------------------- raw frames
@dataclass
class Raw:
    """Hand-built frames through the client's port (forged, replayed, garbage: LNK-5,
    SEC-2). Answers are read by the client's own reader, so events keep flowing to it."""

    pump: C.Client
    key: bytes | None

    def frame(self, name: str, fields: dict | None = None, *, seq: int | None = None,
              key: bytes | None | bool = True, counter: int | None = None) -> tuple[int, bytes]:
        """(seq, wire bytes). key=True: the pairing key and the next counter; key=None:
        no auth trailer; key=bytes: that key (a forger's)."""
        seq = self.pump._next_seq() if seq is None else seq
        if key is True:
            key = self.key
        if key is not None and counter is None:
            self.pump.counter += 1
            counter = self.pump.counter
        return seq, codec.encode(name, seq, fields, key=key,
                                 counter=counter if key is not None else None)

    def send(self, data: bytes) -> None:
        self.pump._write(data)

    def answer(self, seq: int, timeout: float = 1.0) -> codec.Message | None:
        """The pump's answer to request `seq`, or None after `timeout` s of silence."""
        return self.pump._await({seq}, timeout)

    def exchange(self, name: str, fields: dict | None = None, timeout: float = 1.0,
                 **kw) -> codec.Message | None:
        seq, data = self.frame(name, fields, **kw)
        self.send(data)
        return self.answer(seq, timeout)


# ---------------------------------------------------------------------------- the emulator
class Sim:
    """Clock control and fault injection on the emulator (emulator-only messages, SEC-3).

    In lockstep the pump's clock stands still; `advance` runs therapy for the given pump
    time at once (days in seconds)."""

    CHUNK_MS = 24 * HOUR_MS  # longest single CLK_ADVANCE
    SECONDS_PER_HOUR = 1.0  # generous wall-time allowance per hour of pump time

    def __init__(self, pump: C.Client):
        self.pump = pump

    # clock
    def clock(self, op: int, ms: int = 0) -> C.Result:
        return self.pump.emu_clock(op, ms)

    def lockstep(self) -> None:
        self.clock(S.CLK_LOCKSTEP)

    def _budget(self, ms: int) -> float:
        return 5.0 + self.SECONDS_PER_HOUR * ms / HOUR_MS

    def advance(self, ms: int = 0, *, seconds: float = 0, minutes: float = 0,
                hours: float = 0) -> int:
        """Run `ms` (+ seconds, minutes, hours) of pump time now. Returns the ms run."""
        total = int(ms + seconds * SECOND_MS + minutes * MIN_MS + hours * HOUR_MS)
        left = total
        while left > 0:
            step = min(left, self.CHUNK_MS)
            with patience(self.pump, self._budget(step)):
                self.clock(S.CLK_ADVANCE, step)
            left -= step
        return total

    def until_event(self, max_ms: int) -> int:
        """Run until the firmware queues an event, at most `max_ms`; returns the ms run."""
        with patience(self.pump, self._budget(max_ms)):
            return self.clock(S.CLK_UNTIL_EVENT, max_ms).detail

    def run_until(self, match: Callable[[C.Event], bool], max_ms: int
                  ) -> tuple[int, C.Event | None, list[C.Event]]:
        """Run event by event until an event matches: (ms run, the event or None, all
        events seen)."""
        elapsed = 0
        seen: list[C.Event] = []
        while elapsed < max_ms:
            ran = self.until_event(max_ms - elapsed)
            elapsed += ran
            got = drain_events(self.pump)
            seen += got
            for ev in got:
                if match(ev):
                    return elapsed, ev, seen
            if ran <= 0 and not got:
                break  # nothing ran and nothing came: do not spin
        return elapsed, None, seen

    # faults
    def fault(self, fault: int, value: int = 0) -> C.Result:
        return self.pump.emu_fault(fault, value)

    def blind_fault(self, fault: int, value: int, wait: float = 0.3) -> None:
        """Inject a fault whose own answer may be lost (dropped or corrupted replies)."""
        with patience(self.pump, wait, retries=0), contextlib.suppress(C.PumpTimeout):
            self.fault(fault, value)
        self.pump.forget_input()

    def occlusion(self, on: bool) -> None:
        self.fault(S.FAULT_OCCLUSION, int(on))

    def battery(self, level: int) -> None:
        self.fault(S.FAULT_BATTERY_LEVEL, level)

    def press(self, mask: int = 1) -> None:
        self.fault(S.FAULT_BUTTON_PRESS, mask)

    def neutral(self) -> None:
        for fault, value in NEUTRAL_FAULTS:
            self.fault(fault, value)

    def empty_day_window(self) -> None:
        """24 h 5 min suspended, so the rolling 24-h window (THR-6) holds no insulin of
        earlier tests; delivery resumed after."""
        pump = self.pump
        pump.suspend()
        self.advance(minutes=24 * 60 + 5)
        pump.resume()
        drain_events(pump)

    def power_cut(self, after_ms: int = 0, run_ms: int | None = None,
                  boot_timeout: float = 15.0) -> C.Hello:
        """Cut the power `after_ms` of pump time from now (0: at once), let the emulator
        restart from its flash file on the same pty, and return the new HELLO (boots one
        higher). The clock is back in lockstep."""
        pump = self.pump
        boots = pump.hello().boots
        run = run_ms if run_ms is not None else after_ms + SECOND_MS
        with patience(pump, 0.5, retries=0):
            try:
                self.fault(S.FAULT_POWER_CUT, after_ms)
                if after_ms > 0:
                    self.clock(S.CLK_ADVANCE, run)  # runs into the cut: no answer
            except C.LinkError:
                pass  # the power died before the answer went out
        return self.wait_boot(boots, boot_timeout)

    def wait_boot(self, boots: int, timeout: float = 15.0) -> C.Hello:
        """Wait until the pump answers HELLO with a boot count above `boots`."""
        pump = self.pump
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with patience(pump, 0.5, retries=0):
                    info = pump.hello()
                if info.boots > boots:
                    self.lockstep()
                    drain_events(pump)
                    return info
            except C.PumpError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"the pump did not boot again within {timeout} s ({last})")


class SensorTx:
    """A CGM transmitter on the pump's sensor link (SNS-4, host_tools/sensor.py): records
    with ascending time offsets (kept across the tests of a session, so the pump's order
    check never drops one), the pump's time moved by the emulator's clock or, on a board,
    by waiting."""

    TX = 0x5E4501
    offset = 0  # session minutes sent so far (class-wide: one sensor session per run)

    def __init__(self, url: str, pump: C.Client, sim: Sim | None, pump_side: int | None = None):
        from host_tools.sensor import Transmitter

        self.pump = pump
        self.sim = sim
        self.link = Transmitter(url, self.TX)
        self.pump_side = pump_side  # the emulator's end of the sensor pty (an fd), if known

    def _through(self) -> None:
        """Wait until the record can be read on the pump's side, so the pump takes it on
        the first tick the clock moves (a pty passes bytes on asynchronously: a reading
        taken a tick late would bend the trend). A board's UART: a fixed short wait."""
        if self.pump_side is None:
            time.sleep(0.05)
            return
        import select

        if not select.select([self.pump_side], [], [], 5.0)[0]:
            raise AssertionError("the record did not reach the emulator's sensor pty in 5 s")

    def pair(self, tx: int | None = None) -> None:
        self.pump.set_setting("sensor_id", self.TX if tx is None else tx)

    def close(self) -> None:
        self.link.close()

    def wait(self, minutes: float) -> None:
        if self.sim is not None:
            self.sim.advance(minutes=minutes)
        else:
            time.sleep(minutes * 60)

    def record(self, glucose, status: int = 0, trend=None, tx: int | None = None,
               corrupt: bool = False, offset: int | None = None) -> None:
        """Send one record (the next time offset unless given); `corrupt` flips a glucose
        bit after the E2E-CRC was computed. The pump takes it at its next poll."""
        from protocol import cgm_record as H

        if offset is None:
            SensorTx.offset += 5
            offset = SensorTx.offset
        rec = bytearray(H.encode_record(glucose, offset, status=status, trend=trend))
        if corrupt:
            rec[2] ^= 0x01
        if tx is None:
            self.link.send(bytes(rec))
        else:
            self.link.port.write(H.encode_frame(tx, bytes(rec)))
            self.link.port.flush()
        self._through()
        self.wait(2 / 60)

    def settle(self) -> None:
        """Leave no glucose alarm for the next test: a warm-up record (the trend window
        starts over) and one in-range reading clear every condition alarm."""
        self.pair()
        self.record("NaN")
        self.record(120)

    def reading(self, glucose, then_min: float = 5, **kw) -> C.Status:
        """One record, then the rest of 5 minutes; the pump's status afterwards."""
        self.record(glucose, **kw)
        self.wait(then_min - 2 / 60)
        return self.pump.status()

    def play_patient(self, minutes: int, name: str = "adult#001",
                     meals: list[tuple[int, float]] = (), sensitivity: float = 1.0,
                     **session):
        """The virtual patient as this transmitter, as `pumpctl sensor --patient` plays it
        (host_tools/sensor.py `play`, the one place of that logic): a reading every 5
        session minutes for `minutes`, each confirmed taken by the pump, the patient given
        the insulin the pump reports delivered before each. Paced by the pump: a simulated
        board's clock in lockstep, a real board's own clock. `meals`: (patient minute,
        grams); `session`: SensorSession options (noise_seed, dropout, seed, ...). Returns
        (host_tools.patient.PatientModel, [host_tools.sensor.Reading]); the session's
        minutes go on from the earlier records'."""
        from host_tools import sensor as SN
        from host_tools.patient import PatientConfig, PatientModel

        patient = PatientModel(PatientConfig(name, list(meals), sensitivity))
        run = SN.SensorSession(SN.patient_glucose(patient), **session)
        first = SensorTx.offset + SN.EVERY_MIN
        steps = list(SN.play(run, self.link, first + minutes, first=first, pump=self.pump,
                             patient=patient, fast=True))
        SensorTx.offset = steps[-1].minute
        return patient, steps
