"""The firmware link (firmware/link.py): every message of the table answered from the pump
(LNK-1, LNK-2), refusals with code and detail (LNK-4), malformed input dropped and counted
(LNK-5), authenticated commands (SEC-2, SEC-3) and command ids that act once, across
restarts and power cuts (LNK-3). Also the status path's allocation on the MicroPython unix
port, the main loop with the link, and the unix-port board behind a pty (HW-3).

Frames are built with firmware/wire.py encode_frame (its agreement with the spec is
tests/test_wire.py's job) and fed through the fake serial cable of boards/fakes.py.
"""

import functools
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware.main
from firmware import VERSION, wire
from firmware.layout import S_LAST_CMD
from firmware.link import FRAMES_OUT, RING, Link
from firmware.pump import S_BOOTS, Pump
from protocol import refusals
from protocol import spec as S
from tests import mp_link as M
from tests.pumpkit import boot_feeds, records
from tests.runtimes import run_unix, run_wasm

KEY = M.KEY
ID = wire.INDEX


def names(mid):
    return [f for f, _ in S.MESSAGES[mid][1]]


class Frame(dict):
    """A decoded pump frame: fields by name, plus id, seq and flags."""

    def __init__(self, decoded):
        mid, seq, flags, values, _ = decoded
        super().__init__(zip(names(mid), values, strict=True))
        self.id, self.seq, self.flags = mid, seq, flags


class Bench:
    """A pump with a serial cable and a host end that speaks the protocol."""

    def __init__(self, key=KEY, ready=True, bolus=True):
        self.rig, self.pump, self.link = M.bench(key, ready, bolus)
        self.seq = 100
        self.counter = 1000

    def reboot(self):
        self.pump = Pump(self.rig.hardware())
        self.pump.boot()
        self.link = Link(self.pump, self.rig.hardware())

    def raw(self, data):
        """Send bytes, poll once; every frame the pump wrote."""
        self.rig.serial.send(data)
        self.link.poll()
        return [Frame(f) for f in M.frames(self.rig.serial.take())]

    def send(self, name, *values, key=None, counter=None, seq=None, flags=0):
        self.seq = (self.seq + 1) & 0xFFFF if seq is None else seq
        mid = ID[name] if isinstance(name, str) else name
        data = wire.encode_frame(mid, self.seq, flags, list(values), key=key,
                                 counter=counter or 0)
        return self.raw(data)

    def answer(self, frames):
        """The response to the last request (events may follow it)."""
        got = [f for f in frames if f.flags & S.F_RESPONSE]
        assert len(got) == 1, frames
        assert got[0].seq == self.seq
        return got[0]

    def query(self, name, *values):
        return self.answer(self.send(name, *values))

    def command(self, name, cmd_id, *values, key=KEY, counter=None):
        if counter is None:
            self.counter += 1
            counter = self.counter
        got = self.answer(self.send(name, cmd_id, *values, key=key, counter=counter))
        assert got.id == ID["result"]
        return got["cmd_id"], got["code"], got["detail"]

    def ticks(self, seconds):
        for _ in range(seconds):
            self.rig.clock.advance(1000)
            self.pump.tick()
        self.link.poll()
        return [Frame(f) for f in M.frames(self.rig.serial.take())]


def state(b):
    return M.snapshot(b.pump, b.link)


def bolus_ends(pump):
    return [(r[4], r[5], r[3]) for r in records(pump, S.H_BOLUS_END)]  # id, delivered, ending


# ------------------------------------------------------------------ the table
@pytest.mark.req("LNK-1", "SEC-3")
def test_every_host_message_has_a_handler_and_emulator_ids_only_with_the_hook():
    b = Bench(ready=False)
    host = [mid for mid in S.MESSAGES if mid < 0x80]
    emu = [mid for mid in host if S.EMU_FIRST <= mid <= S.EMU_LAST]
    assert emu and sorted(b.link.handlers) == sorted(set(host) - set(emu))
    b.rig.emulator = object()
    assert sorted(Link(b.pump, b.rig.hardware()).handlers) == sorted(host)


# ------------------------------------------------------------------ queries
@pytest.mark.req("LNK-1")
def test_hello_reports_version_schema_board_pulse_boots_and_counter():
    b = Bench(ready=False)
    got = b.query("hello")
    assert got.id == ID["hello_info"] and got.flags == S.F_RESPONSE
    assert dict(got) == {"version": S.PROTOCOL_VERSION, "schema": S.schema_hash(),
                         "board": S.BOARD_TEST, "pulse_mu": 50, "firmware": VERSION,
                         "boots": 1, "counter": 0}
    assert b.command("suspend", 1)[1] == S.E_SUSPENDED  # a fresh pump is suspended
    assert b.query("hello")["counter"] == b.counter == 1001


@pytest.mark.req("LNK-1", "LNK-2")
def test_status_reports_the_pump_state():
    b = Bench()
    p = b.pump
    got = b.query("status")
    assert got.id == ID["status_info"]
    bolus_id, done, req = p.bolus_progress()
    assert dict(got) == {
        "stop": S.STOP_NONE, "basal_rate": 1800, "profile_rate": 1200,
        "temp_kind": S.TEMP_PERCENT, "temp_value": 150, "temp_left_min": 119,
        "bolus_id": bolus_id, "bolus_kind": S.BOLUS_NORMAL, "bolus_delivered": done,
        "bolus_requested": 2000, "reservoir": p.reservoir_mu(),
        "minutes_left": p.reservoir_mu() * 60 // 1800, "battery": 100, "iob": p.iob(),
        "basal_today": p.state[6], "bolus_today": p.state[7],
        "alarms": 1 << S.A_RESERVOIR_LOW, "utc": M.MONDAY + 13 * 3600 + 20, "offset": 60,
        "time_set": 1, "last_cmd_id": 0, "last_code": 0, "last_detail": 0,
        "history_next": p.history.next_seq, "selftest": 0,
        "glucose": 0, "glucose_age": 0, "trend": S.NO_TREND, "cgm": 0}
    assert bolus_id == 1 and done == 500  # 20 s at 1.5 U/min
    assert got["iob"] == 500 and got["bolus_today"] == 500


