"""A CGM transmitter on the host (SNS-4): CGM Measurement records onto a sensor-link port.

The port is a serial URL (pyserial's serial_for_url: /dev/ttyUSB1 for a USB-serial adapter
wired to a board's sensor UART, the emulator's sensor pty, socket://...). Frames and
records come from protocol/cgm_record.py; the pump must be paired with the transmitter id
(its sensor_id setting).

`SensorSession` turns a glucose source into what a real sensor sends, seeded:
  - warm-up: the first `warmup_min` minutes of the session send NaN glucose (the pump shows
    sensor warm-up);
  - expiry: at `expiry_min` the session stops (status "session stopped": sensor expired)
    and nothing more is sent;
  - noise: simglucose's CGM noise model (Johnson-transformed AR noise with the Dexcom
    parameters, `CGMNoise`), one sample per reading, added and rounded to whole mg/dL;
  - dropouts: each reading is lost with probability `dropout`;
  - calibration gaps: every `calibration_every_min` minutes after the warm-up the sensor
    asks for a calibration and sends nothing until it gets one: a gap of 5 minutes up to
    `calibration_gap_min`, its length drawn from the seed (how long the wearer takes). No
    NaN record is sent meanwhile: the pump would take it for a new sensor warming up;
  - values outside 40..400 are sent as the sensor does: status "lower/higher than the
    device can process".
The time offset is minutes since the session started; readings come every 5 minutes.

Fed by the pump (`play`, `pumpctl sensor --patient`): the virtual patient
(host_tools/patient.PatientModel) is the glucose source and gets the insulin the pump says
it delivered (status: basal and bolus today, `DeliveredInsulin`) between two readings. The
pump paces the session: a reading when the pump's own clock has moved 5 minutes, or, with
`fast` on a simulated board (the emulator, the QEMU ARM board), its clock in lockstep,
advanced 5 minutes per reading once the pump has taken the previous one (its sensor-link
counters say so). A board's clock cannot be hurried: there `fast` falls back to the pump's
real time, and says so. `pumpctl sensor --patient` and the HIL fixture `sensor`
(hil_tests/kit.SensorTx.play_patient) both play the patient this way: `patient_glucose`
and `play`.

The other glucose source is a trace: CSV `minute,mg_dl` (a header and # comments skipped)
or JSON (a list of [minute, mg_dl] pairs or of {"minute": .., "mg_dl": ..}); the reading at
a minute is the trace's last row at or before it. A trace is paced by the host's clock
(`speed`), or by the pump as above when `play` is given its client.
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from firmware import cgm_record as R
from host_tools.client import LinkError
from protocol import cgm_record as H
from protocol import refusals
from protocol import spec as S

DEFAULT_TX = 0x00C6A1  # the simulator's transmitter id unless told otherwise
EVERY_MIN = 5
CLOCK_BOARDS = (S.BOARD_UNIX, S.BOARD_QEMU_ARM)  # simulated boards: clock control (lockstep)


class TraceError(ValueError):
    """A glucose trace that cannot be read: the message says where and why."""


def read_trace(path: str | Path) -> list[tuple[int, float]]:
    """(minute, mg/dL) rows of a CSV or JSON trace, minutes ascending from 0."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from None
    rows: list[tuple[int, float]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TraceError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, list):
            raise TraceError(f"{path}: expected a list of [minute, mg_dl] rows")
        for i, row in enumerate(data):
            if isinstance(row, dict) and {"minute", "mg_dl"} <= row.keys():
                row = (row["minute"], row["mg_dl"])
            if not (isinstance(row, (list, tuple)) and len(row) == 2
                    and all(isinstance(v, (int, float)) for v in row)):
                raise TraceError(f"{path}: row {i}: expected [minute, mg_dl], got {row!r}")
            rows.append((int(row[0]), float(row[1])))
    else:
        for n, line in enumerate(csv.reader(text.splitlines()), 1):
            if not line or line[0].strip().startswith("#") or not line[0].strip()[:1].isdigit():
                continue
            if len(line) != 2:
                raise TraceError(f"{path} line {n}: expected minute,mg_dl")
            try:
                rows.append((int(line[0]), float(line[1])))
            except ValueError:
                raise TraceError(f"{path} line {n}: not numbers: {','.join(line)}") from None
    if not rows:
        raise TraceError(f"{path}: no readings")
    for i, (m, v) in enumerate(rows):
        if m < 0 or (i and m <= rows[i - 1][0]):
            raise TraceError(f"{path}: row {i + 1}: minutes must ascend from 0 (got {m})")
        if not 1 <= v <= 1000:
            raise TraceError(f"{path}: row {i + 1}: mg_dl must be 1..1000 (got {v})")
    return rows


