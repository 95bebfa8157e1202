"""Fixtures for the hardware-in-the-loop suite: capability fixtures, not boards.

    pytest hil_tests                          # one emulator per session / xdist worker
    pytest hil_tests --board qemu-arm         # the frozen ARM image under qemu-system-arm
    pytest hil_tests --port /dev/ttyACM0 --key pump.key          # a real board
    pytest hil_tests --port socket://bench:4001 --key pump.key   # a remote bench
    pytest hil_tests --port /dev/pts/7 --key state/key   # an emulator started elsewhere

`pump`   a connected client, brought to the known state by hil_tests/strategy.py before
         each test (delivery reset, clock set, profiles and settings loaded, reservoir
         refilled and primed, alarms cleared, resumed).
`sim`    clock control and fault injection (kit.Sim). Emulator only (SEC-3): tests that
         ask for it are skipped on a real board.
`raw`    hand-built frames through the same link (kit.Raw).
`bench`  the session's target: url, key, board id, pulse size.

The target may also come from PUMPCTL_PORT / PUMPCTL_KEY (as for pumpctl). It is checked
once, before any test runs: a key file that is not a key, a port where no pump answers or a
key the pump does not accept ends the run with one line. One pump serves one session, so a
given port refuses xdist workers (-n). After a run against an emulator given with --port,
its clock is put back the way it was: its speed, and the time it would show had the suite
not moved it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from host_tools import client as C
from protocol import spec as S
from tools.req_plugin import note_runtime

from . import kit
from .strategy import PumpStrategy


def pytest_addoption(parser):
    group = parser.getgroup("micropump HIL")
    group.addoption("--port", metavar="URL", default=None,
                    help="pump to test (any pyserial URL); default $PUMPCTL_PORT, else start "
                         "an emulator")
    group.addoption("--key", metavar="FILE", default=None,
                    help="pairing key file of the pump given with --port (default "
                         "$PUMPCTL_KEY)")
    group.addoption("--board", default="emulator", choices=("emulator", "qemu-arm"),
                    help="board the suite starts when no --port is given: the emulator on "
                         "the unix port (default) or the QEMU ARM image "
                         "(build/qemu-arm/micropump.elf, `make firmware BOARD=qemu-arm`)")
    group.addoption("--emu-pulse", type=int, default=50, choices=(10, 25, 50),
                    help="pulse size (mU) of the emulator the suite starts (default 50)")
    group.addoption("--sensor-port", metavar="URL", default=None,
                    help="the board's sensor-link UART through a USB-serial adapter (SNS-4, "
                         "docs/boards.md); the emulator the suite starts has its own pty")
    group.addoption("--emu-seed", type=int, default=1234,
                    help="seed of the emulator's random faults and tick jitter "
                         "(default 1234)")


def _workers(config):
    return config.getoption("numprocesses", default=None) not in (None, 0, "0")


def target(config) -> tuple[str | None, str | None]:
    """(url, key file) of the pump under test: the options, else PUMPCTL_PORT/PUMPCTL_KEY
    (not under xdist, where `make test` wants an emulator per worker). (None, None): the
    suite starts its own emulator."""
    if config.getoption("--port"):
        return config.getoption("--port"), config.getoption("--key")
    if os.environ.get("PUMPCTL_PORT") and not _workers(config):
        return os.environ["PUMPCTL_PORT"], os.environ.get("PUMPCTL_KEY") or None
    return None, None


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


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller checked already
        return
    url, key_file = target(config)
    if url is None or config.getoption("--collect-only") or config.getoption("help"):
        return
    if _workers(config):
        raise pytest.UsageError(f"micropump HIL: one pump at {url} cannot serve "
                                f"{config.getoption('numprocesses')} xdist workers: run "
                                "without -n (or with -n 0)")
    why = check_target(url, key_file)
    if why:
        raise pytest.UsageError(f"micropump HIL: {why}")


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

    @property
    def sim_boards(self) -> tuple[int, ...]:
        """Boards with clock control and fault injection (SEC-3): the two emulators."""
        return (S.BOARD_UNIX, S.BOARD_QEMU_ARM)

    @property
    def board(self) -> str:
        b = self.info.board
        return S.BOARD_NAMES[b] if b < len(S.BOARD_NAMES) else f"board {b}"

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


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory):
    opt = request.config.getoption
    url, key_file = target(request.config)
    if url:
        key = C.load_key(key_file) if key_file else None
        b = Bench(url, key)
    else:
        state = tmp_path_factory.mktemp("emulator")
        log_path = state / "emulator.log"
        log = open(log_path, "wb")  # for the whole session
        if opt("--board") == "qemu-arm":
            from tools.arm.qemu import launch
        else:
            from host_tools.launch import launch

        try:
            emu = launch(state, lockstep=True, seed=opt("--emu-seed"),
                         pulse_mu=opt("--emu-pulse"), console=False, stderr=log)
        except FileNotFoundError as exc:
            log.close()
            pytest.fail(str(exc), pytrace=False)
        b = Bench(emu.port, C.load_key(emu.key_path), emulator=emu, log=log_path,
                  log_file=log, started_board=(S.BOARD_QEMU_ARM if opt("--board") == "qemu-arm"
                                               else S.BOARD_UNIX))
    try:
        client = b.connect()
    except C.PumpError as exc:
        b.close()
        pytest.fail(f"cannot reach the pump at {b.url}: {exc}", pytrace=False)
    # Emulator-only messages (SEC-3) tell an emulator from a board: switching the clock to
    # lockstep is harmless to ask, and a board refuses it with E_UNKNOWN_MESSAGE.
    before = client.status()
    started = time.monotonic()
    try:
        speed = client.emu_clock(S.CLK_LOCKSTEP).detail  # answers the previous speed
        b.has_sim = True
    except C.PumpRefused as exc:
        b.sim_error = (f"needs the emulator: the {b.board} board at {b.url} has no clock "
                       f"control or fault injection (SEC-3; {exc})")
    yield b
    if b.has_sim and b.emulator is None:  # someone else's emulator: leave its clock as found
        restore_clock(b, before, speed, time.monotonic() - started)
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


@pytest.fixture(scope="session")
def _sim(bench):
    return kit.Sim(bench.client) if bench.has_sim else None


@pytest.fixture
def sim(bench, _sim, pump):
    """Clock control and fault injection; skipped on real boards (SEC-3)."""
    if _sim is None:
        if bench.emulator is not None:  # the emulator this suite started must have them
            pytest.fail(bench.sim_error, pytrace=False)
        pytest.skip(bench.sim_error)
    return _sim


@pytest.fixture
def pump(bench, _sim):
    """A connected client at the known state (hil_tests/strategy.py)."""
    client = bench.client
    if bench.key is None:
        pytest.skip("state-changing commands need the pairing key: give --key FILE")
    PumpStrategy(client, _sim).to_ready()
    return client


@pytest.fixture(scope="session")
def _sensor_bench(request, bench, tmp_path_factory):
    """Without --sensor-port: an emulator of its own with the sensor link on a pty (SNS-4).
    Its own, because a sensor test leaves readings behind, and signal loss (20 min without
    one) would be active in the other tests' known state."""
    if request.config.getoption("--sensor-port") or bench.started_board != S.BOARD_UNIX:
        yield None
        return
    from host_tools.launch import launch

    state = tmp_path_factory.mktemp("sensor-emulator")
    log = open(state / "emulator.log", "wb")
    emu = launch(state, lockstep=True, seed=request.config.getoption("--emu-seed"),
                 console=False, stderr=log, sensor=True)
    b = Bench(emu.port, C.load_key(emu.key_path), emulator=emu, log=state / "emulator.log",
              log_file=log, started_board=S.BOARD_UNIX, has_sim=True)
    try:
        b.connect()
        yield b
    finally:
        b.close()


