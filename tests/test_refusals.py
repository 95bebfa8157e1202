"""Refusals in words (LNK-4, THR-6): the detail of a refused command is decoded for that
command, naming the argument or the limit with its value in units, in the same words on
pumpctl and on the bench console (protocol/refusals.py is the one source of both).

pumpctl runs in-process against the firmware on CPython behind socket:// (PumpPeer); the
console runs on a pump of its own set up the same way.
"""

from __future__ import annotations

import re

import pytest

from firmware.console import Console
from host_tools import pumpctl
from protocol import refusals
from protocol import spec as S
from tests.pumpkit import make_pump
from tests.test_client import KEY, PumpPeer


@pytest.fixture(scope="module")
def peer():
    p = PumpPeer(step_ms=500)
    yield p
    p.close()


@pytest.fixture
def ctl(peer, tmp_path, capsys):
    """ctl(*args) -> the one error line of a refused `pumpctl` command (exit 3)."""
    key = tmp_path / "pump.key"
    key.write_text(KEY.hex() + "\n")

    def run(*args, want=3):
        code = pumpctl.main(["--port", peer.url, "--key", str(key), *map(str, args)])
        out, err = capsys.readouterr()
        assert code == want, out + err
        if want == 0:
            return out
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        return err.strip()

    return run


def console_refusal(line: str) -> str:
    """The console's answer to `line` (confirmed with yes if it asks), on a fresh pump."""
    _rig, pump = make_pump()
    con = Console(pump)
    answer = con.handle_line(line)
    if answer.endswith("? type yes\r\n"):
        answer = con.handle_line("yes")
    return answer.strip()


def detail(line: str) -> str:
    """The words in the last parentheses of a refusal."""
    return re.search(r"\(([^()]*(?:\([^()]*\)[^()]*)*)\)$", line).group(1)


# (pumpctl arguments, console line, the refusal as pumpctl words it)
SAME_ON_BOTH = [
    (("bolus", "0.001"), "bolus 0.001",
     "bolus refused: out of range (amount: at least 0.05 U)"),
    (("bolus", "0", "--extended", "2", "--minutes", "20"), "bolus 0 ext 2 20",
     "bolus refused: out of range (duration: 30 .. 480 min)"),
    (("bolus", "1", "--extended", "0.01", "--minutes", "60"), "bolus 1 ext 0.01 60",
     "bolus refused: out of range (extended amount: at least 0.05 U)"),
    (("bolus", "30"), "bolus 30",
     "bolus refused: over limit (max_bolus 10 U per bolus)"),
    (("bolus", "1.025"), "bolus 1.025",
     "bolus refused: amount is not a whole number of pulses (whole pulses of 0.05 U)"),
    (("temp-basal", "--percent", "300", "--minutes", "30"), "temp pct 300 30",
     "temp basal refused: out of range (percent: 0 .. 250 %)"),
    (("temp-basal", "--rate", "36", "--minutes", "30"), "temp abs 36 30",
     "temp basal refused: out of range (rate: 0 .. 35 U/h)"),
    (("temp-basal", "--rate", "1", "--minutes", "20"), "temp abs 1 20",
     "temp basal refused: out of range (duration: 15 .. 1440 min in steps of 15)"),
    (("temp-basal", "--rate", "6", "--minutes", "30"), "temp abs 6 30",
     "temp basal refused: over limit (max_basal 5 U/h)"),
]


@pytest.mark.req("LNK-4", "THR-6")
@pytest.mark.parametrize(("args", "line", "message"), SAME_ON_BOTH,
                         ids=[c[1] for c in SAME_ON_BOTH])
def test_refusal_names_the_argument_or_limit_same_words_as_the_console(ctl, args, line,
                                                                         message):
    got = ctl(*args)
    assert got == "pumpctl: error: " + message
    on_console = console_refusal(line)
    assert on_console.startswith("refused: ")
    assert detail(on_console) == detail(got)


