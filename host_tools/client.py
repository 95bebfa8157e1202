"""Client library for a micropump over any pyserial URL (LNK-1..LNK-5, SEC-1, SEC-2).

    from host_tools.client import connect
    with connect("/dev/ttyACM0", key=load_key("pump.key")) as pump:
        print(pump.status().reservoir_u)
        pump.bolus(units_to_mu("1.5"))

``connect`` accepts whatever ``serial.serial_for_url`` does: a device or pty path,
``socket://host:port``, ``rfc2217://host:port``, ``loop://``. It says HELLO and refuses a
pump whose protocol version or schema hash differs from this package's protocol/spec.py.

Requests and responses are matched by sequence number. A query that gets no answer is
sent again (new sequence). A command is sent again with the SAME cmd_id and the next auth
counter: the pump answers a duplicate cmd_id with its first result and acts only once
(LNK-3).

With a key, what decisions rest on is signed by the pump (LNK-6): the answer to a command
carries the try's counter and a MAC (over the schema hash too, with the F_RESPONSE
direction bit), HELLO is asked with a random nonce as counter and its answer signed with
it; unsigned answers are ignored. When every try of a command goes unanswered the client
sends a FENCE: an authenticated command whose counter is above every try's, so once the
pump has taken it no late copy of the command can act, and whose signed answer says
whether the command was carried out. Only then does the client say "not carried out"; if
the fence gets no signed answer either, it says the outcome is unknown.

Unsolicited events (alarms, bolus progress, state changes) go to ``on_event`` if given,
else into a queue read by ``events()`` / ``poll_events()``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import os
import secrets
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, make_dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

# the fast codec (struct, C CRC/COBS/HMAC; protocol/fastcodec.py) by default: construct's
# protocol/codec.py stays the definition, and the checker for anything it declines
from protocol import fastcodec as codec
from protocol import refusals, spec
from protocol.codec import ProtocolError

DEFAULT_TIMEOUT = 1.0  # seconds to wait for one answer
DEFAULT_RETRIES = 3  # extra tries after the first
READ_SLICE = 0.05  # longest single blocking read, seconds
EMU_RUN_WAIT = 300.0  # longest wait for an emulator CLK_ADVANCE / CLK_UNTIL_EVENT, seconds
EPOCH = dt.datetime(spec.EPOCH_YEAR, 1, 1, tzinfo=dt.UTC)


# ============================================================================ errors
class PumpError(Exception):
    """Base of every error the client raises."""


class LinkError(PumpError):
    """The port cannot be opened or the pump does not answer."""


class PortBusy(LinkError):
    """Another client holds the port (each client opens it exclusively)."""


class PumpTimeout(LinkError):
    """No answer after every retry."""


class SchemaMismatch(PumpError):
    """The pump speaks another protocol version or message table."""


class KeyFileError(PumpError):
    """The key file is missing or not a 256-bit key."""


COUNTER_MAX = 0xFFFFFFFF
COUNTER_RESERVE = 1024  # counters kept for the tries and fences of the last commands


class PumpRefused(PumpError):
    """The pump refused a request: ``code`` (spec E_*), ``name`` (refusals.ERRORS), ``detail``.

    The message says what the detail means for this request (protocol/refusals.py, the
    words the bench console uses too): ``kind`` is the request's kind field where the
    meaning depends on it, ``limit`` the value of the limit an E_OVER_LIMIT names, when
    known; ``explain()`` adds them later."""

    def __init__(self, code: int, detail: int = 0, request: str = "", cmd_id: int = 0,
                 kind: int = -1, limit: int | None = None):
        self.code = code
        self.detail = detail
        self.request = request
        self.cmd_id = cmd_id
        self.kind = kind
        self.limit = limit
        self.name = refusals.ERRORS.get(code, f"error {code}")
        super().__init__(self.describe())

    def describe(self) -> str:
        what = f"{self.request.replace('_', ' ')} refused: " if self.request else "refused: "
        return what + refusals.text(self.request, self.code, self.detail, self.kind,
                                    self.limit)

    def explain(self, kind: int | None = None, limit: int | None = None) -> PumpRefused:
        """Add the request's kind or the limit's value to the message; returns self."""
        if kind is not None:
            self.kind = kind
        if limit is not None:
            self.limit = limit
        self.args = (self.describe(),)
        return self


# ============================================================================ units
MU_PER_U = 1000


def units_to_mu(value: str | int | float | Decimal) -> int:
    """Insulin units to mU, exactly: '1.5' -> 1500. Refuses anything that is not a whole
    number of 0.001 U (no silent rounding), negative, or not a number."""
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number of units: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a number of units: {value!r}")
    if d < 0:
        raise ValueError(f"amount must not be negative: {value}")
    mu = d * MU_PER_U
    if mu != mu.to_integral_value():
        raise ValueError(f"{value} U is not a whole number of 0.001 U (1 mU)")
    return int(mu)


def mu_to_units(mu: int) -> str:
    """mU to a units string without losing precision: 1500 -> '1.5', 25 -> '0.025'."""
    sign = "-" if mu < 0 else ""
    whole, frac = divmod(abs(mu), MU_PER_U)
    text = f"{whole}.{frac:03d}".rstrip("0")
    return sign + (text + "0" if text.endswith(".") else text)


def mu_to_u(mu: int) -> float:
    return mu / MU_PER_U


def load_key(path: str | os.PathLike) -> bytes:
    """A 256-bit pairing key from a file: 32 raw bytes, or 64 hex digits (whitespace ok)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) == 32:
        return data
    try:
        text = data.decode("ascii").strip()
        key = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise KeyFileError(f"key file {path}: expected 32 raw bytes or 64 hex digits")
    return key


