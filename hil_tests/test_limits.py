"""Limits enforced by the firmware at the protocol boundary (THR-6, LNK-4).

Every command over a limit is refused with E_OVER_LIMIT and the limit's setting id as
detail (the client names it); nothing is clamped: no bolus starts, no rate changes, no
history record appears."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


def refused(call, code=S.E_OVER_LIMIT):
    with pytest.raises(PumpRefused) as e:
        call()
    assert e.value.code == code, e.value
    return e.value


def assert_nothing_happened(pump, st0):
    st = pump.status()
    assert st.bolus_id == 0 and st.temp_kind == st0.temp_kind
    assert st.basal_rate == st0.basal_rate
    recs = kit.history(pump, st0.history_next)
    assert not [r for r in recs if r.kind in (S.H_BOLUS_START, S.H_TEMP_START, S.H_PROFILE)]


@pytest.mark.req("THR-6", "LNK-4")
def test_max_bolus(pump):
    st0 = pump.status()
    err = refused(lambda: pump.bolus(10050))  # default 10 U
    assert err.detail == S.SET_MAX_BOLUS
    assert "max_bolus" in str(err)
    err = refused(lambda: pump.bolus(5000, 5050, 60))  # dual: both parts count
    assert err.detail == S.SET_MAX_BOLUS
    assert_nothing_happened(pump, st0)
    pump.set_setting("max_bolus", 2000)
    err = refused(lambda: pump.bolus(2050))
    assert (err.detail, str(err)) == (
        S.SET_MAX_BOLUS, "bolus refused: over limit (limit max_bolus per bolus)")
    bolus_id = pump.bolus(2000).detail  # exactly at the limit: allowed
    assert pump.status().bolus_requested == 2000
    assert pump.cancel_bolus().detail == bolus_id
    # the limit's own range (0..25 U) is enforced too
    err = refused(lambda: pump.set_setting("max_bolus", 25050), S.E_OUT_OF_RANGE)
    assert err.detail == S.SET_MAX_BOLUS
    assert pump.get_settings()["max_bolus"] == 2000


@pytest.mark.req("THR-6", "THR-1", "THR-2", "LNK-4")
def test_max_basal_rate(pump):
    st0 = pump.status()
    err = refused(lambda: pump.temp_basal(S.TEMP_ABSOLUTE, 5050, 30))  # default 5 U/h
    assert err.detail == S.SET_MAX_BASAL and "max_basal" in str(err)
    err = refused(lambda: pump.set_profile(0, "weekday", [0, 12], [800, 5050]))
    assert err.detail == S.SET_MAX_BASAL
    pump.set_setting("max_basal", 3000)
    # percent temp basal: 250 % of the weekend profile's 1.5 U/h would reach 3.75 U/h
    err = refused(lambda: pump.temp_basal(S.TEMP_PERCENT, 250, 30))
    assert err.detail == S.SET_MAX_BASAL
    assert_nothing_happened(pump, st0)
    assert pump.get_profile(0).rates == kit.PROFILES[0][2]  # unchanged, not clamped
    pump.temp_basal(S.TEMP_PERCENT, 200, 30)  # 3 U/h at most: allowed
    # lowering the limit under a stored profile or the running temp basal is refused
    err = refused(lambda: pump.set_setting("max_basal", 1400), S.E_PROFILE_IN_USE_OVER_LIMIT)
    assert err.detail == 1  # the weekend profile peaks at 1.5 U/h
    err = refused(lambda: pump.set_setting("max_basal", 2900))
    assert err.detail == S.SET_MAX_BASAL
    assert pump.get_settings()["max_basal"] == 3000
    # the hard ceiling of any rate (35 U/h) is a range, not a setting
    refused(lambda: pump.set_profile(0, "weekday", [0], [35050]), S.E_OUT_OF_RANGE)


@pytest.mark.req("THR-6", "LNK-4")
def test_max_bolus_in_60_minutes(pump, sim):
    sim.advance(minutes=66)  # boluses of earlier tests leave the hourly window
    pump.set_setting("max_bolus_1h", 2000)
    pump.bolus(1500)
    sim.advance(seconds=61)
    assert pump.status().bolus_id == 0
    st0 = pump.status()
    err = refused(lambda: pump.bolus(550))
    assert err.detail == S.SET_MAX_BOLUS_1H and "max_bolus_1h" in str(err)
    assert_nothing_happened(pump, st0)
    pump.bolus(500)  # exactly up to the limit
    # what the running bolus still owes counts against the limit too
    err = refused(lambda: pump.bolus(50))
    assert err.detail == S.SET_MAX_BOLUS_1H
    pump.cancel_bolus()
    sim.advance(minutes=66)  # an hour later the window is free again
    pump.bolus(2000)
    pump.cancel_bolus()


@pytest.mark.req("THR-6", "THR-10", "LNK-4")
def test_max_total_daily_dose(pump, sim):
    # the limit is a rolling 24 h of monotonic time (THR-6): empty it of earlier tests'
    # insulin (24 h suspended), so what the test counts is all it holds
    sim.empty_day_window()
    st0 = pump.status()
    today = st0.basal_today + st0.bolus_today
    pump.set_setting("max_tdd", today + 1000)
    err = refused(lambda: pump.bolus(1050))
    assert err.detail == S.SET_MAX_TDD and "max_tdd" in str(err)
    assert_nothing_happened(pump, st0)
    pump.bolus(500)  # within what is left today
    pump.cancel_bolus()
