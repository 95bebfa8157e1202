"""A link that cannot be fooled (LNK-6, SEC-4, LNK-1): what the host is told is true.

- "not carried out" only after a fence: an authenticated command whose counter is above
  every try, so a try the link held back can no longer act when it arrives late;
- the answers decisions rest on (results, fence_info, HELLO) are signed by the pump with
  the request's counter; forged or unsigned answers are ignored by the client, and the
  F_RESPONSE bit (covered by the MAC) keeps a frame from being reflected;
- the MAC covers the schema hash: the pump refuses a host built from another table;
- both copies of the link state invalid: self-test bit, alarm, record, and every command
  refused, across reboots, until the pump gets a new pairing key.

Firmware tests drive Pump + Link through the fake serial cable (tests/test_link.py's
Bench); client tests run the real client against the firmware in a thread
(tests/test_client.py's PumpPeer) whose cable can hold, drop and forge frames.
"""

import hashlib
import hmac
import struct

import pytest
from cobs import cobs

from firmware import link as L
from firmware import link_boot, wire
from firmware.crc import crc16
from firmware.hal import R_LINK_A, R_LINK_B
from firmware.pump import S_BOLUS_ID, S_STOP
from host_tools import client as C
from protocol import codec
from protocol import spec as S
from tests import mp_link as M
from tests.pumpkit import records
from tests.test_client import KEY as CLIENT_KEY
from tests.test_client import PumpPeer
from tests.test_link import ID, KEY, Bench

NEW_KEY = bytes(range(200, 232))


def signed_frames(b, data):
    """Send wire bytes, poll; the pump's frames as codec Messages."""
    b.rig.serial.send(data)
    b.link.poll()
    out = b.rig.serial.take()
    return [codec.decode(part) for part in bytes(out).split(b"\x00") if part]


# ------------------------------------------------------------------ signed answers
@pytest.mark.req("LNK-6", "SEC-2")
def test_answers_to_authenticated_requests_are_signed_with_the_request_counter():
    b = Bench()
    data = wire.encode_frame(ID["cancel_temp_basal"], 7, 0, [4242], key=KEY, counter=5001)
    (msg,) = signed_frames(b, data)
    assert (msg.name, msg["cmd_id"], msg["code"]) == ("result", 4242, S.OK)
    assert msg.flags == S.F_RESPONSE | S.F_AUTH and msg.counter == 5001
    assert codec.verify_mac(msg, KEY) and not codec.verify_mac(msg, NEW_KEY)
    # a refusal after a good MAC (replayed counter) is signed too
    (msg,) = signed_frames(b, wire.encode_frame(ID["suspend"], 8, 0, [4243], key=KEY,
                                                counter=5001))
    assert (msg["code"], msg["detail"], msg.counter) == (S.E_BAD_AUTH, S.AUTH_REPLAYED, 5001)
    assert codec.verify_mac(msg, KEY)
    # a query with a nonce: the answer carries it, signed; an open query stays unsigned
    (msg,) = signed_frames(b, wire.encode_frame(ID["hello"], 9, 0, [], key=KEY,
                                                counter=0xDEADBEEF))
    assert (msg.name, msg.counter, msg["counter"]) == ("hello_info", 0xDEADBEEF, 5001)
    assert codec.verify_mac(msg, KEY)
    (msg,) = signed_frames(b, wire.encode_frame(ID["status"], 10, 0, []))
    assert msg.name == "status_info" and msg.counter is None
    assert b.link.counter == 5001  # a query's nonce never moves the counter floor


@pytest.mark.req("LNK-6", "SEC-2")
def test_a_signed_answer_reflected_to_the_pump_is_dropped():
    b = Bench()
    data = wire.encode_frame(ID["suspend"], 7, 0, [77], key=KEY, counter=6000)
    b.rig.serial.send(data)
    b.link.poll()
    out = [p + b"\x00" for p in bytes(b.rig.serial.take()).split(b"\x00") if p]
    (answer,) = [f for f in out if codec.decode(f).name == "result"]
    assert codec.verify_mac(codec.decode(answer), KEY)
    before = M.snapshot(b.pump, b.link)
    bad_frame = b.link.stats[2]
    assert b.raw(answer) == []  # F_RESPONSE: not a request, whatever its MAC
    assert b.link.stats[2] == bad_frame + 1
    assert M.snapshot(b.pump, b.link) == before


# ------------------------------------------------------------------ schema (LNK-1)
def other_schema():
    """The schema hash of a host whose bolus has `now` and `ext` swapped (same length),
    computed here as spec.schema_hash describes it (32-bit FNV-1a of the table text)."""
    text = str(S.PROTOCOL_VERSION)
    for mid in sorted(S.MESSAGES):
        name, fields = S.MESSAGES[mid]
        if name == "bolus":
            fields = fields[:2] + (fields[3], fields[2]) + fields[4:]
        text += f";{mid}:{name}" + "".join(f",{f}:{c}" for f, c in fields)
    h = 0x811C9DC5
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return h


