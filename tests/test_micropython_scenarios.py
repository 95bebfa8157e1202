"""Key firmware scenarios on the MicroPython unix port (the emulator's runtime, HW-3).

The scenario functions live in tests/mp_scenarios.py; one unix-port run executes them all
and prints ``SCENARIO <json>`` lines. Each test checks the MicroPython numbers against the
expected behaviour and against what CPython computes running the very same function.
"""

import functools
import json
from pathlib import Path

import pytest

from protocol import spec as S
from tests import mp_scenarios as M
from tests.runtimes import run_unix

SOURCE = Path(M.__file__).read_text()
BOLUS_ID = 1  # the first bolus of a fresh pump


@functools.cache
def unix_scenarios():
    out = {}
    for line in run_unix(SOURCE + "\nmain_scenarios()\n").splitlines():
        if line.startswith("SCENARIO "):
            record = json.loads(line[len("SCENARIO "):])
            out[record["scenario"]] = record["values"]
    return out


def scenario(name):
    """The scenario's values on the unix port, after checking CPython gets the same."""
    got = unix_scenarios()[name]
    on_cpython = json.loads(json.dumps(dict(M.SCENARIOS)[name]()))
    assert got == on_cpython
    return got


@pytest.mark.req("HW-3", "THR-1", "THR-7", "THR-10")
@pytest.mark.parametrize(("name", "pulse_mu"),
                         [("day_basal", 50), ("day_basal_25", 25), ("day_basal_10", 10)])
def test_day_of_basal_delivers_the_programmed_total(name, pulse_mu):
    got = scenario(name)
    assert got["pulse_mu"] == pulse_mu
    # Monday: basal == the profile's integral exactly, prime (12 pulses) kept apart
    assert got["monday"] == [M.DAY_BASAL_MU, 0, 12 * pulse_mu]
    assert got["pulses"] * pulse_mu == M.DAY_BASAL_MU
    assert got["day_record"] == [[M.DAY0, M.DAY_BASAL_MU, 0]]  # H_DAY_TOTAL, once
    assert got["day"] == M.DAY0 + 1 and got["local_ms"] == 0
    assert got["tuesday"] == [0, 0, 0]
    assert got["alarms"] == 0


@pytest.mark.req("HW-3", "THR-3", "THR-9", "HIS-1")
def test_normal_bolus_completes():
    got = scenario("bolus_complete")
    assert got["bolus_id"] == BOLUS_ID
    assert got["progress_40s"] == [BOLUS_ID, 1000, 2000]  # 1.5 U/min
    assert got["done_s"] == 80
    assert got["ends"] == [[S.BOLUS_COMPLETED, BOLUS_ID, 2000, 2000]]
    assert got["bolus_today"] == 2000 and got["basal_today"] == 0
    assert got["pulses"] == 40
    assert got["iob"] == 2000 and got["last_hour"] == 2000


@pytest.mark.req("HW-3", "THR-5", "HIS-1")
def test_suspend_interrupts_a_bolus():
    got = scenario("suspend_bolus")
    assert got["progress_30s"] == [BOLUS_ID, 750, 3000]
    assert got["ends"] == [[S.BOLUS_INTERRUPTED, BOLUS_ID, 750, 3000]]
    assert got["moved_suspended"] == 0
    assert got["bolus_after"] == 0 and got["bolus_today"] == 750  # never resumed
    # after resume only basal moves the plunger: 10 min at 1.2 U/h
    assert got["basal_after_resume"] == 200 and got["moved_after_resume"] * 50 == 200


@pytest.mark.req("HW-3", "ALM-3", "ALM-1")
def test_occlusion_alarm_stops_delivery_without_make_up():
    got = scenario("occlusion")
    assert got["stop"] == S.STOP_OCCLUSION and got["occlusion_active"] == 1
    assert got["alarm_s"] == 110 <= 120  # within 2 min during a bolus
    # pressure reaches the limit after 6 pulses; then 50 pulses (2.5 U) more
    assert got["blocked_pulses"] == got["pulses"] == 55
    assert got["ends"] == [[S.BOLUS_INTERRUPTED, BOLUS_ID, 2750, 5000]]
    assert got["relieved"] == 1 and got["kpa"] == 20
    assert got["moved_stopped"] == 0
    assert got["resume"] == S.OK and got["occlusion_after_resume"] == 0
    assert got["bolus_after_resume"] == 0  # what did not flow is not delivered later
    assert got["moved_after_resume"] * 50 == got["basal_after_resume"] == 200


