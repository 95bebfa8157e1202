"""The labgrid driver and strategy of hil_tests/labgrid_pump.py without a farm (issue 18).

A local labgrid environment (no coordinator): the emulator's pty as a RawSerialPort and its
key as a MicropumpKey. Through labgrid's pytest plugin (`--lg-env`) a HIL file passes with
the same test bodies (`sim` tests included: the target is an emulator); a wrong key, a
target without a key and xdist workers each end the run with one line. The farm itself
(coordinator, exporter, ser2net, parallel runs) is tests/test_farm.py.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("labgrid", reason="labgrid is not installed (pip install -e '.[farm]')")

from host_tools.launch import launch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    state = tmp_path_factory.mktemp("lg-emulator")
    with launch(state, lockstep=True, seed=5, console=False) as emu:
        yield emu


def env_file(tmp_path: Path, port: str, key: Path | None) -> Path:
    key_lines = f"      MicropumpKey:\n        path: {key}\n" if key else ""
    path = tmp_path / "env.yaml"
    path.write_text(
        "targets:\n"
        "  main:\n"
        "    resources:\n"
        f"      RawSerialPort:\n        port: {port}\n"
        f"{key_lines}"
        "    drivers:\n"
        "      MicropumpDriver: {}\n"
        "      MicropumpStrategy: {}\n"
        "imports:\n"
        "  - hil_tests.labgrid_pump\n")
    return path


def lg_pytest(env: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--lg-env", str(env), "-p", "no:cacheprovider",
         *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def hil_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "micropump HIL" in ln]


def test_the_hil_suite_runs_through_labgrids_plugin(emulator, tmp_path):
    env = env_file(tmp_path, emulator.port, emulator.key_path.resolve())
    res = lg_pytest(env, "hil_tests/test_suspend.py", "-p", "no:xdist", "-v")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "3 passed" in out, out
    assert "micropump HIL target: labgrid place" in out, out
    # the bring-up went through the strategy: labgrid's step log names its transitions
    res = lg_pytest(env, "hil_tests/test_suspend.py::test_suspend_reminder_repeats",
                    "-p", "no:xdist", "-q", "--log-cli-level=INFO")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "MicropumpStrategy" in out and "paired" in out, out


def test_a_wrong_key_ends_the_run_with_one_line(emulator, tmp_path):
    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(32) + "\n")
    env = env_file(tmp_path, emulator.port, other)
    res = lg_pytest(env, "hil_tests/test_suspend.py", "-p", "no:xdist", "-q")
    out = res.stdout + res.stderr
    assert res.returncode == 3, out
    lines = hil_lines(out)
    assert len(lines) == 1, out
    assert f"does not accept the key in {other}" in lines[0], lines
    assert "passed" not in out.splitlines()[-1]


def test_a_place_without_a_key_and_xdist_workers_are_refused(emulator, tmp_path):
    env = env_file(tmp_path, emulator.port, None)
    res = lg_pytest(env, "hil_tests/test_suspend.py", "-p", "no:xdist", "-q")
    out = res.stdout + res.stderr
    assert res.returncode == 3, out
    lines = hil_lines(out)
    assert len(lines) == 1 and "the place has no MicropumpKey" in lines[0], out

    env = env_file(tmp_path, emulator.port, emulator.key_path.resolve())
    res = lg_pytest(env, "hil_tests/test_suspend.py", "-n", "2", "-q")
    out = res.stdout + res.stderr
    assert res.returncode == 4, out  # pytest's usage error
    assert "one labgrid place cannot serve 2 xdist workers" in out, out
