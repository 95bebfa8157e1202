"""The link under attack and under noise: lost replies and retries, forged and replayed
commands, garbage on the line, corrupted frames (LNK-1..LNK-5, SEC-1..SEC-3)."""

from __future__ import annotations

import random
import struct

import pytest

from host_tools import client as C
from protocol import codec
from protocol import spec as S

from . import kit


def stats(pump) -> dict:
    return dict(pump.get_link_stats().__dict__)


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def reframe(frame: bytes | bytearray) -> bytes:
    """Wire bytes of an unstuffed frame whose CRC is recomputed (so only the MAC or the
    content is wrong)."""
    body = bytes(frame[:-2])
    return codec.stuff(body + struct.pack("<H", codec.crc16(body)))


def bolus_fields(cmd_id, mu=1000):
    return {"cmd_id": cmd_id, "kind": S.BOLUS_NORMAL, "now": mu, "ext": 0, "ext_minutes": 0}


# ------------------------------------------------------------------ HELLO, SEC-3
@pytest.mark.req("LNK-1", "HW-3", "THR-7")
def test_hello_reports_protocol_schema_and_board(pump, bench):
    info = pump.hello()
    assert (info.version, info.schema) == (S.PROTOCOL_VERSION, S.schema_hash())
    assert info.pulse_mu in (10, 25, 50) and info.boots >= 1
    if bench.emulator is not None:
        assert info.board == bench.started_board
    # a host speaking another protocol version still gets the pump's HELLO, so it can tell
    # the user what to update
    seq = pump._next_seq()
    frame = codec.encode_frame("hello", seq, version=S.PROTOCOL_VERSION + 1)
    pump._write(codec.stuff(frame))
    m = pump._await({seq}, 1.0)
    assert m is not None and m.name == "hello_info"
    assert (m["version"], m["schema"]) == (S.PROTOCOL_VERSION, S.schema_hash())


@pytest.mark.req("SEC-3", "HW-3")
def test_emulator_messages_exist_only_on_the_emulator(pump, bench):
    if bench.emulator is not None:  # the emulator this suite started
        assert bench.has_sim, bench.sim_error
    if bench.has_sim:
        assert bench.info.board in bench.sim_boards  # only the emulator boards have them
        assert pump.emu_fault(S.FAULT_SEED, 99).code == S.OK
    else:
        for call in (lambda: pump.emu_clock(S.CLK_LOCKSTEP),
                     lambda: pump.emu_fault(S.FAULT_OCCLUSION, 1)):
            with pytest.raises(C.PumpRefused) as e:
                call()
            assert e.value.code == S.E_UNKNOWN_MESSAGE
        assert pump.status().stop == S.STOP_NONE


# ------------------------------------------------------------------ LNK-2, LNK-3
@pytest.mark.req("LNK-3", "LNK-2", "THR-3", "HW-3")
def test_lost_replies_and_retries_deliver_once(pump, sim, raw):
    st0 = pump.status()
    s0 = stats(pump)
    sim.blind_fault(S.FAULT_DROP_TX, 1000)  # every frame from the pump is lost
    cid = pump.counter + 1
    with kit.patience(pump, 0.15, retries=2), pytest.raises(C.PumpTimeout) as e:
        pump.bolus(1000)  # 3 tries, then a fence: all answers lost
    assert "may or may not have been carried out" in str(e.value)
    sim.blind_fault(S.FAULT_DROP_TX, 0)

    st = pump.status()
    assert (st.bolus_requested, st.bolus_delivered) == (1000, 0)
    bolus_id = st.bolus_id
    d = delta(stats(pump), s0)
    assert d["duplicates"] == 2  # the two retries acted no second time
    # the same command id again, much later: the first result, no second bolus
    m = raw.exchange("bolus", bolus_fields(cid))
    assert (m["cmd_id"], m["code"], m["detail"]) == (cid, S.OK, bolus_id)
    starts = kit.records(kit.history(pump, st0.history_next), S.H_BOLUS_START)
    assert [(r.v1, r.v2) for r in starts] == [(bolus_id, 1000)]
    sim.advance(seconds=60)
    st = pump.status()
    assert st.bolus_id == 0 and st.bolus_today == 1000


@pytest.mark.req("LNK-3", "LNK-2")
def test_status_reports_the_last_command(pump, raw):
    cid = pump.counter + 1
    seq, data = raw.frame("bolus", bolus_fields(cid, 500))
    raw.send(data)  # the host forgets to read the answer (as if it were lost) ...
    st = pump.status()  # ... and finds out from status
    assert (st.last_cmd_id, st.last_code, st.last_detail) == (cid, S.OK, st.bolus_id)
    r = pump.fence(cid)
    assert r is not None and r.reconciled and (r.code, r.detail) == (S.OK, st.bolus_id)
    assert pump.fence(0x7FFF0000) is None  # an id never used: proved not carried out
    pump.cancel_bolus()


