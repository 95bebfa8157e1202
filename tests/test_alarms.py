"""Alarms: priorities (ALM-1), annunciation, repeat, escalation, acknowledge (ALM-2) and the
alarm log and host events (ALM-6). Occlusion (ALM-3) and auto-off (ALM-4): test_safety.py.

Alarm timers count the board time that ticks report. An alarm raised or acknowledged by a
command (between ticks) therefore re-sounds exactly one period later; one raised inside a
tick, or acknowledged by the button (read at the start of a tick), may re-sound up to one
tick earlier. The pump-level tests below check such cases at instants away from that tick.
"""

import pytest

from boards.fakes import Annunciator
from firmware.alarms import Alarms
from firmware.pump import S_STOP
from protocol import spec as S
from tests.pumpkit import MONDAY_2026, events, make_pump, records, run, run_until

MIN_S = 60
HIGH = (
    S.A_OCCLUSION, S.A_RESERVOIR_EMPTY, S.A_BATTERY_DEPLETED, S.A_NO_DELIVERY, S.A_MOTOR_FAULT,
    S.A_SELFTEST, S.A_AUTO_OFF, S.A_URGENT_LOW,
    S.A_URGENT_LOW_SOON,  # issue 5: an urgent low predicted within 20 min (SNS-2)
)
MEDIUM = (
    S.A_RESERVOIR_LOW, S.A_RESERVOIR_VERY_LOW, S.A_BATTERY_LOW, S.A_BATTERY_VERY_LOW,
    S.A_SIGNAL_LOSS, S.A_GLUCOSE_LOW, S.A_GLUCOSE_HIGH,
    S.A_GLUCOSE_RISE, S.A_GLUCOSE_FALL, S.A_SENSOR_EXPIRED,
    S.A_TIME_UNSET, S.A_DOSE_LIMIT,  # issue 9: time lost (THR-13), rolling 24 h (THR-6)
    S.A_PAIRING_LOST,  # issue 13/15: the sensor link hears only other transmitters (SNS-4)
    S.A_PRIME_INCOMPLETE,  # issue 15: delivering after a fill without a tubing prime (THR-12)
)
LOW = (S.A_SUSPEND_REMINDER, S.A_SET_CHANGE, S.A_SENSOR_WARMUP, S.A_SBL)


def bare_alarms(repeat_min=5, snooze_min=30):
    """An alarm manager on a fake annunciator; returns (alarms, annunciator, log list)."""
    ann = Annunciator()
    log = []
    al = Alarms(ann, lambda alarm, action, value: log.append((alarm, action, value)))
    al.repeat_ms = repeat_min * 60000
    al.snooze_ms = snooze_min * 60000
    return al, ann, log


def tick_s(al, seconds):
    for _ in range(seconds):
        al.tick(1000)


def alarm_log(pump, since=0):
    """(alarm id, action, value) of every H_ALARM record."""
    return [(r[4], r[3], r[5]) for r in records(pump, S.H_ALARM, since)]


# ------------------------------------------------------------------------------- ALM-1
@pytest.mark.req("ALM-1")
def test_priority_table():
    """Each alarm has the priority ALM-1 gives it; every alarm is in exactly one class."""
    assert sorted(HIGH + MEDIUM + LOW) == list(range(S.ALARM_COUNT))
    for a in HIGH:
        assert S.ALARMS[a][1] == S.PRIO_HIGH == 3, S.ALARMS[a]
    for a in MEDIUM:
        assert S.ALARMS[a][1] == S.PRIO_MEDIUM == 2, S.ALARMS[a]
    for a in LOW:
        assert S.ALARMS[a][1] == S.PRIO_LOW == 1, S.ALARMS[a]


