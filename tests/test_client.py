"""host_tools/client.py against a fake pump peer: the real firmware (Pump + Link) on CPython
in a thread, reached through pyserial's socket:// URL, with frames dropped on demand.

LNK-1 HELLO and schema check, LNK-2 sequence matching, timeouts, retries and events,
LNK-3 retried commands act once and lost replies are settled by a fence (LNK-6), LNK-4
refusals with code and detail, SEC-1/SEC-2 key handling and authentication, SEC-3.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

import pytest

from firmware.link import Link
from host_tools import client as C
from protocol import codec, spec
from protocol.make_golden import TEST_KEY
from tests.pumpkit import history, make_pump, records

KEY = TEST_KEY


class SocketSerial:
    """Firmware-side serial driver over a socket (readinto / write), with fault injection:
    drop the next N incoming frames (requests) or outgoing RESULT frames (replies)."""

    def __init__(self, sock: socket.socket | None):
        self.sock = sock
        self.closed = sock is None
        self.inbox = bytearray()  # whole frames accepted for the firmware
        self.partial = bytearray()
        self.drop_requests = 0
        self.drop_results = 0
        self.silent = False  # swallow every frame in both directions
        self.dropped = []  # decoded messages that were dropped

    def attach(self, sock: socket.socket):
        """A new host connection (the previous one was closed)."""
        sock.setblocking(False)
        self.sock = sock
        self.closed = False
        self.inbox.clear()
        self.partial.clear()

    def _pull(self):
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            self.partial += data
            while 0 in self.partial:
                i = self.partial.index(0)
                frame = bytes(self.partial[: i + 1])
                del self.partial[: i + 1]
                if self.silent or (self.drop_requests and len(frame) > 1):
                    if not self.silent:
                        self.drop_requests -= 1
                    self.dropped.append(_safe_decode(frame))
                    continue
                self.inbox += frame

    def readinto(self, buf):
        self._pull()
        n = min(len(buf), len(self.inbox))
        buf[:n] = self.inbox[:n]
        del self.inbox[:n]
        return n

    def write(self, buf, n):
        data = bytes(buf[:n])
        if self.silent or self.closed:
            return n
        if self.drop_results:
            msg = _safe_decode(data)
            if msg is not None and msg.name == "result" and msg["cmd_id"]:
                self.drop_results -= 1
                self.dropped.append(msg)
                return n
        with contextlib.suppress(OSError):
            self.sock.sendall(data)
        return n


def _safe_decode(data):
    try:
        return codec.decode(data)
    except codec.ProtocolError:
        return None


class PumpPeer:
    """The firmware in a thread: tick + link.poll, board time advancing `step_ms` per loop
    (faster than real time). Use `with peer.lock:` to look at the pump from a test."""

    def __init__(self, key=KEY, step_ms=200, emulator=None, **pump_kwargs):
        self.rig, self.pump = make_pump(**pump_kwargs)
        self.rig.key = key
        self.rig.emulator = emulator
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.step_ms = step_ms
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.serial: SocketSerial | None = None
        self.link: Link | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.server.settimeout(0.05)
        with self.lock:
            self.serial = SocketSerial(None)
            self.rig.serial = self.serial
            self.link = Link(self.pump, self.rig.hardware())
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.serial.attach(conn)
            self.ready.set()
            while not self.stop.is_set() and not self.serial.closed:
                select.select([conn], [], [], 0.002)
                with self.lock:
                    self.rig.clock.advance(self.step_ms)
                    self.pump.tick()
                    self.link.poll()
            conn.close()

    def connect(self, **kwargs) -> C.Client:
        kwargs.setdefault("key", KEY)
        kwargs.setdefault("timeout", 0.3)
        client = C.connect(self.url, **kwargs)
        assert self.ready.wait(5)
        return client

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def peer():
    p = PumpPeer()
    yield p
    p.close()


@pytest.fixture
def pump(peer):
    c = peer.connect()
    yield c
    c.close()


def link_stats(peer):
    with peer.lock:
        return list(peer.link.stats)


# ====================================================================== HELLO and schema
@pytest.mark.req("LNK-1", "SEC-2")
def test_connect_says_hello_and_syncs_the_counter(peer, pump):
    info = pump.info
    assert (info.version, info.schema, info.pulse_mu) == (1, spec.schema_hash(), 50)
    assert info.board == spec.BOARD_TEST
    assert info.counter == 0 and pump.counter == 0
    pump.suspend()
    pump.resume()
    assert pump.hello().counter == 2  # the pump persisted the last accepted counter
    pump.close()
    with peer.connect() as second:  # a new session starts above it
        assert second.counter == 2
        assert second.suspend().cmd_id == 3


@pytest.mark.req("LNK-1")
def test_schema_mismatch_names_what_to_update(peer, monkeypatch):
    monkeypatch.setattr(spec, "schema_hash", lambda: 0x12345678)
    with pytest.raises(C.SchemaMismatch) as err:
        peer.connect()
    text = str(err.value)
    assert "host tools speak v1 schema 0x12345678" in text
    assert "reinstall the host tools" in text and "reflash the pump firmware" in text
    assert "protocol/spec.py" in text


class ScriptedPort:
    """A pyserial-like port whose answers come from `respond(msg) -> [wire bytes]`."""

    def __init__(self, respond):
        self.respond = respond
        self.out = bytearray()
        self.timeout = 0.05
        self.sent = []
        self.reader = codec.FrameReader()

    @property
    def in_waiting(self):
        return len(self.out)

    def write(self, data):
        for frame in self.reader.feed(data):
            msg = codec.decode_frame(frame)
            self.sent.append(msg)
            for reply in self.respond(msg):
                self.out += reply
        return len(data)

    def read(self, n=1):
        if not self.out:
            time.sleep(min(self.timeout or 0, 0.01))
            return b""
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def close(self):
        pass


@pytest.mark.req("LNK-1")
def test_other_protocol_version_is_a_schema_mismatch():
    def respond(msg):
        frame = codec.encode_frame("hello_info", msg.seq, dict(
            version=2, schema=1, board=1, pulse_mu=50, firmware=9, boots=1, counter=0),
            flags=spec.F_RESPONSE, version=2)
        return [codec.stuff(frame)]

    with pytest.raises(C.SchemaMismatch, match="frame has version 2, host tools speak "
                                               "version 1; update"):
        C.Client(ScriptedPort(respond), timeout=0.2)


@pytest.mark.req("LNK-1", "LNK-2")
def test_silent_port_times_out_with_a_clear_message():
    port = ScriptedPort(lambda msg: [])
    t0 = time.monotonic()
    with pytest.raises(C.PumpTimeout, match="no answer to HELLO: check the port"):
        C.Client(port, timeout=0.05, retries=2)
    assert time.monotonic() - t0 < 2
    assert [m.name for m in port.sent] == ["hello"] * 3
    assert len({m.seq for m in port.sent}) == 3  # each try has its own sequence


@pytest.mark.req("LNK-2")
def test_unreachable_url_is_a_link_error():
    with pytest.raises(C.LinkError, match="cannot open /nonexistent/tty"):
        C.connect("/nonexistent/tty")
    with pytest.raises(C.LinkError, match="cannot open socket://127.0.0.1:1"):
        C.connect("socket://127.0.0.1:1")


# ====================================================================== sequence matching
@pytest.mark.req("LNK-2")
def test_responses_matched_by_sequence_stale_ones_skipped():
    """Answers to other sequences (late replies) and events in between are not mistaken for
    the answer."""
    hello = dict(version=1, schema=spec.schema_hash(), board=0, pulse_mu=25, firmware=1,
                 boots=3, counter=7)

    def respond(msg):
        stale = codec.encode("result", (msg.seq + 100) & 0xFFFF, dict(cmd_id=0, code=4,
                                                                     detail=0),
                             flags=spec.F_RESPONSE)
        event = codec.encode("event", 0, dict(kind=spec.EV_STATE, a=1, b=0, c=0),
                             flags=spec.F_EVENT)
        real = codec.encode("hello_info", msg.seq, hello, flags=spec.F_RESPONSE)
        return [stale, b"\x01\x02garbage\x00", event, real]

    seen = []
    c = C.Client(ScriptedPort(respond), timeout=0.2, on_event=seen.append)
    assert (c.info.pulse_mu, c.info.boots, c.counter) == (25, 3, 7)
    assert seen == [C.Event(spec.EV_STATE, 1, 0, 0)]
    assert c.stats["stale"] == 1 and c.stats["bad_frames"] == 1


@pytest.mark.req("HW-5", "LNK-2")
def test_console_answer_read_with_a_frame_is_kept_for_the_console():
    """The bench console shares the port (HW-5): its answer ends in a prompt and no 0x00.
    Read in one chunk with the frame before it, it is the console's text, not lost in the
    reader (a QEMU-board CI run lost "bolus #7 started" this way)."""
    hello = dict(version=1, schema=spec.schema_hash(), board=0, pulse_mu=25, firmware=1,
                 boots=3, counter=7)

    def respond(msg):
        real = codec.encode("hello_info", msg.seq, hello, flags=spec.F_RESPONSE)
        return [b"\r\nearlier\r\npump> \0", real, b"\r\nbolus #7 started\r\npump> "]

    c = C.Client(ScriptedPort(respond), timeout=0.2)
    assert c.info.boots == 3
    assert c.take_console_text() == "\r\nearlier\r\npump> \r\nbolus #7 started\r\npump> "
    assert c.take_console_text() == ""


# ====================================================================== queries
@pytest.mark.req("LNK-2")
def test_status_is_typed_from_the_table(pump):
    st = pump.status()
    assert isinstance(st, C.Status)
    assert st.delivering and st.stop_reason == "delivering"
    assert st.profile_rate == 1000 and st.basal_rate == 1000
    assert st.bolus_id == 0 and not st.bolus_running
    assert st.time_set == 1 and st.offset == 0
    assert st.local_time.date().isoformat() >= "2026-11-16"
    assert st.alarm_names == []
    assert 0 < st.reservoir <= 300000 and st.reservoir_u == st.reservoir / 1000


@pytest.mark.req("LNK-2", "LNK-4")
def test_profiles_schedule_settings_roundtrip(pump):
    pump.set_profile(1, "sport", [0, 12, 36], [500, 1250, 700])
    prof = pump.get_profile(1)
    assert prof == C.Profile(1, "sport", (0, 12, 36), (500, 1250, 700))
    assert prof.segments() == [("00:00", 500), ("06:00", 1250), ("18:00", 700)]
    assert pump.get_profile(3).starts == ()  # unused
    pump.set_schedule([0, 0, 0, 0, 0, 1, 1])
    assert pump.get_schedule() == [0, 0, 0, 0, 0, 1, 1]
    pump.set_setting("max_bolus", 12000)
    settings = pump.get_settings()
    assert settings["max_bolus"] == 12000 and settings["bolus_speed"] == 1500
    assert settings["utc_offset"] == 0 and len(settings) == spec.SETTINGS_COUNT
    with pytest.raises(C.PumpRefused) as err:
        pump.set_schedule([0, 0, 0, 0, 0, 0, 3])  # profile 3 is unused
    assert (err.value.code, err.value.detail) == (spec.E_BAD_ARG, 6)


@pytest.mark.req("LNK-2")
def test_history_spans_pages_and_totals_alarms_link_stats(peer, pump):
    with peer.lock:
        next_seq = peer.pump.history.next_seq
        expected = [r[:7] for r in history(peer.pump)]
    recs = pump.get_history(1, next_seq - 1)
    assert [(r.seq, r.time, r.kind, r.arg, r.v1, r.v2, r.v3) for r in recs] == expected
    assert len(recs) > spec.HISTORY_PAGE  # more than one page was fetched
    assert recs[0].kind_name == "boot"
    st = pump.status()
    tot = pump.get_totals(st.local_day)
    assert tot.valid and tot.prime == 600  # primed 10 + 2 pulses of 50 mU
    assert not pump.get_totals(st.local_day - 400).valid
    alarms = pump.get_alarms()
    assert len(alarms) == spec.ALARM_COUNT and not any(a.active for a in alarms)
    ls = pump.get_link_stats()
    assert ls.frames_in >= 5 and ls.bad_crc == 0 and ls.frames_out >= 5


# ====================================================================== commands, events
@pytest.mark.req("LNK-2", "LNK-3")
def test_bolus_events_to_callback_until_completed(peer):
    seen = []
    c = peer.connect(on_event=seen.append)
    res = c.bolus(C.units_to_mu("0.5"))
    bolus_id = res.detail
    assert res.code == spec.OK and bolus_id > 0 and not res.reconciled
    deadline = time.monotonic() + 10
    while not any(e.kind == spec.EV_BOLUS_END for e in seen) and time.monotonic() < deadline:
        c.poll_events(0.1)
    ends = [e for e in seen if e.kind == spec.EV_BOLUS_END]
    assert ends == [C.Event(spec.EV_BOLUS_END, bolus_id, 500, spec.BOLUS_COMPLETED)]
    progress = [e.b for e in seen if e.kind == spec.EV_BOLUS and e.a == bolus_id]
    assert progress == list(range(0, 501, 50))  # start event, then every 50 mU pulse
    assert ends[0].describe() == f"bolus {bolus_id} completed: 0.5 U delivered"
    st = c.status()
    assert (st.last_cmd_id, st.last_code, st.last_detail) == (res.cmd_id, spec.OK, bolus_id)
    c.close()


@pytest.mark.req("LNK-2")
def test_events_iterator(pump):
    pump.suspend()
    got = list(pump.events(timeout=0.3))
    assert C.Event(spec.EV_STATE, spec.STOP_USER, 0, 0) in got
    # (make_pump's resume queued "delivering" before the link ran)
    assert [e.describe() for e in got if e.kind == spec.EV_STATE][-1] == "delivery: user"


# ====================================================================== refusals (LNK-4)
@pytest.mark.req("LNK-4")
def test_refusals_carry_code_name_and_detail(pump):
    with pytest.raises(C.PumpRefused) as err:
        pump.bolus(C.units_to_mu("11"))
    e = err.value
    assert (e.code, e.name, e.detail) == (spec.E_OVER_LIMIT, "over limit", spec.SET_MAX_BOLUS)
    assert str(e) == "bolus refused: over limit (limit max_bolus per bolus)"
    with pytest.raises(C.PumpRefused) as err:
        pump.bolus(1025)
    assert (err.value.code, err.value.detail) == (spec.E_INCREMENT, 50)
    assert str(err.value) == ("bolus refused: amount is not a whole number of pulses "
                              "(whole pulses of 0.05 U)")
    with pytest.raises(C.PumpRefused) as err:
        pump.cancel_temp_basal()
    assert err.value.name == "no temp basal running"
    with pytest.raises(C.PumpRefused) as err:  # a refused query: RESULT with cmd_id 0
        pump.get_profile(9)
    assert (err.value.code, err.value.cmd_id) == (spec.E_BAD_ARG, 0)
    with pytest.raises(C.PumpRefused) as err:
        pump.ack_alarm("occlusion")
    assert err.value.code == spec.E_UNKNOWN_ALARM and "(occlusion)" in str(err.value)


@pytest.mark.req("SEC-3", "LNK-4")
def test_emulator_messages_refused_by_a_board_without_emulator(pump):
    with pytest.raises(C.PumpRefused) as err:
        pump.emu_clock(1, 1000)
    assert (err.value.code, err.value.detail) == (spec.E_UNKNOWN_MESSAGE, 0x30)


@pytest.mark.req("SEC-2", "LNK-4")
def test_commands_without_key_or_with_wrong_key_are_refused(peer, pump):
    pump.key = None
    with pytest.raises(C.PumpRefused) as err:
        pump.suspend()
    assert (err.value.code, err.value.detail) == (spec.E_BAD_AUTH, spec.AUTH_MISSING)
    assert "give the pairing key with --key" in str(err.value)
    pump.key = bytes(32)
    with pytest.raises(C.PumpRefused) as err:
        pump.suspend()
    assert (err.value.code, err.value.detail) == (spec.E_BAD_AUTH, spec.AUTH_BAD_MAC)
    assert pump.status().delivering  # nothing acted
    pump.key = KEY
    assert pump.status().bolus_id == 0 and pump.get_settings()  # queries need no key


@pytest.mark.req("SEC-2")
def test_stale_counter_resyncs_once_via_hello(peer, pump):
    pump.suspend()
    pump.resume()
    pump.counter = 0  # as if another host had used counters 1..2 meanwhile
    res = pump.suspend()
    # the refused try's cmd_id 1 was already used: the command got a fresh id and acted
    assert (res.code, res.cmd_id, pump.counter) == (spec.OK, 3, 3)
    stats = link_stats(peer)
    assert (stats[5], stats[6]) == (1, 0)  # one replayed frame, no duplicate
    st = pump.status()
    assert (st.stop, st.last_cmd_id) == (spec.STOP_USER, 3)


# ====================================================================== retries (LNK-3)
def _bolus_starts(peer):
    with peer.lock:
        return len(records(peer.pump, spec.H_BOLUS_START))


@pytest.mark.req("LNK-3", "LNK-2")
def test_lost_reply_retry_delivers_once(peer, pump):
    before = _bolus_starts(peer)
    peer.serial.drop_results = 1
    res = pump.bolus(C.units_to_mu("0.1"))
    assert res.code == spec.OK and not res.reconciled
    assert pump.stats["retries"] == 1
    dropped = peer.serial.dropped[0]
    assert (dropped["cmd_id"], dropped["detail"]) == (res.cmd_id, res.detail)
    assert _bolus_starts(peer) == before + 1  # acted once
    assert link_stats(peer)[6] == 1  # the retry was a duplicate


@pytest.mark.req("LNK-3", "LNK-2")
def test_lost_request_is_retried_with_the_same_cmd_id_and_a_new_counter(peer, pump):
    peer.serial.drop_requests = 1
    res = pump.suspend()
    assert res.code == spec.OK and pump.stats["retries"] == 1
    lost = peer.serial.dropped[0]
    assert lost.name == "suspend" and lost["cmd_id"] == res.cmd_id
    assert pump.counter == lost.counter + 1
    assert link_stats(peer)[6] == 0  # not a duplicate: the first try never arrived
    assert not pump.status().delivering


@pytest.mark.req("LNK-3")
def test_all_replies_lost_reconciled_from_status(peer, pump):
    before = _bolus_starts(peer)
    peer.serial.drop_results = pump.retries + 1
    res = pump.bolus(C.units_to_mu("0.2"))
    assert res.reconciled and res.code == spec.OK and res.detail > 0
    assert pump.stats["reconciled"] == 1
    assert [m["cmd_id"] for m in peer.serial.dropped] == [res.cmd_id] * (pump.retries + 1)
    assert _bolus_starts(peer) == before + 1
    with peer.lock:
        assert records(peer.pump, spec.H_BOLUS_START)[-1][4] == res.detail  # v1: bolus id


@pytest.mark.req("LNK-3", "LNK-4")
def test_refusal_learned_by_reconciliation_is_raised(peer, pump):
    peer.serial.drop_results = pump.retries + 1
    with pytest.raises(C.PumpRefused) as err:
        pump.bolus(C.units_to_mu("20"))
    assert (err.value.code, err.value.detail) == (spec.E_OVER_LIMIT, spec.SET_MAX_BOLUS)


@pytest.mark.req("LNK-3")
def test_all_requests_lost_reports_not_carried_out(peer, pump):
    peer.serial.drop_requests = pump.retries + 1
    with pytest.raises(C.PumpTimeout, match="it was not carried out and can no longer be"):
        pump.suspend()
    assert pump.status().delivering


@pytest.mark.req("LNK-3", "LNK-2")
def test_pump_gone_silent_outcome_unknown(peer, pump):
    pump.retries = 1
    peer.serial.silent = True
    with pytest.raises(C.PumpTimeout, match="may or may not have been carried out"):
        pump.suspend()
    peer.serial.silent = False
    assert pump.status().delivering


# ====================================================================== units and keys
@pytest.mark.req("THR-3")
@pytest.mark.parametrize("text, mu", [("1.5", 1500), ("0.025", 25), ("10", 10000),
                                      ("0", 0), (" 2.000 ", 2000), ("1e0", 1000)])
def test_units_to_mu_exact(text, mu):
    assert C.units_to_mu(text) == mu


@pytest.mark.req("THR-3")
@pytest.mark.parametrize("text, message", [
    ("1.0005", "not a whole number of 0.001 U"), ("0.0001", "not a whole number"),
    ("-1", "must not be negative"), ("abc", "not a number"), ("nan", "not a number"),
    ("inf", "not a number"), ("", "not a number")])
def test_units_to_mu_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        C.units_to_mu(text)


@pytest.mark.req("THR-3")
def test_mu_to_units_text():
    assert [C.mu_to_units(m) for m in (1500, 25, 1000, 0, 123456, -50)] == [
        "1.5", "0.025", "1.0", "0.0", "123.456", "-0.05"]


@pytest.mark.req("SEC-1")
def test_key_file_raw_or_hex(tmp_path):
    raw = tmp_path / "raw.key"
    raw.write_bytes(KEY)
    hexed = tmp_path / "hex.key"
    hexed.write_text(KEY.hex().upper() + "\n")
    assert C.load_key(raw) == KEY == C.load_key(hexed)
    bad = tmp_path / "bad.key"
    bad.write_text("00" * 31)
    with pytest.raises(C.KeyFileError, match="expected 32 raw bytes or 64 hex digits"):
        C.load_key(bad)
    with pytest.raises(C.KeyFileError, match="cannot read key file"):
        C.load_key(tmp_path / "missing.key")


@pytest.mark.req("LNK-1")
def test_client_has_a_typed_method_for_every_host_to_pump_message():
    for mid, (name, _fields) in spec.MESSAGES.items():
        if mid < 0x80:
            assert callable(getattr(C.Client, name, None)), name


@pytest.mark.req("LNK-2")
@pytest.mark.parametrize("record", [C.Hello, C.Status, C.LinkStats, C.SensorStats])
def test_records_made_from_a_message_equal_the_dataclass_built_one(record):
    """Record.of(message) (no frozen __init__: the status round trip's cost) is the same
    record as Record(**message.fields), and refuses a message of another kind."""
    import dataclasses

    from protocol import fastcodec

    table = fastcodec._BY_NAME[record.message_name]
    names = table.names
    values = {n: bytes([i]) * 2 if t is bytes else i + 1
              for i, (n, t) in enumerate(zip(names, table.types, strict=True))}
    msg = fastcodec.decode(fastcodec.encode(record.message_name, 9, values,
                                            flags=spec.F_RESPONSE))
    made, built = record.of(msg), record(**msg.fields)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert dataclasses.asdict(made) == dataclasses.asdict(built) == msg.fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(names[0], 0)
    other = fastcodec.decode(fastcodec.encode("result", 9, {"cmd_id": 1, "code": 0,
                                                            "detail": 0},
                                              flags=spec.F_RESPONSE))
    with pytest.raises(codec.ProtocolError, match=f"expected {record.message_name}"):
        record.of(other)
