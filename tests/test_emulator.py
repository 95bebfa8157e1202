"""The emulator board (boards/emulator.py) through its protocol only (HW-3, SEC-3).

Each test starts its own emulator with host_tools.launch (the firmware on the MicroPython
unix port behind a pty) and drives it with host_tools.client: clock control and fault
injection are the emulator-only messages emu_clock and emu_fault. No file of the state
directory is read or written by a test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from boards.fakes import Rig, Serial
from firmware import wire
from firmware.link import Link
from firmware.pump import Pump
from hil_tests.kit import history
from host_tools import client as C
from host_tools.launch import launch
from protocol import spec as S

REPO = Path(__file__).resolve().parent.parent
MONDAY = dt.datetime(2026, 11, 16)  # local midnight, a Monday
HOUR = 3_600_000
# a day of basal: 00:00 0.8 U/h, 06:00 1.2, 12:00 1.0, 22:00 0.7
STARTS, RATES = [0, 12, 24, 44], [800, 1200, 1000, 700]
DAY_INTEGRAL = 6 * 800 + 6 * 1200 + 10 * 1000 + 2 * 700  # mU


@contextlib.contextmanager
def emulator(tmp_path, name="emu", timeout=1.0, retries=3, **kwargs):
    kwargs.setdefault("lockstep", True)
    kwargs.setdefault("seed", 11)
    emu = launch(tmp_path / name, **kwargs)
    try:
        with C.connect(emu.port, key=C.load_key(emu.key_path), timeout=timeout,
                       retries=retries) as pump:
            yield emu, pump
    finally:
        emu.close()


def set_up(pump, starts=(0,), rates=(1000,), when=MONDAY, fill=200_000):
    pump.set_profile(0, "test", list(starts), list(rates))
    pump.set_time(C.pump_seconds(when), 0)
    pump.rewind()
    pump.fill(fill)
    pump.prime(S.PRIME_TUBING, 1000)
    pump.prime(S.PRIME_CANNULA, 100)
    pump.resume()
    pump.poll_events()  # what the set-up raised


def advance(pump, ms):
    res = pump.emu_clock(S.CLK_ADVANCE, ms)
    assert res.detail == ms
    return res


def fault(pump, fault_id, value):
    return pump.emu_fault(fault_id, value).detail


def active(pump):
    return set(pump.status().alarm_names)


# ---------------------------------------------------------------------------- clock
@pytest.mark.req("HW-3", "THR-1", "THR-7", "THR-10")
def test_lockstep_day_of_basal_delivers_exactly_the_programmed_integral(tmp_path):
    # heap_check: every one of the 86,400 ticks runs under micropython.heap_lock() with the
    # emulator's drivers (a tick that allocates would stop the emulator)
    with emulator(tmp_path, heap_check=True) as (emu, pump):
        set_up(pump, STARTS, RATES)
        st = pump.status()
        assert (st.basal_today, st.local_time.replace(tzinfo=None)) == (0, MONDAY)
        start_reservoir = st.reservoir
        started = time.monotonic()
        advance(pump, 24 * HOUR)
        wall = time.monotonic() - started
        day = pump.get_totals(st.local_day)
        assert (day.valid, day.basal, day.bolus) == (True, DAY_INTEGRAL, 0)
        st = pump.status()
        assert st.local_time.replace(tzinfo=None) == MONDAY + dt.timedelta(days=1)
        assert st.reservoir == start_reservoir - DAY_INTEGRAL
        assert st.delivering and st.basal_rate == 800
        assert wall < 60  # a day of 1-s ticks takes about a second (a loose sanity bound)
        assert emu.running() and emu.restarts == 0


@pytest.mark.req("HW-3", "THR-3", "LNK-2")
def test_until_event_stops_at_each_event_and_at_the_bolus_end(tmp_path):
    with emulator(tmp_path, jitter_ms=0) as (emu, pump):
        set_up(pump)
        # nothing queued: it runs the whole span
        assert pump.emu_clock(S.CLK_UNTIL_EVENT, 20_000).detail == 20_000
        bolus_id = pump.bolus(1000).detail  # 20 pulses at 1.5 U/min: 40 s
        ran, stops = 0, 0
        while pump.status().bolus_id:
            res = pump.emu_clock(S.CLK_UNTIL_EVENT, 600_000)
            assert 0 < res.detail < 600_000  # stopped by an event, not by the limit
            ran += res.detail
            stops += 1
        events = pump.poll_events(0.5)
        progress = [ev.b for ev in events if ev.kind == S.EV_BOLUS and ev.a == bolus_id]
        (ended,) = [ev for ev in events if ev.kind == S.EV_BOLUS_END and ev.a == bolus_id]
        assert (ended.b, ended.c) == (1000, S.BOLUS_COMPLETED)
        assert progress == list(range(0, 1001, 50))  # bolus start, then pulse by pulse
        assert stops == 20 and 39_000 <= ran <= 41_000  # one stop per pulse
        assert pump.status().bolus_id == 0


@pytest.mark.req("HW-3", "SEC-3")
def test_clock_ops_answer_the_previous_mode_and_refuse_bad_values(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        assert pump.emu_clock(S.CLK_SPEED, 60_000).detail == 0  # was lockstep
        assert pump.emu_clock(S.CLK_REALTIME).detail == 60_000
        assert pump.emu_clock(S.CLK_LOCKSTEP).detail == 1000
        for op, ms, code, detail in ((S.CLK_SPEED, 0, S.E_OUT_OF_RANGE, 2), (9, 0, S.E_BAD_ARG, 1)):
            with pytest.raises(C.PumpRefused) as err:
                pump.emu_clock(op, ms)
            assert (err.value.code, err.value.detail) == (code, detail)
        before = pump.status().utc
        time.sleep(1.2)  # lockstep: real time does not move the pump's clock
        assert pump.status().utc == before


# ---------------------------------------------------------------------------- faults
@pytest.mark.req("HW-3", "ALM-3")
def test_fault_occlusion_raises_the_alarm_within_two_minutes_of_a_bolus(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        assert fault(pump, S.FAULT_OCCLUSION, 1) == 0
        pump.bolus(5000)
        advance(pump, 120_000)
        st = pump.status()
        assert st.stop == S.STOP_OCCLUSION and "occlusion" in st.alarm_names
        assert st.bolus_id == 0 and st.bolus_today <= 3000  # the rest is never delivered
        assert fault(pump, S.FAULT_OCCLUSION, 0) == 1  # cleared; the answer is the old value
        pump.resume()
        advance(pump, 120_000)
        assert pump.status().bolus_today == st.bolus_today


@pytest.mark.req("HW-3", "BAT-1", "ALM-1")
def test_fault_battery_level_and_drain(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        assert fault(pump, S.FAULT_BATTERY_LEVEL, 21) == 100
        assert fault(pump, S.FAULT_BATTERY_DRAIN, 100_000) == 1000  # 100 x the model
        advance(pump, HOUR)  # 5 %/h and 0.2 % per pulse now
        st = pump.status()
        # 21 % - 5 % for the hour - 20 pulses x 0.2 %
        assert 11 <= st.battery <= 13 and "battery_low" in st.alarm_names and st.delivering
        # the pump reads the gauge once a second: the last pulses may not be in st yet
        assert fault(pump, S.FAULT_BATTERY_LEVEL, 0) in (st.battery, st.battery - 1)
        advance(pump, 2000)
        st = pump.status()
        assert st.stop == S.STOP_BATTERY and "battery_depleted" in st.alarm_names
        fault(pump, S.FAULT_BATTERY_DRAIN, 1000)
        nxt = st.history_next
        fault(pump, S.FAULT_BATTERY_LEVEL, 100)  # a new battery
        advance(pump, 2000)
        kinds = [r.kind for r in history(pump, nxt)]
        assert S.H_BATTERY_CHANGE in kinds
        pump.resume()
        assert pump.status().delivering


@pytest.mark.req("HW-3", "ALM-2")
def test_fault_buttons_press_once_and_stuck(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        fault(pump, S.FAULT_BATTERY_LEVEL, 15)
        advance(pump, 2000)
        alarms = {a.name: a for a in pump.get_alarms()}
        assert alarms["battery_low"].active and not alarms["battery_low"].acked
        assert fault(pump, S.FAULT_BUTTON_PRESS, 1) == 0
        advance(pump, 1000)
        assert {a.name: a for a in pump.get_alarms()}["battery_low"].acked
        # a stuck ACK button acknowledges every new alarm at once, with no host command
        assert fault(pump, S.FAULT_BUTTON_STUCK, 1) == 0
        fault(pump, S.FAULT_BATTERY_LEVEL, 4)
        advance(pump, 2000)
        very_low = {a.name: a for a in pump.get_alarms()}["battery_very_low"]
        assert very_low.active and very_low.acked
        assert fault(pump, S.FAULT_BUTTON_STUCK, 0) == 1


@pytest.mark.req("HW-3", "ALM-5", "HIS-2")
def test_fault_storage_failure_puts_the_pump_in_its_safe_state(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        pump.bolus(3000)
        advance(pump, 10_000)
        assert fault(pump, S.FAULT_STORAGE_FAIL, 1) == 0
        advance(pump, 30_000)
        st = pump.status()
        assert st.stop == S.STOP_SELFTEST and st.selftest & S.ST_STORAGE
        assert "selftest_failure" in st.alarm_names
        with pytest.raises(C.PumpRefused) as err:
            pump.bolus(1000)
        assert err.value.code in (S.E_SAFE_STATE, S.E_STORAGE)
        # the flash is still bad at the next power-on: the self-test keeps the safe state
        fault(pump, S.FAULT_POWER_CUT, 0)
        assert pump.hello().boots == 2
        st = pump.status()
        assert st.stop == S.STOP_SELFTEST and st.selftest & S.ST_STORAGE
        # healed flash and a power cycle: self-tests pass, the pump waits for the user
        assert fault(pump, S.FAULT_STORAGE_FAIL, 0) == 1
        fault(pump, S.FAULT_POWER_CUT, 0)
        assert pump.hello().boots == 3
        st = pump.status()
        assert (st.stop, st.selftest) == (S.STOP_USER, 0)
        pump.resume()


@pytest.mark.req("HW-3", "LNK-3", "LNK-5")
def test_fault_dropped_and_corrupted_frames_client_retries_succeed(tmp_path):
    ROUNDS = 10
    with emulator(tmp_path, timeout=0.2, retries=15) as (emu, pump):
        set_up(pump)
        for fid in (S.FAULT_DROP_RX, S.FAULT_DROP_TX, S.FAULT_CORRUPT_RX, S.FAULT_CORRUPT_TX):
            assert fault(pump, fid, 150) == 0
        first = pump.status().history_next
        # 10 rounds: ~8 corrupted requests, so that at least one of them has a data byte
        # flipped (a bad CRC), not only COBS code bytes (a bad frame); with 5 rounds (~4),
        # a run whose timing shifted the fault generator's draws once had none
        for _ in range(ROUNDS):
            pump.suspend()
            pump.resume()
            assert pump.status().delivering
        for fid in (S.FAULT_DROP_RX, S.FAULT_DROP_TX, S.FAULT_CORRUPT_RX, S.FAULT_CORRUPT_TX):
            assert fault(pump, fid, 0) == 150
        kinds = [r.kind for r in history(pump, first)]
        # each command acted exactly once, whatever was lost on the way
        assert kinds.count(S.H_SUSPEND) == ROUNDS and kinds.count(S.H_RESUME) == ROUNDS
        stats = pump.get_link_stats()
        assert pump.stats["retries"] > 0 and pump.stats["bad_frames"] > 0
        assert stats.bad_crc > 0 and stats.duplicates > 0


@pytest.mark.req("HW-3", "HIS-2", "LNK-3")
def test_fault_power_cut_mid_bolus_reboots_with_the_bolus_interrupted_once(tmp_path):
    with emulator(tmp_path, heap_check=True) as (emu, pump):
        set_up(pump)
        assert pump.hello().boots == 1
        bolus_id = pump.bolus(2000).detail  # 80 s at 1.5 U/min
        assert fault(pump, S.FAULT_POWER_CUT, 30_000) == 30_000
        res = pump.emu_clock(S.CLK_ADVANCE, 120_000)  # the power dies 30 s in
        assert 28_000 <= res.detail <= 30_000  # answered after the reboot: ms run to the cut
        assert emu.restarts == 1 and emu.running()
        assert pump.hello().boots == 2
        st = pump.status()
        assert st.bolus_id == 0
        ends = [r for r in history(pump, 1) if r.kind == S.H_BOLUS_END and r.v1 == bolus_id]
        assert len(ends) == 1
        end = ends[0]
        assert end.arg == S.BOLUS_INTERRUPTED and 0 < end.v2 < 2000 and end.v3 == 2000
        boot = [r for r in history(pump, 1) if r.kind == S.H_BOOT][-1]
        assert (boot.arg, boot.v2) == (S.RESET_POWER_ON, 2)
        assert st.bolus_today == end.v2  # counted once
        advance(pump, 120_000)  # never resumed by itself
        assert pump.status().bolus_today == end.v2
        assert pump.get_totals(st.local_day).bolus == end.v2


@pytest.mark.req("HW-3", "LNK-1")
def test_fault_random_power_cut_sensor_loss_seed_and_bad_ids(tmp_path):
    with emulator(tmp_path, seed=5) as (emu, pump):
        assert fault(pump, S.FAULT_SENSOR_LOSS, 1) == 0
        assert fault(pump, S.FAULT_SENSOR_LOSS, 0) == 1
        assert fault(pump, S.FAULT_SEED, 99) == 5
        delay = fault(pump, S.FAULT_POWER_CUT, -1)
        assert 0 <= delay <= 60_000
        pump.emu_clock(S.CLK_ADVANCE, 61_000)
        assert emu.restarts == 1 and pump.hello().boots == 2
        assert fault(pump, S.FAULT_SEED, 7) == 99  # the environment outlives a power cut
        for fid, value, code in ((0, 0, S.E_BAD_ARG), (99, 0, S.E_BAD_ARG),
                                 (S.FAULT_DROP_RX, 1001, S.E_OUT_OF_RANGE),
                                 (S.FAULT_POWER_CUT, -2, S.E_OUT_OF_RANGE)):
            with pytest.raises(C.PumpRefused) as err:
                pump.emu_fault(fid, value)
            assert err.value.code == code


@pytest.mark.req("HW-3")
def test_the_seed_makes_the_jitter_reproducible(tmp_path):
    def stops(name, seed):
        with emulator(tmp_path, name, seed=42, jitter_ms=200) as (emu, pump):
            set_up(pump)
            fault(pump, S.FAULT_SEED, seed)
            pump.bolus(500)
            got = []
            while pump.status().bolus_id:
                got.append(pump.emu_clock(S.CLK_UNTIL_EVENT, 600_000).detail)
            return got

    first = stops("a", 1234)
    assert len(first) >= 10 and set(first) != {2000}  # 10 pulses, steps of 800..1200 ms
    assert stops("b", 1234) == first
    assert stops("c", 99) != first


# ---------------------------------------------------------------------------- the board
@pytest.mark.req("HW-3", "LNK-2")
def test_link_answers_while_a_long_advance_runs(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        start = pump.status().utc
        pump.bolus(1000)  # events from the first seconds of the run on
        counter = pump.counter + 1
        order = []
        with serial.Serial(emu.port, timeout=0.05) as port:
            port.write(wire.encode_frame(0x30, 1, 0, [counter, S.CLK_ADVANCE, 72 * HOUR],
                                         key=C.load_key(emu.key_path), counter=counter))
            frames, status, result = b"", None, None
            deadline = time.monotonic() + 120
            while result is None and time.monotonic() < deadline:
                frames += port.read(4096)
                *done, frames = frames.split(b"\x00")
                for f in done:
                    if not f:
                        continue
                    mid, seq, flags, values, _ = wire.decode_frame(f)
                    order.append(mid)
                    if mid == 0xC0 and values[0] == S.EV_BOLUS and values[2] > 0 and (
                            status is None):  # a pulse of the run: ask mid-run
                        status = "asked"
                        port.write(wire.encode_frame(0x02, 2, 0, []))
                    elif seq == 2:
                        status = values
                    elif seq == 1:
                        result = values
        assert result[1:] == [S.OK, 72 * HOUR]
        assert order.index(0x82) < order.index(0x80)  # status answered before the run ended
        assert start < status[17] < start + 72 * 3600  # at a virtual instant inside the run
@pytest.mark.req("SEC-3", "LNK-4")
def test_a_board_without_the_emulator_refuses_both_messages():
    key = bytes(range(32))
    rig = Rig()
    rig.serial = Serial()
    rig.key = key
    hw = rig.hardware()
    assert hw.emulator is None
    pump = Pump(hw)
    pump.boot()
    link = Link(pump, hw)
    for n, (mid, values) in enumerate(((0x30, [7, S.CLK_ADVANCE, 1000]),
                                       (0x31, [8, S.FAULT_POWER_CUT, 0])), start=1):
        rig.serial.send(wire.encode_frame(mid, n, 0, values, key=key, counter=n))
        link.poll()
        got = [wire.decode_frame(f) for f in rig.serial.take().split(b"\x00") if f]
        assert [(g[0], g[3][1:]) for g in got] == [(0x80, [S.E_UNKNOWN_MESSAGE, mid])]


@pytest.mark.req("HW-3")
def test_two_emulators_at_once_are_independent(tmp_path):
    with emulator(tmp_path, "one") as (emu1, pump1), emulator(tmp_path, "two") as (emu2, pump2):
        assert len({emu1.port, emu2.port, emu1.console_port, emu2.console_port}) == 4
        set_up(pump1)
        pump2.set_setting("max_bolus", 5000)
        advance(pump1, HOUR)
        assert pump1.status().basal_today == 1000 and pump2.status().basal_today == 0
        assert pump1.get_settings()["max_bolus"] == 10000
        assert pump2.get_settings()["max_bolus"] == 5000
        fault(pump2, S.FAULT_POWER_CUT, 0)
        assert pump2.hello().boots == 2 and pump1.hello().boots == 1
        assert (emu1.restarts, emu2.restarts) == (0, 1)


@pytest.mark.req("HW-3")
def test_bench_console_and_telemetry(tmp_path):
    with emulator(tmp_path) as (emu, pump):
        set_up(pump)
        with serial.Serial(emu.console_port, timeout=5) as con:  # opening flushes input
            con.write(b"status\r")
            answer = con.read_until(b"pump> ").decode()
        assert answer.startswith("status\r\n") and "delivering" in answer  # echo, answer
        tel = emu.next_telemetry(5)
        assert tel["stop"] == S.STOP_NONE and tel["boots"] == 1
        assert tel["emu"]["speed"] == 0 and tel["emu"]["battery_u"] <= 100_000_000


# ---------------------------------------------------------------------------- commands
@pytest.mark.req("HW-3")
def test_pumpctl_emulate_help():
    proc = subprocess.run([sys.executable, "-m", "host_tools.pumpctl", "emulate", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0
    for opt in ("--state", "--speed", "--seed", "--lockstep", "--setup", "--seconds"):
        assert opt in proc.stdout


@pytest.mark.req("HW-2")
def test_pumpctl_flash_hands_its_arguments_to_host_tools_flash(monkeypatch):
    from host_tools import flash, pumpctl

    calls = []
    monkeypatch.setattr(flash, "main", lambda argv: calls.append(argv) or 0)
    assert pumpctl.main(["--port", "/dev/ttyACM0", "--key", "k.key", "flash", "--board",
                         "pico", "--set", "max_bolus=8000"]) == 0
    assert pumpctl.main(["flash", "--board", "esp32", "--port=/dev/ttyUSB0"]) == 0
    assert calls == [["--board", "pico", "--set", "max_bolus=8000", "--port", "/dev/ttyACM0",
                      "--key", "k.key"],
                     ["--board", "esp32", "--port=/dev/ttyUSB0"]]


@pytest.mark.req("HW-3")
def test_make_emulate_runs_non_interactively(tmp_path):
    """`make emulate EMULATE_SECONDS=N`: what CI runs (no terminal, exits 0)."""
    state = tmp_path / "state"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "emulate",
         "EMULATE_SECONDS=3", f"EMULATE_STATE={state}", "EMULATE_SPEED=600"],
        capture_output=True, text=True, timeout=90, cwd=REPO,
        env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "protocol port  /dev/pts/" in out and "bench console  /dev/pts/" in out
    assert f"pairing key    {state}/key" in out
    assert out.count("  ok  ") == 7  # clock, profile, rewind, fill, 2 primes, resume
    lines = [ln for ln in out.splitlines() if ln.startswith("pump ")]
    assert lines and all("delivering" in ln for ln in lines)
    assert "emulator stopped" in out