@pytest.mark.req("ALM-1", "ALM-2")
@pytest.mark.parametrize("alarm", range(S.ALARM_COUNT), ids=[a[0] for a in S.ALARMS])
def test_each_alarm_sounds_and_lights_at_its_priority(alarm):
    al, ann, _ = bare_alarms()
    prio = S.ALARMS[alarm][1]
    al.raise_(alarm, 7)
    assert list(ann.sounds) == [1 if p == prio else 0 for p in range(4)]
    assert (ann.last_priority, ann.last_level) == (prio, 0)
    al.tick(1000)
    assert ann.led_priority == prio
    al.clear(alarm, 0)
    al.tick(1000)
    assert ann.led_priority == 0


@pytest.mark.req("ALM-1", "ALM-2", "THR-5", "BAT-1")
def test_pump_conditions_raise_alarms_of_their_priority():
    """Real conditions: battery low (medium), suspend reminder (low), no delivery (high)."""
    rig, pump = make_pump(rates=(0,))
    ann = rig.annunciator
    rig.battery.level = 20
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_BATTERY_LOW] == 1
    assert list(ann.sounds) == [0, 0, 1, 0] and ann.led_priority == S.PRIO_MEDIUM
    assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
    assert pump.suspend() == S.OK
    run(rig, pump, 30 * MIN_S)  # reminder after SET_SUSPEND_REMINDER = 30 min
    assert pump.alarms.active[S.A_SUSPEND_REMINDER] == 1
    assert ann.sounds[S.PRIO_LOW] == 1
    assert ann.led_priority == S.PRIO_MEDIUM  # battery low is still active
    assert pump.resume() == S.OK
    # profile rate 0: no insulin for SET_NO_DELIVERY = 240 min since boot (1 s + 30 min ran)
    assert pump.alarms.active[S.A_NO_DELIVERY] == 0
    run(rig, pump, 240 * MIN_S - 30 * MIN_S - 2)
    assert pump.alarms.active[S.A_NO_DELIVERY] == 0
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_NO_DELIVERY] == 1
    assert ann.sounds[S.PRIO_HIGH] == 1 and ann.last_priority == S.PRIO_HIGH
    assert ann.led_priority == S.PRIO_HIGH


# ------------------------------------------------------------------------------- ALM-2
@pytest.mark.req("ALM-2")
def test_repeat_every_period_and_escalate_until_acknowledged():
    al, ann, _ = bare_alarms()
    al.raise_(S.A_BATTERY_LOW, 20)
    assert ann.sounds[2] == 1 and al.level[S.A_BATTERY_LOW] == 0
    tick_s(al, 299)
    assert ann.sounds[2] == 1
    tick_s(al, 1)  # 5 min
    assert (ann.sounds[2], ann.last_level, al.level[S.A_BATTERY_LOW]) == (2, 1, 1)
    tick_s(al, 299)
    assert ann.sounds[2] == 2
    tick_s(al, 1)  # 10 min
    assert (ann.sounds[2], ann.last_level) == (3, 2)
    tick_s(al, 300)  # 15 min: the loudest level is kept
    assert (ann.sounds[2], ann.last_level) == (4, 2)
    tick_s(al, 3000)  # 65 min: 10 more repeats
    assert (ann.sounds[2], ann.last_level) == (14, 2)
    # acknowledged: quiet for the snooze period (medium), then back at level 0
    assert al.ack(S.A_BATTERY_LOW) == S.OK
    assert al.level[S.A_BATTERY_LOW] == 0
    tick_s(al, 30 * 60 - 1)
    assert ann.sounds[2] == 14
    tick_s(al, 1)
    assert (ann.sounds[2], ann.last_level) == (15, 0)
    tick_s(al, 300)  # not acknowledged again: repeats and escalates again
    assert (ann.sounds[2], ann.last_level) == (16, 1)


