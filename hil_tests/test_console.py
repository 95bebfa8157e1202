"""The bench console on the protocol port (HW-5, issue 17): typed lines on the very
connection the suite's client uses, whole text answers, then frames again; a typed bolus
acts only after the pump's ACK button (SEC-2). On the emulator, the QEMU ARM board and a
real board alike (the button press needs `sim` to be pressed by the suite)."""

from __future__ import annotations

import time

import pytest


def typed(pump, data: bytes, until: bytes, timeout: float = 10.0) -> str:
    """Type on the client's own port; the text that comes back up to `until` (and the
    prompt after it), then the 0x00 that must come before the client's next frame.
    Frames (0x00-terminated) met on the way are not expected here."""
    port = pump.port
    port.write(data)
    got = pump.take_console_text().encode()  # met while the client read a frame
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += port.read(port.in_waiting or 1)
        at = got.find(until)
        if at >= 0 and got.endswith(b"pump> "):
            break
    assert until in got, got[-500:]
    # the next frame follows text: a host sharing the port sends 0x00 first (docs/boards.md)
    port.write(b"\0")
    return got.decode("ascii", "replace")


@pytest.mark.req("HW-5", "HW-1", "LNK-2")
def test_typed_lines_and_frames_share_the_port(pump):
    text = typed(pump, b"\x00\r", b"micropump bench console on the protocol port")
    text = typed(pump, b"help\r", b"time [DATE TIME [+HH:MM]]")
    assert "status                         delivery, basal" in text
    text = typed(pump, b"status\r", b"time        ")
    assert "delivery    delivering" in text
    assert "\x00" not in text
    # frames again on the same connection, at once
    st = pump.status()
    assert st.stop == 0
    # right after a frame 0x03/0x04 begin a frame (firmware/demux.py): a key first
    text = typed(pump, b" \x03\x04alarms\r", b"alarms\r\n")
    assert "not a REPL" in text
    assert pump.status().stop == 0  # Ctrl-C and Ctrl-D stopped nothing


@pytest.mark.req("HW-5", "SEC-2", "THR-3")
def test_a_typed_bolus_waits_for_the_ack_button(pump, sim):
    sim.lockstep()  # the 10 s of the confirmation are board time: none passes while typing
    text = typed(pump, b"\x00bolus 0.5\r", b"press its ACK button within 10 s")
    assert "deliver 0.500 U" in text
    typed(pump, b"yes\r", b"not by typing")
    st = pump.status()
    assert st.bolus_id == 0  # nothing delivered by typing
    sim.press(1)  # the ACK button, on the pump
    sim.advance(seconds=1)  # the tick reads it
    text = typed(pump, b"", b"bolus #")  # the link's next poll takes the press
    assert "started: 0.500 U" in text, text
    st = pump.status()
    assert st.bolus_id and st.bolus_requested == 500
    pump.cancel_bolus()


@pytest.mark.req("HW-5", "SEC-2")
def test_an_unconfirmed_setting_changes_nothing(pump, sim):
    sim.lockstep()
    before = pump.get_settings()
    typed(pump, b"\x00set max_bolus 2\r", b"press its ACK button within 10 s")
    sim.advance(seconds=11)  # the 10 s go by
    sim.press(1)  # too late: an ordinary ACK press
    sim.advance(seconds=1)
    assert pump.get_settings() == before
