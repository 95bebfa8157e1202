"""The HIL suite on a labgrid farm of emulators (issue 18; host_tools/farm.py).

One farm (coordinator + exporter + 2 emulators behind ser2net, all on 127.0.0.1, bounded by
--seconds) serves the whole module:

- two runs of a small HIL subset in parallel acquire different places and both pass; a
  third, started while both places are taken, says that it waits, then runs and passes;
- a place whose emulator dies during a run is reported as broken, taken out of the
  rotation and released;
- start-up failures (no coordinator, a place that does not exist, a busy port) give one
  line each.

Marked `farm` and skipped unless MICROPUMP_FARM=1: `make test-farm` runs it (without xdist:
it starts its own parallel runs), and .ci/run calls that after `make test`. It needs labgrid
(the `farm` extra) and Debian's ser2net (tools/farm-packages.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("labgrid", reason="labgrid is not installed (pip install -e '.[farm]')")

pytestmark = [
    pytest.mark.farm,
    pytest.mark.skipif(os.environ.get("MICROPUMP_FARM") != "1",
                       reason="~2 min: run by `make test-farm` (MICROPUMP_FARM=1), which "
                              ".ci/run calls after `make test`"),
    pytest.mark.skipif(not (shutil.which("ser2net") or os.path.exists("/usr/sbin/ser2net")),
                       reason="ser2net is not installed (apt-get install ser2net)"),
]

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ["hil_tests/test_suspend.py", "-q", "-p", "no:cacheprovider"]
FARM_SECONDS = 600  # the farm stops by itself after this, whatever the test does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def farm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "host_tools.farm", *args]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(farm_cmd(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def farm_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("farm: ")]


def acquired_place(out: str) -> str:
    (line,) = [ln for ln in farm_lines(out) if ln.startswith("farm: acquired ")]
    return line.rpartition(" ")[2]


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("farm")
    port = free_port()
    log = open(directory / "up.log", "w")
    proc = subprocess.Popen(
        farm_cmd("up", "--places", "2", "--seconds", str(FARM_SECONDS), "--port", str(port),
                 "--dir", str(directory / "farm")),
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "farm: up:" not in (directory / "up.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("farm did not come up:\n" + (directory / "up.log").read_text())
        time.sleep(0.3)
    yield {"address": f"127.0.0.1:{port}", "port": port, "dir": directory / "farm",
           "log": directory / "up.log", "proc": proc}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    log.close()
    text = (directory / "up.log").read_text()
    assert "farm: stopped" in text, text


def test_parallel_runs_get_their_own_places_and_a_third_waits(farm):
    address = farm["address"]

    def start():
        return subprocess.Popen(farm_cmd("run", "--coordinator", address, "--wait-seconds",
                                         "150", "--", *SUBSET),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    first, second = start(), start()
    # the third starts once both places are taken
    deadline = time.monotonic() + 60
    while True:
        who = subprocess.run([str(Path(sys.executable).parent / "labgrid-client"), "-x",
                              address, "who"], capture_output=True, text=True).stdout
        if who.count("pump-") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert who.count("pump-") == 2, who
    third = start()
    outs = [p.communicate(timeout=200)[0] for p in (first, second, third)]
    for p, out in zip((first, second, third), outs, strict=True):
        assert p.returncode == 0, out
        assert "3 passed" in out, out
    places = [acquired_place(out) for out in outs]
    assert sorted(places[:2]) == ["pump-1", "pump-2"], places
    waiting = [ln for ln in farm_lines(outs[2]) if "waiting for a free place" in ln]
    assert len(waiting) == 1, outs[2]
    assert "pump-1" in waiting[0] and "pump-2" in waiting[0]  # says who holds them
    assert places[2] in ("pump-1", "pump-2")
    for out, place in zip(outs, places, strict=True):
        assert f"farm: released {place} (pytest status 0" in out, out


def test_a_place_whose_emulator_dies_is_reported_and_released(farm):
    address = farm["address"]
    proc = subprocess.Popen(farm_cmd("run", "--coordinator", address, "--place", "pump-2",
                                     "--", *SUBSET),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    # kill the emulator once the place is acquired and the suite is under way
    emulator_pid = json.loads((farm["dir"] / "farm.json").read_text())[
        "places"]["pump-2"]["emulator_pid"]
    first = proc.stdout.readline()
    assert first.strip() == "farm: acquired pump-2", first
    time.sleep(4)
    os.killpg(emulator_pid, signal.SIGKILL)
    out = first + proc.communicate(timeout=120)[0]
    assert proc.returncode not in (0, None), out
    lines = farm_lines(out)
    assert any(ln.startswith("farm: place pump-2 is broken: its pump stopped answering")
               for ln in lines), out
    assert any(ln.startswith("farm: released pump-2 (pytest status") for ln in lines), out
    show = subprocess.run([str(Path(sys.executable).parent / "labgrid-client"), "-x", address,
                           "-p", "pump-2", "show"], capture_output=True, text=True).stdout
    assert "acquired: None" in show, show
    assert "broken=yes" in show and "board=emulator" not in show, show
    # the farm saw it too
    deadline = time.monotonic() + 10
    while "emulator pump-2 exited" not in farm["log"].read_text():
        assert time.monotonic() < deadline, farm["log"].read_text()
        time.sleep(0.3)
    # the broken place no longer takes reservations: a run asking for any place gets pump-1
    ok = run("run", "--coordinator", address, "--wait-seconds", "60", "--", *SUBSET,
             timeout=150)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert acquired_place(ok.stdout) == "pump-1"


def test_startup_failures_give_one_line_each(farm):
    nobody = free_port()
    res = run("run", "--coordinator", f"127.0.0.1:{nobody}", "--", *SUBSET)
    assert res.returncode == 2
    assert (res.stdout + res.stderr).strip().splitlines() == [
        f"farm: no labgrid coordinator at 127.0.0.1:{nobody} (start one: make farm)"]

    res = run("run", "--coordinator", farm["address"], "--place", "pump-9", "--", *SUBSET)
    assert res.returncode == 2
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("farm: ") and "pump-9" in lines[0], lines

    res = run("up", "--places", "1", "--seconds", "5", "--port", str(farm["port"]),
              "--dir", str(farm["dir"].parent / "second"))
    assert res.returncode == 1
    assert (res.stdout + res.stderr).strip().splitlines() == [
        f"farm: port {farm['port']} on 127.0.0.1 is busy (another farm or coordinator?): "
        "give --port"]
