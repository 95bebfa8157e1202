"""Prime not completed (issue 15, A_PRIME_INCOMPLETE): delivery resumed after a fill whose
tubing prime did not complete raises a medium alarm that survives reboots and clears only
when a tubing prime completes or a new reservoir is filled (THR-12, ALM-1, ALM-2, ALM-6).

Resume is not refused: the person may know the line is full (docs/alarms.md)."""

from array import array

import pytest

from boards.fakes import PowerCut
from firmware.layout import (
    PRIME_DONE,
    PRIME_DUE,
    PRIME_SKIPPED,
    S_BOOTS,
    S_PRIME,
    S_STOP,
    STATE_LEN,
    STATE_LEN_2,
)
from firmware.pump import Pump
from firmware.store import Slots
from protocol import spec as S
from tests.pumpkit import history, make_pump, reboot, records, run

A = S.A_PRIME_INCOMPLETE
MIN_S = 60


def alarm_log(pump, since=0):
    """(alarm id, action, value) of every H_ALARM record of the prime alarm."""
    return [(r[4], r[3], r[5]) for r in records(pump, S.H_ALARM, since) if r[4] == A]


def events(pump):
    out = array("i", [0] * 4)
    got = []
    while pump.events.take(out):
        got.append(tuple(out))
    return got


def refill(pump, volume_mu=200000):
    """Suspend, rewind and fill a new reservoir (no prime)."""
    assert pump.suspend() == S.OK
    assert pump.rewind() == S.OK
    assert pump.fill(volume_mu) == S.OK


@pytest.mark.req("THR-12", "ALM-1", "ALM-6", "HIS-1")
def test_resume_without_a_tubing_prime_raises_the_alarm_and_delivers():
    rig, pump = make_pump(50, rates=(1000,))
    assert S.ALARMS[A] == ("prime_incomplete", S.PRIO_MEDIUM)
    assert pump.state[S_PRIME] == PRIME_DONE and not pump.alarms.active[A]
    refill(pump)
    assert pump.state[S_PRIME] == PRIME_DUE and not pump.alarms.active[A]  # not yet: stopped
    seq = pump.history.next_seq
    events(pump)
    assert pump.resume() == S.OK  # not refused: the alarm says what is wrong
    assert pump.state[S_PRIME] == PRIME_SKIPPED
    assert pump.alarms.active[A] and pump.alarms.highest() == S.PRIO_MEDIUM
    assert rig.annunciator.last_priority == S.PRIO_MEDIUM
    kinds = [r[2] for r in history(pump, seq)]
    assert kinds == [S.H_RESUME, S.H_ALARM]  # the resume, then the alarm it raised
    assert alarm_log(pump, seq) == [(A, S.ALARM_RAISED, 0)]
    assert (S.EV_ALARM, A, S.ALARM_RAISED, 0) in events(pump)
    pos = rig.motor.pos
    run(rig, pump, 3600, step_ms=10000)
    assert rig.motor.pos - pos == 20  # 1 U/h: basal goes on
    assert pump.alarms.active[A]


@pytest.mark.req("THR-12", "ALM-2")
def test_acknowledging_snoozes_it_and_only_a_prime_or_a_new_fill_clears_it():
    rig, pump = make_pump(50, rates=(1000,))
    refill(pump)
    assert pump.resume() == S.OK
    assert pump.ack_alarm(A) == S.OK
    assert pump.alarms.active[A] and pump.alarms.acked[A]  # a condition: not cleared by ack
    run(rig, pump, 30 * MIN_S + 10, step_ms=5000)  # medium: snoozed 30 min, then again
    assert pump.alarms.active[A] and not pump.alarms.acked[A]
    # a suspension does not clear it: the line is still not primed
    assert pump.suspend() == S.OK
    assert pump.alarms.active[A]
    seq = pump.history.next_seq
    assert pump.prime(S.PRIME_CANNULA, 100) == S.OK  # the cannula is not the tubing
    assert pump.alarms.active[A] and pump.state[S_PRIME] == PRIME_SKIPPED
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK
    assert not pump.alarms.active[A] and pump.state[S_PRIME] == PRIME_DONE
    # it sounded again after the snooze: shown as not acknowledged (ALM-8), level 0
    assert alarm_log(pump, seq) == [(A, S.ALARM_CLEARED, 500), (A, S.ALARM_UNACKED, 0)]
    assert pump.resume() == S.OK
    run(rig, pump, 10)
    assert not pump.alarms.active[A]
    # a new fill clears it too (the next resume decides again)
    refill(pump)
    assert pump.resume() == S.OK and pump.alarms.active[A]
    assert pump.suspend() == S.OK and pump.rewind() == S.OK
    assert pump.alarms.active[A]  # rewound: the old reservoir's line is still unprimed
    seq = pump.history.next_seq
    assert pump.fill(150000) == S.OK
    assert not pump.alarms.active[A] and pump.state[S_PRIME] == PRIME_DUE
    assert alarm_log(pump, seq) == [(A, S.ALARM_CLEARED, 150000), (A, S.ALARM_UNACKED, 0)]
    assert pump.prime(S.PRIME_TUBING, 50) == S.OK  # one pulse: the person saw the drop
    assert pump.resume() == S.OK
    run(rig, pump, 10)
    assert not pump.alarms.active[A]