@pytest.mark.req("LNK-1", "LNK-6", "SEC-2")
def test_the_pump_refuses_a_host_built_from_another_table():
    b = Bench(bolus=False)
    other = other_schema()
    assert other != S.schema_hash()
    # that host's bolus of 2 U now, 0 extended, in its field order, with the right key;
    # its MAC covers its own schema hash, or (a host from before the hash was covered) none
    payload = struct.pack("<IBIIH", 31, S.BOLUS_NORMAL, 0, 2000, 0)
    for n, prefix in enumerate((b"", struct.pack("<I", other))):
        signed = struct.pack("<BBHB", S.PROTOCOL_VERSION, S.F_AUTH, 7, ID["bolus"]) + payload
        signed += struct.pack("<I", 7000 + n)
        mac = hmac.new(KEY, prefix + signed, hashlib.sha256).digest()[:8]
        body = signed + mac
        body += struct.pack("<H", crc16(body, 0, len(body)))
        before = M.snapshot(b.pump, b.link)
        (msg,) = signed_frames(b, cobs.encode(body) + b"\x00")
        assert M.snapshot(b.pump, b.link) == before  # nothing acted, the counter stayed
        assert (msg.name, msg["code"], msg["detail"]) == ("result", S.E_BAD_AUTH,
                                                          S.AUTH_BAD_MAC)
    text = C.PumpRefused(msg["code"], msg["detail"], "bolus").describe()
    assert "protocol/spec.py" in text and "update the older side" in text


# ------------------------------------------------------------------ fence
@pytest.mark.req("LNK-6", "LNK-3")
def test_a_fence_says_whether_a_command_acted_and_no_earlier_try_acts_after_it():
    b = Bench(bolus=False)
    held = wire.encode_frame(ID["bolus"], 7, 0, [8001, S.BOLUS_NORMAL, 1000, 0, 0], key=KEY,
                             counter=8001)
    (msg,) = signed_frames(b, wire.encode_frame(ID["fence"], 8, 0, [8001], key=KEY,
                                                counter=8002))
    assert (msg.name, msg["cmd_id"], msg["seen"], msg.counter) == ("fence_info", 8001, 0, 8002)
    assert codec.verify_mac(msg, KEY)
    before = M.snapshot(b.pump, b.link)
    (late,) = signed_frames(b, held)  # the try the link held arrives after the fence
    assert (late["code"], late["detail"]) == (S.E_BAD_AUTH, S.AUTH_REPLAYED)
    assert M.snapshot(b.pump, b.link) == before and b.pump.state[S_BOLUS_ID] == 0  # no bolus
    # a command that acted: the fence gives its result (and acts on nothing)
    assert b.command("bolus", 8003, S.BOLUS_NORMAL, 1000, 0, 0, counter=8003)[1] == S.OK
    bolus_id = b.pump.state[S_BOLUS_ID]
    (msg,) = signed_frames(b, wire.encode_frame(ID["fence"], 9, 0, [8003], key=KEY,
                                                counter=8004))
    assert (msg["seen"], msg["code"], msg["detail"]) == (1, S.OK, bolus_id)
    assert b.query("status")["last_cmd_id"] == 8003  # the fence is not a command


class HoldingPeer(PumpPeer):
    """A pump behind a link that holds the next `hold` requests until release()."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.hold = 0
        self.held: list[bytes] = []

    def install(self):
        serial = self.serial
        pull = serial._pull

        def holding_pull():
            pull()
            while self.hold and serial.inbox:
                i = serial.inbox.index(0)
                frame = bytes(serial.inbox[:i + 1])
                del serial.inbox[:i + 1]
                if len(frame) > 1:
                    self.held.append(frame)
                    self.hold -= 1

        serial._pull = holding_pull

    def release(self):
        with self.lock:
            for frame in self.held:
                self.serial.inbox += frame
            self.held.clear()


@pytest.mark.req("LNK-6", "LNK-3", "THR-3")
def test_not_carried_out_stays_true_when_the_link_delivers_every_try_late():
    peer = HoldingPeer()
    try:
        pump = peer.connect(timeout=0.2, retries=2)
        with peer.lock:
            peer.install()
            peer.hold = 3  # every try of the bolus
        with pytest.raises(C.PumpTimeout, match="not carried out") as err:
            pump.bolus(1000)
        assert "may or may not" not in str(err.value) and len(peer.held) == 3
        peer.release()  # the link delivers all three tries now
        pump.poll_events(0.5)
        st = pump.status()
        assert st.bolus_id == 0 and st.bolus_today == 0  # no bolus, ever
        with peer.lock:
            assert peer.link.stats[5] >= 3  # replayed: refused by the counter floor
            assert records(peer.pump, S.H_BOLUS_START) == []
        assert pump.stats["fenced"] == 1
        pump.close()
    finally:
        peer.close()


# ------------------------------------------------------------------ forged answers
class ForgingPeer(PumpPeer):
    """A pump whose next answers of one kind are replaced by a forged frame."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.forge = None  # callable(codec.Message) -> wire bytes or None

    def install(self):
        serial = self.serial
        write = serial.write

        def forging_write(buf, n):
            if self.forge is not None:
                try:
                    msg = codec.decode(bytes(buf[:n]))
                except codec.ProtocolError:
                    msg = None
                fake = self.forge(msg) if msg is not None else None
                if fake is not None:
                    return write(bytearray(fake), len(fake))
            return write(buf, n)

        serial.write = forging_write