@pytest.mark.req("ALM-2")
@pytest.mark.parametrize("repeat_min", [1, 5, 30])
def test_repeat_period_follows_setting(repeat_min):
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_ALARM_REPEAT, repeat_min) == S.OK
    assert pump.alarms.repeat_ms == repeat_min * 60000
    rig.battery.level = 15
    run(rig, pump, 1)
    ann = rig.annunciator
    assert ann.sounds[2] == 1
    # 4.5 periods later: exactly 4 repeats, whatever the tick offset
    run(rig, pump, repeat_min * 60 * 9 // 2)
    assert ann.sounds[2] == 5
    assert ann.last_level == 2


@pytest.mark.req("ALM-2")
def test_led_shows_highest_active_priority():
    al, ann, _ = bare_alarms()
    al.tick(1000)
    assert ann.led_priority == 0
    al.raise_(S.A_SUSPEND_REMINDER, 0)
    al.tick(1000)
    assert ann.led_priority == 1
    al.raise_(S.A_BATTERY_LOW, 18)
    al.tick(1000)
    assert ann.led_priority == 2
    al.raise_(S.A_OCCLUSION, 2500)
    al.tick(1000)
    assert ann.led_priority == 3
    # an acknowledged high alarm still lights the LED: it is still active
    assert al.ack(S.A_BATTERY_DEPLETED) == S.E_UNKNOWN_ALARM
    al.raise_(S.A_BATTERY_DEPLETED, 0)
    assert al.ack(S.A_BATTERY_DEPLETED) == S.OK
    al.clear(S.A_OCCLUSION, 0)
    al.tick(1000)
    assert ann.led_priority == 3
    al.clear(S.A_BATTERY_DEPLETED, 0)
    al.tick(1000)
    assert ann.led_priority == 2
    al.clear(S.A_BATTERY_LOW, 0)
    al.tick(1000)
    assert ann.led_priority == 1
    al.clear(S.A_SUSPEND_REMINDER, 0)
    al.tick(1000)
    assert ann.led_priority == 0


@pytest.mark.req("ALM-1", "ALM-2", "ALM-8")
def test_priority_not_alarm_number_decides_the_led_and_the_button():
    """A high alarm whose number is above a medium and a low one: the LED shows high and
    the button acknowledges it first (mutants alarm-led-lowest, alarm-ack-top-not-highest:
    the older tests raised the high alarm with the lowest number)."""
    al, ann, log = bare_alarms()
    assert S.A_BATTERY_LOW < S.A_SUSPEND_REMINDER < S.A_URGENT_LOW_SOON
    al.raise_(S.A_BATTERY_LOW, 18)
    al.raise_(S.A_SUSPEND_REMINDER, 1)
    al.raise_(S.A_URGENT_LOW_SOON, 54)
    al.tick(1000)
    assert ann.led_priority == S.PRIO_HIGH
    del log[:]
    assert al.ack_top() == S.OK
    assert al.ack_top() == S.OK
    assert al.ack_top() == S.OK
    assert log == [(S.A_URGENT_LOW_SOON, S.ALARM_ACKED, 0), (S.A_BATTERY_LOW, S.ALARM_ACKED, 0),
                   (S.A_SUSPEND_REMINDER, S.ALARM_ACKED, 0),
                   (S.A_SUSPEND_REMINDER, S.ALARM_CLEARED, 0)]
    assert al.ack_top() == S.E_UNKNOWN_ALARM
    al.clear(S.A_URGENT_LOW_SOON, 70)
    al.tick(1000)
    assert ann.led_priority == S.PRIO_MEDIUM


@pytest.mark.req("ALM-2")
def test_led_on_pump_follows_alarms():
    rig, pump = make_pump()
    rig.battery.level = 20
    run(rig, pump, 1)
    assert rig.annunciator.led_priority == S.PRIO_MEDIUM
    rig.battery.level = 0
    run(rig, pump, 1)
    assert rig.annunciator.led_priority == S.PRIO_HIGH
    rig.battery.level = 100
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_BATTERY_DEPLETED] == 0
    assert pump.alarms.active[S.A_BATTERY_LOW] == 0
    assert rig.annunciator.led_priority == 0


