"""Meal scenarios (host_tools/patient.py) and the report (host_tools/report.py) on made-up
data: no emulator, no simglucose needed."""

from __future__ import annotations

import pytest

from host_tools import client as C
from host_tools.patient import REQUEST, load_scenario, parse_time
from protocol import spec as S

DAY = 2196
T0 = DAY * 86400 + 6 * 3600


@pytest.mark.req("SNS-1")
def test_scenario_files(tmp_path):
    assert parse_time(90) == 90 and parse_time("1:30") == 90 and parse_time("1+07:00") == 1860
    j = tmp_path / "day.json"
    j.write_text('{"meals": [{"time": "12:00", "grams": 70}, {"time": 60, "grams": 50}]}')
    assert load_scenario(j) == [(60, 50.0), (720, 70.0)]
    c = tmp_path / "day.csv"
    c.write_text("time,grams\n# breakfast\n1:00,50\n6:00,70\n")
    assert load_scenario(c) == [(60, 50.0), (360, 70.0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("1:00,0\n")
    with pytest.raises(ValueError, match="grams"):
        load_scenario(bad)
    assert REQUEST.size == 8  # boards/emulator.py writes 8 bytes: minute, mU


def _data():
    from host_tools import report

    readings = [C.Reading(T0 // 60 + 5 * i, 100 + (i * 7) % 120) for i in range(288)]
    H = C.HistoryRecord
    hist = [
        H(1, T0 + 3600, S.H_BOLUS_START, S.BOLUS_NORMAL, 1, 5000, 0),
        H(2, T0 + 3800, S.H_BOLUS_END, S.BOLUS_COMPLETED, 1, 5000, 5000),
        H(3, T0 + 7200, S.H_SBL, 1, S.SBL_PREDICTED, 80, 85),
        H(4, T0 + 7200, S.H_ALARM, 0, S.A_SBL, 80, 0),
        H(5, T0 + 9000, S.H_SBL, 0, S.SBL_RECOVERED, 95, 110),
        H(6, T0 + 10000, S.H_TEMP_START, S.TEMP_PERCENT, 50, 60, 0),
        H(7, T0 + 20000, S.H_SUSPEND, S.STOP_USER, 0, 0, 0),
        H(8, T0 + 21000, S.H_RESUME, 0, 0, 0, 0),
        H(9, T0 + 30000, S.H_ALARM, 0, S.A_URGENT_LOW, 50, 0),
    ]
    prof = [C.Profile(0, "p", (0, 12), (800, 1200))] + [
        C.Profile(i, "", (0,), (0,)) for i in range(1, S.PROFILES)]
    settings = {row[0]: row[1] for row in S.SETTINGS}
    totals = [C.Totals(DAY + 1, True, 5000, 0, 0), C.Totals(DAY, True, 24000, 20000, 800)]
    data = report.ReportData(T0 + 86400, 0, T0, readings, hist, prof, [0] * 7, settings,
                             totals)
    data.basal = report.basal_series(data)
    return data


@pytest.mark.req("THR-10", "SNS-1")
def test_report_analysis_and_png(tmp_path):
    from host_tools import report

    data = _data()
    rate = dict(data.basal)
    assert rate[T0] == 1200  # 06:00: the second segment
    assert rate[T0 + 7800] == 0  # suspended before low
    assert rate[T0 + 10020] == 600  # 50 % temp basal
    assert rate[T0 + 20040] == 0  # suspended by the user
    assert rate[T0 + 22020] == 1200
    assert report.boluses(data) == [(T0 + 3600, 5000, 1)]
    assert [why for _a, _b, why in report.suspensions(data)] == ["suspend before low", "user"]
    s = report.summary(data)
    assert s["alarm_names"] == ["suspend_before_low", "urgent_low"]
    assert s["totals"][1]["total_u"] == 44.0
    m = s["cgm"]
    assert m["readings"] == 288 and m["below_70"] == 0 and m["wear"] == 100
    assert m["in_range"] + m["above_180"] == pytest.approx(100)
    png = report.render_png(data, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.render_html(data, png, tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in page and "urgent_low" in page


def _bare(readings, history):
    from host_tools import report

    prof = [C.Profile(0, "p", (0,), (1000,))] + [
        C.Profile(i, "", (0,), (0,)) for i in range(1, S.PROFILES)]
    settings = {row[0]: row[1] for row in S.SETTINGS}
    data = report.ReportData(T0 + 86400, 0, T0, readings, history, prof, [0] * 7, settings,
                             [])
    data.basal = report.basal_series(data)
    return data


@pytest.mark.req("SNS-3", "HIS-1")
def test_a_reboot_is_no_suspension_before_low():
    """A boot record ends a suspension before low that ran, but is no sign of one: no span
    from the window's start to the reboot, no phantom suspension counted."""
    from host_tools import report

    H = C.HistoryRecord
    data = _bare([], [H(1, T0 + 5 * 3600, S.H_BOOT, 0, 0, 2, 0)])
    assert report.suspensions(data) == []
    assert report.summary(data)["suspensions"] == 0
    assert {rate for _t, rate in data.basal} == {1000}  # basal ran the whole window
    assert report.marks(data) == [(T0 + 5 * 3600, "reboot")]  # marked on the time axis
    data = _bare([], [H(1, T0 + 3600, S.H_TIME_CHANGE, 0, 0, 0, 60)])
    assert report.marks(data) == [(T0 + 3600, "clock set")]
    assert (report.summary(data)["reboots"], report.summary(data)["clock_changes"]) == (0, 1)
    # a real one still ends at the reboot, and one that began before the window is seen
    data = _bare([], [H(1, T0 + 3600, S.H_SBL, 1, S.SBL_PREDICTED, 80, 75),
                      H(2, T0 + 5 * 3600, S.H_BOOT, 0, 0, 2, 0),
                      H(3, T0 + 9 * 3600, S.H_SBL, 0, S.SBL_RECOVERED, 110, 120)])
    assert report.suspensions(data) == [(T0 + 3600, T0 + 5 * 3600, "suspend before low")]
    data = _bare([], [H(1, T0 + 3600, S.H_SBL, 0, S.SBL_RECOVERED, 110, 120)])
    assert report.suspensions(data) == [(T0, T0 + 3600, "suspend before low")]


@pytest.mark.req("SNS-1")
def test_no_readings_say_no_cgm_data(tmp_path):
    from host_tools import report

    data = _bare([C.Reading(T0 // 60 + 5, S.CGM_WARMUP)], [])
    s = report.summary(data)
    assert s["cgm"] is None and report.metrics_text(s["cgm"]) == "no CGM data"
    png = report.render_png(data, tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "no CGM data" in report.render_html(data, png, tmp_path / "r.html").read_text()


@pytest.mark.req("SNS-1")
def test_consensus_cgm_metrics_values():
    from host_tools import report

    values = [39, 50, 60, 100, 150, 180, 200, 300, 401, 120]  # LOW and HIGH included
    readings = [C.Reading(T0 // 60 + 5 * i, v) for i, v in enumerate(values)]
    m = report.cgm_metrics(readings, minutes=100)  # 20 readings were due
    assert m["readings"] == 10
    assert (m["below_54"], m["below_70"], m["in_range"]) == (20.0, 30.0, 40.0)
    assert (m["above_180"], m["above_250"]) == (30.0, 20.0)
    assert m["mean"] == pytest.approx(160.0)
    sd = (sum((v - 160) ** 2 for v in values) / 9) ** 0.5
    assert m["sd"] == pytest.approx(sd) and m["cv"] == pytest.approx(100 * sd / 160)
    assert m["gmi"] == pytest.approx(3.31 + 0.02392 * 160)  # 7.1 %
    assert m["wear"] == 50.0
    assert report.metrics_text(m).startswith(
        "time in range 70-180 mg/dL 40.0 %, below 70 30.0 % (below 54 20.0 %), above 180 "
        "30.0 % (above 250 20.0 %); mean 160 mg/dL, GMI 7.1 %, CV ")


@pytest.mark.req("SNS-1", "THR-10")
def test_pumpctl_report_of_a_pump_without_readings(tmp_path, capsys):
    from host_tools import pumpctl
    from tests.test_client import KEY, PumpPeer

    key = tmp_path / "k"
    key.write_text(KEY.hex())
    peer = PumpPeer(step_ms=500)
    try:
        code = pumpctl.main(["--port", peer.url, "--key", str(key), "report", "--hours", "3",
                             "--out", str(tmp_path / "r.png")])
    finally:
        peer.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    text = "".join(out.split("\n")[-3:]).strip()  # rich wraps long lines
    # the one suspension is real: a new pump is suspended until its first resume
    assert text.endswith(
        f"no CGM data; 0 boluses, 1 suspension, 0 alarms; wrote {tmp_path / 'r.png'}")


def _days_of_readings(days, start_minute, value=lambda hour, day: 100 + 5 * hour):
    return [C.Reading(start_minute + 5 * i,
                      value((5 * i // 60) % 24, 5 * i // 1440))
            for i in range(days * 288)]


@pytest.mark.req("SNS-1")
def test_ambulatory_glucose_profile_by_hour_of_day():
    from host_tools import report

    # every day the same curve: each hour's percentiles are that hour's value
    start = T0 // 60 - 6 * 60  # local midnight (offset 0)
    prof = report.agp(_days_of_readings(3, start), offset=0)
    assert [row[0] for row in prof] == [60 * h for h in range(24)]
    assert all(row[1:] == (100 + 5 * h,) * 5 for h, row in enumerate(prof))
    # days that differ: the 5th..95th percentiles spread over them
    spread = report.agp(_days_of_readings(5, start, lambda h, d: 100 + 20 * d), offset=0)
    assert spread[0][1:] == pytest.approx((100, 120, 140, 160, 180))
    # the hour of the day is the pump's local one
    shifted = report.agp(_days_of_readings(3, start), offset=120)
    assert shifted[2][1:] == (100,) * 5
    # one day is no profile
    assert report.agp(_days_of_readings(1, start), offset=0) == []


@pytest.mark.req("SNS-1", "HIS-1")
def test_export_csv_json_and_read_back(tmp_path):
    from host_tools import pumpctl, report

    data = _data()
    files = report.export(data, tmp_path / "out", describe=pumpctl.describe_record)
    assert sorted(p.name for p in files) == ["cgm.csv", "cgm.json", "history.csv",
                                            "history.json"]
    assert report.load_readings(tmp_path / "out" / "cgm.json") == data.readings
    assert report.load_readings(tmp_path / "out" / "cgm.csv") == data.readings
    rows = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert rows[0] == "seq,utc,local,kind,arg,v1,v2,v3,text"
    assert rows[1] == ("1,2026-01-05T07:00:00Z,2026-01-05T07:00:00,bolus_start,1,1,5000,0,"
                       "bolus #1 normal: 5.0 U")
    hist = __import__("json").loads((tmp_path / "out" / "history.json").read_text())
    assert [h["kind"] for h in hist][:2] == ["bolus_start", "bolus_end"]
    cgm = (tmp_path / "out" / "cgm.csv").read_text().splitlines()
    assert cgm[0] == "minute,utc,local,mg_dl,text" and cgm[1].startswith(
        f"{T0 // 60},2026-01-05T06:00:00Z,2026-01-05T06:00:00,100,")
    with pytest.raises(ValueError, match="cannot read CGM readings from"):
        report.load_readings(tmp_path / "out" / "history.json")


@pytest.mark.req("SNS-1", "HIS-1", "THR-10")
def test_pumpctl_report_with_earlier_readings_draws_the_profile_and_exports(tmp_path,
                                                                             capsys):
    import json

    from host_tools import pumpctl
    from tests.test_client import KEY, PumpPeer

    key = tmp_path / "k"
    key.write_text(KEY.hex())
    peer = PumpPeer(step_ms=500)
    try:
        with peer.connect() as pump:
            now_min = pump.status().utc // 60
        earlier = [{"minute": r.minute, "mg_dl": r.mg_dl}
                   for r in _days_of_readings(3, now_min - 3 * 1440 + 5)]
        (tmp_path / "cgm.json").write_text(json.dumps(earlier))
        code = pumpctl.main(["--port", peer.url, "--key", str(key), "--json", "report",
                             "--hours", "72", "--out", str(tmp_path / "r.png"),
                             "--cgm", str(tmp_path / "cgm.json"),
                             "--export", str(tmp_path / "export")])
    finally:
        peer.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    s = json.loads(out)
    assert s["cgm"]["readings"] == 3 * 288 and s["cgm"]["wear"] == 100
    assert len(s["agp"]) == 24  # three days: a profile for every hour
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((tmp_path / "export" / "cgm.json").read_text())) == 3 * 288
    assert sorted(s["exported"]) == sorted(str(tmp_path / "export" / n) for n in (
        "history.csv", "history.json", "cgm.csv", "cgm.json"))