@pytest.mark.req("LNK-3")
def test_status_reports_the_last_command_and_its_outcome():
    b = Bench()
    assert b.command("bolus", 0xFFFFFFF0, S.BOLUS_NORMAL, 1000, 0, 0) == \
        (0xFFFFFFF0, S.E_BOLUS_RUNNING, 1)
    got = b.query("status")
    assert (got["last_cmd_id"], got["last_code"], got["last_detail"]) == \
        (0xFFFFFFF0, S.E_BOLUS_RUNNING, 1)
    assert b.command("cancel_bolus", 7) == (7, S.OK, 1)
    got = b.query("status")
    assert (got["last_cmd_id"], got["last_code"], got["last_detail"]) == (7, S.OK, 1)


@pytest.mark.req("LNK-1", "THR-1")
def test_profiles_are_programmed_and_read_back():
    b = Bench(ready=False)
    starts = [0, 12, 18, 36]
    rates = [800, 1500, 35000 // 10, 0]
    packed = b"".join(r.to_bytes(2, "little") for r in rates)
    assert b.command("set_profile", 5, 2, b"night", 4, bytes(starts), packed) == (5, S.OK, 0)
    got = b.query("get_profile", 2)
    assert got.id == ID["profile_info"]
    assert (got["index"], got["name"], got["count"]) == (2, b"night\0\0\0", 4)
    assert got["starts"] == bytes(starts) + bytes(44)
    assert got["rates"] == packed + bytes(88)
    assert b.pump.settings.get_profile(2) == (b"night", starts, rates)
    assert b.query("get_profile", 3)["count"] == 0  # never programmed
    got = b.query("get_profile", 4)
    assert got.id == ID["result"] and dict(got) == {"cmd_id": 0, "code": S.E_BAD_ARG,
                                                    "detail": 0}


@pytest.mark.req("LNK-4")
@pytest.mark.parametrize(("count", "name", "starts", "code", "detail"), [
    (0, b"x", [0], S.E_BAD_ARG, 2),
    (49, b"x", [0], S.E_BAD_ARG, 2),
    (2, b"x", [0, 0], S.E_BAD_ARG, 2),  # starts not increasing
    (1, b"", [0], S.E_BAD_ARG, 1),  # empty name
    (1, b"a\x01", [0], S.E_BAD_ARG, 1),  # not printable
    (1, b"x", [5], S.E_BAD_ARG, 2),  # first segment not at 00:00
])
def test_bad_profiles_are_refused_with_detail(count, name, starts, code, detail):
    b = Bench(ready=False)
    before = list(b.pump.settings.values)
    assert b.command("set_profile", 9, 1, name, count, bytes(starts), bytes(96)) == \
        (9, code, detail)
    assert list(b.pump.settings.values) == before


@pytest.mark.req("LNK-1", "THR-1")
def test_schedule_is_set_and_read_back():
    b = Bench()
    assert b.query("get_schedule")["days"] == bytes(7)
    assert b.command("set_schedule", 3, bytes([0, 0, 0, 0, 0, 0, 1]))[1] == S.E_BAD_ARG
    assert b.command("set_profile", 4, 1, b"we", 1, bytes(1), (700).to_bytes(2, "little"))[1] \
        == S.OK
    assert b.command("set_schedule", 5, bytes([0, 0, 0, 0, 0, 1, 1])) == (5, S.OK, 0)
    assert b.query("get_schedule")["days"] == bytes([0, 0, 0, 0, 0, 1, 1])
    assert b.pump.settings.schedule() == [0, 0, 0, 0, 0, 1, 1]


@pytest.mark.req("LNK-1", "LNK-4", "THR-6")
def test_settings_are_read_and_changed():
    b = Bench()
    values = b.query("get_settings")["values"]
    got = [int.from_bytes(values[4 * i:4 * i + 4], "little", signed=True)
           for i in range(S.SETTINGS_COUNT)]
    assert got == [b.pump.setting(i) for i in range(S.SETTINGS_COUNT)]
    assert got[S.SET_UTC_OFFSET] == 60 and got[S.SET_RES_LOW] == 50000
    assert b.command("set_setting", 8, S.SET_MAX_BOLUS, 5000) == (8, S.OK, 0)
    assert b.pump.setting(S.SET_MAX_BOLUS) == 5000
    assert b.command("set_setting", 9, S.SET_MAX_BOLUS, 30000) == \
        (9, S.E_OUT_OF_RANGE, S.SET_MAX_BOLUS)
    assert b.command("set_setting", 10, 200, 1) == (10, S.E_BAD_ARG, 0)
    assert b.command("set_setting", 11, S.SET_UTC_OFFSET, 0) == (11, S.E_BAD_ARG, 0)
    assert b.pump.setting(S.SET_MAX_BOLUS) == 5000


@pytest.mark.req("LNK-1", "HIS-1")
def test_history_pages_carry_the_stored_records():
    b = Bench()
    for v in range(10):
        assert b.pump.settings.set(S.SET_SNOOZE, 10 + v) == S.OK  # a record each
    h = b.pump.history
    assert h.first_seq == 1 and h.next_seq > 20
    rec = bytearray(24)
    stored = []
    for seq in range(1, h.next_seq):
        assert h.read(seq, rec)
        stored.append(bytes(rec))
    got = b.query("get_history", 0, 8)  # before the first: from the oldest stored
    assert (got["first"], got["count"]) == (1, 8)
    assert got["records"] == b"".join(stored[:8])
    got = b.query("get_history", 9, 255)  # at most one page
    assert (got["first"], got["count"]) == (9, 8)
    assert got["records"] == b"".join(stored[8:16])
    last = h.next_seq - 1
    got = b.query("get_history", last, 8)
    assert (got["first"], got["count"]) == (last, 1)
    assert got["records"] == stored[-1] + bytes(7 * 24)
    got = b.query("get_history", h.next_seq, 8)
    assert (got["count"], got["records"]) == (0, bytes(192))


@pytest.mark.req("LNK-1", "HIS-1")
def test_history_page_skips_an_unreadable_record():
    b = Bench()
    region = b.rig.storage.regions[4]
    region[24 * 2 + 5] ^= 0xFF  # record 3 no longer passes its CRC
    got = b.query("get_history", 1, 4)
    seqs = [int.from_bytes(got["records"][24 * i:24 * i + 4], "little") for i in range(4)]
    assert (got["first"], got["count"], seqs) == (1, 4, [1, 2, 4, 5])


@pytest.mark.req("LNK-1", "THR-10")
def test_totals_of_today_and_of_an_unknown_day():
    b = Bench()
    today = b.pump.state[5]
    got = b.query("get_totals", today)
    basal, bolus, prime = b.pump.day_totals(today)
    assert dict(got) == {"day": today, "valid": 1, "basal": basal, "bolus": bolus,
                         "prime": prime}
    assert bolus == 500 and prime == 600
    assert dict(b.query("get_totals", today - 5)) == {"day": today - 5, "valid": 0,
                                                      "basal": 0, "bolus": 0, "prime": 0}


@pytest.mark.req("LNK-1", "ALM-6")
def test_alarms_report_active_acknowledged_and_levels():
    b = Bench()
    got = b.query("get_alarms")
    assert (got["active"], got["acked"]) == (1 << S.A_RESERVOIR_LOW, 0)
    assert got["levels"] == bytes(32)
    b.ticks(5 * 60)  # unacknowledged: escalates at the 5-min repeat
    assert b.query("get_alarms")["levels"][S.A_RESERVOIR_LOW] == 1
    assert b.command("ack_alarm", 3, S.A_RESERVOIR_LOW) == (3, S.OK, 0)
    got = b.query("get_alarms")
    assert (got["active"], got["acked"]) == ((1 << S.A_RESERVOIR_LOW,) * 2)
    assert got["levels"][S.A_RESERVOIR_LOW] == 0
    assert b.command("ack_alarm", 4, S.A_OCCLUSION) == (4, S.E_UNKNOWN_ALARM, S.A_OCCLUSION)
    assert b.command("ack_alarm", 5, 200) == (5, S.E_UNKNOWN_ALARM, 200)


@pytest.mark.req("LNK-5")
def test_link_stats_count_each_kind_of_bad_input():
    b = Bench()
    base = list(b.link.stats)
    b.raw(M._stuff(bytes([S.PROTOCOL_VERSION, 0, 1, 0, ID["status"], 0x12, 0x34])))  # CRC
    b.raw(b"\x05\x01\x00")  # bad COBS
    b.raw(M._raw(ID["status"], 2, b"", version=9))  # other version
    b.raw(M._raw(ID["status"], 2, b"", flags=S.F_RESPONSE))  # flags a host never sets
    b.raw(M._raw(ID["status"], 2, b"\x00"))  # wrong length (answered)
    b.raw(M._raw(0x7E, 2, b""))  # unknown (answered)
    b.raw(b"\x00\x00\x00")  # empty frames: not counted
    b.send("suspend", 5)  # no auth
    b.send("suspend", 6, key=bytes(32), counter=2000)  # bad MAC
    b.command("suspend", 7, counter=1500)  # acts: result + 2 events (bolus end, stopped)
    b.send("suspend", 8, key=KEY, counter=1500)  # replayed counter
    b.command("suspend", 7, counter=1501)  # duplicate command id
    b.pump.events.dropped = 3
    got = b.query("get_link_stats")
    delta = {k: got[k] - (base[i] if i < len(base) else 0) for i, k in enumerate(got)}
    assert delta == {"frames_in": 12, "bad_crc": 1, "bad_frame": 4, "unknown": 1,
                     "bad_auth": 2, "replayed": 1, "duplicates": 1, "frames_out": 9,
                     "events_dropped": 3}
    assert b.link.stats[FRAMES_OUT] - base[FRAMES_OUT] == 10 and b.link.faults == 0


# ------------------------------------------------------------------ commands
@pytest.mark.req("LNK-1", "THR-3", "THR-5")
def test_bolus_commands_start_and_cancel_boluses():
    b = Bench(bolus=False)
    assert b.command("bolus", 1, S.BOLUS_NORMAL, 1000, 0, 0) == (1, S.OK, 1)
    assert b.pump.bolus_progress() == (1, 0, 1000)
    assert b.command("bolus", 2, S.BOLUS_DUAL, 500, 500, 60) == (2, S.E_BOLUS_RUNNING, 1)
    assert b.command("cancel_bolus", 3) == (3, S.OK, 1)
    assert b.command("cancel_bolus", 4) == (4, S.E_NO_BOLUS, 0)
    assert b.command("bolus", 5, S.BOLUS_DUAL, 500, 500, 60) == (5, S.OK, 2)
    assert b.pump.bolus_progress() == (2, 0, 1000)
    assert b.command("bolus", 6, S.BOLUS_NORMAL, 20000, 0, 0) == \
        (6, S.E_OVER_LIMIT, S.SET_MAX_BOLUS)
    assert b.command("bolus", 7, 9, 1000, 0, 0) == (7, S.E_BAD_ARG, 0)
    assert b.command("bolus", 8, S.BOLUS_NORMAL, 0xFFFFFFFF, 0, 0) == \
        (8, S.E_INCREMENT, 50)


@pytest.mark.req("LNK-1", "THR-2", "THR-5", "THR-12", "THR-11")
def test_therapy_commands_reach_the_pump():
    b = Bench(bolus=False)
    p = b.pump
    assert b.command("temp_basal", 1, S.TEMP_ABSOLUTE, 2000, 30) == (1, S.OK, 0)
    assert (p.basal_rate(), p.state[17]) == (2000, S.TEMP_ABSOLUTE)
    assert b.command("temp_basal", 2, S.TEMP_ABSOLUTE, 2000, 31) == (2, S.E_OUT_OF_RANGE, 2)
    assert b.command("cancel_temp_basal", 3) == (3, S.OK, 0)
    assert b.command("cancel_temp_basal", 4) == (4, S.E_NO_TEMP_BASAL, 0)
    assert b.command("suspend", 5) == (5, S.OK, 0)
    assert p.state[20] == S.STOP_USER
    assert b.command("set_time", 6, M.MONDAY + 86400, -120) == (6, S.OK, 0)
    assert p.utc_seconds() == M.MONDAY + 86400 and p.setting(S.SET_UTC_OFFSET) == -120
    assert b.command("set_time", 7, M.MONDAY, 5000) == (7, S.E_OUT_OF_RANGE, 1)
    assert b.command("fill", 8, 100000) == (8, S.E_NOT_REWOUND, 0)
    assert b.command("rewind", 9) == (9, S.OK, 0)
    assert b.rig.motor.pos == 0
    assert b.command("fill", 10, 100000) == (10, S.OK, 0)
    assert b.command("prime", 11, S.PRIME_TUBING, 1000) == (11, S.OK, 0)
    assert b.command("prime", 12, 7, 1000) == (12, S.E_BAD_ARG, 0)
    assert b.rig.motor.pos == 20
    assert b.command("resume", 13) == (13, S.OK, 0)
    assert b.command("resume", 14) == (14, S.E_NOT_SUSPENDED, 0)
    assert p.state[20] == S.STOP_NONE


@pytest.mark.req("LNK-3", "LNK-4")
def test_command_id_zero_is_refused():
    b = Bench(bolus=False)
    before = list(b.pump.state)
    assert b.command("suspend", 0) == (0, S.E_BAD_ARG, 0)
    assert list(b.pump.state) == before


@pytest.mark.req("LNK-4", "HIS-2")
def test_a_command_whose_counter_cannot_be_saved_is_refused():
    b = Bench(bolus=False)
    b.rig.storage.fail = True
    before = list(b.pump.state)
    assert b.command("suspend", 5) == (5, S.E_STORAGE, 0)
    assert list(b.pump.state) == before
    b.rig.storage.fail = False
    assert b.command("suspend", 5) == (5, S.OK, 0)


@pytest.mark.req("LNK-4", "LNK-5")
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_authenticated_commands_with_any_field_values_get_a_result(data):
    b = Bench()
    mid = data.draw(st.sampled_from([m for m in S.MESSAGES
                                     if S.CMD_FIRST <= m < S.EMU_FIRST and m != ID["fence"]]))
    values = []
    for _, code in S.MESSAGES[mid][1][1:]:
        if code.endswith("s"):
            n = int(code[:-1])
            values.append(data.draw(st.binary(min_size=n, max_size=n)))
        else:
            bits = 8 * wire.LENGTHS[mid][len(values) + 1]
            lo, hi = (0, (1 << bits) - 1) if code.isupper() else (-(1 << bits - 1),
                                                                  (1 << bits - 1) - 1)
            values.append(data.draw(st.integers(lo, hi)))
    cmd, code, _ = b.command(mid, 99, *values)
    assert cmd == 99 and code in refusals.ERRORS
    assert b.link.faults == 0
    assert b.query("status")["last_cmd_id"] == 99


# ------------------------------------------------------------------ refusals of frames
@pytest.mark.req("SEC-3", "LNK-4")
def test_emulator_messages_are_unknown_on_a_board_without_the_hook():
    b = Bench()
    before = state(b)
    for name, values in (("emu_clock", (1, 5000)), ("emu_fault", (2, 1))):
        got = b.answer(b.send(name, 77, *values, key=KEY, counter=b.counter + 1))
        assert got.id == ID["result"]
        assert dict(got) == {"cmd_id": 0, "code": S.E_UNKNOWN_MESSAGE, "detail": ID[name]}
    assert state(b) == before
    assert b.link.stats[3] == 2


@pytest.mark.req("SEC-3", "LNK-3")
def test_emulator_messages_go_to_the_hook_when_the_board_has_one():
    calls = []

    class Hook:
        def command(self, mid, values):
            calls.append((mid, values))
            return S.OK, 42

    b = Bench()
    b.rig.emulator = Hook()
    b.reboot()
    assert b.command("emu_fault", 12, 3, -5) == (12, S.OK, 42)
    assert b.command("emu_fault", 12, 3, -5) == (12, S.OK, 42)  # a duplicate
    assert b.command("emu_clock", 13, 1, 70000)[1] == S.OK
    assert calls == [(ID["emu_fault"], [12, 3, -5]), (ID["emu_clock"], [13, 1, 70000])]
    assert b.send("emu_clock", 14, 1, 5)[0]["code"] == S.E_BAD_AUTH  # still authenticated


@pytest.mark.req("LNK-4", "LNK-5")
@pytest.mark.parametrize("mid", [0x0F, 0x20, 0x2F, 0x40, 0x80, 0x82, 0xC0, 0xFF])
def test_unknown_and_pump_to_host_ids_are_answered_unknown(mid):
    b = Bench()
    before = state(b)
    got = b.raw(M._raw(mid, 321, b"\x01\x02\x03"))
    assert len(got) == 1 and got[0].id == ID["result"] and got[0].seq == 321
    assert dict(got[0]) == {"cmd_id": 0, "code": S.E_UNKNOWN_MESSAGE, "detail": mid}
    assert state(b) == before


@pytest.mark.req("LNK-4", "LNK-5")
def test_a_frame_of_the_wrong_length_is_answered_bad_argument():
    b = Bench()
    before = state(b)
    for mid, payload in ((ID["status"], b"\x00"), (ID["get_profile"], b""),
                         (ID["bolus"], bytes(12)), (ID["suspend"], bytes(3 + 12))):
        got = b.raw(M._raw(mid, 55, payload))
        assert [dict(f) for f in got] == [{"cmd_id": 0, "code": S.E_BAD_ARG, "detail": -1}]
    assert state(b) == before


@pytest.mark.req("LNK-1", "LNK-5")
def test_other_protocol_versions_are_dropped_but_hello_is_answered():
    b = Bench()
    assert b.raw(M._raw(ID["status"], 5, b"", version=2)) == []
    got = b.raw(M._raw(ID["hello"], 6, b"", version=2))
    assert len(got) == 1 and got[0].id == ID["hello_info"] and got[0].seq == 6
    assert (got[0]["version"], got[0]["schema"]) == (S.PROTOCOL_VERSION, S.schema_hash())
    assert b.link.stats[2] == 2  # bad_frame


@pytest.mark.req("LNK-5")
def test_frames_arriving_byte_by_byte_and_back_to_back_are_all_answered():
    b = Bench()
    data = b"".join(wire.encode_frame(ID["hello"], s, 0, []) for s in range(1, 40))
    out = []
    for i in range(len(data)):
        out += b.raw(data[i:i + 1])
    assert [f.seq for f in out] == list(range(1, 40))


# ------------------------------------------------------------------ authentication
@pytest.mark.req("SEC-2", "LNK-4")
def test_unauthenticated_forged_and_replayed_commands_are_refused():
    b = Bench(bolus=False)
    before = state(b)
    bolus = (S.BOLUS_NORMAL, 1000, 0, 0)

    def result(frames):
        got = [f for f in frames if f.flags & S.F_RESPONSE]
        assert len(got) == 1 and got[0].id == ID["result"]
        return got[0]["cmd_id"], got[0]["code"], got[0]["detail"]

    assert result(b.send("bolus", 1, *bolus)) == (1, S.E_BAD_AUTH, S.AUTH_MISSING)
    assert result(b.send("bolus", 1, *bolus, key=M.OTHER_KEY, counter=5000)) == \
        (1, S.E_BAD_AUTH, S.AUTH_BAD_MAC)
    good = bytearray(wire.encode_frame(ID["bolus"], 9, 0, [1, *bolus], key=KEY, counter=5000))
    body = M._unstuff(bytes(good))
    body[-3] ^= 0x10  # a MAC bit, CRC made right again
    assert result(b.raw(M._stuff(M._with_crc(body[:-2])))) == (1, S.E_BAD_AUTH, S.AUTH_BAD_MAC)
    body = M._unstuff(bytes(good))
    body[10] ^= 0x01  # the bolus amount, MAC left as it was
    assert result(b.raw(M._stuff(M._with_crc(body[:-2])))) == (1, S.E_BAD_AUTH, S.AUTH_BAD_MAC)
    assert state(b) == before
    assert b.raw(bytes(good))[0]["code"] == S.OK  # the genuine frame acts
    assert b.pump.bolus_progress() == (1, 0, 1000)
    after = state(b)
    got = b.raw(bytes(good))  # the same frame again: a replay
    assert (got[0]["code"], got[0]["detail"]) == (S.E_BAD_AUTH, S.AUTH_REPLAYED)
    assert result(b.send("bolus", 2, *bolus, key=KEY, counter=4999)) == \
        (2, S.E_BAD_AUTH, S.AUTH_REPLAYED)
    assert state(b) == after
    assert (b.link.stats[4], b.link.stats[5]) == (4, 2)


@pytest.mark.req("SEC-2", "SEC-1")
def test_a_board_without_a_key_refuses_every_command():
    b = Bench(key=None, bolus=False)
    before = state(b)
    got = b.send("suspend", 1, key=KEY, counter=1)
    assert (got[0]["code"], got[0]["detail"]) == (S.E_BAD_AUTH, S.AUTH_BAD_MAC)
    assert b.query("status")["stop"] == S.STOP_NONE  # queries stay open
    assert state(b) == before


@pytest.mark.req("SEC-2")
def test_queries_need_no_auth_and_a_trailer_with_a_bad_mac_is_refused():
    b = Bench()
    got = b.answer(b.send("status"))
    assert got.id == ID["status_info"] and not got.flags & S.F_AUTH
    got = b.answer(b.send("status", key=M.OTHER_KEY, counter=1))
    assert (got.id, got["code"], got["detail"]) == (ID["result"], S.E_BAD_AUTH,
                                                    S.AUTH_BAD_MAC)
    assert b.link.counter == 0


@pytest.mark.req("SEC-2", "HIS-2")
def test_the_counter_survives_a_reboot_and_old_frames_stay_refused():
    b = Bench(bolus=False)
    old = wire.encode_frame(ID["suspend"], 3, 0, [50], key=KEY, counter=7000)
    assert b.raw(old)[0]["code"] == S.OK
    b.reboot()
    assert b.query("hello")["counter"] == 7000
    got = b.raw(old)
    assert (got[0]["code"], got[0]["detail"]) == (S.E_BAD_AUTH, S.AUTH_REPLAYED)
    assert b.command("resume", 51, counter=7001) == (51, S.OK, 0)


# ------------------------------------------------------------------ command ids (LNK-3)
@pytest.mark.req("LNK-3")
def test_a_duplicate_command_id_returns_the_first_result_and_acts_once():
    b = Bench(bolus=False)
    first = b.command("bolus", 77, S.BOLUS_NORMAL, 1000, 0, 0)
    assert first == (77, S.OK, 1)
    b.ticks(60)  # the bolus completes
    assert b.command("bolus", 77, S.BOLUS_NORMAL, 1000, 0, 0) == first
    assert b.command("suspend", 77) == first  # same id, other message: still the first
    assert b.pump.state[20] == S.STOP_NONE
    b.ticks(60)
    assert bolus_ends(b.pump) == [(1, 1000, S.BOLUS_COMPLETED)]
    assert b.link.stats[6] == 2


@pytest.mark.req("LNK-3")
def test_a_lost_reply_is_retried_and_reconciled_without_a_second_bolus():
    b = Bench(bolus=False)
    b.seq += 1
    b.counter += 1
    b.rig.serial.send(wire.encode_frame(ID["bolus"], b.seq, 0,
                                        [300, S.BOLUS_NORMAL, 1500, 0, 0], key=KEY,
                                        counter=b.counter))
    b.link.poll()
    b.rig.serial.take()  # the reply is lost on the way
    got = b.query("status")  # the host reconciles...
    assert (got["last_cmd_id"], got["last_code"], got["last_detail"]) == (300, S.OK, 1)
    assert got["bolus_id"] == 1
    # ...or simply retries: the same command id with the next counter
    assert b.command("bolus", 300, S.BOLUS_NORMAL, 1500, 0, 0) == (300, S.OK, 1)
    b.ticks(90)
    assert bolus_ends(b.pump) == [(1, 1500, S.BOLUS_COMPLETED)]


@pytest.mark.req("LNK-3", "HIS-2")
def test_duplicates_are_recognised_after_a_reboot_from_state_and_ring():
    b = Bench(bolus=False)
    results = {}
    for cid in range(1, RING + 3):  # RING + 2 commands: set_setting is idempotent anyway
        results[cid] = b.command("set_setting", 1000 + cid, S.SET_SNOOZE, 5 + cid)
    b.reboot()
    assert b.pump.state[S_LAST_CMD] == 1000 + RING + 2
    # the last in the state array, the RING before it in the ring
    for cid in range(2, RING + 3):
        assert b.command("set_setting", 1000 + cid, S.SET_SNOOZE, 99) == results[cid]
    assert b.pump.setting(S.SET_SNOOZE) == 5 + RING + 2
    assert b.link.stats[6] == RING + 1
    # the oldest fell out of the ring: the id is new again
    assert b.command("set_setting", 1001, S.SET_SNOOZE, 99) == (1001, S.OK, 0)


@pytest.mark.req("LNK-3", "SEC-2")
@pytest.mark.parametrize("reboot", [False, True])
def test_duplicates_with_ids_that_share_their_low_bits(reboot):
    """The link keeps, in RAM, how many ring entries share each id's low 6 bits (a new id
    is then known to be new without a scan): ids 64 apart, and ids of 2**31 and above
    (negative in the ring), are still told apart, also after the ring wrapped and after
    a reboot (the counts are rebuilt from the stored ring)."""
    b = Bench(bolus=False)
    ids = [5 + 64 * k for k in range(RING + 4)] + [0x80000005, 0xFFFFFFC5]
    results = {}
    for n, cid in enumerate(ids):
        results[cid] = b.command("set_setting", cid, S.SET_SNOOZE, 5 + n)
        assert results[cid] == (cid, S.OK, 0)
    if reboot:
        b.reboot()
    kept = ids[-RING - 1:]  # the last in the state array, the RING before it in the ring
    for cid in kept:
        assert b.command("set_setting", cid, S.SET_SNOOZE, 99) == results[cid], cid
    assert b.link.stats[6] == len(kept)
    assert b.pump.setting(S.SET_SNOOZE) == 5 + len(ids) - 1
    # ids that fell out of the ring, or never were in it, in the same bucket: new
    for cid in (ids[0], ids[3], 5 + 64 * 100, 0xC0000005):
        assert b.command("set_setting", cid, S.SET_SNOOZE, 7) == (cid, S.OK, 0), cid
    assert b.pump.setting(S.SET_SNOOZE) == 7


def cut_run(cut_at, mode, plan):
    """Carry out `plan` (commands (name, cmd_id, values), or ("ticks", seconds)) with the
    power cut at the `cut_at`-th storage write made while the link handles a command (mode
    0 before, 1 torn, 2 after the write). After the cut: reboot, and retry the command
    that was cut (same id, next counter). Returns (bench, results, index of the command
    that was cut or None)."""
    b = Bench(bolus=False)
    storage = b.rig.storage
    budget = cut_at  # command writes left before the cut
    storage.cut_mode = mode
    results = []
    cut = None
    i = 0
    while i < len(plan):
        name, cid, values = plan[i]
        if name == "ticks":
            storage.cut_at = -1
            b.ticks(cid)
            i += 1
            continue
        faults = b.link.faults
        storage.cut_at = storage.writes + budget if budget > 0 else -1
        w = storage.writes
        b.counter += 1
        b.seq += 1
        b.rig.serial.send(wire.encode_frame(ID[name], b.seq, 0, [cid, *values], key=KEY,
                                            counter=b.counter))
        b.link.poll()
        budget -= storage.writes - w
        out = [Frame(f) for f in M.frames(b.rig.serial.take())]
        if b.link.faults > faults:  # the PowerCut surfaced in the link: the board died
            assert storage.writes == storage.cut_at and cut is None
            cut = i
            storage.cut_at = -1
            b.reboot()
            continue
        res = [f for f in out if f.id == ID["result"]]
        results.append((res[0]["cmd_id"], res[0]["code"], res[0]["detail"]))
        i += 1
    storage.cut_at = -1
    b.ticks(60)
    return b, results, cut


PLAN = [("bolus", 500, (S.BOLUS_NORMAL, 1000, 0, 0)),
        ("set_setting", 501, (S.SET_SNOOZE, 45)),
        ("bolus", 500, (S.BOLUS_NORMAL, 1000, 0, 0)),
        ("ticks", 60, ()),  # the bolus completes
        ("suspend", 502, ()),
        ("bolus", 500, (S.BOLUS_NORMAL, 1000, 0, 0)),
        ("resume", 503, ()),
        ("bolus", 500, (S.BOLUS_NORMAL, 1000, 0, 0))]
BOLUS_RESULTS = (0, 2, 4, 6)


@pytest.mark.req("LNK-3", "HIS-2", "SEC-2")
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["before", "torn", "after"])
def test_a_power_cut_at_any_write_then_retry_delivers_once(mode):
    b, results, cut = cut_run(10_000, mode, PLAN)
    assert cut is None
    assert [results[i] for i in BOLUS_RESULTS] == [(500, S.OK, 1)] * 4
    assert bolus_ends(b.pump) == [(1, 1000, S.BOLUS_COMPLETED)]
    seen = set()
    for cut_at in range(1, 40):
        b, results, cut = cut_run(cut_at, mode, PLAN)
        if cut is None:
            break
        seen.add(cut)
        ends = bolus_ends(b.pump)
        bolus_id = ends[-1][0]
        # every answer for id 500 is the first result: OK with the bolus it started
        assert [results[i] for i in BOLUS_RESULTS] == [(500, S.OK, bolus_id)] * 4, cut_at
        interrupted = (bolus_id, 0, S.BOLUS_INTERRUPTED)
        if cut in (1, 2):  # the board died while the bolus ran: interrupted, never redone
            assert ends[-1] == interrupted, (cut_at, ends)
        elif cut == 0 and ends[-1] == interrupted:
            # died after the bolus' state save: it had started, the retry is a duplicate
            assert ends == [interrupted] and b.link.stats[6] == 4
        else:
            assert ends[-1] == (bolus_id, 1000, S.BOLUS_COMPLETED), (cut_at, ends)
        # a start cut off before its state save is closed at boot, nothing delivered, and
        # the retry starts it (once)
        assert len(ends) <= 2 and all(e[1:] == (0, S.BOLUS_INTERRUPTED) for e in ends[:-1])
        assert results[1] == (501, S.OK, 0) and results[3] == (502, S.OK, 0)
        assert results[5] == (503, S.OK, 0)
        assert b.pump.setting(S.SET_SNOOZE) == 45 and b.pump.state[20] == S.STOP_NONE
        assert b.query("status")["last_cmd_id"] == 503
    assert seen == set(range(len(PLAN))) - {3}  # a cut in every command


