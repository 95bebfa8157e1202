"""The emulator board's sensor link (HW-3, SNS-1, SNS-2): readings from a trace file every
5 virtual minutes, FAULT_SENSOR_LOSS and FAULT_GLUCOSE, all seen through the protocol."""

from __future__ import annotations

import pytest

from host_tools.launch import check_cgm_trace, launch
from protocol import spec as S
from tests.test_emulator import emulator, fault, set_up

MIN = 60_000
TRACE = """minute,mg_dl
# a header and comments are skipped
5,120
10,118
15,115
45,100
50,90
55,80
60,-2
"""


@pytest.mark.req("HW-3", "SNS-1", "SNS-2", "LNK-2")
def test_trace_readings_through_the_protocol(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    with emulator(tmp_path, cgm_trace=trace) as (_emu, pump):
        set_up(pump)
        m0 = pump.status().utc // 60  # virtual minute 0 (lockstep: the clock stood still)
        done = 0

        def to(minute):
            nonlocal done
            ms = minute * MIN + 2000 - done
            pump.emu_clock(S.CLK_ADVANCE, ms)
            done += ms

        to(16)
        got = pump.get_cgm(0)
        assert [(r.minute - m0, r.mg_dl) for r in got] == [(5, 120), (10, 118), (15, 115)]
        st = pump.status()
        assert (st.glucose, st.trend, st.glucose_age) == (115, -5, 1)  # -5 in 10 min
        to(35)  # 20 min after the reading of minute 15
        assert "signal_loss" in pump.status().alarm_names
        to(45)
        st = pump.status()
        assert st.glucose == 100 and "signal_loss" not in st.alarm_names
        assert fault(pump, S.FAULT_SENSOR_LOSS, 1) == 0
        to(51)
        assert pump.status().glucose == 100  # the reading of minute 50 was lost
        assert fault(pump, S.FAULT_SENSOR_LOSS, 0) == 1
        to(55)
        assert pump.status().glucose == 80
        to(56)
        assert pump.emu_fault(S.FAULT_GLUCOSE, 50).detail == 0  # one injected reading
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        done += 2000
        st = pump.status()
        assert st.glucose == 50 and "urgent_low" in st.alarm_names
        to(60)
        st = pump.status()
        assert st.cgm & S.CGMF_EXPIRED and "sensor_expired" in st.alarm_names
        assert [r.mg_dl for r in pump.get_cgm(0)] == [120, 118, 115, 100, 80, 50]
        with pytest.raises(Exception, match="out of range"):
            pump.emu_fault(S.FAULT_GLUCOSE, 0)
        events = [e.describe() for e in pump.poll_events(0.3)]
        assert "glucose 80 mg/dL" in events and "sensor expired" in events


@pytest.mark.req("HW-3", "SNS-1")
def test_a_malformed_trace_is_refused_before_launch(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("minute,mg_dl\n0,100\n0,110\n")
    with pytest.raises(ValueError, match=r"bad.csv line 3: minutes must ascend"):
        launch(tmp_path / "emu", lockstep=True, cgm_trace=bad)
    bad.write_text("0,100,3\n")
    with pytest.raises(ValueError, match=r"line 1: expected minute,mg_dl"):
        check_cgm_trace(bad)
    bad.write_text("0,0\n")
    with pytest.raises(ValueError, match=r"mg_dl must be 1..1000, -1 or -2"):
        check_cgm_trace(bad)
    bad.write_text("# only\n0,-1\n5,100\n")
    assert check_cgm_trace(bad) == 2
    with pytest.raises(ValueError, match="cannot read CGM trace"):
        check_cgm_trace(tmp_path / "missing.csv")
