"""Fixtures for the hardware-in-the-loop suite: capability fixtures, not boards.

    pytest hil_tests                          # one emulator per session / xdist worker
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
"""

from __future__ import annotations

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
                    help="pump to test (any pyserial URL); default: start an emulator")
    group.addoption("--key", metavar="FILE", default=None,
                    help="pairing key file of the pump given with --port")
    group.addoption("--emu-pulse", type=int, default=50, choices=(10, 25, 50),
                    help="pulse size (mU) of the emulator the suite starts (default 50)")
    group.addoption("--emu-seed", type=int, default=1234,
                    help="seed of the emulator's random faults and tick jitter "
                         "(default 1234)")


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
        if self.log is not None and self.log.exists():
            tail = self.log.read_text(errors="replace")[-3000:]
            if tail.strip():
                parts.append("stderr:\n" + tail)
        return "\n".join(parts)


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory):
    opt = request.config.getoption
    url = opt("--port")
    if url:
        key = C.load_key(opt("--key")) if opt("--key") else None
        b = Bench(url, key)
    else:
        state = tmp_path_factory.mktemp("emulator")
        log_path = state / "emulator.log"
        log = open(log_path, "wb")  # for the whole session
        from host_tools.launch import launch

        emu = launch(state, lockstep=True, seed=opt("--emu-seed"), pulse_mu=opt("--emu-pulse"),
                     console=False, stderr=log)
        b = Bench(emu.port, C.load_key(emu.key_path), emulator=emu, log=log_path,
                  log_file=log)
    try:
        client = b.connect()
    except C.PumpError as exc:
        b.close()
        pytest.fail(f"cannot reach the pump at {b.url}: {exc}", pytrace=False)
    # Emulator-only messages (SEC-3) tell an emulator from a board: switching the clock to
    # lockstep is harmless to ask, and a board refuses it with E_UNKNOWN_MESSAGE.
    try:
        client.emu_clock(S.CLK_LOCKSTEP)
        b.has_sim = True
    except C.PumpRefused as exc:
        b.sim_error = (f"needs the emulator: the {b.board} board at {b.url} has no clock "
                       f"control or fault injection (SEC-3; {exc})")
    yield b
    b.close()


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
    port = config.getoption("--port")
    return [f"micropump HIL target: {port or 'emulator (one per worker, lockstep)'}"]


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
