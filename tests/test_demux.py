"""Text and frames on one port (firmware/demux.py, issue 17): the bench console on the
protocol port, on CPython and on the MicroPython unix port.

The scenarios are tests/mp_demux.py: a person's transcript (line editing, bad input,
Ctrl-C/Ctrl-D, a frame arriving in a half-typed line, the ACK-button confirmation), a
seeded interleaving of typed lines, status requests and events cut at random read
boundaries, a seeded noise fuzz, and the allocation check of the typing path. The unix
port must print exactly what CPython computes.
"""

import json
from pathlib import Path

import pytest

from boards.fakes import Rig, Serial
from firmware.console import Console
from firmware.demux import CONFIRM_MS, GUARDED, ConfirmButtons, Demux
from firmware.hal import BUTTON_ACK
from firmware.link import Link
from firmware.pump import S_STOP, S_TEMP_KIND
from protocol import spec as S
from tests import mp_demux as M
from tests.runtimes import run_unix

SOURCE = Path(M.__file__).read_text()
PROMPT = "pump> "


def unix(call):
    out = run_unix(SOURCE + "\n" + call + "\n", timeout=300)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError("no RESULT line:\n" + out)


def texts(rows):
    return [row[2] for row in rows[:-1]]


@pytest.mark.req("HW-5", "HW-1")
def test_transcript_line_editing_and_bad_input():
    rows = M.transcript()
    t = texts(rows)
    assert t[0].startswith("\r\nmicropump bench console on the protocol port: type help.")
    assert t[0].endswith(PROMPT)
    assert t[1] == "help bolus\r\nusage: bolus U [ext U MIN]\r\n" + PROMPT
    assert t[2] == "stat"  # echo only, no answer yet
    assert t[3].startswith("us\r\ndelivery    delivering\r\n")  # LF of the CRLF: no 2nd line
    assert t[3].count(PROMPT) == 1
    # BS and DEL each erase one character: "hel" - 2 + "lp" = "hlp"
    assert t[4] == "hel\b \b\b \blp\r\nerror: unknown command 'hlp' (type help)\r\n" + PROMPT
    assert t[5].startswith("history 2\r\n#")  # the arrow key's ESC [ A is swallowed
    assert t[6] == "junk line^U\r\n" + PROMPT + "alarms\r\nno active alarms\r\n" + PROMPT
    assert t[7] == "^C\r\n" + PROMPT
    assert t[8] == ("he\r\n^D ignored: this is the pump's console, not a REPL (type help)"
                    "\r\n" + PROMPT + "he")  # the half line comes back after the answer
    assert t[9] == "\r\nerror: unknown command 'he' (type help)\r\n" + PROMPT
    assert t[10] == ("x" * 80 + "\x07" * 10 + "\r\nerror: line longer than 80 characters: "
                     "not run\r\n" + PROMPT)
    # a frame in a half-typed line: the frame is answered, the line dropped, said so
    assert rows[12][1] == [0x82]
    assert t[12] == "\r\n(half-typed line dropped: a frame came in)\r\n" + PROMPT
    assert t[13] == "tus\r\nerror: unknown command 'tus' (type help)\r\n" + PROMPT
    assert all(row[3] == 0 for row in rows[:-1])  # no broken chunk anywhere


@pytest.mark.req("HW-5", "SEC-2")
def test_transcript_local_confirmation():
    rows = M.transcript()
    t = texts(rows)
    assert t[14] == ("bolus 0.5\r\nconfirm on the pump: press its ACK button within 10 s "
                     "(Ctrl-C cancels): deliver 0.500 U\r\n" + PROMPT)
    assert t[15] == ("yes\r\nnot by typing: press the pump's ACK button (Ctrl-C cancels)\r\n"
                     + PROMPT)
    assert t[16] == "\r\nbolus #1 started: 0.500 U\r\n" + PROMPT  # the press delivered it
    assert "bolus       #1 normal: 0.000 of 0.500 U" in t[17]
    assert t[19] == "not confirmed within 10 s: not done\r\n" + PROMPT
    assert t[20] == "suspend\r\ndelivery suspended (bolus #1 interrupted)\r\n" + PROMPT
    assert t[22] == "^C\r\ncancelled: not done\r\n" + PROMPT
    assert t[23] == "zzzz\r\nerror: line dropped: it had bytes that are not text in it\r\n" \
        + PROMPT
    stop, bolus_id, noise, ctrl, faults = rows[-1][1:]
    assert stop == S.STOP_USER  # suspended; resume was never confirmed
    assert (bolus_id, noise, ctrl, faults) == (0, 2, 3, 0)


def test_transcript_same_on_unix_port():
    assert unix("main_transcript()") == json.loads(json.dumps(M.transcript()))


def bench_demux():
    rig, pump, link = M.bench()
    return rig, pump, link, link.mux


def feed(rig, link, data):
    rig.serial.send(data)
    link.poll()
    return M.split(rig.serial.take())