def pump_seconds(when: dt.datetime) -> int:
    """A datetime (naive = UTC) as the pump's UTC seconds since 2020-01-01."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int((when - EPOCH).total_seconds())


def from_pump_seconds(seconds: int, offset_min: int = 0) -> dt.datetime:
    """The pump's UTC seconds as an aware datetime in the pump's UTC offset."""
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    return (EPOCH + dt.timedelta(seconds=seconds)).astimezone(tz)


# ============================================================================ records
def _of(cls, msg: codec.Message):
    """The record of a decoded ``msg``, which must be the record's message: its fields are
    the record's, so the instance state is set at once, without the frozen dataclass's
    __init__ (an object.__setattr__ per field: 20 us of a status round trip)."""
    if msg.name != cls.message_name:
        raise ProtocolError(f"expected {cls.message_name}, pump sent {msg.name}")
    record = object.__new__(cls)
    record.__dict__.update(msg.fields)
    return record


def _record(msg: str, cls_name: str, namespace: dict | None = None):
    """A frozen dataclass with the fields of message ``msg``, straight from the table;
    ``Record.of(message)`` makes one from a decoded message."""
    names = codec.field_names(msg)
    return make_dataclass(cls_name, [(n, int | bytes) for n in names], frozen=True,
                          namespace={**(namespace or {}), "message_name": msg,
                                     "of": classmethod(_of)})


def _alarm_names(mask: int) -> list[str]:
    return [spec.ALARMS[i][0] for i in range(spec.ALARM_COUNT) if mask >> i & 1]


Hello = _record("hello_info", "Hello")

Status = _record("status_info", "Status", {
    "delivering": property(lambda s: s.stop == spec.STOP_NONE),
    "stop_reason": property(lambda s: refusals.STOP_REASONS[s.stop]
                            if s.stop < len(refusals.STOP_REASONS) else f"stop {s.stop}"),
    "alarm_names": property(lambda s: _alarm_names(s.alarms)),
    "bolus_running": property(lambda s: s.bolus_id != 0),
    "last_error": property(lambda s: refusals.ERRORS.get(s.last_code, f"error {s.last_code}")),
    "local_time": property(lambda s: from_pump_seconds(s.utc, s.offset)),
    "local_day": property(lambda s: (s.utc + s.offset * 60) // 86400),
    "reservoir_u": property(lambda s: mu_to_u(s.reservoir)),
    "trend_mg_dl_min": property(lambda s: None if s.trend == spec.NO_TREND else s.trend / 10),
    "basal_suspended_before_low": property(lambda s: bool(s.cgm & spec.CGMF_SBL)),
})

LinkStats = _record("link_stats", "LinkStats")
SensorStats = _record("sensor_stats", "SensorStats")  # SNS-4: the sensor link's counters


@dataclass(frozen=True)
class Result:
    """The pump's answer to a command that was carried out."""

    cmd_id: int
    code: int
    detail: int
    reconciled: bool = False  # learned from status.last_cmd_id after the reply was lost


@dataclass(frozen=True)
class Profile:
    index: int
    name: str
    starts: tuple[int, ...]  # 30-minute slot where each segment starts (first is 0)
    rates: tuple[int, ...]  # mU/h per segment

    def segments(self) -> list[tuple[str, int]]:
        """[("HH:MM", mU/h), ...]"""
        return [(f"{s // 2:02d}:{30 * (s % 2):02d}", r) for s, r in zip(self.starts,
                                                                          self.rates,
                                                                          strict=True)]


@dataclass(frozen=True)
class Totals:
    day: int
    valid: bool
    basal: int
    bolus: int
    prime: int

    @property
    def date(self) -> dt.date:
        return (EPOCH + dt.timedelta(days=self.day)).date()


@dataclass(frozen=True)
class AlarmState:
    alarm: int
    name: str
    priority: int
    active: bool
    acked: bool
    level: int


@dataclass(frozen=True)
class HistoryRecord:
    seq: int
    time: int  # pump UTC seconds
    kind: int
    arg: int
    v1: int
    v2: int
    v3: int

    @property
    def kind_name(self) -> str:
        return refusals.HISTORY_KINDS.get(self.kind, f"kind {self.kind}")


_EVENT_NAMES = {spec.EV_ALARM: "alarm", spec.EV_BOLUS: "bolus", spec.EV_STATE: "state",
                spec.EV_BOLUS_END: "bolus_end", spec.EV_GLUCOSE: "glucose",
                spec.EV_SBL: "suspend_before_low"}


def glucose_text(value: int) -> str:
    """A reading as shown: LOW / HIGH beyond the sensor's range, sensor states by name."""
    if value == spec.CGM_WARMUP:
        return "sensor warming up"
    if value == spec.CGM_EXPIRED:
        return "sensor expired"
    if value <= spec.CGM_LOW:
        return "LOW"
    if value >= spec.CGM_HIGH:
        return "HIGH"
    return f"{value} mg/dL"


def trend_arrow(trend10: int) -> str:
    """Trend arrow of a trend in mg/dL/min x 10 (Dexcom-like bands)."""
    if trend10 == spec.NO_TREND:
        return "?"
    if trend10 >= 30:
        return "↑↑"
    if trend10 >= 20:
        return "↑"
    if trend10 >= 10:
        return "↗"
    if trend10 > -10:
        return "→"
    if trend10 > -20:
        return "↘"
    if trend10 > -30:
        return "↓"
    return "↓↓"


@dataclass(frozen=True)
class Reading:
    """One CGM reading the pump holds (SNS-1)."""

    minute: int  # pump UTC minutes since 2020-01-01
    mg_dl: int  # 39 = LOW, 401 = HIGH

    @property
    def utc(self) -> int:
        return self.minute * 60

    @property
    def text(self) -> str:
        return glucose_text(self.mg_dl)