@pytest.mark.req("LNK-6", "SEC-2")
def test_a_forged_result_does_not_fool_the_client():
    peer = ForgingPeer()
    try:
        pump = peer.connect(timeout=0.2, retries=3)
        with peer.lock:
            peer.install()
        forged = []

        def refuse(msg):  # the bolus's OK replaced by an unsigned "over limit", once
            if msg.name == "result" and msg["code"] == S.OK and not forged:
                forged.append(msg["cmd_id"])
                return codec.encode("result", msg.seq, {"cmd_id": msg["cmd_id"],
                                                        "code": S.E_OVER_LIMIT, "detail": 0},
                                    flags=S.F_RESPONSE)
            return None

        peer.forge = refuse
        r = pump.bolus(1000)  # the forged refusal is ignored; the retry's signed answer
        assert forged == [r.cmd_id] and r.code == S.OK and pump.stats["unsigned"] == 1
        st = pump.status()
        assert st.bolus_requested == 1000 and st.bolus_id == r.detail
        pump.close()
    finally:
        peer.close()


@pytest.mark.req("LNK-6", "SEC-2")
def test_a_signed_status_ignores_a_forged_one():
    peer = ForgingPeer()
    try:
        pump = peer.connect(timeout=0.2, retries=3)
        with peer.lock:
            peer.install()

        def other_last_command(msg):  # what would steer a reconciliation
            if msg.name == "status_info":
                fields = dict(msg.fields, last_cmd_id=0xABCDEF, last_code=S.OK)
                return codec.encode("status_info", msg.seq, fields, flags=S.F_RESPONSE)
            return None

        peer.forge = other_last_command
        assert pump.status().last_cmd_id == 0xABCDEF  # an open status can be forged ...
        with pytest.raises(C.PumpTimeout):
            pump.status(signed=True)  # ... a signed one cannot: only forgeries came
        peer.forge = None
        assert pump.status(signed=True).last_cmd_id != 0xABCDEF
        pump.close()
    finally:
        peer.close()


@pytest.mark.req("LNK-6", "SEC-2")
def test_a_forged_hello_counter_does_not_fool_the_client():
    peer = ForgingPeer()
    try:
        pump = peer.connect(timeout=0.2, retries=3)
        with peer.lock:
            peer.install()
            real = peer.link.counter

        def huge_counter(msg):
            if msg.name == "hello_info":
                fields = dict(msg.fields, counter=0xFFFFFFFF)
                return codec.encode("hello_info", msg.seq, fields, flags=S.F_RESPONSE)
            return None

        peer.forge = huge_counter
        with pytest.raises(C.PumpTimeout):  # only forged (unsigned) HELLO answers come
            pump.hello()
        assert pump.counter == real and pump.stats["unsigned"] >= 4
        peer.forge = None
        assert pump.hello().counter == real
        assert pump.suspend().code == S.OK  # the client can still build frames
        pump.close()
    finally:
        peer.close()


# ------------------------------------------------------------------ lost link state
def corrupt_link_state(rig):
    for region in (R_LINK_A, R_LINK_B):
        rig.storage.write(region, 0, bytearray(b"\x5a" * (4 * L.LINK_LEN + 2)))