# ------------------------------------------------------------------ events (LNK-2)
@pytest.mark.req("LNK-2", "ALM-6")
def test_pump_events_are_sent_as_event_frames():
    b = Bench(bolus=False)
    out = b.send("bolus", 1, S.BOLUS_NORMAL, 100, 0, 0, key=KEY, counter=5000)
    assert out[0].id == ID["result"] and out[0]["code"] == S.OK  # the answer first
    out = out[1:] + b.ticks(5)
    events = [(f["kind"], f["a"], f["b"], f["c"]) for f in out]
    assert all(f.id == ID["event"] and f.flags == S.F_EVENT and f.seq == 0 for f in out)
    assert events == [(S.EV_BOLUS, 1, 0, 100), (S.EV_BOLUS, 1, 50, 100),
                      (S.EV_BOLUS, 1, 100, 100), (S.EV_BOLUS_END, 1, 100, S.BOLUS_COMPLETED)]


@pytest.mark.req("LNK-2")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(-(1 << 31), (1 << 31) - 1),
                          st.integers(-(1 << 31), (1 << 31) - 1),
                          st.integers(-(1 << 31), (1 << 31) - 1)), min_size=1, max_size=10))
def test_event_frames_are_byte_for_byte_the_generic_encoding(events):
    """Link._events packs an event frame whole from the pump's ring (issue 12): the bytes
    on the wire are exactly wire.encode_frame's for (kind, a, b, c), zero bytes (COBS) and
    negative values included, in queue order, at most 8 per poll."""
    from firmware import link as L

    assert L._EVENT_END == S.HEADER_SIZE + wire.PAYLOAD_SIZE[ID["event"]]
    b = Bench(bolus=False)
    for ev in events:
        b.pump.events.put(*ev)
    out = b""
    for _ in range(2):
        b.link.poll()
        out += bytes(b.rig.serial.take())
    assert out == b"".join(wire.encode_frame(ID["event"], 0, S.F_EVENT, list(ev))
                           for ev in events)
    assert b.pump.events.count == 0


