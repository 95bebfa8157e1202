"""Rarely used handlers imported at their first use (issue 12, heap after boot from .mpy).

firmware/link_cold.py (with pump_cold.py, settings_cold.py, calc.py) is not imported at
boot; firmware/pump_boot.py and link_boot.py run once and are dropped; cgm_sensor.py only
comes with a sensor link. An import the heap cannot hold must give a clear error frame
(E_NO_MEMORY, detail: the message id) and change nothing, and the next such message is
answered normally.
"""

import builtins
import json
from pathlib import Path

import pytest

from firmware import link as L
from firmware import link_cold
from protocol import refusals
from protocol import spec as S
from tests import mp_link as M
from tests.runtimes import run_unix
from tests.test_link import ID, Bench

COLD_MODULES = ("firmware.link_cold", "firmware.pump_cold", "firmware.settings_cold",
                "firmware.calc", "firmware.cgm_sensor", "firmware.pump_boot",
                "firmware.link_boot")


@pytest.mark.req("LNK-1")
def test_every_message_the_host_may_send_has_one_handler():
    for mid, (name, _fields) in S.MESSAGES.items():
        if mid >= 0x80:
            continue
        if S.EMU_FIRST <= mid <= S.EMU_LAST:
            assert callable(link_cold.emulator)
            continue
        here = hasattr(L.Link, "_on_" + name)
        cold = callable(getattr(link_cold, name, None))
        assert here != cold, name  # exactly one place
        assert here == (name in L.HOT), name
    assert set(L.HOT) <= {name for name, _ in S.MESSAGES.values()}


# Runs on the unix port: a fresh interpreter, so nothing was imported before the boot.
GUEST = """
import sys
rig, pump, link = bench(ready=False)
at_boot = [m for m in COLD if m in sys.modules]
q = wire.encode_frame(ID["get_settings"], 7, 0, [])
rig.serial.send(q)
micropython.heap_lock()
try:
    link.poll()
finally:
    micropython.heap_unlock()
locked = [[f[0], list(f[3])] for f in frames(rig.serial.take())]
imported_locked = "firmware.link_cold" in sys.modules
after = [[f[0], f[3][1] if f[0] == 0x80 else 0] for f in xfer(rig, link, q)]
print("RESULT " + json.dumps({"at_boot": at_boot, "locked": locked, "faults": link.faults,
                              "imported_locked": imported_locked, "after": after,
                              "imported": [m for m in COLD if m in sys.modules]}))
"""


@pytest.mark.req("LNK-4", "HW-3")
def test_a_cold_handler_the_heap_cannot_import_answers_e_no_memory_on_the_unix_port():
    src = (Path(M.__file__).read_text() + "\nCOLD = " + repr(COLD_MODULES) + "\n" + GUEST)
    out = run_unix(src)
    got = json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert got["at_boot"] == []  # none imported by the boot (the boot's own ones dropped)
    # heap locked: the import fails, the answer is RESULT(0, E_NO_MEMORY, get_settings)
    assert got["locked"] == [[ID["result"], [0, S.E_NO_MEMORY, ID["get_settings"]]]]
    assert got["faults"] == 0 and got["imported_locked"] is False
    # the heap free again: the same query is answered, and the cold modules stay imported
    assert got["after"] == [[ID["settings_info"], 0]]
    assert set(got["imported"]) == {"firmware.link_cold", "firmware.pump_cold",
                                    "firmware.settings_cold", "firmware.calc"}


@pytest.fixture
def cold_import_fails(monkeypatch):
    """`import firmware.link_cold` raises MemoryError (a full heap) until undone."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "firmware.link_cold":
            raise MemoryError("memory allocation failed")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    return monkeypatch


@pytest.mark.req("LNK-3", "LNK-4")
def test_a_command_whose_handler_cannot_be_imported_changes_nothing(cold_import_fails):
    b = Bench(bolus=False)
    before = M.snapshot(b.pump, b.link)[1:]  # settings, history, alarms, events, link
    assert b.command("set_setting", 41, S.SET_MAX_BOLUS, 5000) == (
        41, S.E_NO_MEMORY, ID["set_setting"])
    assert b.pump.setting(S.SET_MAX_BOLUS) == 10000
    now = M.snapshot(b.pump, b.link)[1:]
    assert now[0] == before[0]  # the settings
    assert b.link.faults == 0
    # the refusal is the command's result, as any refusal: a retry of the same id gets it
    assert b.command("set_setting", 41, S.SET_MAX_BOLUS, 5000)[1] == S.E_NO_MEMORY
    cold_import_fails.undo()
    assert b.command("set_setting", 42, S.SET_MAX_BOLUS, 5000) == (42, S.OK, 0)
    assert b.pump.setting(S.SET_MAX_BOLUS) == 5000


@pytest.mark.req("LNK-4")
def test_a_query_whose_handler_cannot_be_imported_gets_a_clear_refusal(cold_import_fails):
    b = Bench(bolus=False)
    got = b.query("get_history", 1, 8)
    assert got.id == ID["result"]
    assert (got["cmd_id"], got["code"], got["detail"]) == (
        0, S.E_NO_MEMORY, ID["get_history"])
    assert refusals.text("get_history", S.E_NO_MEMORY, ID["get_history"]) == (
        "not enough memory for this request now: nothing was done, try again "
        "(message 0x06)")
    cold_import_fails.undo()
    assert b.query("get_history", 1, 8).id == ID["history_page"]


@pytest.mark.req("HW-3")
def test_the_tick_and_the_hot_requests_never_import():
    """A booted pump that ticks, answers status, hello and a bolus imports no cold
    module (CPython: the import statement is watched)."""
    seen = []
    real = builtins.__import__

    def watch(name, *args, **kwargs):
        if name in COLD_MODULES:
            seen.append(name)
        return real(name, *args, **kwargs)

    b = Bench(bolus=False)
    builtins.__import__ = watch
    try:
        b.ticks(120)
        assert b.query("status").id == ID["status_info"]
        assert b.query("hello").id == ID["hello_info"]
        assert b.command("bolus", 7, S.BOLUS_NORMAL, 1000, 0, 0)[1] == S.OK
        b.ticks(60)
    finally:
        builtins.__import__ = real
    assert seen == []