@pytest.mark.req("SEC-4", "ALM-5", "HIS-1")
def test_lost_link_state_locks_commands_until_a_new_key():
    b = Bench(bolus=False)
    captured = wire.encode_frame(ID["bolus"], 7, 0, [9001, S.BOLUS_NORMAL, 1000, 0, 0],
                                 key=KEY, counter=9001)
    assert signed_frames(b, captured)[0]["code"] == S.OK  # acted once
    assert b.command("cancel_bolus", 9002, counter=9002)[1] == S.OK
    corrupt_link_state(b.rig)
    b.reboot()
    b.ticks(0)  # the boot's events go out
    pump = b.pump
    # the captured frame is refused: the counter floor is lost, nothing may act
    before = M.snapshot(pump, b.link)
    msg = [m for m in signed_frames(b, captured) if m.name == "result"][0]
    assert msg["code"] == S.E_BAD_AUTH and pump.state[S_BOLUS_ID] == 0
    assert msg["detail"] == S.AUTH_UNPAIRED
    assert pump.selftest_bits & S.ST_LINK and pump.state[S_STOP] == S.STOP_SELFTEST
    assert pump.alarms.active[S.A_SELFTEST]
    (rec,) = records(pump, S.H_LINK)
    assert rec[3] == S.LINK_CORRUPT and rec[4] & S.ST_LINK
    assert b.query("status")["selftest"] & S.ST_LINK
    # nor any new command
    assert b.command("resume", 9100, counter=90000)[1:] == (S.E_BAD_AUTH, S.AUTH_UNPAIRED)
    assert b.command("fence", 9001, counter=90001)[1:] == (S.E_BAD_AUTH, S.AUTH_UNPAIRED)
    assert M.snapshot(pump, b.link) == before
    assert "pumpctl flash" in C.PumpRefused(S.E_BAD_AUTH, S.AUTH_UNPAIRED).describe()
    b.reboot()  # still locked after a reboot with the same key
    assert b.link.locked and b.pump.selftest_bits & S.ST_LINK
    assert b.command("resume", 9101, counter=90002)[1:] == (S.E_BAD_AUTH, S.AUTH_UNPAIRED)
    # paired again: a new key (pumpctl flash writes one); frames of the old key fail
    b.rig.key = NEW_KEY
    b.reboot()
    assert not b.link.locked and not b.pump.selftest_bits & S.ST_LINK
    assert [r[3] for r in records(b.pump, S.H_LINK)][-1] == S.LINK_PAIRED
    assert signed_frames(b, captured)[0]["detail"] == S.AUTH_BAD_MAC
    counter = b.query("hello")["counter"]
    assert counter >= 9002  # above every command id the pump state remembers
    got = b.command("resume", counter + 1, key=NEW_KEY, counter=counter + 1)
    assert got[1] == S.OK and b.pump.state[S_STOP] == S.STOP_NONE


@pytest.mark.req("SEC-4")
def test_lost_link_state_stays_locked_across_reboots_without_a_new_key():
    for key in (KEY, None):  # also a board flashed without a key
        b = Bench(key=key, bolus=False)
        corrupt_link_state(b.rig)
        for _ in range(3):
            b.reboot()
            assert b.link.locked and b.pump.selftest_bits & S.ST_LINK
            assert b.pump.state[S_STOP] == S.STOP_SELFTEST


@pytest.mark.req("SEC-4", "HIS-2")
def test_a_torn_first_save_of_the_link_state_is_not_lost_state():
    b = Bench(bolus=False)
    img = bytearray(b"\x5a" * (4 * L.LINK_LEN + 2))  # copy A torn, copy B never written
    b.rig.storage.write(R_LINK_A, 0, img)
    b.reboot()  # a guard of the lost-state check: this is not lost state
    assert b.pump.selftest_bits == 0 and b.pump.state[S_STOP] == S.STOP_NONE
    assert b.command("suspend", 50, counter=50)[1] == S.OK


@pytest.mark.req("SEC-4", "SEC-1")
def test_the_link_region_keeps_a_key_id_never_the_key():
    b = Bench(bolus=False)
    assert b.command("suspend", 60, counter=60)[1] == S.OK
    raw = bytearray(4 * L.LINK_LEN + 2)
    for region in (R_LINK_A, R_LINK_B):
        b.rig.storage.read(region, 0, raw)
        assert KEY not in raw and KEY[:8] not in raw
    kid = link_boot.key_id(KEY)
    assert 0 < kid < 1 << 30 and kid != link_boot.key_id(NEW_KEY)
    assert struct.pack("<i", kid) in bytes(b.link.slots.image)


@pytest.mark.req("SEC-2", "LNK-6")
def test_a_client_without_a_proved_key_reports_the_refusal():
    peer = PumpPeer()
    try:
        pump = peer.connect(key=NEW_KEY, timeout=0.2, retries=1)  # the wrong key
        assert pump.verified_key is None
        with pytest.raises(C.PumpRefused) as err:
            pump.suspend()
        assert (err.value.code, err.value.detail) == (S.E_BAD_AUTH, S.AUTH_BAD_MAC)
        assert pump.status().delivering
        pump.close()
        pump = peer.connect(key=CLIENT_KEY)
        assert pump.verified_key == CLIENT_KEY
        pump.close()
    finally:
        peer.close()