@pytest.mark.req("ALM-2")
def test_high_alarm_cannot_be_snoozed():
    """Acknowledged battery depleted (high, not latched) sounds again after the repeat period,
    not after the snooze period."""
    rig, pump = make_pump()
    rig.battery.level = 0
    run(rig, pump, 1)
    ann = rig.annunciator
    assert pump.alarms.active[S.A_BATTERY_DEPLETED] == 1
    assert ann.sounds[3] == 1
    assert pump.ack_alarm(S.A_BATTERY_DEPLETED) == S.OK
    assert pump.alarms.acked[S.A_BATTERY_DEPLETED] == 1
    run(rig, pump, 5 * MIN_S - 1)
    assert ann.sounds[3] == 1
    run(rig, pump, 1)  # exactly 5 min after the acknowledgement
    assert (ann.sounds[3], ann.last_priority, ann.last_level) == (2, 3, 0)
    assert pump.alarms.acked[S.A_BATTERY_DEPLETED] == 0  # must be acknowledged again
    run(rig, pump, 5 * MIN_S)  # left unacknowledged: escalates
    assert (ann.sounds[3], ann.last_level) == (3, 1)
    # acknowledging every time never buys more than the repeat period
    for n in range(4):
        assert pump.ack_alarm(S.A_BATTERY_DEPLETED) == S.OK
        run(rig, pump, 5 * MIN_S)
        assert (ann.sounds[3], ann.last_level) == (4 + n, 0)


@pytest.mark.req("ALM-2")
@pytest.mark.parametrize("snooze_min", [5, 30, 120])
def test_medium_alarm_snoozed_by_ack(snooze_min):
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_SNOOZE, snooze_min) == S.OK
    rig.battery.level = 19
    run(rig, pump, 1)
    ann = rig.annunciator
    assert ann.sounds[2] == 1
    assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
    run(rig, pump, snooze_min * MIN_S - 1)
    assert ann.sounds[2] == 1
    run(rig, pump, 1)
    assert (ann.sounds[2], ann.last_level) == (2, 0)
    assert pump.alarms.active[S.A_BATTERY_LOW] == 1


@pytest.mark.req("ALM-2")
def test_ack_by_button_acknowledges_highest_unacknowledged():
    rig, pump = make_pump()
    ann = rig.annunciator
    rig.battery.level = 20  # medium
    run(rig, pump, 1)
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    assert run_until(rig, pump, lambda: pump.alarms.active[S.A_OCCLUSION], 120) is not None
    assert ann.sounds[3] == 1
    seq = pump.history.next_seq
    # first press: the occlusion (high, latched) is acknowledged and so cleared
    rig.buttons.press(1)
    run(rig, pump, 1)
    assert alarm_log(pump, seq) == [(S.A_OCCLUSION, S.ALARM_ACKED, 0),
                                    (S.A_OCCLUSION, S.ALARM_CLEARED, 0)]
    assert pump.alarms.active[S.A_OCCLUSION] == 0
    assert pump.state[S_STOP] == S.STOP_OCCLUSION  # acknowledging does not resume
    # second press: the battery alarm, which stays active but is quiet for the snooze
    seq = pump.history.next_seq
    sounds = ann.sounds[2]
    rig.buttons.press(1)
    run(rig, pump, 1)
    assert alarm_log(pump, seq) == [(S.A_BATTERY_LOW, S.ALARM_ACKED, 0)]
    assert pump.alarms.active[S.A_BATTERY_LOW] == 1
    assert pump.alarms.acked[S.A_BATTERY_LOW] == 1
    run(rig, pump, 29 * MIN_S)
    assert ann.sounds[2] == sounds
    run(rig, pump, 2 * MIN_S)
    assert ann.sounds[2] == sounds + 1
    # a press with nothing left to acknowledge logs nothing
    assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
    if pump.alarms.active[S.A_SUSPEND_REMINDER]:  # stopped for 30 min by now
        assert pump.ack_alarm(S.A_SUSPEND_REMINDER) == S.OK
    assert [a for a in range(S.ALARM_COUNT)
            if pump.alarms.active[a] and not pump.alarms.acked[a]] == []
    seq = pump.history.next_seq
    rig.buttons.press(1)
    run(rig, pump, 1)
    assert alarm_log(pump, seq) == []


