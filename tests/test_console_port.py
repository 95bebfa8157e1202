"""The bench console on the emulator's protocol pty (issue 17, HW-5): a person's session
there (pexpect on the pty, as picocom would be), then pumpctl on the same port right after
it closes; and one connection that mixes typed lines with 1000 status requests and event
frames, read back as whole frames and whole console answers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import termios
import time
import tty
from pathlib import Path

import pexpect
import pexpect.fdpexpect
import pytest
import serial

from host_tools import client as C
from host_tools.launch import launch
from protocol import codec
from protocol import spec as S

REPO = Path(__file__).resolve().parent.parent
MONDAY = dt.datetime(2026, 11, 16, 8, 0)


def set_up(pump):
    pump.set_profile(0, "test", [0], [1000])
    pump.set_time(C.pump_seconds(MONDAY), 0)
    pump.rewind()
    pump.fill(200_000)
    pump.prime(S.PRIME_TUBING, 1000)
    pump.resume()
    pump.poll_events()


@pytest.fixture
def emu(tmp_path):
    e = launch(tmp_path / "emu", lockstep=True, seed=17)
    try:
        with C.connect(e.port, key=C.load_key(e.key_path)) as pump:
            set_up(pump)
        yield e
    finally:
        e.close()


class Terminal:
    """A person's terminal on a pty path: raw, no local echo, Enter sends CR (picocom's
    defaults), driven with pexpect."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.p = pexpect.fdpexpect.fdspawn(self.fd, timeout=10, encoding="ascii",
                                           codec_errors="replace")

    def type(self, text):
        for ch in text:  # a key at a time, like a person
            self.p.send(ch)
            time.sleep(0.005)

    def expect(self, pattern):
        self.p.expect(pattern)
        return self.p.before

    def close(self):
        os.close(self.fd)


def pumpctl(emu, *args):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "host_tools.pumpctl", "--port", emu.port,
                           "--key", str(emu.key_path), *args], capture_output=True,
                          text=True, timeout=90, cwd=REPO,
                          env={**os.environ, "COLUMNS": "100"})
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


@pytest.mark.req("HW-5", "HW-3", "SEC-2")
def test_a_person_at_the_protocol_pty_then_pumpctl(emu):
    term = Terminal(emu.port)
    try:
        term.type("\r")
        term.expect(r"micropump bench console on the protocol port: type help\.")
        term.expect(r"pump> ")
        term.type("help\r")
        term.expect(r"status +delivery, basal, bolus, reservoir, alarms, time")
        term.expect(r"pump> ")
        term.type("statsu\x7f\x7fus\r")  # DEL erases, as picocom sends it for Backspace
        term.expect(r"delivery    delivering")
        term.expect(r"basal       1\.000 U/h")
        term.expect(r"pump> ")
        term.type("bolus 0.5\r")
        term.expect(r"press its ACK button within 10 s \(Ctrl-C cancels\): deliver 0\.500 U")
        term.type("yes\r")
        term.expect(r"not by typing: press the pump's ACK button")
        term.type("\x03")  # Ctrl-C: cancelled, and the firmware keeps running
        term.expect(r"\^C\r\ncancelled: not done")
        term.type("\x04")  # Ctrl-D: not a soft reset
        term.expect(r"not a REPL")
        term.type("history 3\r")
        term.expect(r"resumed")
        term.expect(r"pump> ")
        term.type("sta")  # left half-typed: pumpctl's first 0x00 ends it
    finally:
        term.close()
    proc = pumpctl(emu, "status")
    assert proc.returncode == 0, proc.stderr
    assert "delivering" in proc.stdout
    proc = pumpctl(emu, "--json", "status")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["delivering"]
    with C.connect(emu.port, key=C.load_key(emu.key_path)) as pump:
        assert pump.status().bolus_id == 0  # the typed bolus was never confirmed
    # and the person again, after pumpctl: greeted anew
    term = Terminal(emu.port)
    try:
        term.type("\r")
        term.expect(r"micropump bench console on the protocol port")
        term.type("alarms\r")
        term.expect(r"no active alarms")
    finally:
        term.close()


