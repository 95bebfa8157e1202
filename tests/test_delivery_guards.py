"""Defence in depth in the delivery path (issue 19): a single forgotten line elsewhere must
not move the motor. These tests kill mutants of tools/mutants.toml that the behaviour
tests could not see, because another line covered for the broken one."""

import pytest

from firmware.layout import S_BASAL_ACC, S_BASAL_TODAY, S_BOLUS_TODAY, S_MONO_S, S_SBL, S_STOP
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


@pytest.mark.req("RES-1", "THR-3")
def test_basal_and_a_bolus_together_never_move_more_than_the_reservoir_holds():
    """Basal takes its share of what is left first, the bolus the rest: together they
    never move past the end of the reservoir (mutant deliver-bolus-beyond-reservoir)."""
    rig, pump = make_pump(50, rates=(0,), fill_mu=10000)
    assert pump.bolus(S.BOLUS_NORMAL, 9150, 0, 0) == S.OK  # 183 of the 188 pulses left
    run(rig, pump, 400)
    assert pump.bolus_progress()[0] == 0 and pump.reservoir_pulses() == 5
    assert pump.bolus(S.BOLUS_NORMAL, 250, 0, 0) == S.OK
    fill = rig.motor.pos + 5
    plan(pump, 3, 4, 0)  # 7 pulses due in one step, 5 left
    pump._deliver()
    assert rig.motor.pos == fill
    assert pump.reservoir_pulses() == 0
    assert pump.state[S_STOP] == S.STOP_RESERVOIR
    assert pump.state[S_BASAL_TODAY] == 150
    assert pump.state[S_BOLUS_TODAY] == 9150 + 100


@pytest.mark.req("THR-3", "THR-7")
def test_a_fast_bolus_in_small_pulses_delivers_exactly_what_was_requested():
    """At 3 U/min in 0.01-U pulses, five pulses fall due per 1-s step: the last step of the
    bolus plans only what is still requested (mutant bolus-overshoots-request)."""
    rig, pump = make_pump(10, rates=(0,))
    assert pump.settings.set(S.SET_BOLUS_SPEED, 3000) == S.OK
    pos = rig.motor.pos
    assert pump.bolus(S.BOLUS_NORMAL, 1010, 0, 0) == S.OK  # 101 pulses
    run(rig, pump, 30)
    assert pump.bolus_progress()[0] == 0
    assert rig.motor.pos - pos == 101
    assert pump.state[S_BOLUS_TODAY] == 1010


@pytest.mark.req("THR-5", "THR-7")
def test_no_basal_fraction_builds_up_while_suspended():
    """The carried basal fraction stands still while the pump is stopped: after a resume
    the next pulse needs the rest of its own running time, never time spent suspended
    (mutant basal-plans-while-stopped)."""
    rig, pump = make_pump(50, rates=(1000,))  # a basal pulse every 180 s of running time
    pos = rig.motor.pos
    run(rig, pump, 180)
    assert rig.motor.pos == pos + 1
    assert pump.suspend() == S.OK
    run(rig, pump, 100)
    assert pump.resume() == S.OK
    run(rig, pump, 179)
    assert rig.motor.pos == pos + 1
    run(rig, pump, 1)
    assert rig.motor.pos == pos + 2


@pytest.mark.req("THR-2", "THR-7")
def test_a_temp_basal_ends_to_the_millisecond_within_a_step():
    """Ticks of 700 ms do not line up with a 15-min temp basal: the step that crosses its
    end is cut there, so the temp rate runs 900 000 ms, not up to a step more (mutant
    temp-basal-end-overshoots)."""
    rig, pump = make_pump(50, rates=(1000,))
    pos = rig.motor.pos
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 3000, 15) == S.OK
    run(rig, pump, 980, step_ms=700)  # 1400 ticks: 900 s at 3 U/h, 80 s at 1 U/h
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    integral = 3000 * 900000 + 1000 * 80000  # mU * ms / h
    assert (rig.motor.pos - pos) * 50 * 3600000 + pump.state[S_BASAL_ACC] == integral


@pytest.mark.req("HW-5", "SEC-4", "ALM-5")
def test_a_console_fault_the_console_does_not_catch_never_stops_the_pump():
    """The main loop's second line of defence: whatever the console raises becomes one
    error line, and ticking, delivery and the watchdog go on (mutant
    console-fault-escapes)."""
    import firmware.main
    from boards.fakes import Serial

    rig, _ = make_pump(50, rates=(1000,))
    hw = rig.hardware()
    hw.console = port = Serial()
    runner = firmware.main.Runner(hw)
    runner.boot()

    def broken(data):
        raise RuntimeError("bug")

    runner.console.feed = broken
    port.take()  # the greeting
    port.send(b"status\r")
    feeds = rig.watchdog.feeds
    pos = rig.motor.pos
    runner.run(ticks=1801)  # 3 min of 100-ms ticks
    assert port.take() == b"error: console fault\r\n"
    assert rig.watchdog.feeds - feeds == 1801
    assert rig.motor.pos == pos + 1  # basal went on: one pulse per 180 s