@pytest.mark.req("ALM-2", "LNK-4")
def test_ack_command_refuses_inactive_or_unknown_alarm():
    _, pump = make_pump()
    for alarm in (S.A_OCCLUSION, S.A_BATTERY_LOW, -1, S.ALARM_COUNT, 99):
        assert pump.ack_alarm(alarm) == S.E_UNKNOWN_ALARM
        assert pump.detail == alarm


@pytest.mark.req("ALM-2")
def test_unacknowledged_pump_alarm_repeats_and_escalates():
    rig, pump = make_pump()
    ann = rig.annunciator
    rig.battery.level = 20
    run(rig, pump, 1)
    run(rig, pump, 27 * MIN_S + 30)  # 5 repeats at about 5, 10, ... 25 min
    assert ann.sounds[2] == 6
    assert ann.last_level == 2 and pump.alarms.level[S.A_BATTERY_LOW] == 2
    assert ann.sounds[3] == ann.sounds[1] == 0


# ------------------------------------------------------------------------------- ALM-6
@pytest.mark.req("ALM-6")
def test_raise_ack_clear_are_logged_and_sent():
    rig, pump = make_pump()
    events(pump)
    seq = pump.history.next_seq
    rig.battery.level = 18
    run(rig, pump, 1)
    assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
    rig.battery.level = 22  # within the 2 % hysteresis: stays
    run(rig, pump, 1)
    rig.battery.level = 30
    run(rig, pump, 1)
    expected = [(S.A_BATTERY_LOW, S.ALARM_RAISED, 18), (S.A_BATTERY_LOW, S.ALARM_ACKED, 0),
                (S.A_BATTERY_LOW, S.ALARM_CLEARED, 30)]
    assert alarm_log(pump, seq) == expected
    assert [e for e in events(pump) if e[0] == S.EV_ALARM] == [
        (S.EV_ALARM, a, action, v) for a, action, v in expected]
    # time stamps: the battery is read at the start of a tick, before the clock moves on
    t0 = MONDAY_2026
    assert [r[1] for r in records(pump, S.H_ALARM, seq)] == [t0, t0 + 1, t0 + 2]


@pytest.mark.req("ALM-6")
def test_every_alarm_record_has_its_event():
    """A busy scenario: each H_ALARM record matches one EV_ALARM event, in order."""
    rig, pump = make_pump(50, rates=(1000,))
    events(pump)
    seq = pump.history.next_seq
    got = []

    def drain():
        got.extend(e for e in events(pump) if e[0] == S.EV_ALARM)

    rig.battery.level = 4
    run(rig, pump, 1)
    drain()
    rig.buttons.press(1)  # acknowledges one of them
    run(rig, pump, 1)
    drain()
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    for _ in range(12):
        run(rig, pump, 10)
        drain()
    assert pump.ack_alarm(S.A_OCCLUSION) == S.OK
    rig.line.occluded = False
    run(rig, pump, 30 * 60, step_ms=60000)  # suspend reminder
    drain()
    rig.battery.level = 100
    assert pump.resume() == S.OK
    run(rig, pump, 1)
    drain()
    logged = alarm_log(pump, seq)
    assert [(a, action, v) for _, a, action, v in got] == logged
    kinds = {(a, action) for a, action, _ in logged}
    for a in (S.A_BATTERY_LOW, S.A_BATTERY_VERY_LOW, S.A_OCCLUSION, S.A_SUSPEND_REMINDER):
        assert (a, S.ALARM_RAISED) in kinds and (a, S.ALARM_CLEARED) in kinds
    assert (S.A_OCCLUSION, S.ALARM_ACKED) in kinds
    assert len(logged) >= 10


@pytest.mark.req("ALM-1")
def test_the_alarm_table_in_docs_lists_every_alarm():
    """docs/alarms.md has one row per alarm, in id order, with spec.py's name and priority."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "alarms.md").read_text()
    prio = {"high": S.PRIO_HIGH, "medium": S.PRIO_MEDIUM, "low": S.PRIO_LOW}
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1], prio[cells[2]]))
    assert rows == [(i, name, p) for i, (name, p) in enumerate(S.ALARMS)]