# ------------------------------------------------------------------ SEC-1, SEC-2
@pytest.mark.req("SEC-2", "LNK-4", "THR-11")
def test_forged_and_replayed_commands_are_refused(pump, raw):
    st0 = pump.status()
    s0 = stats(pump)

    def refused(m, detail):
        assert m is not None and m.name == "result"
        assert (m["code"], m["detail"]) == (S.E_BAD_AUTH, detail)

    # no auth trailer at all
    refused(raw.exchange("suspend", {"cmd_id": 0x5EC0001}, key=None), S.AUTH_MISSING)
    refused(raw.exchange("set_time", {"cmd_id": 0x5EC0002, "utc": 1, "offset": 0}, key=None),
            S.AUTH_MISSING)
    # a forger's key
    refused(raw.exchange("suspend", {"cmd_id": 0x5EC0003}, key=b"\x55" * 32), S.AUTH_BAD_MAC)
    # a genuine frame whose content was changed after signing (CRC fixed up)
    _seq, wire = raw.frame("temp_basal", {"cmd_id": pump.counter + 1, "kind": S.TEMP_ABSOLUTE,
                                          "value": 500, "minutes": 30})
    frame = bytearray(codec.unstuff(wire))
    frame[S.HEADER_SIZE + 5] ^= 0x10  # value 500 -> another rate
    raw.send(reframe(frame))
    refused(raw.answer(struct.unpack_from("<H", frame, 2)[0]), S.AUTH_BAD_MAC)

    # a genuine command, then the same bytes again (replay), then an old counter
    fields = {"cmd_id": pump.counter + 1, "kind": S.TEMP_ABSOLUTE, "value": 500, "minutes": 30}
    seq, wire = raw.frame("temp_basal", fields)
    raw.send(wire)
    ok = raw.answer(seq)
    assert (ok["code"], ok["cmd_id"]) == (S.OK, fields["cmd_id"])
    raw.send(wire)
    refused(raw.answer(seq), S.AUTH_REPLAYED)
    stale = raw.exchange("suspend", {"cmd_id": 0x5EC0004}, counter=fields["cmd_id"] - 1)
    refused(stale, S.AUTH_REPLAYED)

    d = delta(stats(pump), s0)
    assert d["bad_auth"] == 4 and d["replayed"] == 2
    st = pump.status()
    assert st.stop == S.STOP_NONE and st.utc >= st0.utc  # not suspended, clock not set
    assert (st.temp_kind, st.temp_value) == (S.TEMP_ABSOLUTE, 500)
    starts = kit.records(kit.history(pump, st0.history_next), S.H_TEMP_START)
    assert len(starts) == 1  # acted once
    # queries stay open without authentication
    m = raw.exchange("status", key=None)
    assert m.name == "status_info"
    pump.cancel_temp_basal()  # and the genuine host goes on


@pytest.mark.req("SEC-1")
def test_pairing_key_never_crosses_the_link(pump, bench, raw):
    key = bench.key
    seen = bytearray()
    for name, fields in (("hello", None), ("status", None), ("get_settings", None),
                         ("get_link_stats", None), ("get_alarms", None),
                         ("get_history", {"first": 1, "count": 8})):
        m = raw.exchange(name, fields, key=None)
        seen += m.frame
    seen += raw.exchange("ack_alarm", {"cmd_id": pump.counter + 1, "alarm": 0}).frame
    for part in (key[:8], key[8:16], key[16:24], key[24:], key.hex().encode()[:16]):
        assert part not in seen