@pytest.mark.req("LNK-2", "LNK-4", "LNK-6")
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, (1 << 32) - 1), st.integers(0, 255),
       st.integers(-(1 << 31), (1 << 31) - 1), st.none() | st.integers(1, (1 << 32) - 1))
def test_result_frames_are_byte_for_byte_the_generic_encoding(seq, cmd, code, detail, counter):
    """Link._result packs a RESULT frame whole and seals it in one call (issue 12): the
    bytes on the wire are exactly wire.encode_frame's, signed with the request's counter
    when the request was authenticated (`counter`), plain otherwise."""
    from firmware import link as L

    assert L._RESULT_END == S.HEADER_SIZE + wire.PAYLOAD_SIZE[ID["result"]]
    b = Bench(bolus=False)
    b.link.sign = counter is not None
    b.link.reply_counter = counter or 0
    b.link._result(seq, cmd, code, detail)
    want = wire.encode_frame(ID["result"], seq, S.F_RESPONSE, [cmd, code, detail],
                             key=KEY if counter is not None else None, counter=counter or 0)
    assert bytes(b.rig.serial.take()) == want


@pytest.mark.req("LNK-2")
def test_a_full_event_queue_is_sent_over_several_polls():
    b = Bench()
    for i in range(20):
        b.pump.events.put(S.EV_STATE, i, 0, 0)
    sent = []
    for _ in range(3):
        b.link.poll()
        sent += [f["a"] for f in (Frame(x) for x in M.frames(b.rig.serial.take()))]
    assert sent == list(range(4, 20))  # the queue holds 16: the oldest 4 were dropped
    assert b.query("get_link_stats")["events_dropped"] == 4


