"""Fixtures for the hardware-in-the-loop suite: capability fixtures, not boards.

    pytest hil_tests                          # one emulator per session / xdist worker
    pytest hil_tests --board qemu-arm         # the frozen ARM image under qemu-system-arm
    pytest hil_tests --port /dev/ttyACM0 --key pump.key          # a real board
    pytest hil_tests --port socket://bench:4001 --key pump.key   # a remote bench
    pytest hil_tests --port /dev/pts/7 --key state/key   # an emulator started elsewhere
    pytest --lg-env hil_tests/farm-env.yaml hil_tests   # a labgrid place (docs/farm.md)

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

import pytest

from host_tools import client as C
from protocol import spec as S
from tools.req_plugin import note_runtime

from . import kit
from .bringup import Bench, bring_up, check_target, wind_down
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


def labgrid_env(config) -> str | None:
    """The labgrid environment YAML of the run (--lg-env or LG_ENV), if labgrid's pytest
    plugin is loaded: the pump then comes from the acquired place (hil_tests/labgrid_pump.py)."""
    if not config.pluginmanager.has_plugin("labgrid"):
        return None
    return config.getoption("lg_env", None) or os.environ.get("LG_ENV") or None


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


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller checked already
        return
    env_file = labgrid_env(config)
    if env_file:
        if config.getoption("--port"):
            raise pytest.UsageError("micropump HIL: give either --port or --lg-env, not both")
        if _workers(config):
            raise pytest.UsageError(f"micropump HIL: one labgrid place cannot serve "
                                    f"{config.getoption('numprocesses')} xdist workers: run "
                                    "without -n; run several pytest sessions, one per place "
                                    "(python -m host_tools.farm run)")
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


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory):
    opt = request.config.getoption
    url, key_file = target(request.config)
    if labgrid_env(request.config):
        b = _labgrid_bench(request)
    elif url:
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
    if b.client is None:
        try:
            bring_up(b)
        except C.PumpError as exc:
            b.close()
            pytest.fail(f"cannot reach the pump at {b.url}: {exc}", pytrace=False)
    yield b
    if b.place is None:  # a labgrid place's driver winds its pump down itself
        wind_down(b)


def _labgrid_bench(request) -> Bench:
    """The pump of the acquired labgrid place, brought to `paired` by its strategy
    (hil_tests/labgrid_pump.py). A place that cannot be brought up ends the run with one
    line: every test would fail the same way."""
    from labgrid.strategy.common import StrategyError

    strategy = request.getfixturevalue("strategy")
    try:
        return strategy.bench
    except StrategyError as exc:
        pytest.exit(f"micropump HIL: labgrid place: {exc.msg}", returncode=3)
    except Exception as exc:  # labgrid's binding / resource errors
        pytest.exit(f"micropump HIL: labgrid place: {type(exc).__name__}: {exc}",
                    returncode=3)


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
    """Without --sensor-port: a simulated board of its own, of the session's kind, with
    the sensor link on a pty (SNS-4): the emulator's third pty, or the QEMU ARM board's
    UART1 (tools/arm/qemu.py --sensor). Its own, because a sensor test leaves readings
    behind, and signal loss (20 min without one) would be active in the other tests'
    known state."""
    board = bench.started_board
    if request.config.getoption("--sensor-port") or board not in bench.sim_boards:
        yield None
        return
    if board == S.BOARD_QEMU_ARM:
        from tools.arm.qemu import launch
    else:
        from host_tools.launch import launch

    state = tmp_path_factory.mktemp("sensor-board")
    log = open(state / "emulator.log", "wb")
    emu = launch(state, lockstep=True, seed=request.config.getoption("--emu-seed"),
                 console=False, stderr=log, sensor=True)
    b = Bench(emu.port, C.load_key(emu.key_path), emulator=emu, log=state / "emulator.log",
              log_file=log, started_board=board, has_sim=True)
    try:
        _connect_once_booted(b)
        yield b
    finally:
        b.close()


SENSOR_BOOT_S = 60.0  # a board started mid-run: qemu on a loaded machine boots slowly


def _connect_once_booted(b: Bench) -> None:
    """Connect to a simulated board that was just started: it answers HELLO once booted,
    which for the QEMU board on a busy machine can take longer than one HELLO's retries
    (a session's own board boots while nothing else runs; this one, mid-run, does not)."""
    deadline = time.monotonic() + SENSOR_BOOT_S
    while True:
        try:
            b.connect()
            return
        except C.PumpTimeout:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def sensor(request, bench, _sensor_bench):
    """A CGM transmitter on a pump's sensor link (kit.SensorTx), the pump paired with it and
    in the known state: --sensor-port with the session's pump (a board's sensor UART),
    else the sensor pty of a simulated board started for these tests (`sensor.pump`): the
    emulator, or the QEMU ARM board with --board qemu-arm."""
    url = request.config.getoption("--sensor-port")
    side = None  # the emulator's end of its sensor pty
    if url:
        pump = request.getfixturevalue("pump")
        sim = kit.Sim(pump) if bench.has_sim else None
    elif _sensor_bench is not None:
        pump = _sensor_bench.client
        sim = kit.Sim(pump)
        PumpStrategy(pump, sim).to_ready()
        url = _sensor_bench.emulator.sensor_port
        side = _sensor_bench.emulator.sensor_master
    else:
        pytest.skip("no sensor link: give --sensor-port (docs/boards.md)")
    tx = kit.SensorTx(url, pump, sim, side)
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
    env_file = labgrid_env(config)
    if env_file:
        return [f"micropump HIL target: labgrid place {os.environ.get('LG_PLACE', '?')} "
                f"({env_file})"]
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
