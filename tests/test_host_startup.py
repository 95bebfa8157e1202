"""What the host tools import at start-up (issue 12): `pumpctl status` as a whole process
should cost about what `mpremote version` does (benchmarks/cli_bench.py measures it), so
construct (protocol/codec.py's tables), rich's progress bar, importlib.metadata and tomllib
are imported only on the paths that need them. These tests run a fresh interpreter and
look at sys.modules, so a top-level import that comes back fails here, not silently in a
benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import client as C
from protocol import spec

REPO = Path(__file__).resolve().parent.parent
WATCHED = ("construct", "rich", "rich.table", "rich.progress", "rich._emoji_codes",
           "importlib.metadata", "tomllib", "socket", "difflib")
LOADED = f"""
import json, sys
print(json.dumps({{m: m in sys.modules for m in {WATCHED!r}}}))
"""


def fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints a JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.req("LNK-2")
def test_importing_pumpctl_and_the_client_loads_none_of_the_slow_modules():
    loaded = fresh("import host_tools.pumpctl, host_tools.client\n" + LOADED)
    assert not any(loaded.values()), [m for m, yes in loaded.items() if yes]


@pytest.mark.req("LNK-2")
def test_the_codec_builds_its_construct_tables_on_first_use():
    loaded = fresh("""
import json, sys
from protocol import codec, fastcodec
before = "construct" in sys.modules
frame = fastcodec.encode_frame("status", 1)  # the fast path: no construct
fast = "construct" in sys.modules
assert codec.decode_frame(frame).name == "status" and codec.MESSAGES[1].name == "hello"
print(json.dumps({"before": before, "fast": fast, "after": "construct" in sys.modules}))
""")
    assert loaded == {"before": False, "fast": False, "after": True}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from host_tools.launch import launch

    with launch(tmp_path_factory.mktemp("emu"), seed=1, console=False) as emu:
        yield emu


def status_run(emu, *args: str) -> dict:
    """pumpctl status in a fresh interpreter: its output and what it imported."""
    argv = ["--port", emu.port, "--key", str(emu.key_path), *args, "status"]
    return fresh(f"""
import contextlib, io, json, sys
from host_tools import pumpctl
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = pumpctl.main({argv!r})
loaded = {{m: m in sys.modules for m in {WATCHED!r}}}
print(json.dumps({{"code": code, "out": out.getvalue(), "loaded": loaded}}))
""")


@pytest.mark.req("LNK-2", "HW-3")
def test_pumpctl_status_talks_without_construct_and_draws_without_the_progress_bar(emulator):
    run = status_run(emulator)
    assert run["code"] == 0
    assert "micropump status" in run["out"] and "unix board, firmware 1" in run["out"]
    loaded = run["loaded"]
    assert loaded["rich"] and loaded["rich.table"]  # the table is rich's
    assert not any(loaded[m] for m in ("construct", "rich.progress", "rich._emoji_codes",
                                       "importlib.metadata", "difflib")), loaded
    run = status_run(emulator, "--json")
    assert run["code"] == 0
    st = json.loads(run["out"])
    assert st["pump"]["board"] == spec.BOARD_UNIX
    with C.connect(emulator.port, key=C.load_key(emulator.key_path)) as pump:
        assert st["battery"] == pump.status().battery
    assert not any(run["loaded"][m] for m in ("construct", "rich", "importlib.metadata")), (
        run["loaded"])


@pytest.mark.req("LNK-2")
def test_pumpctl_prints_markup_but_no_emoji_codes(capsys):
    from host_tools import pumpctl

    out = pumpctl.Out(False)
    out.emit({}, text="profile :smile: [bold]at[/] 08:00:00")
    assert capsys.readouterr().out == "profile :smile: at 08:00:00\n"