@pytest.mark.req("HW-3", "HIS-2")
def test_power_cut_mid_bolus_is_counted_once_and_not_resumed():
    got = scenario("power_cut")
    assert got["before"] == [BOLUS_ID, 500, 2000]
    assert got["cut"] == 1
    assert got["moved"] == 12  # 10 pulses, then 2 of the 3 planned before the cut
    assert got["selftest"] == 0 and got["bolus_after_boot"] == 0
    assert got["ends"] == [[S.BOLUS_INTERRUPTED, BOLUS_ID, 600, 2000]]
    assert got["bolus_today"] == 600 and got["basal_today"] == 0
    assert (got["bolus_today"] + got["basal_today"]) == got["moved"] * 50  # counted once
    assert got["boots"] == 3 and got["ends_after_second_boot"] == 1
    assert got["bolus_today_second_boot"] == 600 and got["basal_today_second_boot"] == 0
    assert got["stop"] == S.STOP_NONE and got["bolus_after_60s"] == 0


@pytest.mark.req("HW-3", "THR-12", "HIS-2", "ALM-1", "ALM-6")
def test_prime_incomplete_alarm_across_reboots_and_a_cut_prime():
    got = scenario("prime")
    skipped, due, done = 2, 1, 0  # firmware/layout.py PRIME_*
    assert got["steps"] == [
        ["fill", 0, due],  # suspended: nothing to say yet
        ["resume", 1, skipped],  # delivering on an unprimed line: medium alarm
        ["reboot", 1, skipped],  # raised again from the saved state
        ["prime cut", 1, skipped],  # 3 of 10 pulses: not completed
        ["primed", 0, done],
        ["resumed primed", 0, done],
    ]
    assert got["cut"] == 1 and got["stop"] == S.STOP_NONE
    assert got["log"] == [
        [S.ALARM_RAISED, 0],  # at the resume
        [S.ALARM_RAISED, 0],  # at the reboot
        [S.ALARM_RAISED, 0],  # at the reboot after the cut
        [S.ALARM_CLEARED, 500],  # the completed tubing prime
        [S.ALARM_UNACKED, 0],
    ]


@pytest.mark.req("HW-3")
def test_every_scenario_is_tested():
    assert sorted(unix_scenarios()) == sorted(name for name, _ in M.SCENARIOS)


@pytest.mark.req("HW-3", "SNS-1", "SNS-2", "SNS-3", "ALM-6", "ALM-8", "HIS-1")
def test_sensor_link_alerts_and_suspend_before_low_on_the_unix_port():
    got = scenario("sensor")
    # H_SBL: [minute, 1 suspend / 0 resume, reason, glucose, predicted in 30 min]
    assert got["sbl"] == [
        [15, 1, S.SBL_PREDICTED, 130, 70],  # 150, 140, 130: 70 predicted <= 70 + 20
        # 75, 72, 78 rises, but resumption needs >= 70 + 20 now and >= 70 + 40 predicted
        # (SNS-3 hysteresis): 78, 88, 100 with 166 predicted
        [55, 0, S.SBL_RECOVERED, 100, 166],
        [65, 1, S.SBL_PREDICTED, 90, 60],
        [72, 0, S.SBL_MANUAL, 85, 55],  # the resume command
        [105, 1, S.SBL_PREDICTED, 75, 69],  # not before the 30-min wait ended (102)
        [140, 0, S.SBL_RECOVERED, 120, 120],  # after a gap: no trend, 120 > 90
    ]
    assert got["resume"] == S.OK and got["sbl_at_72"] == 1
    raised, cleared, unacked = S.ALARM_RAISED, S.ALARM_CLEARED, S.ALARM_UNACKED
    assert got["alarms"] == [
        [15, "suspend_before_low", raised],
        [25, "glucose_fall", raised],  # 130, 120, 100: -3.0 mg/dL/min
        [25, "urgent_low_soon", raised],  # 40 predicted in 20 min
        [35, "glucose_fall", cleared],
        [35, "glucose_fall", unacked],  # nobody acknowledged it (ALM-8)
        [45, "urgent_low_soon", cleared],
        [45, "urgent_low_soon", unacked],
        [55, "suspend_before_low", cleared],
        [55, "suspend_before_low", unacked],
        [65, "suspend_before_low", raised],
        [72, "suspend_before_low", cleared],
        [72, "suspend_before_low", unacked],
        [105, "suspend_before_low", raised],
        [125, "signal_loss", raised],  # 20 min after the reading of minute 105
        [140, "signal_loss", cleared],
        [140, "signal_loss", unacked],
        [140, "suspend_before_low", cleared],
        [140, "suspend_before_low", unacked],
    ]
    # basal ran 15 + 10 + 33 + 10 = 68 min at 1.2 U/h = 1360 mU, in whole 50-mU pulses
    assert got["basal_mu"] == 1350
    assert got["readings"] == len(M.SENSOR_TRACE) and got["active"] == 0
    m0 = got["minute0"]
    assert got["held"] == [[m0 + 100, 76], [m0 + 105, 75], [m0 + 140, 120]]