# ------------------------------------------------------------------ LNK-5
@pytest.mark.req("LNK-5", "LNK-4", "LNK-1")
def test_garbage_on_the_line_is_dropped_and_counted(pump, raw):
    st0 = pump.status()
    s0 = stats(pump)
    rng = random.Random(5)

    def answer(seq):
        return raw.answer(seq, 1.0)

    # Frames that must go unanswered are not waited for: the pump answers in order, so an
    # answer to any of them would arrive before the answers awaited after them (and be
    # counted as stale by the client).
    raw.send(b"\x00\x00\x00")  # empty frames: ignored, not counted
    _seq, wire = raw.frame("status", key=None)
    raw.send(wire[:3] + b"\x00")  # truncated
    frame = bytearray(codec.encode_frame("status", 0x4242))
    frame[3] ^= 0x01  # bad CRC
    raw.send(codec.stuff(frame))
    body = struct.pack(S.HEADER_FMT, S.PROTOCOL_VERSION, 0, 0x4343, 0x7E)  # unknown id
    raw.send(reframe(body + b"\0\0"))
    m = answer(0x4343)
    assert (m["code"], m["detail"]) == (S.E_UNKNOWN_MESSAGE, 0x7E)
    body = struct.pack(S.HEADER_FMT, S.PROTOCOL_VERSION, 0, 0x4344, 0x80)  # pump->host id
    raw.send(reframe(body + bytes(codec.payload_size("result")) + b"\0\0"))
    assert answer(0x4344)["code"] == S.E_UNKNOWN_MESSAGE
    frame = codec.encode_frame("get_profile", 0x4345, {"index": 0})
    raw.send(reframe(frame[:-2] + b"\x01" + frame[-2:]))  # one byte too long
    assert answer(0x4345)["code"] == S.E_BAD_ARG
    # another protocol version: dropped (only HELLO is answered, with the pump's version)
    raw.send(reframe(codec.encode_frame("status", 0x4346, version=S.PROTOCOL_VERSION + 1)))
    raw.send(bytes(rng.randrange(1, 256) for _ in range(600)) + b"\x00")  # oversized
    noise = bytes(rng.randrange(1, 256) for _ in range(40))
    raw.send(noise + b"\x00")

    st = pump.status()  # the next good frame is answered normally
    assert (st.stop, st.bolus_id, st.temp_kind, st.reservoir, st.alarms) == (
        st0.stop, st0.bolus_id, st0.temp_kind, st0.reservoir, st0.alarms)
    d = delta(stats(pump), s0)
    # counted: truncated, bad CRC, unknown x2, too long, other version, oversized, noise;
    # plus the queries around them (the status above and this get_link_stats)
    assert d["frames_in"] == 8 + 2
    assert d["unknown"] == 2 and d["bad_crc"] >= 1
    assert d["bad_frame"] + d["bad_crc"] == 6
    assert pump.stats["bad_frames"] == 0  # the pump's answers were all well formed
    assert pump.stats["stale"] == 0  # and none came for the frames it dropped


@pytest.mark.req("LNK-5", "LNK-2", "LNK-3", "HW-3")
def test_corrupted_frames_both_ways_are_survived(pump, sim):
    """With 20 % of the frames corrupted in each direction, the client's retries get every
    request through, and every command acts exactly once."""
    st0 = pump.status()
    s0 = stats(pump)
    sim.fault(S.FAULT_SEED, 7)
    values = [31, 32, 33, 34, 35, 36]
    with kit.patience(pump, 0.15, retries=8):
        sim.fault(S.FAULT_CORRUPT_RX, 200)
        sim.fault(S.FAULT_CORRUPT_TX, 200)
        for v in values:
            pump.set_setting("snooze", v)
            assert pump.get_settings()["snooze"] == v
        sim.fault(S.FAULT_CORRUPT_RX, 0)
        sim.fault(S.FAULT_CORRUPT_TX, 0)
    changes = kit.records(kit.history(pump, st0.history_next), S.H_SETTING)
    assert [(r.arg, r.v2) for r in changes] == [(S.SET_SNOOZE, v) for v in values]
    d = delta(stats(pump), s0)
    assert d.get("bad_crc", 0) + d.get("bad_frame", 0) > 0  # corrupted requests counted
    assert pump.stats["retries"] > 0


# ------------------------------------------------------------------ LNK-6
@pytest.mark.req("LNK-6", "LNK-3", "THR-3")
def test_a_try_held_past_the_fence_never_acts(pump, raw):
    """The issue's case on the target: every try of a bolus is held by the link, the client
    fences and reports "not carried out"; then the link delivers the try. It is refused (its
    counter is below the fence's) and no bolus starts. The answers are signed."""
    st0 = pump.status()
    cid = pump.counter + 1
    seq, held = raw.frame("bolus", bolus_fields(cid, 500))  # sent by nobody yet
    assert pump.fence(cid) is None  # proved: not carried out, and it never can be
    raw.send(held)
    m = raw.answer(seq)
    assert m is not None and (m["cmd_id"], m["code"], m["detail"]) == (
        cid, S.E_BAD_AUTH, S.AUTH_REPLAYED)
    assert m.counter is not None and codec.verify_mac(m, pump.key)  # signed by the pump
    st = pump.status()
    assert st.bolus_id == 0 and st.bolus_requested == 0
    assert kit.records(kit.history(pump, st0.history_next), S.H_BOLUS_START) == []