@dataclass(frozen=True)
class Suggestion:
    """A bolus calculator suggestion (THR-8), mU. Nothing was delivered: send a bolus."""

    food: int
    correction: int
    iob: int
    unrounded: int  # food + correction - iob
    total: int  # at least 0, rounded DOWN to whole pulses
    flags: int
    carb_ratio: int  # g/U x 10
    sensitivity: int  # mg/dL per U
    target_low: int
    target_high: int

    @property
    def rounded(self) -> bool:
        return bool(self.flags & spec.CALC_ROUNDED)

    @property
    def over_max(self) -> bool:
        return bool(self.flags & spec.CALC_OVER_MAX)

    @property
    def floored(self) -> bool:
        return bool(self.flags & spec.CALC_FLOORED)

    @property
    def no_bg(self) -> bool:
        return bool(self.flags & spec.CALC_NO_BG)


@dataclass(frozen=True)
class CalcSchedule:
    """A bolus calculator schedule: segments from 30-min slots (THR-8)."""

    kind: int
    starts: tuple[int, ...]
    values: tuple[int, ...]  # carb ratio g/U x 10, sensitivity mg/dL/U, or target low
    highs: tuple[int, ...]  # target high (CALC_TARGET), else zeros

    @property
    def name(self) -> str:
        return spec.CALC_KINDS[self.kind]

    def segments(self) -> list[tuple[str, int, int]]:
        return [(f"{s // 2:02d}:{30 * (s % 2):02d}", v, h)
                for s, v, h in zip(self.starts, self.values, self.highs, strict=True)]


@dataclass(frozen=True)
class Event:
    """An unsolicited event from the pump (spec EV_*)."""

    kind: int
    a: int
    b: int
    c: int

    @property
    def name(self) -> str:
        return _EVENT_NAMES.get(self.kind, f"event {self.kind}")

    def describe(self) -> str:
        if self.kind == spec.EV_ALARM:
            alarm = spec.ALARMS[self.a][0] if 0 <= self.a < spec.ALARM_COUNT else self.a
            action = (refusals.ALARM_ACTIONS[self.b] if 0 <= self.b < len(refusals.ALARM_ACTIONS)
                      else self.b)
            return f"alarm {alarm} {action}"
        if self.kind == spec.EV_BOLUS:
            return (f"bolus {self.a}: {mu_to_units(self.b)} of {mu_to_units(self.c)} U "
                    "delivered")
        if self.kind == spec.EV_BOLUS_END:
            ending = (refusals.BOLUS_ENDINGS[self.c] if 0 <= self.c < len(refusals.BOLUS_ENDINGS)
                      else self.c)
            return f"bolus {self.a} {ending}: {mu_to_units(self.b)} U delivered"
        if self.kind == spec.EV_STATE:
            reason = (refusals.STOP_REASONS[self.a] if 0 <= self.a < len(refusals.STOP_REASONS)
                      else self.a)
            return f"delivery: {reason}"
        if self.kind == spec.EV_GLUCOSE:
            if self.a < 0:
                return glucose_text(self.a)
            trend = "" if self.c == spec.NO_TREND else f" {trend_arrow(self.c)} {self.c / 10:+g}"
            return f"glucose {glucose_text(self.a)}{trend}"
        if self.kind == spec.EV_SBL:
            why = (refusals.SBL_REASONS[self.b] if 0 <= self.b < len(refusals.SBL_REASONS)
                   else self.b)
            what = "basal suspended before low" if self.a else "basal resumed"
            return f"{what} ({why}, glucose {glucose_text(self.c)})"
        return f"event {self.kind} ({self.a}, {self.b}, {self.c})"


# ============================================================================ payloads
# Byte-array fields of the table, in the layout the firmware link packs them.
def _u8s(data: bytes, n: int) -> tuple[int, ...]:
    return tuple(data[:n])


def _pack_u16s(values, size: int) -> bytes:
    return struct.pack(f"<{len(values)}H", *values).ljust(size, b"\0")


def setting_id(name_or_id: str | int) -> int:
    if isinstance(name_or_id, int):
        if 0 <= name_or_id < spec.SETTINGS_COUNT:
            return name_or_id
        raise ValueError(f"no setting {name_or_id}")
    for sid, row in enumerate(spec.SETTINGS):
        if row[0] == name_or_id:
            return sid
    raise ValueError(f"unknown setting {name_or_id!r}; settings: "
                     + ", ".join(r[0] for r in spec.SETTINGS))


# Settings as people write them: insulin in U where the pump stores mU (spec.SETTINGS).
SETTING_UNITS = {"mU": "U", "mU/h": "U/h", "mU/min": "U/min"}


def setting_unit(sid: int) -> str:
    """The unit setting ``sid`` is written in on the command line (U for insulin)."""
    unit = spec.SETTINGS[sid][4]
    return SETTING_UNITS.get(unit, unit)


def setting_from_text(sid: int, text: str) -> int:
    """A setting value as a user writes it -> pump units, exactly: insulin in U ('8' or
    '8 U' -> 8000 mU), everything else a whole number of its unit. A unit written after
    the number must be the setting's own; milli-units are refused, never guessed."""
    name, unit = spec.SETTINGS[sid][0], setting_unit(sid)
    value = text.strip()
    if unit and value.endswith(unit) and value[:-len(unit)].strip()[-1:].isdigit():
        value = value[:-len(unit)].strip()
    if value and not value.replace(".", "", 1).lstrip("-").isdigit():
        if value.lstrip("-0123456789. ").startswith("m" + unit) and unit in (
                SETTING_UNITS.values()):
            raise ValueError(f"setting {name} is written in {unit}, not m{unit}: "
                             f"e.g. {name}={refusals.units_text(spec.SETTINGS[sid][1])}")
        raise ValueError(f"setting {name} takes a number of {unit}, not {text!r}")
    if spec.SETTINGS[sid][4] in SETTING_UNITS:
        try:
            return units_to_mu(value)
        except ValueError as exc:
            raise ValueError(f"setting {name} is in {unit}: {exc}") from None
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError(f"setting {name} takes a whole number of {unit}, "
                         f"not {text!r}") from None


def setting_text(sid: int, value: int) -> str:
    """A setting value in the units people read: '8 U', '1.5 U/min', '240 min'."""
    if spec.SETTINGS[sid][4] in SETTING_UNITS:
        return f"{mu_to_units(value)} {setting_unit(sid)}"
    return f"{value} {setting_unit(sid)}"


