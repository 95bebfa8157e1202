"""The emulator's sensor link on a pty (SNS-4): the same frames a board's sensor UART gets,
written by the host's transmitter (host_tools/sensor.py) to the launcher's third pty."""

from __future__ import annotations

import pytest

from firmware import cgm_record as R
from host_tools.sensor import SensorSession, Transmitter, read_trace
from protocol import cgm_record as H
from protocol import spec as S
from tests.test_emulator import emulator, set_up

TX = 0x1234


@pytest.mark.req("SNS-4", "HW-3", "SNS-2")
def test_readings_over_the_sensor_pty(tmp_path):
    with emulator(tmp_path, sensor=True) as (emu, pump), Transmitter(emu.sensor_port, TX) as tx:
        set_up(pump)
        tx.send(H.encode_record(120, 5))
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        assert pump.status().glucose == 0  # not paired yet: dropped
        pump.set_setting("sensor_id", TX)
        tx.send(H.encode_record(118, 10))
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        assert pump.status().glucose == 118
        bad = bytearray(H.encode_record(50, 15))
        bad[2] ^= 1  # E2E-CRC now wrong: no urgent low from it
        tx.send(bytes(bad))
        tx.send(H.encode_record(50, 10))  # a replay
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        st = pump.status()
        assert st.glucose == 118 and "urgent_low" not in st.alarm_names
        tx.send(H.encode_record(50, 20))
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        st = pump.status()
        assert st.glucose == 50 and "urgent_low" in st.alarm_names
        tx.send(H.encode_record("NaN", 25, status=R.SS_SESSION_STOPPED))
        pump.emu_clock(S.CLK_ADVANCE, 2000)
        assert "sensor_expired" in pump.status().alarm_names
        ss = pump.get_sensor_stats()
        assert (ss.sensor_id, ss.foreign_id) == (TX, TX)  # the unpaired record: "foreign"
        assert (ss.frames, ss.accepted, ss.foreign, ss.bad_crc, ss.duplicate) == (6, 3, 1, 1, 1)


@pytest.mark.req("SNS-4")
def test_sensor_stats_fields_follow_the_firmware_counters():
    from firmware import cgm_link as L
    from protocol import codec

    assert list(codec.field_names("sensor_stats")[2:]) == list(L.STATS)


@pytest.mark.req("SNS-4", "SNS-2")
def test_session_warmup_noise_dropouts_expiry(tmp_path):
    trace = tmp_path / "t.json"
    trace.write_text('[[0, 150], [30, 140], [60, 100]]')
    rows = read_trace(trace)
    s = SensorSession(lambda m: next(v for mm, v in reversed(rows) if mm <= m), warmup_min=15,
                      expiry_min=90, noise_seed=3, dropout=0.2, seed=5)
    recs = {m: s.record(m) for m in range(0, 100, 5)}
    parsed = {m: H.parse_record(r) for m, r in recs.items() if r is not None}
    assert [m for m in (0, 5, 10) if H.sfloat_value(parsed[m].glucose) is None] == [0, 5, 10]
    assert parsed[90].status == R.SS_SESSION_STOPPED and recs[95] is None
    values = {m: int(H.sfloat_value(p.glucose)) for m, p in parsed.items() if 15 <= m < 90}
    assert s.dropped >= 1 and len(values) + s.dropped == 15
    assert all(abs(v - (150 if m < 30 else 140 if m < 60 else 100)) < 40 for m, v in values.items())
    assert len({v - (150 if m < 30 else 140 if m < 60 else 100) for m, v in values.items()}) > 3
    again = SensorSession(s.glucose, warmup_min=15, expiry_min=90, noise_seed=3, dropout=0.2,
                          seed=5)
    assert {m: again.record(m) for m in range(0, 100, 5)} == recs  # seeded: the same


def _frames(fd) -> list[tuple[int, bytes]]:
    import os

    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return [H.decode_frame(f) for f in data.split(b"\x00") if f]


@pytest.mark.req("SNS-4")
def test_pumpctl_sensor_plays_a_trace(tmp_path, capsys):
    """`pumpctl sensor` writes one frame per 5 minutes: warm-up, the trace, expiry."""
    import json
    import os
    import tty

    from host_tools import pumpctl

    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    trace = tmp_path / "t.csv"
    trace.write_text("minute,mg_dl\n0,100\n12,130\n20,30\n")
    try:
        code = pumpctl.main(["--json", "sensor", "--port", os.ttyname(slave), "--trace",
                             str(trace), "--tx", "77", "--warmup", "10", "--expiry", "25",
                             "--speed", "1e6"])
        out = capsys.readouterr().out
        frames = _frames(master)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["minute"], d.get("mg_dl")) for d in lines] == [
        (0, None), (5, None), (10, 100.0), (15, 130.0), (20, 39.0), (25, None)]
    assert [tx for tx, _ in frames] == [77] * 6
    recs = [H.parse_record(r) for _, r in frames]
    assert [r.time_offset for r in recs] == [0, 5, 10, 15, 20, 25]
    assert recs[4].warning << 16 == R.SS_BELOW_DEVICE
    assert recs[5].status == R.SS_SESSION_STOPPED


def test_pumpctl_sensor_bad_input(tmp_path, capsys):
    from host_tools import pumpctl

    bad = tmp_path / "t.csv"
    bad.write_text("0,100\n0,120\n")
    code = pumpctl.main(["sensor", "--port", "loop://", "--trace", str(bad)])
    err = capsys.readouterr().err
    assert code == pumpctl.EXIT_BAD_INPUT
    assert "minutes must ascend" in err and "Traceback" not in err
    code = pumpctl.main(["sensor", "--port", "/nonexistent/tty", "--trace",
                         str(tmp_path / "none.csv")])
    assert code == pumpctl.EXIT_BAD_INPUT and "none.csv" in capsys.readouterr().err


@pytest.mark.req("SNS-4", "THR-7")
def test_sensor_pty_ticks_are_allocation_free(tmp_path):
    """heap_check: every tick runs under heap_lock() with the pty sensor link plugged in,
    frames arriving between ticks, good and bad; an allocating tick would stop the
    emulator."""
    with emulator(tmp_path, heap_check=True, sensor=True) as (emu, pump), \
            Transmitter(emu.sensor_port, TX) as tx:
        set_up(pump)
        pump.set_setting("sensor_id", TX)
        for i in range(12):
            tx.send(H.encode_record(100 + i, 5 * i + 5, trend=1))
            bad = bytearray(H.encode_record(40, 5 * i + 6))
            bad[3] ^= 4
            tx.send(bytes(bad))
            tx.port.write(H.encode_frame(TX + 1, H.encode_record(40, 5 * i + 7)) + b"\x05\x01\x00")
            pump.emu_clock(S.CLK_ADVANCE, 5 * 60_000)
        st = pump.status()
        assert st.glucose == 111 and emu.running() and emu.restarts == 0
        ss = pump.get_sensor_stats()
        assert (ss.accepted, ss.bad_crc, ss.foreign, ss.bad_frame) == (12, 12, 12, 12)
