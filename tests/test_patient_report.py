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
    tir = s["time_in_range"]
    assert tir["readings"] == 288 and tir["below"] == 0
    assert tir["in_range"] + tir["above"] == pytest.approx(100)
    png = report.render_png(data, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.render_html(data, png, tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in page and "urgent_low" in page
