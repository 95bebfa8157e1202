"""Alarm signals and alarm management after IEC 60601-1-8 (ALM-8) on the firmware's alarm
manager and the emulator's recording annunciator: one signal at a time, hidden alarms,
"cleared, was not acknowledged", start-stop cycles, the pulse timeline and the WAV file.
Board driver timing: test_boards.py; the emulator end to end: hil_tests/test_alarm_signals.py.
"""

import wave

import numpy as np
import pytest

from boards.fakes import Annunciator
from firmware import signals
from firmware.alarms import CYCLE_MS, Alarms
from host_tools.alarm_signals import bursts, measure, recorded_pulses, write_wav
from protocol import spec as S


class Rig:
    """An alarm manager on a recording annunciator and a counting clock (ms)."""

    def __init__(self):
        self.t = 0
        self.ann = Annunciator(lambda: self.t)
        self.log = []
        self.al = Alarms(self.ann, lambda a, act, v: self.log.append((a, act, v)))

    def run(self, seconds):
        for _ in range(seconds):
            self.t += 1000
            self.al.tick(1000)

    def playing(self):
        """(priority, level) of the signal playing now, or None."""
        segs = [g for g in self.ann.segments() if g[3] < 0]
        return segs[-1][1:3] if segs else None


@pytest.mark.req("ALM-8", "ALM-2")
def test_high_signal_repeats_every_10_s_until_acknowledged_mid_burst():
    r = Rig()
    r.al.raise_(S.A_OCCLUSION, 0)
    r.run(21)
    assert r.al.ack(S.A_NO_DELIVERY) == S.E_UNKNOWN_ALARM  # not active
    r.al.raise_(S.A_NO_DELIVERY, 0)  # same priority: the newer signal plays
    r.run(0)
    assert r.playing() == (S.PRIO_HIGH, 0)
    assert r.al.ack(S.A_NO_DELIVERY) == S.OK  # occlusion still unacknowledged: it plays
    assert r.al.sounding == S.A_OCCLUSION
    assert r.al.ack(S.A_OCCLUSION) == S.OK  # latched: acknowledged means cleared
    assert r.playing() is None and r.ann.segments()[-1][3] == 21000
    pulses = r.ann.pulses(60000)
    groups = bursts(pulses)
    # bursts at 0, 10 and 20 s; the last cut at 21 s, mid-burst, when it was acknowledged
    assert [len(g) for g in groups] == [10, 10, 3]
    assert [g[0][0] for g in groups] == [0, 10000, 20000]
    assert {p[1] for p in pulses} == {signals.TONE_HZ[3]} == {880}
    fig = measure(pulses, S.PRIO_HIGH)
    assert fig["burst repeat interval"] == [10000, 10000]
    assert set(fig["pulse duration"]) == {160}
    assert r.ann.pulses(60000, since=20600) == [(20520, 880, 160, 0)]  # sounding at 20.6 s


@pytest.mark.req("ALM-8", "ALM-6", "ALM-1")
def test_lower_priority_alarm_hidden_then_annunciated_when_the_higher_clears():
    r = Rig()
    r.al.raise_(S.A_RESERVOIR_EMPTY, 0)
    r.run(3)
    r.al.raise_(S.A_BATTERY_LOW, 18)
    assert r.log[-2:] == [(S.A_BATTERY_LOW, S.ALARM_RAISED, 18),
                          (S.A_BATTERY_LOW, S.ALARM_HIDDEN, S.A_RESERVOIR_EMPTY)]
    r.run(1)
    assert r.playing() == (S.PRIO_HIGH, 0) and r.ann.led_priority == S.PRIO_HIGH
    assert r.ann.sounds[S.PRIO_MEDIUM] == 0  # hidden: not sounded
    r.t += 500
    r.al.clear(S.A_RESERVOIR_EMPTY, 0)
    assert r.playing() == (S.PRIO_MEDIUM, 0)  # at once, not at the next repeat
    assert r.ann.segments()[-1][0] == 4500
    r.run(1)
    assert r.ann.led_priority == S.PRIO_MEDIUM
    # its own repeat and escalation still run: 5 min after it was raised, louder
    r.run(300)
    assert r.playing() == (S.PRIO_MEDIUM, 1)