@pytest.mark.req("THR-12", "ALM-1")
def test_a_filled_and_primed_reservoir_raises_nothing():
    rig, pump = make_pump(50, rates=(1000,))
    run(rig, pump, 60)
    assert pump.status()["alarms"] == []
    refill(pump, 300000)
    assert pump.prime(S.PRIME_TUBING, 1000) == S.OK
    assert pump.resume() == S.OK
    run(rig, pump, 60)
    assert pump.status()["alarms"] == [] and pump.state[S_PRIME] == PRIME_DONE


@pytest.mark.req("THR-12", "HIS-2", "ALM-1")
def test_the_alarm_survives_a_reboot_until_a_prime_clears_it():
    rig, pump = make_pump(50, rates=(1000,))
    refill(pump)
    pump = reboot(rig)  # filled, not resumed: nothing to say yet
    assert pump.state[S_PRIME] == PRIME_DUE and not pump.alarms.active[A]
    assert pump.resume() == S.OK and pump.alarms.active[A]
    for _ in range(2):
        pump = reboot(rig)
        assert pump.state[S_STOP] == S.STOP_NONE
        assert pump.alarms.active[A] and pump.state[S_PRIME] == PRIME_SKIPPED
        assert rig.annunciator.last_priority == S.PRIO_MEDIUM
    assert pump.suspend() == S.OK and pump.prime(S.PRIME_TUBING, 500) == S.OK
    pump = reboot(rig)
    assert not pump.alarms.active[A] and pump.state[S_PRIME] == PRIME_DONE


@pytest.mark.req("THR-12", "HIS-2", "ALM-1")
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_a_power_cut_at_any_write_of_a_reservoir_change_never_hides_the_alarm(mode):
    """Power dies before, during (torn) or after the k-th storage write of suspend,
    rewind, fill and resume, for every k: after the reboot the alarm is active exactly when
    the new reservoir is delivering unprimed, and a resume of it raises the alarm."""
    k = 1
    while True:
        rig, pump = make_pump(50, rates=(1000,))
        rig.storage.cut_at = rig.storage.writes + k
        rig.storage.cut_mode = mode
        try:
            refill(pump, 200000)
            assert pump.resume() == S.OK
        except PowerCut:
            pass
        else:
            break  # k passed the last write: every instant was cut
        rig.storage.cut_at = -1
        pump = reboot(rig)
        st = pump.state
        new = pump.reservoir_mu() == 200000
        delivering = st[S_STOP] == S.STOP_NONE
        assert pump.alarms.active[A] == (st[S_PRIME] == PRIME_SKIPPED), k
        assert (st[S_PRIME] == PRIME_SKIPPED) == (new and delivering), (k, new, delivering)
        if new and not delivering:
            assert st[S_PRIME] == PRIME_DUE
            assert pump.resume() == S.OK and pump.alarms.active[A], k
        k += 1
    assert k > 6  # suspend, rewind, fill and resume each write state and history


@pytest.mark.req("THR-12", "HIS-2", "ALM-1")
@pytest.mark.parametrize("cut", range(0, 10))
def test_a_tubing_prime_cut_short_by_a_power_cut_is_not_completed(cut):
    rig, pump = make_pump(50, rates=(1000,))
    refill(pump)
    pos = rig.motor.pos
    rig.motor.cut_after = cut  # power dies after `cut` of the 10 pulses
    with pytest.raises(PowerCut):
        pump.prime(S.PRIME_TUBING, 500)
    assert rig.motor.pos - pos == cut
    pump = reboot(rig)
    assert pump.state[S_PRIME] == PRIME_DUE
    assert pump.resume() == S.OK and pump.alarms.active[A]


@pytest.mark.req("THR-12", "ALM-7")
def test_a_tubing_prime_stopped_by_a_motor_fault_is_not_completed():
    rig, pump = make_pump(50, rates=(1000,))
    refill(pump)
    rig.motor.stall = True
    assert pump.prime(S.PRIME_TUBING, 500) == S.E_SAFE_STATE
    assert pump.state[S_PRIME] == PRIME_DUE
    rig.motor.stall = False
    pump = reboot(rig)  # the motor passes its self-test again
    assert pump.state[S_PRIME] == PRIME_DUE and not pump.alarms.active[A]
    assert pump.resume() == S.OK and pump.alarms.active[A]


@pytest.mark.req("HIS-2", "THR-12")
def test_a_state_saved_before_the_prime_flag_loads_as_primed():
    """An image of the layout before issue 15 (STATE_LEN_2 values) still loads: nothing is
    known about its last fill, so it counts as primed and no alarm sounds by surprise."""
    rig, pump = make_pump(50, rates=(1000,))
    refill(pump)
    assert pump.state[S_PRIME] == PRIME_DUE
    old = array("i", pump.state[:STATE_LEN_2])
    slots = Slots(rig.storage, 2, 3, old)
    assert slots.save() and slots.save()  # both copies in the older, shorter layout
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.state_slots.loaded_n == STATE_LEN_2 < STATE_LEN
    same = [i for i in range(1, STATE_LEN_2) if i != S_BOOTS]
    assert [pump.state[i] for i in same] == [old[i] for i in same]
    assert pump.state[S_PRIME] == PRIME_DONE
    assert pump.resume() == S.OK and not pump.alarms.active[A]
    pump = reboot(rig)  # saved in the new layout since
    assert pump.state_slots.loaded_n == STATE_LEN