@pytest.mark.req("LNK-2", "ALM-5")
def test_main_loop_serves_the_link_between_ticks():
    b = Bench()
    for s in (1, 2, 3):
        b.rig.serial.send(wire.encode_frame(ID["hello"], s, 0, []))
    t0 = b.rig.clock.ticks_ms()
    feeds = b.rig.watchdog.feeds
    pump = firmware.main.run(b.rig.hardware(), ticks=5)
    assert b.rig.watchdog.feeds - feeds == boot_feeds(b.rig) + 5
    assert (b.rig.clock.ticks_ms() - t0) % (1 << 30) == 5 * firmware.main.TICK_MS
    out = [Frame(f) for f in M.frames(b.rig.serial.take())]
    hellos = [f for f in out if f.id == ID["hello_info"]]
    assert [f.seq for f in hellos] == [1, 2, 3] and hellos[0]["boots"] == pump.state[S_BOOTS]


# ------------------------------------------------------------------ allocation
@functools.cache
def alloc_results(runtime):
    src = Path(M.__file__).read_text() + "\nmain_alloc(20)\n"
    out = run_unix(src) if runtime == "unix" else run_wasm(src, fuel=20_000_000_000).stdout
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError("no RESULT")


# Paths that allocate by design: a command with auth (HMAC, the pump operation), and two
# queries that build tuples in the pump (get_profile, day_totals).
ALLOCATING = {"bolus_auth", "get_profile", "get_totals"}


