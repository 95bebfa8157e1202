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
  - values outside 40..400 are sent as the sensor does: status "lower/higher than the
    device can process".
The time offset is minutes since the session started; readings come every 5 minutes.

A glucose source is a trace: CSV `minute,mg_dl` (a header and # comments skipped) or JSON
(a list of [minute, mg_dl] pairs or of {"minute": .., "mg_dl": ..}); the reading at a
minute is the trace's last row at or before it.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from firmware import cgm_record as R
from protocol import cgm_record as H

DEFAULT_TX = 0x00C6A1  # the simulator's transmitter id unless told otherwise
EVERY_MIN = 5


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
    sent: int = 0
    dropped: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _noise: object = field(init=False, repr=False, default=None)

    def __post_init__(self):
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability 0..1, not {self.dropout}")
        self._rng = random.Random(self.seed)
        if self.noise_seed is not None:
            self._noise = noise_model(self.noise_seed)

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
