"""Defence in depth in the delivery path (issue 19): a single forgotten line elsewhere must
not move the motor. These tests kill mutants of tools/mutants.toml that the behaviour
tests could not see, because another line covered for the broken one."""

import pytest

from firmware.layout import S_BASAL_TODAY, S_BOLUS_TODAY, S_MONO_S, S_SBL, S_STOP
from protocol import spec as S
from tests.pumpkit import make_pump, run, run_until


def plan(pump, basal, now, ext):
    pump.plan_basal = basal
    pump.plan_now = now
    pump.plan_ext = ext


@pytest.mark.req("THR-5", "HIS-2", "ALM-3", "RES-1")
@pytest.mark.parametrize("stop", ["user", "occlusion", "reservoir"])
def test_the_delivery_path_itself_never_moves_a_stopped_pump(stop):
    """Whatever a caller planned, _deliver moves nothing while the pump is stopped: the
    guard is in the delivery path, not only in the planning (mutant deliver-stopped-guard)."""
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    run(rig, pump, 4)
    if stop == "user":
        assert pump.suspend() == S.OK
    else:
        reason = S.STOP_OCCLUSION if stop == "occlusion" else S.STOP_RESERVOIR
        pump._stop(reason)
    assert pump.state[S_STOP] != S.STOP_NONE
    pos = rig.motor.pos
    basal, bolus = pump.state[S_BASAL_TODAY], pump.state[S_BOLUS_TODAY]
    day = pump.doses.total_day()
    plan(pump, 3, 2, 1)
    pump._deliver()
    assert rig.motor.pos == pos
    assert (pump.state[S_BASAL_TODAY], pump.state[S_BOLUS_TODAY]) == (basal, bolus)
    assert pump.doses.total_day() == day


@pytest.mark.req("SNS-3", "HIS-2")
def test_the_delivery_path_itself_moves_no_basal_while_suspended_before_low():
    """Suspend before low stops basal in the delivery path too, not only in basal_rate():
    a bolus still moves (the user confirmed it), planned basal does not."""
    rig, pump = make_pump(50, rates=(1000,))
    pump.state[S_SBL] = 1
    pos = rig.motor.pos
    basal = pump.state[S_BASAL_TODAY]
    plan(pump, 3, 0, 0)
    pump._deliver()
    assert rig.motor.pos == pos and pump.state[S_BASAL_TODAY] == basal
    assert pump.bolus(S.BOLUS_NORMAL, 100, 0, 0) == S.OK
    plan(pump, 3, 2, 0)
    pump._deliver()
    assert rig.motor.pos == pos + 2
    assert pump.state[S_BASAL_TODAY] == basal
    assert pump.bolus_progress()[0] == 0  # the 2-pulse bolus completed


@pytest.mark.req("THR-5", "HIS-2")
def test_a_pulse_owed_by_a_failed_save_never_moves_after_suspend_and_resume():
    """Issue 19, survivor 2: a basal pulse owed after a failed state save must be dropped by
    the suspend, so resuming at once (before any tick) does not deliver it by surprise
    (mutant stop-keeps-owed-basal)."""
    rig, pump = make_pump(50, rates=(1000,))  # a basal pulse every 180 s
    run(rig, pump, 170)
    pos = rig.motor.pos
    rig.storage.fail = True
    assert run_until(rig, pump, lambda: pump.owed_basal, 20) is not None
    assert pump.owed_basal == 1 and rig.motor.pos == pos
    rig.storage.fail = False
    assert pump.suspend() == S.OK
    assert pump.owed_basal == 0
    assert pump.resume() == S.OK
    basal = pump.state[S_BASAL_TODAY]
    run(rig, pump, 10)  # the next pulse of the rate is due 180 s after the resume
    assert rig.motor.pos == pos
    assert pump.state[S_BASAL_TODAY] == basal
    run(rig, pump, 170)
    assert rig.motor.pos == pos + 1


@pytest.mark.req("THR-7", "HIS-2")
def test_a_basal_pulse_owed_by_a_failed_save_moves_at_the_next_tick():
    """A basal pulse that could not be recorded is owed, not dropped: once the save works
    again it moves, so basal over the hour still equals the programmed 1 U (mutant
    deliver-forgets-owed-basal)."""
    rig, pump = make_pump(50, rates=(1000,))  # a basal pulse every 180 s
    pos = rig.motor.pos
    t0 = pump.state[S_MONO_S]
    run(rig, pump, 170)
    rig.storage.fail = True
    assert run_until(rig, pump, lambda: pump.owed_basal, 20) is not None
    assert pump.state[S_MONO_S] - t0 == 180
    assert rig.motor.pos == pos and pump.storage_failures == 1
    rig.storage.fail = False
    run(rig, pump, 1)
    assert rig.motor.pos == pos + 1 and pump.owed_basal == 0
    run(rig, pump, 3600 - (pump.state[S_MONO_S] - t0))
    assert rig.motor.pos == pos + 20
    assert pump.state[S_BASAL_TODAY] == 1000


@pytest.mark.req("RES-1", "THR-7")
def test_a_long_tick_never_moves_more_than_the_reservoir_holds():
    """Pulses planned beyond what is left in the reservoir do not move: a long tick at the
    end of a reservoir moves what is left and stops empty (mutant deliver-beyond-reservoir)."""
    rig, pump = make_pump(50, rates=(5000,), fill_mu=10000)  # 100 pulses a hour
    left = pump.reservoir_pulses()
    assert left == 200 - 12  # 12 pulses of priming
    run(rig, pump, 3600, step_ms=600000)  # ticks of 10 min: 16 or 17 pulses each
    assert pump.reservoir_pulses() == left - 100
    fill = rig.motor.pos + pump.reservoir_pulses()
    run(rig, pump, 2 * 3600, step_ms=600000)
    assert rig.motor.pos == fill
    assert pump.reservoir_pulses() == 0
    assert pump.state[S_STOP] == S.STOP_RESERVOIR
    assert pump.state[S_BASAL_TODAY] == (200 - 12) * 50


@pytest.mark.req("ALM-7", "ALM-1")
def test_a_driver_fault_signalled_after_a_complete_move_stops_at_once():
    """A move that completes while the driver signals a fault is counted (it moved) and
    stops delivery in the same delivery step, not a housekeeping second later (mutant
    deliver-fault-signal-unnoticed)."""
    rig, pump = make_pump(50, rates=(1000,))
    motor = rig.motor
    real_step = motor.step

    def step_then_fault(n):
        real_step(n)
        motor.faulted = True

    motor.step = step_then_fault
    pos = motor.pos
    plan(pump, 1, 0, 0)
    pump._deliver()
    assert motor.pos == pos + 1
    assert pump.state[S_BASAL_TODAY] == 50
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    assert pump.alarms.active[S.A_MOTOR_FAULT]
    assert pump.selftest_bits & S.ST_MOTOR