def trace_value(rows: list[tuple[int, float]], minute: int) -> float | None:
    last = None
    for m, v in rows:
        if m > minute:
            break
        last = v
    return last


def patient_glucose(patient):
    """The glucose source of a session fed by the virtual patient (host_tools.patient.
    PatientModel): its glucose at the minute `play` has just stepped it to."""
    return lambda minute: patient.glucose


def noise_model(seed: int):
    """simglucose's CGM noise generator (Dexcom parameters), seeded: an iterator of mg/dL."""
    import pandas as pd
    from simglucose.sensor.cgm import SENSOR_PARA_FILE
    from simglucose.sensor.noise_gen import CGMNoise

    params = pd.read_csv(SENSOR_PARA_FILE)
    return iter(CGMNoise(params.loc[params.Name == "Dexcom"].squeeze(), seed=seed))


@dataclass
class SensorSession:
    """What one sensor session sends: `record(minute)` -> record bytes or None (nothing
    sent: a dropout, after expiry, before the trace starts)."""

    glucose: object  # callable(minute) -> mg/dL or None
    warmup_min: int = 0
    expiry_min: int | None = None
    noise_seed: int | None = None
    dropout: float = 0.0
    seed: int = 0
    calibration_every_min: int | None = None
    calibration_gap_min: int = 30
    sent: int = 0
    dropped: int = 0
    uncalibrated: int = 0  # readings not sent in calibration gaps
    _rng: random.Random = field(init=False, repr=False)
    _cal_rng: random.Random = field(init=False, repr=False)
    _gaps: list = field(init=False, repr=False, default_factory=list)
    _noise: object = field(init=False, repr=False, default=None)

    def __post_init__(self):
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability 0..1, not {self.dropout}")
        every = self.calibration_every_min
        if every is not None:
            if not EVERY_MIN <= self.calibration_gap_min < every:
                raise ValueError(f"a calibration gap lasts {EVERY_MIN} minutes up to less than "
                                 f"the calibration interval ({every} min), not "
                                 f"{self.calibration_gap_min}")
        self._rng = random.Random(self.seed)
        self._cal_rng = random.Random(f"{self.seed}/calibration")  # its own stream
        if self.noise_seed is not None:
            self._noise = noise_model(self.noise_seed)

    def calibration_gap(self, k: int) -> tuple[int, int]:
        """The k-th calibration gap (k >= 1): [start, end) in session minutes. Lengths are
        drawn in order of k, so the schedule does not depend on which minutes are asked."""
        every = self.calibration_every_min
        if every is None or k < 1:
            raise ValueError("no calibration gaps in this session")
        while len(self._gaps) < k:
            steps = self.calibration_gap_min // EVERY_MIN
            self._gaps.append(EVERY_MIN * self._cal_rng.randint(1, steps))
        start = self.warmup_min + k * every
        return start, start + self._gaps[k - 1]

    def in_calibration_gap(self, minute: int) -> bool:
        every = self.calibration_every_min
        if every is None or minute < self.warmup_min + every:
            return False
        start, end = self.calibration_gap((minute - self.warmup_min) // every)
        return start <= minute < end

    def record(self, minute: int) -> bytes | None:
        if self.expiry_min is not None and minute >= self.expiry_min:
            if minute - self.expiry_min < EVERY_MIN:  # the sensor says so once
                return H.encode_record("NaN", minute, status=R.SS_SESSION_STOPPED)
            return None
        if self._rng.random() < self.dropout:
            self.dropped += 1
            return None
        if minute < self.warmup_min:
            return H.encode_record("NaN", minute)
        if self.in_calibration_gap(minute):
            self.uncalibrated += 1
            return None
        g = self.glucose(minute)
        if g is None:
            return None
        if self._noise is not None:
            g += float(next(self._noise))
        g = round(g)
        self.sent += 1
        if g < 40:
            return H.encode_record(39, minute, status=R.SS_BELOW_DEVICE)
        if g > 400:
            return H.encode_record(401, minute, status=R.SS_ABOVE_DEVICE)
        return H.encode_record(g, minute)


class Transmitter:
    """Frames onto a serial URL (pyserial) as transmitter `tx_id`."""

    def __init__(self, url: str, tx_id: int = DEFAULT_TX):
        import serial

        if not 1 <= tx_id <= H.TX_ID_MAX:
            raise ValueError(f"transmitter id must be 1..{H.TX_ID_MAX}, not {tx_id}")
        self.tx_id = tx_id
        try:
            self.port = serial.serial_for_url(url, baudrate=115200, timeout=1)
        except (serial.SerialException, ValueError) as exc:
            raise OSError(f"cannot open the sensor port {url}: {exc}") from None
        self.frames = 0

    def send(self, record: bytes):
        self.port.write(H.encode_frame(self.tx_id, record))
        self.port.flush()
        self.frames += 1

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- fed by the pump
class SensorError(LinkError):
    """The pump does not take the transmitter's readings: the message says why and what to
    do (pairing, the wrong port, an earlier session's time offsets)."""


class NotPaired(ValueError):
    """The pump's sensor_id is not this transmitter's id (a set-up mistake)."""


class DeliveredInsulin:
    """Insulin (mU) the pump says it delivered, basal and bolus, since the last look: the
    difference of the status's totals of today; across the pump's local midnight, the rest
    of the day that ended (its daily totals) plus today's. Priming is not counted: it fills
    the tubing and cannula. A clock set back to an earlier day counts nothing for that
    interval (the pump's totals of that day were counted already)."""

    def __init__(self, pump, st=None):
        st = st or pump.status()
        self.pump = pump
        self.day = st.local_day
        self.seen = st.basal_today + st.bolus_today
        self.total = 0

    def since_last(self, st) -> int:
        now = st.basal_today + st.bolus_today
        if st.local_day == self.day:
            got = now - self.seen
        elif st.local_day > self.day:
            ended = self.pump.get_totals(self.day)
            got = (ended.basal + ended.bolus - self.seen if ended.valid else 0) + now
        else:
            got = 0
        self.day, self.seen = st.local_day, now
        got = max(0, got)  # totals never shrink within a day; a reset day has been handled
        self.total += got
        return got


@dataclass
class Reading:
    """One 5-minute step of `play`."""

    minute: int  # session minute (the record's time offset)
    record: bytes | None  # what was sent (None: nothing: dropout, calibration, expired)
    glucose: float | None  # the source's glucose at that minute (before sensor noise)
    insulin_mu: int | None = None  # delivered since the previous step (fed by the pump)
    taken: bool | None = None  # the pump accepted it (None: nothing sent or no pump to ask)


class PumpPacer:
    """Session minutes on the pump's clock (module doc): `wait_until(minute)` returns the
    pump's status once `minute` minutes have passed since the start; `confirm()` waits
    until the pump's sensor link counted the frame just sent."""

    POLL_S = 0.25  # real seconds between looks at the pump's clock
    STALL_S = 30.0  # a pump clock still for this long gets a message
    TAKE_TRIES = 30  # lockstep: 1-s advances; real time: POLL_S waits

    def __init__(self, pump, fast: bool, say=lambda text: None, sleep=None):
        self.pump = pump
        self.say = say
        self.sleep = sleep or time.sleep
        self.lockstep = False
        if fast:
            board = pump.info.board if pump.info is not None else None
            if board in CLOCK_BOARDS:
                pump.emu_clock(S.CLK_LOCKSTEP)
                self.lockstep = True
                say("fast: the simulated board's clock is in lockstep now (and stays so): 5 "
                    "virtual minutes per reading, run once the pump has taken the previous one")
            else:
                name = refusals.BOARD_NAMES[board] if board is not None and board < len(
                    refusals.BOARD_NAMES) else "this"
                say(f"fast: a {name} board runs on its own clock and delivers insulin in "
                    "real time, which no host can hurry: a reading every 5 minutes of the "
                    "pump's time instead")
        st = pump.status()
        self.start = st
        self.utc0 = st.utc
        self.ran_ms = 0  # lockstep: virtual ms run since the start
        self.stats = pump.get_sensor_stats()

    def wait_until(self, minute: int):
        """`minute`: minutes since this pacer started."""
        pump = self.pump
        target_ms = minute * 60000
        if self.lockstep:
            while self.ran_ms < target_ms:
                ran = pump.emu_clock(S.CLK_ADVANCE, target_ms - self.ran_ms).detail
                if ran <= 0:
                    raise SensorError(f"the emulator's clock did not advance to minute {minute}")
                self.ran_ms += ran
            return pump.status()
        last_utc, still_since, warned = None, time.monotonic(), False
        while True:
            st = pump.status()
            if st.utc - self.utc0 >= minute * 60:
                return st
            if st.utc != last_utc:
                last_utc, still_since = st.utc, time.monotonic()
            elif not warned and time.monotonic() - still_since > self.STALL_S:
                self.say(f"the pump's clock has not moved for {self.STALL_S:g} s (an emulator "
                         "in lockstep? give --fast)")
                warned = True
            self.sleep(self.POLL_S)

    def confirm(self, minute: int, tx_id: int) -> bool:
        """True if the pump accepted the frame just sent, False if it dropped it as bad
        (counted); SensorError if it does not take it at all, or drops it for a reason
        the user must fix."""
        pump = self.pump
        before = self.stats
        for _ in range(self.TAKE_TRIES):
            if self.lockstep:
                self.ran_ms += pump.emu_clock(S.CLK_ADVANCE, 1000).detail
            else:
                self.sleep(self.POLL_S)
            now = pump.get_sensor_stats()
            if now.frames > before.frames:
                break
        else:
            raise SensorError(f"the pump did not take the reading of minute {minute} (its "
                              "sensor-link statistics count no new frame): is the sensor port "
                              "wired to this pump's sensor link?")
        self.stats = now
        if now.accepted > before.accepted:
            return True
        if now.foreign > before.foreign:
            raise SensorError(f"the pump is paired with transmitter {now.sensor_id}, not "
                              f"{tx_id}: `pumpctl settings set sensor_id {tx_id}`, or give "
                              f"--tx {now.sensor_id}")
        if now.duplicate > before.duplicate or now.out_of_order > before.out_of_order:
            raise SensorError(f"the pump dropped the reading of minute {minute} as an old time "
                              "offset: it has later readings of this transmitter's session; "
                              "continue the session past them (--from MIN) or pair another "
                              "id (--tx N and `pumpctl settings set sensor_id N`)")
        return False


def play(session: SensorSession, tx: Transmitter, end: int, *, first: int = 0, pump=None,
         patient=None, fast: bool = False, speed: float = 1.0, say=lambda text: None,
         sleep=None):
    """Yield a `Reading` for each 5 session minutes from `first` to below `end`, having
    sent its record (`first` > 0 continues a session the pump has readings of).

    Without `pump`: paced by the host's clock, a reading every 300 / `speed` s. With
    `pump` (a host_tools.client.Client): paced by the pump (`PumpPacer`, `fast` as in the
    module doc), each record confirmed taken; `patient` (host_tools.patient.PatientModel,
    whose glucose the session's source should read; its minute 0 is `first`) gets the
    insulin delivered between readings before each one."""
    sleep = sleep or time.sleep
    minutes = range(first, end, EVERY_MIN)
    if pump is None:
        if patient is not None or fast:
            raise ValueError("the virtual patient and fast mode need the pump's protocol port")
        for minute in minutes:
            start = time.monotonic()
            record = session.record(minute)
            if record is not None:
                tx.send(record)
            yield Reading(minute, record, session.glucose(minute))
            if minute + EVERY_MIN < end:
                sleep(max(0.0, 300 / speed - (time.monotonic() - start)))
        return
    settings = pump.get_settings()
    if settings.get("sensor_id") != tx.tx_id:
        raise NotPaired(f"the pump is paired with transmitter {settings.get('sensor_id')}, "
                         f"not {tx.tx_id}: `pumpctl settings set sensor_id {tx.tx_id}` first "
                         "(or --tx)")
    pacer = PumpPacer(pump, fast, say, sleep)
    insulin = DeliveredInsulin(pump, pacer.start)
    for minute in minutes:
        st = pacer.wait_until(minute - first)
        mu = insulin.since_last(st)
        if patient is not None:
            patient.exchange(minute - first, mu)
        record = session.record(minute)
        taken = None
        if record is not None:
            tx.send(record)
            taken = pacer.confirm(minute, tx.tx_id)
        yield Reading(minute, record, session.glucose(minute), mu, taken)