def alarm_id(name_or_id: str | int) -> int:
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        n = int(name_or_id)
        if 0 <= n < spec.ALARM_COUNT:
            return n
        raise ValueError(f"no alarm {n} (0..{spec.ALARM_COUNT - 1})")
    for aid, row in enumerate(spec.ALARMS):
        if row[0] == name_or_id:
            return aid
    raise ValueError(f"unknown alarm {name_or_id!r}; alarms: "
                     + ", ".join(r[0] for r in spec.ALARMS))


# ============================================================================ client
class _Tries:
    """The tries of one request: an answer to any of their seqs counts, and with a key only
    one signed with one of their counters."""

    def __init__(self, signed: bool):
        self.seqs: set[int] = set()
        self.counters: set[int] | None = set() if signed else None


def _result(name: str, msg: codec.Message) -> codec.Message:
    """``msg`` if it is a result, as every answer to a command must be."""
    if msg.name != "result":
        raise ProtocolError(f"{name}: expected result, pump sent {msg.name}")
    return msg


def _replayed(msg: codec.Message) -> bool:
    """Refused for a counter at or below the pump's: another host has used counters."""
    return (msg.name == "result" and msg["code"] == spec.E_BAD_AUTH
            and msg["detail"] == spec.AUTH_REPLAYED)


CONSOLE_KEEP = 65536  # characters of console text kept for take_console_text()