@pytest.mark.req("HW-5", "SEC-2")
def test_guarded_commands_wait_for_the_ack_button():
    rig, pump, link, mux = bench_demux()
    assert isinstance(pump.buttons, ConfirmButtons)
    for line, check in (("set max_bolus 5", lambda: pump.setting(S.SET_MAX_BOLUS) == 5000),
                        ("temp pct 50 60", lambda: pump.state[S_TEMP_KIND] != 0)):
        before = M.snapshot(pump)
        _, text, _ = feed(rig, link, line.encode() + b"\r")
        assert "press its ACK button within 10 s" in text
        assert M.snapshot(pump) == before  # nothing changed yet
        rig.buttons.press(BUTTON_ACK)
        rig.clock.advance(100)
        pump.tick()
        _, text, _ = feed(rig, link, b"")
        assert check(), text
    assert set(GUARDED) >= {"bolus", "temp", "set", "time", "resume", "canceltemp", "ack"}


@pytest.mark.req("HW-5", "ALM-2")
def test_a_late_press_confirms_nothing():
    rig, pump, link, mux = bench_demux()
    assert pump.suspend() == S.OK
    for _ in range(3):
        rig.clock.advance(1000)
        pump.tick()
    feed(rig, link, b"resume\r")
    rig.clock.advance(CONFIRM_MS + 1000)
    pump.tick()
    _, text, _ = feed(rig, link, b"")
    assert text == "not confirmed within 10 s: not done\r\n" + PROMPT
    assert mux.buttons.waiting is False
    rig.buttons.press(BUTTON_ACK)  # too late: an ordinary ACK press again
    rig.clock.advance(100)
    pump.tick()
    feed(rig, link, b"")
    assert pump.state[S_STOP] == S.STOP_USER and not mux.buttons.got


@pytest.mark.req("HW-5", "ALM-6")
def test_events_wait_while_a_person_types_and_flow_after_a_frame():
    rig, pump, link, mux = bench_demux()
    feed(rig, link, b"stat")
    pump.events.put(S.EV_ALARM, 1, 2, 3)
    frames, text, _ = feed(rig, link, b"")
    assert frames == [] and mux.typing
    frames, text, _ = feed(rig, link, M.status_frame(5))
    assert [f[0] for f in frames] == [0x82, 0xC0]


@pytest.mark.req("HW-5", "LNK-2", "ALM-6")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interleaved_lines_frames_and_events_on_cpython(seed):
    got = M.mix(seed, 1000)
    assert got["answers"] == 1001 and got["answers_ok"]
    assert got["broken"] == 0 and got["text_ok"] and got["lines"] > 250
    assert got["events"] == got["queued"] > 50
    assert (got["faults"], got["noise"], got["bad_frame"], got["bad_crc"]) == (0, 0, 0, 0)


@pytest.mark.req("HW-5", "LNK-2")
def test_frames_read_one_byte_at_a_time_stay_frames():
    """A UART (the ARM board's, an ESP32's) may hand over one byte per read: an
    authenticated frame's first byte looks typed (0x03/0x04/0x08), and a read ending
    right after it must not decide; only the next byte or a quiet spell does."""
    got = M.mix(5, 300, piece=1)
    assert got["answers"] == 301 and got["answers_ok"]
    assert got["broken"] == 0 and got["text_ok"] and got["lines"] > 60
    assert (got["faults"], got["noise"], got["bad_frame"], got["bad_crc"]) == (0, 0, 0, 0)


@pytest.mark.req("HW-5", "HW-3")
def test_interleaved_on_unix_port_matches_cpython():
    assert unix("main_mix(4, 400)") == M.mix(4, 400)
    assert unix("main_mix(6, 100, 1)") == M.mix(6, 100, piece=1)


@pytest.mark.req("HW-5", "LNK-5", "SEC-4")
@pytest.mark.parametrize("seed", [11, 12])
def test_noise_fuzz_changes_nothing_and_both_recover(seed):
    got = M.noise(seed, 150)
    assert got["state_same"] and got["faults"] == 0 and got["pending"] is None
    assert got["recovered"] == got["frames_ok"] == 150
    assert got["noise"] > 1000 and got["ctrl"] > 50


@pytest.mark.req("HW-5", "LNK-5")
def test_noise_fuzz_on_unix_port_matches_cpython():
    assert unix("main_noise(13, 60)") == M.noise(13, 60)


@pytest.mark.req("HW-5", "HW-1")
def test_typing_path_allocation_free_on_unix_port():
    got = unix("main_alloc()")
    assert got["locked"] is True
    assert got["answered"] and got["got"]
    assert len(got["fails"]) == len(M.TYPING) + 2
    assert all(v == 0 for v in got["fails"].values()), got["fails"]


def test_alloc_check_can_fail():
    """The lock really catches allocation: a console feed() (it builds bytes) fails."""
    code = SOURCE + """
rig, pump, link = bench()
con = Console(pump)
def step():
    con.feed(b"ab")
print("RESULT " + json.dumps({"fails": locked(step, 5)}))
"""
    out = run_unix(code)
    assert json.loads(out.split("RESULT ")[1]) == {"fails": 5}


