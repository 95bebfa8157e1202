"""The sensor link and the bolus calculator over the protocol (SNS-1, SNS-2, SNS-3, THR-8):
firmware link dispatch, host client methods and pumpctl commands (cgm, wizard, calc),
against the fake pump peer (firmware Pump + Link on CPython behind socket://)."""

from __future__ import annotations

import builtins
import json
import re

import pytest

from boards.fakes import Radio
from host_tools import client as C
from host_tools import pumpctl
from protocol import spec
from tests.test_client import KEY, PumpPeer


@pytest.fixture
def peer():
    p = PumpPeer(step_ms=500)
    with p.lock:
        p.radio = Radio(p.rig.clock)
        p.pump.cgm.plug(p.radio)
    yield p
    p.close()


@pytest.fixture
def pump(peer):
    c = peer.connect()
    yield c
    c.close()


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "pump.key"
    path.write_text(KEY.hex() + "\n")
    return path


@pytest.fixture
def ctl(peer, keyfile, capsys):
    def run(*args):
        code = pumpctl.main(["--port", peer.url, "--key", str(keyfile)] + [str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run


def readings(peer, values, every_s=300):
    """One reading per tick of `every_s` seconds, as the peer's sensor link receives them.
    Returns the UTC minute of the first."""
    with peer.lock:
        first = None
        for v in values:
            peer.rig.clock.advance(every_s * 1000)
            peer.radio.push(v)
            peer.pump.tick()
            if first is None:
                first = peer.pump.cgm.reading(peer.pump.cgm.count - 1)[0]
        return first


def setup_calc(peer):
    with peer.connect() as pump:
        program_calc(pump)


def status(peer):
    with peer.connect() as pump:
        return pump.status()


def program_calc(pump):
    pump.set_calc_schedule(spec.CALC_CARB_RATIO, [0], [100])  # 10 g/U
    pump.set_calc_schedule(spec.CALC_SENSITIVITY, [0], [50])
    pump.set_calc_schedule(spec.CALC_TARGET, [0], [100], [120])


# ------------------------------------------------------------------------ client
@pytest.mark.req("SNS-1", "LNK-2")
def test_readings_page_by_page_from_a_minute(peer, pump):
    values = [100 + 3 * i for i in range(30)]
    m0 = readings(peer, values)
    got = pump.get_cgm(0)  # two pages of 24 + 6
    assert [(r.minute, r.mg_dl) for r in got] == [(m0 + 5 * i, v) for i, v in enumerate(values)]
    got = pump.get_cgm(m0 + 5 * 10 - 2)  # from a minute between two readings
    assert [r.mg_dl for r in got] == values[10:]
    assert len(pump.get_cgm(0, limit=7)) == 7 and pump.get_cgm(m0 + 1000) == []
    m = pump.query("get_cgm", {"since": 0, "count": 100}, expect="cgm_page")  # capped
    assert (m["count"], m["more"]) == (spec.CGM_PAGE, 1)
    st = pump.status()
    assert (st.glucose, st.trend, st.cgm) == (187, 6, 0)  # +3 mg/dL per 5 min
    assert st.trend_mg_dl_min == 0.6 and st.glucose_age == 0
    assert st.alarm_names == []


@pytest.mark.req("SNS-1", "SNS-2", "LNK-2", "ALM-6")
def test_reading_and_alert_events_reach_the_host(peer, pump):
    pump.poll_events()
    readings(peer, [60, 54])
    texts = [e.describe() for e in pump.poll_events(0.5)]
    assert "glucose 60 mg/dL" in texts and "glucose 54 mg/dL" in texts
    assert "alarm glucose_low raised" in texts and "alarm urgent_low raised" in texts
    assert pump.status().alarm_names == ["urgent_low", "glucose_low"]
    levels = {a.name: a for a in pump.get_alarms()}
    assert levels["urgent_low"].active and levels["urgent_low"].priority == spec.PRIO_HIGH


@pytest.mark.req("SNS-3", "LNK-2")
def test_suspend_before_low_over_the_protocol(peer, pump):
    pump.set_setting("suspend_before_low", 1)
    pump.poll_events()
    readings(peer, [85])
    st = pump.status()
    assert st.basal_suspended_before_low and st.basal_rate == 0 and st.delivering
    texts = [e.describe() for e in pump.poll_events(0.5)]
    assert "basal suspended before low (predicted low, glucose 85 mg/dL)" in texts
    pump.resume()  # manual resume
    st = pump.status()
    assert not st.basal_suspended_before_low and st.cgm & spec.CGMF_SBL_WAIT
    assert st.basal_rate == 1000
    recs = [r for r in pump.get_history(1, 255) if r.kind == spec.H_SBL]
    assert [(r.arg, r.v1, r.v2) for r in recs] == [(1, spec.SBL_PREDICTED, 85),
                                                   (0, spec.SBL_MANUAL, 85)]


@pytest.mark.req("SNS-2")
def test_glucose_settings_by_name(pump):
    pump.set_setting("glucose_low", 80)
    pump.set_setting("glucose_alerts", spec.GA_LOW)
    got = pump.get_settings()
    assert len(got) == spec.SETTINGS_COUNT
    assert (got["glucose_low"], got["glucose_high"], got["glucose_rate"],
            got["glucose_alerts"], got["suspend_before_low"]) == (80, 250, 3, spec.GA_LOW, 0)
    with pytest.raises(C.PumpRefused, match=r"out of range \(glucose_low: 60 \.\. 100 mg/dL\)"):
        pump.set_setting("glucose_low", 50)


@pytest.mark.req("THR-8", "LNK-4")
def test_calculator_over_the_protocol_delivers_nothing(peer, pump):
    with pytest.raises(C.PumpRefused) as err:
        pump.calc(45, 180)
    assert err.value.code == spec.E_NOT_CONFIGURED and err.value.detail == spec.CALC_CARB_RATIO
    assert "carb_ratio: program it with `pumpctl calc set`" in str(err.value)
    program_calc(pump)
    pump.set_calc_schedule(spec.CALC_CARB_RATIO, [0, 22], [100, 125])
    sch = pump.get_calc_schedule(spec.CALC_CARB_RATIO)
    assert (sch.starts, sch.values, sch.highs) == ((0, 22), (100, 125), (0, 0))
    assert sch.segments() == [("00:00", 100, 0), ("11:00", 125, 0)]
    target = pump.get_calc_schedule(spec.CALC_TARGET)
    assert (target.values, target.highs) == ((100,), (120,))
    before = pump.status()
    sug = pump.calc(45, 180)  # Monday 00:0x: 10 g/U, 50 mg/dL/U, 100-120
    assert sug == C.Suggestion(food=4500, correction=1200, iob=0, unrounded=5700, total=5700,
                               flags=0, carb_ratio=100, sensitivity=50, target_low=100,
                               target_high=120)
    sug = pump.calc(44, 0)
    assert (sug.total, sug.no_bg, sug.rounded) == (4400, True, False)
    after = pump.status()
    assert (after.bolus_id, after.bolus_today, after.history_next) == (
        0, before.bolus_today, before.history_next)
    with pytest.raises(C.PumpRefused, match=r"out of range"):
        pump.calc(10, 700)
    with pytest.raises(C.PumpRefused,
                       match=r"bad argument \(segments: 1 \.\. 8, the first at 00:00"):
        pump.set_calc_schedule(spec.CALC_SENSITIVITY, [0, 0], [50, 60])
    with pytest.raises(ValueError, match="1..8 segments"):
        pump.set_calc_schedule(spec.CALC_SENSITIVITY, list(range(9)), [50] * 9)


# ------------------------------------------------------------------------ pumpctl
@pytest.mark.req("SNS-1")
def test_pumpctl_cgm_table_and_json(peer, ctl):
    readings(peer, [120, 116, 112, 40, 39, 401])
    code, out, _ = ctl("cgm", "--hours", "1")
    assert code == 0
    assert "CGM readings, last 1 h" in out
    assert re.search(r"112 mg/dL\s+│\s+-0\.8/min", out)
    assert re.search(r"\bLOW\b", out) and re.search(r"\bHIGH\b", out)
    assert "latest HIGH 0 min ago, trend" in out
    code, out, _ = ctl("--json", "cgm")
    data = json.loads(out)
    assert [r["mg_dl"] for r in data["readings"]] == [120, 116, 112, 40, 39, 401]
    assert data["readings"][1]["change_per_min"] == -0.8 and data["latest"] == 401
    assert data["trend"] == 36.1  # (401 - 40) / 10 min
    code, _, err = ctl("cgm", "--hours", "25")
    assert code == 2 and "--hours must be 1..24" in err


@pytest.mark.req("THR-8")
def test_pumpctl_calc_set_and_show(ctl):
    code, out, _ = ctl("calc", "show")
    assert code == 0 and out.count("not programmed") == 3
    assert ctl("calc", "set", "carb_ratio", "00:00=10", "11:00=12.5")[0] == 0
    assert ctl("calc", "set", "sensitivity", "00:00=50")[0] == 0
    code, out, _ = ctl("calc", "set", "target", "00:00=100-120", "22:00=110-140")
    assert code == 0 and out == "calculator target (2 segments): done\n"
    code, out, _ = ctl("calc", "show")
    assert re.search(r"carb_ratio\s+│ 00:00 │ 10 g/U", out)
    assert re.search(r"│ 11:00 │ 12\.5 g/U", out) and re.search(r"│ 22:00 │ 110-140 mg/dL", out)
    code, out, _ = ctl("--json", "calc", "show")
    assert json.loads(out)["carb_ratio"] == [{"from": "00:00", "value": 100, "high": 0},
                                             {"from": "11:00", "value": 125, "high": 0}]
    code, _, err = ctl("calc", "set", "carb_ratio", "00:00=10.25")
    assert code == 2 and "at most one decimal" in err
    code, _, err = ctl("calc", "set", "target", "00:00=130-120")
    assert code == 2 and "LOW <= HIGH" in err
    code, _, err = ctl("calc", "set", "sensitivity", "01:00=50")
    assert code == 2 and "first segment must start at 00:00" in err


@pytest.fixture
def answers(monkeypatch):
    """input() answered from a list; records the prompts (pumpctl prints them on stderr)."""
    given = []

    def fake_input(prompt=""):
        if not given:
            raise EOFError
        return given.pop(0)

    monkeypatch.setattr(builtins, "input", fake_input)
    return given


@pytest.mark.req("THR-8", "THR-3")
def test_pumpctl_wizard_asks_before_delivering(peer, ctl, answers):
    setup_calc(peer)
    answers.append("y")
    code, out, err = ctl("wizard", "--carbs", "45", "--bg", "180")
    assert code == 0, err
    assert re.search(r"food\s+│\s+4\.5 │ 45 g / 10 g/U", out)
    assert re.search(r"correction\s+│\s+1\.2 │ to target 100-120 mg/dL, 50 mg/dL per U", out)
    assert re.search(r"insulin on board\s+│\s+0\.0 │ subtracted", out)
    assert re.search(r"suggested\s+│\s+5\.7 │", out)
    assert "deliver 5.7 U? [y/N]" in err
    assert re.search(r"bolus #\d+ completed: 5\.7 of 5\.7 U delivered", out)
    assert status(peer).bolus_today == 5700


@pytest.mark.req("THR-8")
def test_pumpctl_wizard_refused_or_unanswered_delivers_nothing(peer, ctl, answers):
    setup_calc(peer)
    answers.append("n")
    code, out, err = ctl("wizard", "--carbs", "45", "--bg", "180")
    assert code == 0 and "not delivered" in out and "deliver 5.7 U? [y/N]" in err
    code, out, _ = ctl("wizard", "--carbs", "30")  # no answer (EOF): no
    assert code == 0 and "not delivered" in out
    st = status(peer)
    assert st.bolus_today == 0 and st.bolus_id == 0


@pytest.mark.req("THR-8", "THR-9")
def test_pumpctl_wizard_yes_json_with_iob_and_rounding(peer, ctl, answers):
    setup_calc(peer)
    code, out, _ = ctl("--json", "wizard", "--carbs", "20", "--yes")
    first = json.loads(out)
    assert code == 0 and first["ok"] and first["delivered"] == 2000
    assert first["ending"] == "completed"
    assert first["food"] == 2000 and first["flags"] == spec.CALC_NO_BG
    code, out, _ = ctl("--json", "wizard", "--carbs", "22", "--bg", "cgm", "--yes")
    assert code == 2  # no CGM reading yet
    readings(peer, [150])
    iob = status(peer).iob
    code, out, _ = ctl("--json", "wizard", "--carbs", "22", "--bg", "cgm", "--yes",
                       "--no-wait")
    data = json.loads(out)
    assert code == 0 and data["bg"] == 150 and data["iob"] > 0
    assert data["correction"] == 600  # (150 - 120) / 50 U
    assert data["unrounded"] == 2200 + 600 - data["iob"]
    assert data["total"] == data["unrounded"] // 50 * 50 and data["bolus_id"]
    assert data["rounded"] == (data["unrounded"] % 50 != 0)
    assert iob >= data["iob"]
    assert not answers  # never asked


@pytest.mark.req("THR-8", "THR-6")
def test_pumpctl_wizard_over_max_bolus_is_not_offered(peer, ctl, answers):
    setup_calc(peer)
    code, _, err = ctl("wizard", "--carbs", "300", "--bg", "400")
    assert code == 3 and "suggested bolus refused: over limit (max_bolus 10 U per bolus)" in err
    assert status(peer).bolus_today == 0
    code, _, err = ctl("wizard", "--carbs", "20", "--bg", "700")
    assert code == 2 and "--bg must be 20..600" in err


@pytest.mark.req("SNS-1", "SNS-3")
def test_pumpctl_status_shows_glucose_and_suspend_before_low(peer, ctl):
    with peer.connect() as pump:
        pump.set_setting("suspend_before_low", 1)
    readings(peer, [100, 95, 88])
    code, out, _ = ctl("status")
    assert code == 0
    assert re.search(r"Glucose\s+│ 88 mg/dL ↘ -1\.2 mg/dL/min, 0 min ago", out)
    assert re.search(r"Basal\s+│ suspended before low \(resumes by itself\)", out)
    assert re.search(r"Basal rate\s+│ 0\.0 U/h", out)


@pytest.mark.req("THR-8", "SNS-2")
def test_pumpctl_wizard_warns_at_low_glucose_and_never_delivers_unasked(peer, ctl, answers):
    setup_calc(peer)
    code, out, err = ctl("--json", "wizard", "--carbs", "45", "--bg", "60", "--yes")
    data = json.loads(out)
    assert code == 0 and data["delivered"] == 0 and data["bolus_id"] is None
    assert data["warning"] == ("glucose 60 mg/dL is below the low limit 70 mg/dL: treat the "
                               "low first (fast-acting carbohydrate) and check again; no "
                               "correction insulin is suggested")
    assert data["correction"] == -800  # (100 - 60) / 50 U less, never more
    assert data["total"] == 4500 - 800 - data["iob"] // 50 * 50 or data["floored"]
    # asked, the answer "no" delivers nothing; the question says why it asks
    answers.append("n")
    code, out, err = ctl("wizard", "--carbs", "45", "--bg", "50")
    assert code == 0 and "not delivered" in out
    assert "warning: glucose 50 mg/dL is below the low limit 70 mg/dL (urgent low)" in (
        " ".join(err.split()))
    assert "glucose is low: deliver anyway" in err
    # the sensor's LOW reading counts as low glucose, not as "no reading"
    readings(peer, [spec.CGM_LOW])
    code, out, err = ctl("--json", "wizard", "--carbs", "20", "--bg", "cgm", "--yes")
    data = json.loads(out)
    assert code == 0 and data["bg"] == spec.CGM_LOW and data["delivered"] == 0
    assert data["warning"].startswith("glucose LOW")
    st = status(peer)
    assert st.bolus_today == 0 and st.bolus_id == 0 and not answers
