"""Bring-up of the pump under test: one place for the steps that the pytest fixtures
(hil_tests/conftest.py) and the labgrid driver and strategy (hil_tests/labgrid_pump.py) both
take.

    check_target(url, key_file)   why the pump at url cannot be tested (one line) or None
    bring_up(bench)               connect, and find out whether the pump is an emulator
                                  (clock control and fault injection, SEC-3): its clock is
                                  put in lockstep, what it was is remembered
    wind_down(bench)              put the clock of an emulator the suite did not start back
                                  the way it was, close the link (and the emulator it started)

Then hil_tests/strategy.py brings the pump to the known state before each test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from host_tools import client as C
from protocol import refusals
from protocol import spec as S

# An authenticated command with no effect on therapy: acknowledging an alarm id that does
# not exist is refused after the authentication check, so its answer tells a good key
# (E_UNKNOWN_ALARM) from a wrong one (E_BAD_AUTH).
KEY_CHECK_ALARM = S.ALARM_MAX - 1


def check_target(url: str, key_file: str | None) -> str | None:
    """Why the pump at `url` cannot be tested with `key_file` (one line), or None."""
    try:
        key = C.load_key(key_file) if key_file else None
    except C.KeyFileError as exc:
        return f"--key {key_file}: {exc}"
    try:
        with C.connect(url, key=key, timeout=1.0, retries=2) as client:
            if key is None:
                return None
            try:
                client.command("ack_alarm", {"alarm": KEY_CHECK_ALARM})
            except C.PumpRefused as exc:
                if exc.code == S.E_BAD_AUTH:
                    return (f"the pump at {url} does not accept the key in {key_file} "
                            f"({exc.name}: {exc.describe().partition('(')[2].rstrip(')')})")
                if exc.code != S.E_UNKNOWN_ALARM:
                    return f"the pump at {url} refused the key check: {exc}"
    except C.PumpError as exc:
        return f"cannot reach the pump at {url}: {exc}"
    return None



@dataclass
class Bench:
    """The session's target: one pump per test session (per xdist worker)."""

    url: str
    key: bytes | None
    emulator: object | None = None  # host_tools.launch.Emulator when the suite started it
    client: C.Client | None = None
    info: C.Hello | None = None
    has_sim: bool = False  # the pump accepts clock control and fault injection
    sim_error: str | None = None  # why not
    log: Path | None = None  # the emulator's stderr
    log_file: object | None = None
    started_board: int | None = None  # board id of the emulator the suite started
    place: str | None = None  # labgrid target the pump came from (its driver winds it down)
    clock_before: C.Status | None = None  # the pump's status before the suite moved its clock
    speed_before: int = 0  # its clock speed then (per mille of real time)
    started: float = 0.0  # time.monotonic() of the bring-up

    @property
    def sim_boards(self) -> tuple[int, ...]:
        """Boards with clock control and fault injection (SEC-3): the two emulators."""
        return (S.BOARD_UNIX, S.BOARD_QEMU_ARM)

    @property
    def board(self) -> str:
        b = self.info.board
        return refusals.BOARD_NAMES[b] if b < len(refusals.BOARD_NAMES) else f"board {b}"

    @property
    def pulse(self) -> int:
        return self.info.pulse_mu

    def connect(self) -> C.Client:
        self.client = C.connect(self.url, key=self.key, timeout=1.0, retries=3)
        self.info = self.client.info
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.emulator is not None:
            self.emulator.close()
        if self.log_file is not None:
            self.log_file.close()

    def diagnostics(self) -> str:
        """The emulator's stderr (tail) and latest telemetry, for a failing test's report."""
        parts = []
        if self.emulator is not None:
            parts.append(f"restarts: {getattr(self.emulator, 'restarts', '?')}, "
                         f"telemetry: {getattr(self.emulator, 'telemetry', {})}")
        uart_text = getattr(self.emulator, "uart_text", None)
        if uart_text is not None and uart_text().strip():  # the QEMU board's UART text
            parts.append("uart text:\n" + uart_text()[-3000:])
        if self.log is not None and self.log.exists():
            tail = self.log.read_text(errors="replace")[-3000:]
            if tail.strip():
                parts.append("stderr:\n" + tail)
        return "\n".join(parts)


def bring_up(b: Bench) -> C.Client:
    """Connect to the pump of `b` and find out whether it is an emulator: switching its
    clock to lockstep is harmless to ask, and a board refuses it with E_UNKNOWN_MESSAGE.
    C.PumpError if the pump does not answer."""
    client = b.connect()
    b.clock_before = client.status()
    b.started = time.monotonic()
    try:
        b.speed_before = client.emu_clock(S.CLK_LOCKSTEP).detail  # answers the previous speed
        b.has_sim = True
    except C.PumpRefused as exc:
        b.sim_error = (f"needs the emulator: the {b.board} board at {b.url} has no clock "
                       f"control or fault injection (SEC-3; {exc})")
    return client


def wind_down(b: Bench) -> None:
    """The end of a session: an emulator someone else started gets its clock back as
    found; the link (and an emulator the suite started) is closed."""
    if b.has_sim and b.emulator is None and b.client is not None:
        restore_clock(b, b.clock_before, b.speed_before, time.monotonic() - b.started)
    b.close()


def restore_clock(b: Bench, before: C.Status, speed: int, elapsed_s: float) -> None:
    """Put an emulator's clock back: the time it would show had the suite not run (its
    speed, per mille of real time, times the time passed), and that speed."""
    client = b.client
    try:
        client.pending.clear()
        if before.time_set and b.key is not None:
            client.set_time(before.utc + int(elapsed_s * speed / 1000), before.offset)
        if speed == 1000:
            client.emu_clock(S.CLK_REALTIME)
        elif speed:
            client.emu_clock(S.CLK_SPEED, speed)
    except C.PumpError as exc:
        print(f"micropump HIL: could not put the clock of {b.url} back: {exc}")