@pytest.mark.req("ALM-8", "ALM-2")
def test_hidden_alarm_still_escalates_and_sounds_when_the_higher_is_acknowledged():
    r = Rig()
    r.al.raise_(S.A_BATTERY_LOW, 18)
    r.al.raise_(S.A_MOTOR_FAULT, 3)  # higher: replaces the medium signal
    assert r.playing() == (S.PRIO_HIGH, 0)
    r.run(300)  # 5 min: both escalate; the medium's repeat is hidden
    assert (r.al.level[S.A_BATTERY_LOW], r.al.level[S.A_MOTOR_FAULT]) == (1, 1)
    assert r.ann.sounds[S.PRIO_MEDIUM] == 1 and r.playing() == (S.PRIO_HIGH, 1)
    assert r.al.ack_top() == S.OK  # the button: the motor fault
    assert r.playing() == (S.PRIO_MEDIUM, 1)
    assert r.ann.led_priority == S.PRIO_HIGH  # the visual signal stays: still active


@pytest.mark.req("ALM-8", "ALM-6")
def test_condition_cleared_before_acknowledged_is_logged_and_shown_until_acknowledged():
    r = Rig()
    r.al.raise_(S.A_BATTERY_LOW, 18)
    r.run(301)
    r.al.clear(S.A_BATTERY_LOW, 60)
    assert r.log[-2:] == [(S.A_BATTERY_LOW, S.ALARM_CLEARED, 60),
                          (S.A_BATTERY_LOW, S.ALARM_UNACKED, 1)]  # level it reached
    assert r.al.missed[S.A_BATTERY_LOW] == 1 and r.playing() is None
    assert r.al.ack(S.A_BATTERY_LOW) == S.OK  # seen: no longer shown
    assert r.al.missed[S.A_BATTERY_LOW] == 0 and r.log[-1] == (
        S.A_BATTERY_LOW, S.ALARM_ACKED, 0)
    assert r.al.ack(S.A_BATTERY_LOW) == S.E_UNKNOWN_ALARM
    # acknowledged, then cleared: nothing more to show
    r.al.raise_(S.A_RESERVOIR_LOW, 20)
    r.al.ack(S.A_RESERVOIR_LOW)
    r.al.clear(S.A_RESERVOIR_LOW, 200)
    assert r.log[-1] == (S.A_RESERVOIR_LOW, S.ALARM_CLEARED, 200)
    assert r.al.missed[S.A_RESERVOIR_LOW] == 0
    # latched alarms end by a user's action (resume, prime): never "not acknowledged"
    r.al.raise_(S.A_SUSPEND_REMINDER, 0)
    r.al.clear(S.A_SUSPEND_REMINDER, 0)
    assert r.log[-1] == (S.A_SUSPEND_REMINDER, S.ALARM_CLEARED, 0)