class Client:
    """One pump link. ``port`` is an open pyserial-like object (read/write/in_waiting)."""

    def __init__(self, port, key: bytes | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, on_event: Callable[[Event], None] | None = None,
                 hello: bool = True):
        self.port = port
        self.key = codec._check_key(key) if key is not None else None
        self.timeout = timeout
        self.retries = retries
        self.on_event = on_event
        self.events_queue: collections.deque[Event] = collections.deque()
        self.pending: collections.deque[bytes] = collections.deque()
        self.forget_input()
        self._seq = itertools.count(1)
        self.counter = 0  # last auth counter used; HELLO syncs it with the pump
        self.verified_key: bytes | None = None  # the key a signed HELLO proved right
        self.stats = collections.Counter()  # bad frames, stale replies, retries, ...
        self.info: Hello | None = None
        # Reads block at most READ_SLICE, so deadlines hold whatever the port's timeout
        # was (setting it reconfigures a real serial port: done once, here).
        if getattr(port, "timeout", None) is None or port.timeout > READ_SLICE:
            port.timeout = READ_SLICE
        if hello:
            self.hello()

    # ------------------------------------------------------------------ plumbing
    def close(self):
        try:
            # pyserial's socket:// close() sleeps 0.3 s "for quick reconnects"; every
            # pumpctl run would pay it. Close the socket the same way, without the sleep.
            sock = getattr(self.port, "_socket", None)
            if sock is not None and type(self.port).__module__.endswith("protocol_socket"):
                import socket  # only here: a pty or a serial port needs no socket module

                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                self.port._socket = None
                self.port.is_open = False
                return
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a dead port is not an error
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next_seq(self) -> int:
        seq = next(self._seq) & 0xFFFF
        if seq == 0:  # 0 is the events' sequence
            seq = next(self._seq) & 0xFFFF
        return seq

    def _write(self, data: bytes):
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush:
                flush()
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise LinkError(f"write to pump failed: {exc}") from None

    def _read_some(self, wait: float) -> bytes:
        """Whatever the port has, waiting up to about ``wait`` s for the first byte."""
        try:
            if wait <= 0:
                n = self.port.in_waiting
                return self.port.read(n) if n else b""
            # returns at once if bytes wait, else blocks up to port.timeout (READ_SLICE)
            data = self.port.read(1)
            if data:
                n = self.port.in_waiting
                if n:
                    data += self.port.read(n)
            return data
        except (OSError, ValueError, TypeError) as exc:
            raise LinkError(f"read from pump failed: {exc}") from None

    def forget_input(self) -> None:
        """Drop frames read but not yet taken and any half-read chunk (after a fault that
        may have cut one). The bench console shares the port (issue 17): text is text."""
        self.pending.clear()
        self.reader = codec.FrameReader(console=True)
        self.console_text = ""  # console text met while reading frames (the newest part)

    def take_console_text(self) -> str:
        """The console text met while reading frames since the last call, with the text
        read but not yet ended by a 0x00 (the console's latest answer)."""
        text, self.console_text = self.console_text, ""
        return text + self.reader.take_text()

    def _next_message(self, deadline: float) -> codec.Message | None:
        """The next well-formed frame before ``deadline`` (monotonic), or None."""
        while True:
            while self.pending:
                frame = self.pending.popleft()
                try:
                    return codec.decode_frame(frame)
                except codec.VersionError:
                    raise
                except ProtocolError:
                    self.stats["bad_frames"] += 1
            left = deadline - time.monotonic()
            data = self._read_some(left)  # left <= 0: only what is already waiting
            if not data and left <= 0:
                return None
            for item in self.reader.feed(data):
                if isinstance(item, ProtocolError):
                    self.stats["bad_frames"] += 1
                elif isinstance(item, codec.ConsoleText):
                    self.stats["console_text"] += 1  # a person's console on the same port
                    self.console_text = (self.console_text + item)[-CONSOLE_KEEP:]
                else:
                    self.pending.append(item)

    def _dispatch_event(self, msg: codec.Message):
        ev = Event(msg["kind"], msg["a"], msg["b"], msg["c"])
        self.stats["events"] += 1
        if self.on_event is not None:
            self.on_event(ev)
        else:
            self.events_queue.append(ev)

    def _await(self, seqs: set[int], timeout: float,
               counters: set[int] | None = None) -> codec.Message | None:
        """The response to any of ``seqs``; events met on the way are dispatched. With
        ``counters`` (an authenticated request) only an answer signed with one of them
        counts (see _signed)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_message(deadline)
            if msg is None:
                return None
            if msg.is_event or msg.name == "event":
                self._dispatch_event(msg)
            elif msg.is_response and msg.seq in seqs:
                if counters is None or self._signed(msg, counters):
                    return msg
                self.stats["unsigned"] += 1  # not the pump's word: wait for it
            else:
                self.stats["stale"] += 1  # a late answer to an abandoned request

    def _signed(self, msg: codec.Message, counters: set[int]) -> bool:
        """Is ``msg`` the pump's answer to one of our requests signed with ``counters``?
        An unsigned refusal of the authentication itself is taken only while no signed
        HELLO has proved this key right: then the key really may be wrong (and with a
        wrong key nothing can act); once proved, such a refusal is not the pump's."""
        if msg.counter in counters and codec.verify_mac(msg, self.key):
            return True
        return (msg.counter is None and msg.name == "result"
                and msg["code"] == spec.E_BAD_AUTH
                and msg["detail"] in (spec.AUTH_MISSING, spec.AUTH_BAD_MAC)
                and self.verified_key != self.key)

    # ------------------------------------------------------------------ requests
    def query(self, name: str, fields: dict | None = None, expect: str | None = None,
              signed: bool = False):
        """Send a query and return the answer message; retried on silence. ``signed`` (with
        a key): the query carries a random nonce as its counter and only the pump's answer
        signed with it is taken (LNK-6). Bad fields raise before anything is sent: the first
        try is encoded before it is written."""
        seqs: set[int] = set()
        nonces: set[int] | None = set() if signed and self.key else None
        for attempt in range(self.retries + 1):
            seq = self._next_seq()
            seqs.add(seq)
            if attempt:
                self.stats["retries"] += 1
            if nonces is None:
                self._write(codec.encode(name, seq, fields))
            else:
                nonce = secrets.randbits(32)
                nonces.add(nonce)
                self._write(codec.encode(name, seq, fields, key=self.key, counter=nonce))
            msg = self._await(seqs, self.timeout, nonces)
            if msg is None:
                continue
            if msg.name == "result":
                if msg["code"] != spec.OK:
                    raise PumpRefused(msg["code"], msg["detail"], name)
                return msg
            if expect and msg.name != expect:
                raise ProtocolError(f"{name}: expected {expect}, pump sent {msg.name}")
            return msg
        raise PumpTimeout(f"no answer to {name} after {self.retries + 1} tries "
                          f"({self.timeout:g} s each)")

    def _next_counter(self) -> int:
        if self.key is not None and self.counter >= COUNTER_MAX:
            raise PumpError("the pump's authentication counter is used up (2**32 - 1): "
                            "pair the pump again with a new key (`pumpctl flash`)")
        self.counter += 1
        return self.counter

    def command(self, name: str, fields: dict | None = None,
                retries: int | None = None) -> Result:
        """Send a state-changing command (authenticated when a key is set).

        Retries carry the same cmd_id and a fresh counter; the pump acts once (LNK-3).
        Raises PumpRefused when the pump answers with an error code. ``retries`` overrides
        the client's for this command (each try waits ``timeout``). With a key only signed
        answers count; when no try is answered, a fence decides (see ``fence``).

        cmd_id is the counter of the first try. The pump accepts a counter only above every
        counter it accepted before, and every earlier cmd_id was such a counter, so a first
        try that is accepted never carries a cmd_id the pump has seen (one host at a time).
        """
        fields = dict(fields or {})
        cmd_id = fields["cmd_id"] = self.counter + 1  # never accepted by the pump before
        codec.encode_frame(name, 0, fields)  # validate before sending
        retries = self.retries if retries is None else retries
        tries = _Tries(signed=self.key is not None)
        # 1. send tries until one is answered
        msg, attempt = self._send_tries(name, fields, tries, range(retries + 1))
        # 2. another host used counters: resync once, then send the tries left (the
        #    refused try does not count)
        if msg is not None and self.key and _replayed(_result(name, msg)):
            self.hello()
            if attempt == 0:
                # This was the only try, so its cmd_id may be one the pump has seen: take a
                # fresh one above the counter. Unless the pump's counter is this try's:
                # then the link may have delivered the frame twice, the first copy acting
                # (answer lost): the fence says whether it did.
                if self.counter == cmd_id:
                    result = self.fence(cmd_id)
                    if result is not None:
                        return self._outcome(name, result)
                cmd_id = fields["cmd_id"] = self.counter + 1
            msg, _ = self._send_tries(name, fields, tries, range(attempt, retries + 1))
        # 3. the pump's answer
        if msg is not None:
            msg = _result(name, msg)
            return self._outcome(name, Result(msg["cmd_id"], msg["code"], msg["detail"]))
        # 4. no try answered: reconcile through a fence
        result = self.fence(cmd_id)
        if result is None:
            raise PumpTimeout(
                f"no answer to {name} (command id {cmd_id}) after {retries + 1} tries; "
                "it was not carried out and can no longer be (the pump took a fence "
                "above every try)")
        return self._outcome(name, result)

    def _send_tries(self, name: str, fields: dict, tries: _Tries, attempts: range,
                    count_retries: bool = True) -> tuple[codec.Message | None, int]:
        """Send the tries numbered ``attempts`` (the same fields, each with a fresh seq and
        counter) until one is answered: (the answer, its number), or (None, past the last).
        An answer to any earlier try of ``tries`` counts too."""
        for attempt in attempts:
            seq = self._next_seq()
            tries.seqs.add(seq)
            counter = self._next_counter()
            if tries.counters is not None:
                tries.counters.add(counter)
            if attempt and count_retries:
                self.stats["retries"] += 1
            self._write(codec.encode(name, seq, fields, key=self.key,
                                     counter=counter if self.key else None))
            msg = self._await(tries.seqs, self.timeout, tries.counters)
            if msg is not None:
                return msg, attempt
        return None, attempts.stop

    def _command_of_kind(self, name: str, fields: dict) -> Result:
        """A command whose refusal details depend on its kind field (protocol/refusals.py)."""
        try:
            return self.command(name, fields)
        except PumpRefused as exc:
            exc.explain(kind=fields["kind"])
            raise

    def _outcome(self, name: str, result: Result) -> Result:
        if result.code != spec.OK:
            raise PumpRefused(result.code, result.detail, name, result.cmd_id)
        return result

    def fence(self, cmd_id: int) -> Result | None:
        """After lost replies: the outcome of command ``cmd_id``, or None when it is proved
        that it was not carried out and never will be (LNK-6).

        Sends a fence: an authenticated command with a counter above every try of
        ``cmd_id``. Once the pump has taken it, no try can act any more, and its signed
        answer says whether one did. Raises PumpTimeout ("may or may not") when no signed
        answer comes. Without a key nothing is fenced: the pump carries out no command
        without one, so none was."""
        if self.key is None:
            return None
        fields = {"cmd_id": cmd_id}
        tries = _Tries(signed=True)
        msg, attempt = self._send_tries("fence", fields, tries, range(self.retries + 1),
                                        count_retries=False)
        if msg is not None and _replayed(msg):
            self.hello()  # another host used counters: above the pump's, again
            msg, _ = self._send_tries("fence", fields, tries,
                                      range(attempt, self.retries + 1), count_retries=False)
        if msg is None:
            raise PumpTimeout(
                f"no answer from the pump; command id {cmd_id} may or may not have been "
                "carried out: check `pumpctl status` (last command) before repeating it")
        if msg.name == "fence_info" and msg["cmd_id"] == cmd_id:
            self.stats["fenced"] += 1
            if not msg["seen"]:
                return None
            self.stats["reconciled"] += 1
            return Result(cmd_id, msg["code"], msg["detail"], reconciled=True)
        why = ""
        if msg.name == "result":
            why = ": the pump answered " + PumpRefused(msg["code"], msg["detail"]).describe()
        raise PumpTimeout(
            f"no answer to command id {cmd_id}, and the fence after it failed{why}; the "
            "command may or may not have been carried out: check `pumpctl status` (last "
            "command) before repeating it")

    # ------------------------------------------------------------------ events
    def poll_events(self, timeout: float = 0.0, first: bool = False) -> list[Event]:
        """Read what arrives within ``timeout`` s (with ``first``: until the first event)
        and return the queued events (none if an ``on_event`` callback takes them)."""
        deadline = time.monotonic() + timeout
        while not (first and self.events_queue):
            msg = self._next_message(deadline)
            if msg is None:
                break
            if msg.is_event or msg.name == "event":
                self._dispatch_event(msg)
            else:
                self.stats["stale"] += 1
        out = list(self.events_queue)
        self.events_queue.clear()
        return out

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events as they arrive; stop after ``timeout`` s of silence (None: never)."""
        while True:
            while self.events_queue:
                yield self.events_queue.popleft()
            got = self.poll_events(0.25 if timeout is None else timeout, first=True)
            if not got and timeout is not None:
                return
            self.events_queue.extend(got)

    # ------------------------------------------------------------------ queries
    def hello(self) -> Hello:
        """HELLO: check version and schema, sync the auth counter (LNK-1, SEC-2).

        With a key HELLO is signed (LNK-6): the counter is taken only from the pump's signed
        answer. If the pump refuses the key (unsigned: it cannot sign for a key it lacks),
        an open HELLO still gives version and schema, and commands will be refused."""
        self.verified_key = None  # proved again by this HELLO's signed answer
        # 0x00 first: it ends whatever a person left half-typed on a shared port (issue 17)
        self._write(b"\0")
        try:
            try:
                msg = self.query("hello", expect="hello_info", signed=True)
            except PumpRefused as exc:
                if exc.code != spec.E_BAD_AUTH:
                    raise
                msg = None
            if msg is None:
                msg = self.query("hello", expect="hello_info")
        except codec.VersionError as exc:
            raise SchemaMismatch(str(exc)) from None
        except PumpTimeout:
            raise PumpTimeout(
                "no answer to HELLO: check the port, that the pump is running micropump "
                f"firmware, and that it speaks protocol version {spec.PROTOCOL_VERSION}"
            ) from None
        info = Hello.of(msg)
        ours = spec.schema_hash()
        if info.version != spec.PROTOCOL_VERSION or info.schema != ours:
            raise SchemaMismatch(
                f"schema mismatch: pump firmware {info.firmware} speaks protocol "
                f"v{info.version} schema 0x{info.schema:08X}, host tools speak "
                f"v{spec.PROTOCOL_VERSION} schema 0x{ours:08X}. Update whichever is older "
                "so both are built from the same protocol/spec.py: reinstall the host "
                "tools (pip install -U micropump) or reflash the pump firmware"
            )
        self.info = info
        if self.key is not None and msg.counter is not None:  # signed, checked in query
            self.verified_key = self.key
            if info.counter > COUNTER_MAX - COUNTER_RESERVE:
                raise PumpError(
                    f"the pump's authentication counter is nearly used up ({info.counter}): "
                    "pair the pump again with a new key (`pumpctl flash`)")
            self.counter = max(self.counter, info.counter)
        elif self.key is None:
            self.counter = max(self.counter, min(info.counter, COUNTER_MAX - COUNTER_RESERVE))
        return info

    def status(self, signed: bool = False) -> Status:
        """The pump's status; ``signed`` (with a key): only the pump's signed answer counts,
        for decisions that rest on it (LNK-6)."""
        return Status.of(self.query("status", expect="status_info", signed=signed))

    def get_profile(self, index: int) -> Profile:
        m = self.query("get_profile", {"index": index}, expect="profile_info")
        n = m["count"]
        rates = struct.unpack_from(f"<{n}H", m["rates"]) if n <= spec.SLOTS else ()
        name = m["name"].rstrip(b"\0").decode("ascii", "replace")
        return Profile(m["index"], name, _u8s(m["starts"], n), tuple(rates))

    def get_schedule(self) -> list[int]:
        return list(self.query("get_schedule", expect="schedule_info")["days"])

    def get_settings(self) -> dict[str, int]:
        raw = self.query("get_settings", expect="settings_info")["values"]
        values = struct.unpack_from(f"<{spec.SETTINGS_COUNT}i", raw)
        return {row[0]: v for row, v in zip(spec.SETTINGS, values, strict=True)}

    def get_history(self, first: int, count: int = spec.HISTORY_PAGE) -> list[HistoryRecord]:
        """Up to ``count`` records from sequence ``first`` (several pages if needed)."""
        out: list[HistoryRecord] = []
        while count > 0:
            n = min(count, spec.HISTORY_PAGE)
            m = self.query("get_history", {"first": first, "count": n}, expect="history_page")
            got = m["count"]
            recs = m["records"]
            for i in range(min(got, spec.HISTORY_PAGE)):
                seq, t, kind, arg, v1, v2, v3, _crc = struct.unpack_from(
                    "<IIBBiiiH", recs, 24 * i)
                out.append(HistoryRecord(seq, t, kind, arg, v1, v2, v3))
            if got < n:
                break
            count -= got
            first = out[-1].seq + 1 if out else first + got
        return out

    def get_totals(self, day: int) -> Totals:
        m = self.query("get_totals", {"day": day}, expect="totals_info")
        return Totals(m["day"], bool(m["valid"]), m["basal"], m["bolus"], m["prime"])

    def get_alarms(self) -> list[AlarmState]:
        m = self.query("get_alarms", expect="alarms_info")
        out = []
        for i, (name, prio) in enumerate(spec.ALARMS):
            out.append(AlarmState(i, name, prio, bool(m["active"] >> i & 1),
                                  bool(m["acked"] >> i & 1), m["levels"][i]))
        return out

    def get_link_stats(self) -> LinkStats:
        return LinkStats.of(self.query("get_link_stats", expect="link_stats"))

    def get_sensor_stats(self) -> SensorStats:
        return SensorStats.of(self.query("get_sensor_stats", expect="sensor_stats"))

    def get_cgm(self, since: int = 0, count: int = spec.CGM_PAGE,
                limit: int = spec.CGM_READINGS) -> list[Reading]:
        """Readings with UTC minute >= ``since``, oldest first: one page of up to ``count``
        per query, following pages until ``limit`` readings or the newest."""
        out: list[Reading] = []
        while len(out) < limit:
            n = min(count, spec.CGM_PAGE, limit - len(out))
            m = self.query("get_cgm", {"since": since, "count": n}, expect="cgm_page")
            got = min(m["count"], spec.CGM_PAGE)
            minutes = struct.unpack_from(f"<{got}I", m["minutes"])
            values = struct.unpack_from(f"<{got}H", m["values"])
            out += [Reading(mi, v) for mi, v in zip(minutes, values, strict=True)]
            if not m["more"] or not got:
                break
            since = minutes[-1] + 1
        return out

    def calc(self, carbs_g: int, bg_mg_dl: int = 0) -> Suggestion:
        """A bolus suggestion (THR-8) for carbohydrates and blood glucose (0: none). The
        pump delivers nothing: ``bolus(suggestion.total)`` after the user confirms."""
        m = self.query("calc", {"carbs": carbs_g, "bg": bg_mg_dl}, expect="calc_result")
        return Suggestion(**m.fields)

    def get_calc_schedule(self, kind: int) -> CalcSchedule | None:
        """A calculator schedule (spec.CALC_*), None if not programmed."""
        m = self.query("get_calc_schedule", {"kind": kind}, expect="calc_schedule_info")
        n = min(m["count"], spec.CALC_SEGMENTS)
        if not n:
            return None
        return CalcSchedule(m["kind"], _u8s(m["starts"], n),
                            struct.unpack_from(f"<{n}H", m["values"]),
                            struct.unpack_from(f"<{n}H", m["highs"]))

    # ------------------------------------------------------------------ commands
    def bolus(self, now_mu: int, ext_mu: int = 0, ext_minutes: int = 0,
              kind: int | None = None) -> Result:
        """Normal (now only), extended (ext only) or dual bolus; detail = bolus id."""
        if kind is None:
            kind = (spec.BOLUS_DUAL if now_mu and ext_mu else
                    spec.BOLUS_EXTENDED if ext_mu else spec.BOLUS_NORMAL)
        return self.command("bolus", {"kind": kind, "now": now_mu, "ext": ext_mu,
                                      "ext_minutes": ext_minutes})

    def cancel_bolus(self) -> Result:
        return self.command("cancel_bolus")

    def temp_basal(self, kind: int, value: int, minutes: int) -> Result:
        """kind TEMP_ABSOLUTE (value mU/h) or TEMP_PERCENT (value %)."""
        return self._command_of_kind("temp_basal", {"kind": kind, "value": value,
                                                    "minutes": minutes})

    def cancel_temp_basal(self) -> Result:
        return self.command("cancel_temp_basal")

    def suspend(self) -> Result:
        return self.command("suspend")

    def resume(self) -> Result:
        return self.command("resume")

    def set_profile(self, index: int, name: str | bytes, starts, rates) -> Result:
        """Profile ``index``: segments starting at 30-min slots ``starts`` with ``rates``
        in mU/h."""
        starts, rates = list(starts), list(rates)
        if len(starts) != len(rates) or not 1 <= len(starts) <= spec.SLOTS:
            raise ValueError(f"a profile has 1..{spec.SLOTS} segments, each with a rate")
        if any(not 0 <= s < spec.SLOTS for s in starts):
            raise ValueError(f"segment starts are 30-min slots 0..{spec.SLOTS - 1}")
        if any(not 0 <= r <= 0xFFFF for r in rates):
            raise ValueError("a rate does not fit the protocol (0..65535 mU/h)")
        name_b = name.encode("ascii") if isinstance(name, str) else bytes(name)
        if len(name_b) > spec.PROFILE_NAME_LEN:
            raise ValueError(f"profile name longer than {spec.PROFILE_NAME_LEN} characters")
        return self.command("set_profile", {
            "index": index, "name": name_b, "count": len(starts),
            "starts": bytes(starts), "rates": _pack_u16s(rates, 2 * spec.SLOTS)})

    def set_schedule(self, days) -> Result:
        days = list(days)
        if len(days) != 7:
            raise ValueError("a schedule has 7 profile indexes, Monday first")
        return self.command("set_schedule", {"days": bytes(days)})

    def set_setting(self, setting: str | int, value: int) -> Result:
        return self.command("set_setting", {"setting": setting_id(setting), "value": value})

    def set_time(self, utc: int | dt.datetime, offset_min: int = 0) -> Result:
        if isinstance(utc, dt.datetime):
            utc = pump_seconds(utc)
        return self.command("set_time", {"utc": utc, "offset": offset_min})

    def ack_alarm(self, alarm: str | int) -> Result:
        return self.command("ack_alarm", {"alarm": alarm_id(alarm)})

    def rewind(self) -> Result:
        return self.command("rewind")

    def fill(self, volume_mu: int) -> Result:
        return self.command("fill", {"volume": volume_mu})

    def prime(self, kind: int, amount_mu: int) -> Result:
        return self._command_of_kind("prime", {"kind": kind, "amount": amount_mu})

    def set_calc_schedule(self, kind: int, starts, values, highs=None) -> Result:
        """Program calculator schedule ``kind`` (spec.CALC_*): segments starting at 30-min
        slots ``starts`` (first 0) with ``values`` (carb ratio g/U x 10, sensitivity mg/dL
        per U, or target low) and, for CALC_TARGET, ``highs`` (target high)."""
        starts, values = list(starts), list(values)
        highs = list(highs) if highs is not None else [0] * len(values)
        n = len(starts)
        if not (len(values) == len(highs) == n) or not 1 <= n <= spec.CALC_SEGMENTS:
            raise ValueError(f"a calculator schedule has 1..{spec.CALC_SEGMENTS} segments, "
                             "each with a value")
        if any(not 0 <= s < spec.SLOTS for s in starts):
            raise ValueError(f"segment starts are 30-min slots 0..{spec.SLOTS - 1}")
        if any(not 0 <= v <= 0xFFFF for v in values + highs):
            raise ValueError("a value does not fit the protocol (0..65535)")
        return self._command_of_kind("set_calc_schedule", {
            "kind": kind, "count": n, "starts": bytes(starts).ljust(spec.CALC_SEGMENTS, b"\0"),
            "values": _pack_u16s(values, 2 * spec.CALC_SEGMENTS),
            "highs": _pack_u16s(highs, 2 * spec.CALC_SEGMENTS)})

    # emulator only (SEC-3): a real board refuses these with E_UNKNOWN_MESSAGE
    def emu_clock(self, op: int, ms: int = 0, max_wait: float = EMU_RUN_WAIT) -> Result:
        """Clock control (spec.CLK_*). CLK_ADVANCE and CLK_UNTIL_EVENT answer when done
        (detail: virtual ms run): the same command is re-sent every ``timeout`` s for up
        to ``max_wait`` s; the emulator answers it once, and after a power cut during the
        run the retry is answered as a duplicate (LNK-3). Events keep arriving meanwhile."""
        retries = None
        if op in (spec.CLK_ADVANCE, spec.CLK_UNTIL_EVENT):
            retries = max(self.retries, int(max_wait / max(self.timeout, 0.01)))
        return self.command("emu_clock", {"op": op, "ms": ms}, retries=retries)

    def emu_fault(self, fault: int, value: int = 0) -> Result:
        return self.command("emu_fault", {"fault": fault, "value": value})


def open_port(url: str, **kwargs):
    """serial.serial_for_url with a LinkError (not a traceback) when it fails."""
    import serial

    kwargs.setdefault("timeout", READ_SLICE)
    kwargs.setdefault("write_timeout", 2)
    # One client per device (flock): two would steal each other's answers. URLs
    # (socket://, rfc2217://) are shared or refused by the server at the other end.
    kwargs.setdefault("exclusive", "://" not in url)
    try:
        return serial.serial_for_url(url, **kwargs)
    except (serial.SerialException, OSError, ValueError) as exc:
        if "exclusively lock" in str(exc):
            raise PortBusy(f"port busy: another pumpctl (monitor?) or pump client holds "
                           f"{url}; stop it, or give this command in its place") from None
        raise LinkError(f"cannot open {url}: {exc}") from None


def connect(url: str, key: bytes | None = None, timeout: float = DEFAULT_TIMEOUT,
            retries: int = DEFAULT_RETRIES, on_event: Callable[[Event], None] | None = None,
            hello: bool = True, **serial_kwargs) -> Client:
    """Open ``url`` and say HELLO; raises LinkError / SchemaMismatch on failure."""
    port = open_port(url, **serial_kwargs)
    try:
        return Client(port, key=key, timeout=timeout, retries=retries, on_event=on_event,
                      hello=hello)
    except BaseException:
        port.close()
        raise


__all__ = [
    "AlarmState", "CalcSchedule", "Client", "Event", "Hello", "HistoryRecord", "KeyFileError",
    "LinkError", "LinkStats", "PortBusy", "Profile", "PumpError", "PumpRefused", "PumpTimeout",
    "Reading",
    "Result", "SchemaMismatch", "Status", "Suggestion", "Totals", "alarm_id", "connect",
    "from_pump_seconds", "glucose_text", "load_key", "mu_to_u",
    "mu_to_units", "open_port", "pump_seconds", "setting_from_text", "setting_id",
    "setting_text", "trend_arrow", "units_to_mu",
]
