"""Alarm signals after IEC 60601-1-8 (ALM-8), measured on the emulator: the buzzer timeline
and LED pattern in its telemetry for one alarm of each priority, checked against the
standard's ranges, and written with the board driver's figures to docs/alarm-signals.md.

The emulator's timeline is what the firmware told the annunciator (which signal, when it
started and stopped, at which level) laid out with the burst table of firmware/signals.py;
the board column reads the PWM buzzer driver (boards/drivers.py) off a fake PWM and pins
every 20 ms, as a scope would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from boards import drivers
from firmware import signals
from host_tools.alarm_signals import bursts, flash, measure
from host_tools.client import PumpRefused
from protocol import spec as S
from tests import fake_machine as fm

from . import kit

DOC = Path(__file__).resolve().parent.parent / "docs" / "alarm-signals.md"
PRIO = {1: "low", 2: "medium", 3: "high"}


@pytest.fixture(autouse=True)
def quiet_after(sim):
    """These tests raise and clear battery alarms many times: let the start-stop cycle
    window (firmware/alarms.py CYCLE_MS, 10 min) run out before the next test, so that no
    later test starts with an escalated alarm."""
    yield
    sim.advance(minutes=11)


def telemetry(bench) -> dict:
    if bench.emulator is None or bench.board == "qemu-arm":
        # a real board, or the QEMU ARM board, whose only port is its UART: no telemetry
        pytest.skip("the buzzer timeline is the unix emulator's telemetry")
    tel = bench.emulator.next_telemetry(5.0)
    assert tel.get("emu"), "no telemetry from the emulator"
    return tel


def sounded(bench, since: int) -> tuple[list[tuple], list[list], dict]:
    """Tone pulses and signals started at or after `since` (virtual ms), and the LED."""
    emu = telemetry(bench)["emu"]
    pulses = [tuple(p) for p in emu["pulses"] if p[0] >= since]
    # a signal replaced within the same tick (stop == start) never sounded
    segs = [s for s in emu["signals"] if s[0] >= since and s[3] != s[0]]
    return pulses, segs, emu["led_pattern"]


def elapsed(bench) -> int:
    return telemetry(bench)["emu"]["elapsed_ms"]


def board_figures(priority: int) -> dict[str, list[int]]:
    """The PWM driver's buzzer and LED, read off fake pins every 20 ms for 45 s."""
    pwm = fm.PWM(fm.Pin(15), freq=2000, duty_u16=0)
    ann = drivers.Annunciator(pwm, fm.Pin(25, fm.Pin.OUT))
    ann.sound(priority, 0)
    ann.led(priority)
    pulses, levels, on = [], [], None
    for k in range(45000 // 20 + 1):
        t = k * 20
        duty = pwm.duty_u16()
        if duty and on is None:
            on = (t, pwm.freq())
        elif not duty and on is not None:
            pulses.append((on[0], on[1], t - on[0]))
            on = None
        lit = fm.Pin.levels[25]
        if not levels or levels[-1][1] != lit:
            levels.append((t, lit))
        ann.advance()
    fig = measure(pulses, priority)
    fl = flash(levels)
    if fl is not None:
        fig["flash frequency"], fig["flash duty cycle"] = [fl[0]], [fl[1]]
    return fig


def led_figures(led: dict) -> dict[str, list[int]]:
    if not led["off_ms"]:
        return {}
    return {"flash frequency": [led["flash_mhz"]],
            "flash duty cycle": [100 * led["on_ms"] // (led["on_ms"] + led["off_ms"])]}


def shown(values: list[int] | None) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}..{hi}"


def check(fig: dict, priority: int) -> list[str]:
    """Figures outside the standard's range: [] when all are within."""
    bad = []
    for name, prio, lo, hi, _unit in signals.STANDARD:
        if prio == priority and name in fig:
            bad += [f"{name} {v} not in {lo}..{hi}" for v in fig[name] if not lo <= v <= hi]
    return bad


@pytest.mark.req("ALM-8", "ALM-1", "ALM-2")
def test_signals_of_each_priority_within_iec_60601_1_8(bench, pump, sim):
    emu: dict[int, dict] = {}
    # high: battery depleted (the battery-low alarms raised with it are hidden behind it)
    t0 = elapsed(bench)
    sim.battery(0)
    sim.advance(seconds=55)
    pulses, segs, led = sounded(bench, t0)
    assert {s[1] for s in segs} == {S.PRIO_HIGH}, segs
    assert led["priority"] == S.PRIO_HIGH and led["colour"] == "red"
    assert len(bursts(pulses)) == 6  # every 10 s over 55 s
    emu[3] = measure(pulses, 3) | led_figures(led)
    assert emu[3]["spacing 3rd to 4th pulse"] == [
        2 * emu[3]["pulse spacing"][0] + emu[3]["pulse duration"][0]] * 6  # 2x + td
    sim.battery(100)
    sim.advance(seconds=2)
    pump.ack_alarm("battery_depleted")  # a condition that ended: "not acknowledged" shown
    pump.resume()  # the depleted battery stopped delivery
    # medium: battery low
    t0 = elapsed(bench)
    sim.battery(15)
    sim.advance(seconds=55)
    pulses, segs, led = sounded(bench, t0)
    assert {s[1] for s in segs} == {S.PRIO_MEDIUM}, segs
    assert led["priority"] == S.PRIO_MEDIUM and led["colour"] == "yellow"
    assert len(bursts(pulses)) == 3  # every 20 s over 55 s
    emu[2] = measure(pulses, 2) | led_figures(led)
    pump.ack_alarm("battery_low")
    sim.battery(100)
    sim.advance(seconds=2)
    # low: the suspend reminder (30 min suspended, default)
    pump.suspend()
    t0 = elapsed(bench)
    sim.advance(minutes=30, seconds=50)
    pulses, segs, led = sounded(bench, t0)
    assert {s[1] for s in segs} == {S.PRIO_LOW}, segs
    assert led["priority"] == S.PRIO_LOW and led["steady"] == 1
    assert len(bursts(pulses)) == 1  # not repeated within the minute
    emu[1] = measure(pulses, 1)
    pump.resume()

    board = {p: board_figures(p) for p in (1, 2, 3)}
    for p in (1, 2, 3):
        assert emu[p]["pulses per burst"][0] == {1: 2, 2: 3, 3: 10}[p]
        assert check(emu[p], p) == [], (PRIO[p], "emulator")
        assert check(board[p], p) == [], (PRIO[p], "board")
    rows = ["| figure | priority | IEC 60601-1-8 | unit | emulator | board driver |",
            "|---|---|---|---|---|---|"]
    for name, prio, lo, hi, unit in signals.STANDARD:
        std = str(lo) if lo == hi else f"{lo}..{hi}"
        rows.append(f"| {name} | {PRIO[prio]} | {std} | {unit} | {shown(emu[prio].get(name))} "
                    f"| {shown(board[prio].get(name))} |")
    for p in (1, 2, 3):
        assert shown(emu[p]["burst repeat interval"]) == (
            "-" if p == 1 else str(signals.BURST_INTERVAL_MS[p]))
    DOC.write_text(
        "# Alarm signals measured against IEC 60601-1-8 (ALM-8)\n\n"
        "Generated by `hil_tests/test_alarm_signals.py` (`pytest hil_tests/test_alarm_signals"
        ".py`); do not edit by hand.\n\n"
        "- **emulator**: one alarm of each priority raised on the emulator (battery depleted, "
        "battery low, suspend reminder) and run 55 s (low: 50 s after the reminder); the "
        "figures come from the tone pulses and LED pattern in its telemetry. The pulses are "
        "the firmware's annunciator calls (signal, start, stop, level) laid out with the "
        "burst table of firmware/signals.py.\n"
        "- **board driver**: boards/drivers.Annunciator on a fake PWM and LED pin, read every "
        "20 ms (its service-timer period) for 45 s.\n"
        "- Ranges are inclusive; a value shown as a..b is the spread over every pulse, "
        "spacing or burst measured. Pulse spacing is end of one pulse to start of the next; "
        "for high priority it is the short spacing x (the 3rd-to-4th spacing is 2x + td by "
        "construction, checked by the test). Low priority bursts are not repeated by the "
        "signal (the standard allows no repeat); the alarm manager re-annunciates an "
        "unacknowledged alarm at the alarm-repeat setting (ALM-2, default 5 min). Low "
        "priority's LED is steady, so it has no flash figures.\n\n"
        + "\n".join(rows) + "\n")
    assert DOC.read_text().count("\n| ") == len(signals.STANDARD) + 1


# ------------------------------------------------------------------ alarm management
def playing(bench) -> tuple[int, int] | None:
    """(priority, level) of the signal the emulator's buzzer plays now, or None."""
    segs = [s for s in telemetry(bench)["emu"]["signals"] if s[3] < 0]
    return (segs[-1][1], segs[-1][2]) if segs else None


@pytest.mark.req("ALM-8", "ALM-6", "ALM-1", "ALM-3")
def test_hidden_alarm_logged_then_annunciated_when_the_higher_is_acknowledged(bench, pump, sim):
    pump.bolus(5000)
    sim.occlusion(True)
    _ms, ev, _seen = sim.run_until(
        lambda e: e.kind == S.EV_ALARM and e.a == S.A_OCCLUSION and e.b == S.ALARM_RAISED,
        5 * kit.MIN_MS)
    assert ev is not None, "no occlusion alarm"
    sim.occlusion(False)
    assert playing(bench) == (S.PRIO_HIGH, 0)
    kit.drain_events(pump)
    sim.battery(15)  # battery low (medium) while the occlusion alarm sounds
    sim.advance(seconds=2)
    events = kit.alarm_events(kit.drain_events(pump), S.A_BATTERY_LOW)
    assert [(e.b, e.c) for e in events] == [(S.ALARM_RAISED, 15),
                                            (S.ALARM_HIDDEN, S.A_OCCLUSION)]
    assert playing(bench) == (S.PRIO_HIGH, 0)  # the medium one is not heard
    sim.advance(seconds=30)
    assert playing(bench) == (S.PRIO_HIGH, 0)
    pump.ack_alarm("occlusion")  # latched: acknowledged, it clears
    assert playing(bench) == (S.PRIO_MEDIUM, 0)  # the hidden one sounds now
    sim.advance(seconds=1)  # the LED follows at the next tick
    assert telemetry(bench)["emu"]["led_pattern"]["priority"] == S.PRIO_MEDIUM
    logged = [(r.arg, r.v2) for r in kit.records(kit.history(pump, 0), S.H_ALARM)
              if r.v1 == S.A_BATTERY_LOW][-2:]
    assert logged == [(S.ALARM_RAISED, 15), (S.ALARM_HIDDEN, S.A_OCCLUSION)]
    pump.ack_alarm("battery_low")
    assert playing(bench) is None
    sim.battery(100)
    sim.advance(seconds=2)


@pytest.mark.req("ALM-8", "ALM-6")
def test_condition_that_ends_unacknowledged_is_logged_and_shown(bench, pump, sim):
    kit.drain_events(pump)
    sim.battery(15)
    sim.advance(seconds=5)
    assert playing(bench) == (S.PRIO_MEDIUM, 0)
    sim.battery(100)  # charged before anyone acknowledged it
    sim.advance(seconds=2)
    assert playing(bench) is None
    events = kit.alarm_events(kit.drain_events(pump), S.A_BATTERY_LOW)
    assert [e.b for e in events] == [S.ALARM_RAISED, S.ALARM_CLEARED, S.ALARM_UNACKED]
    assert [e.describe() for e in events][-1] == (
        "alarm battery_low cleared, was not acknowledged")
    pump.ack_alarm("battery_low")  # seen: acknowledging it is accepted once
    with pytest.raises(PumpRefused):
        pump.ack_alarm("battery_low")


@pytest.mark.req("ALM-8", "ALM-2")
def test_start_stop_cycles_escalate_on_the_emulator(bench, pump, sim):
    sim.advance(minutes=11)  # no cycle window left from other tests
    levels = []
    for _ in range(4):  # the battery reading dips below 20 % and recovers, every 2 min
        sim.battery(15)
        sim.advance(seconds=5)
        levels.append(playing(bench))
        sim.battery(100)
        sim.advance(seconds=115)
    assert levels == [(S.PRIO_MEDIUM, 0), (S.PRIO_MEDIUM, 0), (S.PRIO_MEDIUM, 1),
                      (S.PRIO_MEDIUM, 2)]
    pump.ack_alarm("battery_low")