def test_boards_without_the_flag_keep_the_plain_link():
    rig = Rig(50, storage_sizes=M.SIZES)
    rig.serial = Serial()
    from firmware.pump import Pump
    pump = Pump(rig.hardware())
    pump.boot()
    link = Link(pump, rig.hardware())
    assert link.mux is None
    rig.serial.send(b"help\r")
    link.poll()
    assert rig.serial.take() == b""  # text on a plain link is garbage, not answered


def test_demux_without_buttons_refuses_guarded_commands():
    rig, pump, link = M.bench()
    mux = Demux(link.mux.dec, rig.serial, Console(pump), rig.clock, None)
    link.dec = link.serial = link.mux = mux
    _, text, _ = feed(rig, link, b"bolus 1\r")
    assert text == ("bolus 1\r\nerror: bolus needs the pump's ACK button, and this board "
                    "has none\r\n" + PROMPT)
    assert pump.bolus_progress()[0] == 0


@pytest.mark.req("HW-5", "LNK-3")
def test_a_confirmation_waits_while_a_link_command_runs():
    """An emulator ADVANCE polls the link between its ticks, inside the emu_clock command:
    a console operation then would be recorded under that command's id (LNK-3)."""
    rig, pump, link, mux = bench_demux()
    assert pump.suspend() == S.OK
    feed(rig, link, b"resume\r")
    rig.buttons.press(BUTTON_ACK)
    rig.clock.advance(100)
    pump.tick()
    pump.begin_command(4242)
    feed(rig, link, b"")
    assert pump.state[S_STOP] == S.STOP_USER and mux.pending is not None
    pump.end_command(S.OK)
    _, text, _ = feed(rig, link, b"")
    assert text == "\r\ndelivery resumed\r\n" + PROMPT
    assert pump.state[S_STOP] == 0


@pytest.mark.req("HW-5")
def test_the_console_is_built_when_the_first_line_is_typed():
    """Issue 12 (heap after boot): the shared port's Console is not built at boot, nor by
    frames, keys or an empty line; the first typed line builds it and is answered."""
    rig, pump, link = M.bench()
    assert link.mux.console is None
    frames, _, _ = feed(rig, link, M.status_frame(5))
    assert [f[0] for f in frames] == [0x82]
    # the CR after the frame's 0x00 is held until the next byte tells it was typed
    _, text, _ = feed(rig, link, b"\rstat")
    assert text.startswith("\r\nmicropump bench console on the protocol port")
    assert text.endswith(PROMPT + "stat") and link.mux.console is None
    _, text, _ = feed(rig, link, b"us\r")
    assert text.startswith("us\r\ndelivery    delivering\r\n") and text.endswith(PROMPT)
    assert isinstance(link.mux.console, Console) and link.mux.console.pump is pump


@pytest.mark.req("HW-5", "SEC-4")
def test_a_console_that_cannot_be_built_answers_a_line_and_the_pump_goes_on(monkeypatch):
    """A fragmented heap: building the console fails with MemoryError on the command path.
    The person gets one clear line, nothing crashes or changes, and the next line retries."""
    import firmware.console

    rig, pump, link = M.bench()

    def no_memory(pump):
        raise MemoryError

    monkeypatch.setattr(firmware.console, "Console", no_memory)
    before = M.snapshot(pump)
    _, text, _ = feed(rig, link, b"resume\r")
    assert text == ("resume\r\nerror: not enough free memory to start the console now: "
                    "try again later\r\n" + PROMPT)
    assert link.mux.console is None and link.mux.pending is None and link.faults == 0
    assert M.snapshot(pump) == before
    frames, _, _ = feed(rig, link, M.status_frame(6))
    assert [f[0] for f in frames] == [0x82]  # the link still answers
    monkeypatch.undo()
    _, text, _ = feed(rig, link, b"alarms\r")
    assert text == "alarms\r\nno active alarms\r\n" + PROMPT


@pytest.mark.req("HW-5", "SEC-2")
def test_a_late_frame_never_turns_into_a_typed_ctrl_c():
    """An authenticated frame begins with 0x03 (Ctrl-C) or 0x04 (Ctrl-D) or 0x08: right after
    a frame such a byte begins a frame whatever the timing, so a host's frame that stalls
    after its first byte cannot cancel a confirmation that waits for the ACK button."""
    rig, pump, link, mux = bench_demux()
    feed(rig, link, b"set max_bolus 5\r")
    assert mux.pending == "set max_bolus 5"
    frames, _, _ = feed(rig, link, M.status_frame(41))  # a host's frame: after_zero
    assert [f[0] for f in frames] == [0x82]
    late = M.status_frame(42, 3)[1:]  # seq 42, counter 3: begins with 0x04 (Ctrl-D)
    assert late[0] in (3, 4, 8)
    ctrl = mux.ctrl
    feed(rig, link, late[:1])
    rig.clock.advance(1500)  # longer than HOLD_MS and FRAME_GAP_MS: the frame is abandoned
    _, text, _ = feed(rig, link, b"")
    assert "^C" not in text and "^D" not in text and mux.ctrl == ctrl
    assert mux.pending == "set max_bolus 5"  # still waiting for the press
    frames, _, _ = feed(rig, link, M.status_frame(43, 4))  # the host's next try is answered
    assert (0x82, 43) in [(f[0], f[1]) for f in frames]