@pytest.mark.req("LNK-4", "THR-12")
def test_reservoir_refusals_name_volume_and_amount(ctl):
    ctl("suspend", want=0)
    ctl("reservoir", "rewind", want=0)
    assert ctl("reservoir", "fill", "5") == (
        "pumpctl: error: fill refused: out of range (volume: 10 .. 400 U)")
    ctl("reservoir", "fill", "200", want=0)
    assert ctl("reservoir", "prime", "31") == (
        "pumpctl: error: prime refused: out of range (amount: one pulse .. 30 U)")
    assert ctl("reservoir", "prime", "3.5", "--cannula") == (
        "pumpctl: error: prime refused: out of range (amount: one pulse .. 3 U)")
    ctl("reservoir", "prime", "0.5", want=0)
    ctl("resume", want=0)


@pytest.mark.req("LNK-4", "THR-6")
def test_over_limit_names_the_window_and_the_value_read_back(ctl):
    ctl("settings", "set", "max_tdd", "1.5", want=0)
    try:
        assert ctl("bolus", "2") == (
            "pumpctl: error: bolus refused: over limit (max_tdd 1.5 U in any 24 h)")
    finally:
        ctl("settings", "set", "max_tdd", "80", want=0)


@pytest.mark.req("LNK-4")
def test_every_argument_refusal_of_the_firmware_has_words():
    """Each (request, code, detail) the firmware can answer with gets words of its own,
    never the bare "argument N" or a setting's name for an argument index."""
    cases = {
        ("bolus", S.E_BAD_ARG): (0, 1, 2), ("bolus", S.E_OUT_OF_RANGE): (1, 2, 3),
        ("temp_basal", S.E_BAD_ARG): (0,), ("temp_basal", S.E_OUT_OF_RANGE): (1, 2),
        ("fill", S.E_OUT_OF_RANGE): (0,), ("prime", S.E_BAD_ARG): (0,),
        ("prime", S.E_OUT_OF_RANGE): (1,), ("set_time", S.E_OUT_OF_RANGE): (0, 1),
        ("set_profile", S.E_BAD_ARG): (0, 1, 2), ("set_profile", S.E_OUT_OF_RANGE): (3,),
        ("set_schedule", S.E_BAD_ARG): tuple(range(7)), ("set_setting", S.E_BAD_ARG): (0,),
        ("set_calc_schedule", S.E_BAD_ARG): (0, 1, 3), ("calc", S.E_OUT_OF_RANGE): (0, 1),
        ("get_profile", S.E_BAD_ARG): (0,), ("get_calc_schedule", S.E_BAD_ARG): (0,),
    }
    setting_names = {row[0] for row in S.SETTINGS}
    for (request, code), details in cases.items():
        for d in details:
            words = refusals.explain(request, code, d, kind=0)
            assert words and not words.startswith("argument"), (request, code, d)
            assert words.split(":")[0] not in setting_names, (request, code, d, words)
    assert refusals.explain("set_calc_schedule", S.E_OUT_OF_RANGE, 2, S.CALC_CARB_RATIO) == (
        "carb_ratio: 1 .. 150 g/U")
    assert refusals.explain("set_calc_schedule", S.E_OUT_OF_RANGE, 3, S.CALC_TARGET) == (
        "target high: target low .. 200 mg/dL")
    assert refusals.explain("calc", S.E_OUT_OF_RANGE, 1) == "glucose: 20 .. 600 mg/dL"
    assert refusals.explain("set_setting", S.E_OUT_OF_RANGE, S.SET_DIA) == "dia: 120 .. 480 min"
    assert refusals.explain("set_schedule", S.E_BAD_ARG, 5) == (
        "Saturday: a programmed profile 0 .. 3")
    assert refusals.units_text(0) == "0" and refusals.units_text(25) == "0.025"
    assert refusals.units_text(-1500) == "-1.5" and refusals.units_text(400000) == "400"


@pytest.mark.req("LNK-4", "HIS-2")
def test_a_storage_failure_says_what_was_not_saved():
    assert refusals.text("set_setting", S.E_STORAGE, S.SET_DIA) == (
        "storage write failed (dia not saved)")
    assert refusals.text("bolus", S.E_STORAGE, 7) == (
        "storage write failed (bolus #7 not started)")
    assert refusals.text("fill", S.E_STORAGE, 0) == "storage write failed"
    assert refusals.text("suspend", S.E_SUSPENDED, S.STOP_USER) == (
        "delivery suspended (stopped: user)")