@pytest.fixture
def sensor(request, bench, _sensor_bench):
    """A CGM transmitter on a pump's sensor link (kit.SensorTx), the pump paired with it and
    in the known state: --sensor-port with the session's pump (a board's sensor UART),
    else the sensor pty of an emulator started for these tests (`sensor.pump`)."""
    url = request.config.getoption("--sensor-port")
    if url:
        pump = request.getfixturevalue("pump")
        sim = kit.Sim(pump) if bench.has_sim else None
    elif _sensor_bench is not None:
        pump = _sensor_bench.client
        sim = kit.Sim(pump)
        PumpStrategy(pump, sim).to_ready()
        url = _sensor_bench.emulator.sensor_port
    else:
        pytest.skip("no sensor link: give --sensor-port (docs/boards.md)")
    tx = kit.SensorTx(url, pump, sim)
    try:
        tx.pair()
        yield tx
        tx.settle()
    finally:
        tx.close()


@pytest.fixture
def raw(bench, pump):
    return kit.Raw(pump, bench.key)


@pytest.fixture
def pulse(bench) -> int:
    return bench.pulse


def pytest_runtest_call(item):
    """Where the firmware of this test runs (tools/trace.py): the emulator is the unix port;
    anything else given with --port is a board."""
    b = getattr(item, "funcargs", {}).get("bench")
    if isinstance(b, Bench) and b.info is not None:
        note_runtime("unix" if b.info.board == S.BOARD_UNIX else "board")


def pytest_report_header(config):
    port, _key = target(config)
    board = config.getoption("--board")
    lines = [f"micropump HIL target: {port or board + ' (one per worker, lockstep)'}"]
    if port is None and os.environ.get("PUMPCTL_PORT"):
        lines.append(f"micropump HIL: PUMPCTL_PORT={os.environ['PUMPCTL_PORT']} not used: "
                     "xdist workers start an emulator each (run without -n to test it)")
    return lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the emulator's stderr and telemetry."""
    outcome = yield
    report = outcome.get_result()
    bench = getattr(item, "funcargs", {}).get("bench")
    if report.failed and isinstance(bench, Bench):
        text = bench.diagnostics()
        if text:
            report.sections.append(("micropump emulator", text))