@pytest.mark.parametrize("runtime", [
    pytest.param("unix", marks=pytest.mark.req("LNK-1", "LNK-5", "HW-3")),
    pytest.param("wasm", marks=pytest.mark.req("LNK-1", "LNK-5")),  # 32-bit small ints
])
def test_status_and_error_paths_allocate_nothing(runtime):
    """Each request path runs 20 times under micropython.heap_lock(): a MemoryError would
    surface as a fault of the link (it catches everything) or a failure of the poll."""
    got = alloc_results(runtime)
    assert got["locked"] is True
    labels = [label for label, _, _ in M.request_frames()] + ["events"]
    assert sorted(k for k in got if k != "locked") == sorted(labels)
    for label in labels:
        if label in ALLOCATING:
            assert got[label]["faults"] > 0  # the checker sees allocation
            continue
        assert got[label] == {"fails": 0, "faults": 0, "answer": got[label]["answer"],
                              "answer_ok": True}, label
    on_cpython = M.alloc_report()  # the same code answers the same under CPython
    assert all(on_cpython[k]["answer_ok"] for k in labels)


# ------------------------------------------------------------------ unix board behind a pty
@pytest.mark.req("HW-3", "LNK-1", "SEC-1", "SEC-2")
def test_launch_exposes_the_firmware_on_a_pty(tmp_path):
    import serial

    from host_tools.launch import launch

    state_dir = tmp_path / "pump"

    def roundtrip(port, mid, seq, values=(), key=None, counter=0):
        port.write(wire.encode_frame(mid, seq, 0, list(values), key=key, counter=counter))
        while True:
            data = port.read_until(b"\x00")
            assert data.endswith(b"\x00"), "no answer"
            got = Frame(wire.decode_frame(data))
            if got.seq == seq and got.flags & S.F_RESPONSE:
                return got

    with launch(state_dir) as emu:
        key_file = state_dir / "key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        key = bytes.fromhex(key_file.read_text())
        with serial.Serial(emu.port, timeout=10) as port:
            hello = roundtrip(port, ID["hello"], 1)
            assert (hello["board"], hello["boots"], hello["counter"]) == (S.BOARD_UNIX, 1, 0)
            status = roundtrip(port, ID["status"], 2)
            assert status.id == ID["status_info"] and status["stop"] == S.STOP_USER
            got = roundtrip(port, ID["set_setting"], 3, (40, S.SET_SNOOZE, 45), key, 9)
            assert (got["cmd_id"], got["code"]) == (40, S.OK)
    with launch(state_dir) as emu:  # the process was killed: a power cut
        assert bytes.fromhex((state_dir / "key").read_text()) == key
        with serial.Serial(emu.port, timeout=10) as port:
            hello = roundtrip(port, ID["hello"], 4)
            assert (hello["boots"], hello["counter"]) == (2, 9)
            status = roundtrip(port, ID["status"], 5)
            assert (status["last_cmd_id"], status["last_code"]) == (40, S.OK)
            settings_ = roundtrip(port, ID["get_settings"], 6)["values"]
            assert int.from_bytes(settings_[4 * S.SET_SNOOZE:4 * S.SET_SNOOZE + 4],
                                  "little") == 45
