"""The HIL suite's session checks (hil_tests/conftest.py): the target is checked once
before any test runs and a bad one ends the run with one line; PUMPCTL_PORT/PUMPCTL_KEY
name the target too; an emulator given with --port gets its clock back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tty

import pytest

from host_tools import client as C
from host_tools.launch import launch
from protocol import spec as S
from tests.runtimes import REPO_ROOT

ONE_TEST = "hil_tests/test_alarms.py::test_ack_of_an_inactive_alarm_is_refused"


def run_hil(*args, env=None, timeout=180) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PUMPCTL_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--req-trace", "none", "-q", *map(str, args)], cwd=REPO_ROOT,
                          env=environ, capture_output=True, text=True, timeout=timeout)


def one_error(proc) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4, text
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def emulator(tmp_path):
    emu = launch(tmp_path / "emu", console=False)
    yield emu
    emu.close()


@pytest.mark.req("HW-3")
def test_bad_key_file_ends_the_run_with_one_line(tmp_path):
    bad = tmp_path / "pump.key"
    bad.write_text("not a key\n")
    line = one_error(run_hil("hil_tests", "--port", "/dev/null", "--key", bad))
    assert line.startswith(f"ERROR: micropump HIL: --key {bad}: ")
    assert "expected 32 raw bytes or 64 hex digits" in line


@pytest.mark.req("HW-3")
def test_silent_port_ends_the_run_with_one_line():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        path = os.ttyname(slave)
        line = one_error(run_hil("hil_tests", "--port", path))
    finally:
        os.close(master)
        os.close(slave)
    assert line == (f"ERROR: micropump HIL: cannot reach the pump at {path}: no answer to "
                    "HELLO: check the port, that the pump is running micropump firmware, and "
                    "that it speaks protocol version 1")


@pytest.mark.req("HW-3", "SEC-2")
def test_wrong_key_and_xdist_workers_end_the_run_with_one_line(emulator, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("11" * 32 + "\n")
    line = one_error(run_hil("hil_tests", "--port", emulator.port, "--key", wrong))
    assert line == (f"ERROR: micropump HIL: the pump at {emulator.port} does not accept the "
                    f"key in {wrong} (bad authentication: wrong pairing key, or host tools "
                    "built from another protocol/spec.py than the pump's firmware: compare "
                    "the schema hashes with `pumpctl status` and update the older side)")
    line = one_error(run_hil("hil_tests", "-n", "2", "--port", emulator.port, "--key",
                             emulator.key_path))
    assert line == (f"ERROR: micropump HIL: one pump at {emulator.port} cannot serve 2 xdist "
                    "workers: run without -n (or with -n 0)")


@pytest.mark.req("HW-3")
def test_environment_names_the_target_and_its_clock_is_put_back(emulator):
    with C.connect(emulator.port, key=C.load_key(emulator.key_path)) as pump:
        pump.set_time(C.pump_seconds(__import__("datetime").datetime(2031, 5, 4, 12)), 120)
        pump.emu_clock(S.CLK_SPEED, 2000)  # twice real time
        start = pump.status().utc
    began = time.monotonic()
    proc = run_hil(ONE_TEST, env={"PUMPCTL_PORT": emulator.port,
                                  "PUMPCTL_KEY": str(emulator.key_path)})
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    with C.connect(emulator.port, key=C.load_key(emulator.key_path)) as pump:
        st = pump.status()
        assert pump.emu_clock(S.CLK_LOCKSTEP).detail == 2000  # its speed, as found
    # the time it would show had the suite not run (the test moved it to a day in 2026)
    assert st.offset == 120 and st.time_set
    assert start <= st.utc <= start + 2 * took + 5