@pytest.mark.req("ALM-8", "ALM-2")
def test_start_stop_cycles_escalate_instead_of_restarting():
    r = Rig()
    levels = []
    for _ in range(5):  # on for 30 s, off for 60 s: five cycles within 10 min
        r.al.set(S.A_SIGNAL_LOSS, True, 0)
        levels.append(r.playing()[1])
        r.run(30)
        r.al.set(S.A_SIGNAL_LOSS, False, 0)
        r.run(60)
    assert levels == [0, 0, 1, 2, 2]  # from the third start: louder each time, then loudest
    r.run(CYCLE_MS // 1000)  # a quiet 10 min ends the cycle window
    assert r.al.windows == 0
    r.al.set(S.A_SIGNAL_LOSS, True, 0)
    assert r.playing() == (S.PRIO_MEDIUM, 0)


@pytest.mark.req("ALM-8")
def test_recorded_timeline_as_telemetry_and_wav(tmp_path):
    r = Rig()
    r.al.raise_(S.A_BATTERY_LOW, 18)
    r.run(25)
    emu = {"signals": [list(g) for g in r.ann.segments()], "elapsed_ms": r.t}
    pulses = recorded_pulses(emu)  # what pumpctl does with telemetry
    assert pulses == r.ann.pulses(r.t)
    assert [p[0] for p in pulses] == [0, 400, 800, 20000, 20400, 20800]
    path = tmp_path / "alarm.wav"
    seconds = write_wav(pulses, path)
    assert seconds == pytest.approx(21.0)
    with wave.open(str(path)) as w:
        rate, n = w.getframerate(), w.getnframes()
        data = np.frombuffer(w.readframes(n), dtype="<i2").astype(float)
    assert n == 21 * rate
    tone = data[: rate // 5]  # the first pulse: 200 ms
    spectrum = np.abs(np.fft.rfft(tone))
    assert np.fft.rfftfreq(len(tone), 1 / rate)[spectrum.argmax()] == pytest.approx(659, abs=5)
    assert np.abs(data[int(0.25 * rate): int(0.35 * rate)]).max() == 0  # the pause
    with pytest.raises(ValueError, match="no tone pulses"):
        write_wav([], path)


UNIX_RECORDER = """
import micropython
from boards.fakes import Annunciator
from firmware.alarms import Alarms
from protocol import spec as S

class T:
    ms = 0
t = T()
t.ms = 0  # an instance attribute before the heap is locked
log = []
ann = Annunciator(lambda: t.ms, "q")
al = Alarms(ann, lambda a, act, v: None)
i = 0
micropython.heap_lock()
while i < 400:  # raise, hide, clear, cycle and acknowledge under the locked heap
    t.ms += 1000
    if i % 50 == 1:
        al.set(S.A_BATTERY_LOW, True, 15)
    if i % 50 == 2:
        al.raise_(S.A_OCCLUSION, 0)
    if i % 50 == 3:
        al.set(S.A_SIGNAL_LOSS, True, 0)
    if i % 50 == 30:
        al.ack(S.A_OCCLUSION)
    if i % 50 == 40:
        al.set(S.A_BATTERY_LOW, False, 100)
        al.set(S.A_SIGNAL_LOSS, False, 0)
    al.tick(1000)
    i += 1
micropython.heap_unlock()
print("segments", len(ann.segments()), "pulses", len(ann.pulses(t.ms)), "level",
      al.level[S.A_BATTERY_LOW], "missed", al.missed[S.A_SIGNAL_LOSS])
"""


@pytest.mark.req("ALM-8", "ALM-2")
def test_alarm_manager_and_recorder_allocation_free_on_the_unix_port():
    """Hidden, cleared-unacknowledged and cycling alarms with the emulator's recording
    annunciator, 400 ticks under micropython.heap_lock (a MemoryError would fail it)."""
    from tests.runtimes import run_unix

    out = run_unix(UNIX_RECORDER).split()
    # 8 cycles of 4 signals: battery low, occlusion over it, signal loss hidden (none), the
    # occlusion acknowledged (the next one plays), battery low cleared while it plays
    assert out[0] == "segments" and int(out[1]) == 32
    assert int(out[3]) > 0
    assert out[4:] == ["level", "2", "missed", "1"]  # cycling escalated; loss never acked


@pytest.mark.req("ALM-8")
def test_pumpctl_shows_led_and_buzzer_and_writes_the_wav(tmp_path):
    from host_tools.pumpctl import led_buzzer_text, save_alarm_wav

    emu = {"led_pattern": {"priority": 3, "colour": "red", "on_ms": 240, "off_ms": 260,
                           "flash_mhz": 2000, "steady": 0},
           "signals": [[0, 2, 0, 10000], [10000, 3, 1, -1]], "sounds": [0, 1, 1],
           "elapsed_ms": 30000}
    assert led_buzzer_text(emu) == ("LED red flashing 2 Hz (high) / buzzer: high priority "
                                    "signal, level 1, 2 annunciations")
    said = []
    save_alarm_wav({"emu": emu}, str(tmp_path / "a.wav"), said.append)
    assert said == [f"alarm sounds written to {tmp_path / 'a.wav'} (23 tone pulses, 23.6 s)"]
    with wave.open(str(tmp_path / "a.wav")) as w:
        # medium: 3 pulses at 0 s; high: bursts at 10 and 20 s, the last ends at 23.62 s
        assert w.getnframes() == 23620 * w.getframerate() // 1000
    save_alarm_wav({"emu": {"signals": [], "elapsed_ms": 5}}, str(tmp_path / "b.wav"),
                   said.append)
    assert said[-1].startswith("no alarm sounded") and not (tmp_path / "b.wav").exists()


@pytest.mark.req("ALM-8", "ALM-2")
def test_condition_flapping_every_tick_stays_at_the_loudest_level():
    """300 raises within 5 min: the cycle count (a byte) saturates instead of failing."""
    r = Rig()
    for i in range(300):
        r.al.set(S.A_BATTERY_LOW, True, 19)
        r.al.set(S.A_BATTERY_LOW, False, 21)
        if i % 2:
            r.run(2)
    assert r.al.cycles[S.A_BATTERY_LOW] == 255 and r.al.level[S.A_BATTERY_LOW] == 2
    assert sum(1 for a in r.log if a[1] == S.ALARM_RAISED) == 300