@pytest.mark.req("HW-5", "SEC-2", "HW-3")
def test_a_console_bolus_needs_the_emulated_ack_button(emu):
    term = Terminal(emu.port)
    try:
        term.type("bolus 0.5\r")
        term.expect(r"press its ACK button within 10 s")
    finally:
        term.close()
    with C.connect(emu.port, key=C.load_key(emu.key_path)) as pump:
        assert pump.status().bolus_id == 0  # nothing delivered by the typed line
        pump.emu_fault(S.FAULT_BUTTON_PRESS, 1)  # a person presses ACK on the pump
        pump.emu_clock(S.CLK_ADVANCE, 1000)  # the tick reads the button
        pump.status()
        deadline = time.monotonic() + 5
        st = pump.status()
        while not st.bolus_id and time.monotonic() < deadline:
            st = pump.status()
        assert st.bolus_id and st.bolus_requested == 500


class Mixed:
    """One connection that carries typed lines and frames: the host side splits what comes
    back at 0x00 into frames and text (firmware/demux.py's output rule)."""

    def __init__(self, path):
        self.port = serial.Serial(path, timeout=0.05)
        self.tail = b""
        self.frames: list[codec.Message] = []
        self.text = ""
        self.broken = 0

    def send(self, data: bytes):
        self.port.write(data)

    def pump(self, until, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            data = self.port.read(65536)
            if not data:
                continue
            *parts, self.tail = (self.tail + data).split(b"\x00")
            for part in parts:
                self._part(part)
        return until()

    def _part(self, part):
        if not part:
            return
        try:
            self.frames.append(codec.decode_frame(codec.unstuff(part)))
            return
        except Exception:  # noqa: BLE001 - not a frame
            pass
        if all(0x20 <= b < 0x7F or b in (7, 8, 10, 13) for b in part):
            self.text += part.decode()
        else:
            self.broken += 1


@pytest.mark.req("HW-5", "LNK-2", "ALM-6", "HW-3")
def test_one_connection_mixes_lines_1000_status_requests_and_events(emu):
    key = C.load_key(emu.key_path)
    with C.connect(emu.port, key=key) as pump:
        counter = pump.counter  # the pump's counter floor, from its signed HELLO
    m = Mixed(emu.port)
    lines = ["status", "help", "alarms", "history 2", "settings", "time"]
    typed = 0
    advances = 0

    def command(name, seq, fields):
        nonlocal counter
        counter += 1
        m.send(b"\x00" + codec.encode(name, seq, fields, key=key, counter=counter))

    try:
        m.send(b"\x00")
        command("bolus", 3000, {"cmd_id": 777, "kind": S.BOLUS_NORMAL, "now": 5000,
                                "ext": 0, "ext_minutes": 0})
        for i in range(1000):
            seq = 1 + i
            m.send(codec.encode("status", seq))
            if i % 10 == 5:
                m.send(lines[typed % len(lines)].encode() + b"\r\x00")
                typed += 1
            if i % 100 == 50:  # 10 s of bolus: progress events come out between frames
                command("emu_clock", 3001 + i, {"cmd_id": 900 + i, "op": S.CLK_ADVANCE,
                                                "ms": 10_000})
                advances += 1
            if i % 50 == 49:  # read as we go, like a host does
                assert m.pump(lambda s=seq: any(f.seq == s for f in m.frames), timeout=20)
        # a last frame: the text before it ends at its 0x00, held events go out after it
        m.send(codec.encode("status", 5000))
        assert m.pump(lambda: any(f.seq == 5000 for f in m.frames), timeout=30)
    finally:
        m.port.close()
    answers = [f.seq for f in m.frames if f.name == "status_info" and f.seq <= 1000]
    # each answered once (queries that come during an ADVANCE are answered during it:
    # matched by sequence number, LNK-2, not by order)
    assert sorted(answers) == list(range(1, 1001))
    assert m.broken == 0
    results = {f.seq: f for f in m.frames if f.name == "result"}
    assert results[3000]["code"] == S.OK
    assert sum(1 for s in results if 3001 <= s < 4001 and results[s]["code"] == S.OK) == advances
    # every console answer whole: each typed line's echo, answer and prompt, in order
    assert m.text.count("pump> ") == typed, m.text[-2000:]
    assert m.text.count("\r\ndelivery    ") == sum(1 for k in range(typed) if k % 6 == 0)
    assert len(re.findall(r"\r\nstatus +delivery, basal", m.text)) == \
        sum(1 for k in range(typed) if k % 6 == 1)
    assert "error" not in m.text
    events = [f for f in m.frames if f.name == "event"]
    assert sum(1 for e in events if e["kind"] == S.EV_BOLUS) >= advances
