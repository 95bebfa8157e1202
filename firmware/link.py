"""The serial link: frames in, pump operations, responses and events out (LNK-1..5, SEC-2).

`Link(pump, hw).poll()` reads what hw.serial has, decodes frames (firmware/wire.py),
dispatches them and writes the answers, then sends queued pump events. It never raises on
any input: malformed frames are dropped (or answered with an error) and counted in the
link stats; they never change pump state.

Frame handling, in order:
  empty frame (two delimiters)        ignored (hosts send 0x00 first to resynchronise)
  bad COBS, too short, too long       dropped, bad_frame
  bad CRC                             dropped, bad_crc
  other protocol version              dropped, bad_frame; a HELLO is still answered with
                                      hello_info so the host can say what to update
  flags other than F_AUTH             dropped, bad_frame (so the pump's own answers, which
                                      carry F_RESPONSE, can never be reflected to it)
  unknown id, pump-to-host id, emulator id on a board without emulator (SEC-3)
                                      RESULT(0, E_UNKNOWN_MESSAGE, id), unknown
  length not matching the message     RESULT(0, E_BAD_ARG, -1), bad_frame
  query (0x01-0x0F)                   its *_info answer (or RESULT(0, code, detail) if
                                      refused); with an auth trailer whose MAC is good the
                                      answer is signed with the query's counter (a nonce:
                                      not checked against, nor moving, the counter floor),
                                      with a bad MAC RESULT(0, E_BAD_AUTH, AUTH_BAD_MAC)
  command (0x10-0x2F, 0x30-0x3F)      RESULT(cmd_id, code, detail), see below

Commands (SEC-2, LNK-3): refused with E_BAD_AUTH, detail AUTH_MISSING (no trailer,
bad_auth), AUTH_BAD_MAC (bad_auth; also a host built from another message table: the MAC
covers the schema hash), AUTH_REPLAYED (counter not above the last accepted one, replayed)
or AUTH_UNPAIRED (the link state was lost, see below). An authenticated command's counter
is persisted before anything acts. Every answer to a command whose MAC is good is signed
with the command's counter (LNK-6): the host can tell the pump's answers from forged ones.
cmd_id 0 is refused (E_BAD_ARG, detail 0). A cmd_id seen before returns its first result
and acts no second time (duplicates): the last command is in the pump state array,
saved by the operation's own state save (Pump.begin_command / end_command), and older
ones in a ring of RING entries in the link region, saved with the counter.

Fence (LNK-6): fence(cmd_id) is authenticated like a command; once its counter is
persisted no earlier counter can act, so its answer fence_info(cmd_id, seen, code, detail)
(signed) says for good whether that command was carried out. It acts on nothing else.

Corrupt link state (SEC-4): both copies invalid (not blank) means the counter floor and
the recent command ids are lost, so a captured frame could act again. The link then
locks: self-test bit ST_LINK, the pump in its safe state with the self-test alarm, a
H_LINK record, and every command (fence included) refused with AUTH_UNPAIRED, across
reboots, until the board is given a new pairing key (pumpctl flash, or a new emulator key
file): the region keeps an id of the key (a hash, never the key) to see the change.
"""

from array import array
from struct import pack_into

from firmware import VERSION
from firmware.compat import const, forget_half_imported, unimport
from firmware.crc import stamped
from firmware.hal import R_LINK_A, R_LINK_B, shared_console
from firmware.status import snapshot
from firmware.store import Slots
from firmware.wire import (
    PAYLOAD_SIZE,
    SCHEMA,
    Auth,
    Decoder,
    Encoder,
    get,
    get_int,
    known,
    message_format,
    seal,
)
from protocol.spec import (
    AUTH_BAD_MAC,
    AUTH_MISSING,
    AUTH_REPLAYED,
    AUTH_UNPAIRED,
    E_BAD_ARG,
    E_BAD_AUTH,
    E_NO_MEMORY,
    E_STORAGE,
    E_UNKNOWN_MESSAGE,
    EMU_FIRST,
    EMU_LAST,
    F_RESPONSE,
    MESSAGES,
    PROTOCOL_VERSION,
)

# message ids the link itself sends or treats specially
M_HELLO = const(0x01)
M_RESULT = const(0x80)
M_HELLO_INFO = const(0x81)
M_STATUS_INFO = const(0x82)
M_FENCE = const(0x1F)
M_FENCE_INFO = const(0x8D)
M_EVENT = const(0xC0)

# link statistics, in the order of the link_stats message (events_dropped is the pump's)
FRAMES_IN = const(0)
BAD_CRC = const(1)
BAD_FRAME = const(2)
UNKNOWN = const(3)
BAD_AUTH = const(4)
REPLAYED = const(5)
DUPLICATES = const(6)
FRAMES_OUT = const(7)
STATS = const(8)

# the link region: [generation, auth counter, ring position, RING x (cmd, code, detail),
# key id, locked]
RING = const(16)
L_COUNTER = const(1)
L_RING_POS = const(2)
L_RING = const(3)
L_KEY = const(L_RING + 3 * RING)  # key_id() of the pairing key the state belongs to (0: unknown)
L_LOCKED = const(L_KEY + 1)  # 1: the state was lost; commands refused until a new key
LINK_LEN = const(L_LOCKED + 1)
LINK_LEN_1 = const(L_KEY)  # the layout before the key id (still loads)
# RAM only: how many ring entries have each value of id & (BUCKETS - 1), so that a new
# command id (the usual case) is known to be in no entry without scanning the ring
BUCKETS = const(64)

# result and event payloads packed with one struct call each (issue 12: a call per field
# cost ~3,000 M0+ instructions)
_RESULT_FORMAT = message_format(M_RESULT)
_EVENT_FORMAT = message_format(M_EVENT)
# an event frame's header (version, flags, seq, id) and payload in one format (Link._events)
_EVENT_FRAME_FORMAT = "<BBHB" + _EVENT_FORMAT[1:]
_RESULT_FRAME_FORMAT = "<BBHB" + _RESULT_FORMAT[1:]  # the same for a RESULT (Link._result)
_RESULT_END = const(14)  # header + result payload (tests/test_tick_consts.py)
_CMD_ID_AT = const(5)  # every command's cmd_id <I, its first field (tests/test_tick_consts.py)
# the bolus command's fields in the frame buffer (wire.field_offset(M_BOLUS, 1..4))
_BOLUS_KIND_AT = const(9)
_BOLUS_NOW_AT = const(10)
_BOLUS_EXT_AT = const(14)
_BOLUS_MINUTES_AT = const(18)
_EVENT_END = const(18)  # header + event payload: where the CRC goes (tests/test_tick_consts.py)

# the protocol.spec values on the request path, inlined by mpy-cross (no globals lookup
# per use: tests/test_tick_consts.py checks each against the spec)
_HEADER_SIZE = const(5)
_CRC_SIZE = const(2)
_AUTH_SIZE = const(12)
_MAC_SIZE = const(8)
_TRAILER = const(14)  # the auth trailer's offset from a frame's end: _AUTH_SIZE + _CRC_SIZE
_VERSION = const(1)  # PROTOCOL_VERSION
_F_AUTH = const(1)
_F_RESPONSE = const(2)
_F_EVENT = const(4)
_CMD_FIRST = const(0x10)

# the messages handled by this module's _on_<name> methods; the table's others are
# firmware/link_cold.py's (no name is looked up that does not exist: a getattr of one
# would add it to the interned strings in RAM)
HOT = ("hello", "status", "bolus", "cancel_bolus", "suspend", "resume", "ack_alarm", "fence")

CHUNK = const(128)  # bytes read from the serial driver at a time
MAX_READS = const(16)  # chunks per poll, so a flood cannot starve the tick
MAX_EVENTS = const(8)  # event frames per poll


def unsigned32(v):
    return v + 0x100000000 if v < 0 else v


class Link:
    def __init__(self, pump, hw):
        self.pump = pump
        self.hw = hw
        self.serial = hw.serial
        key = getattr(hw, "key", None)
        self.auth = Auth(key) if key else None
        self.emulator = getattr(hw, "emulator", None)
        self.status = snapshot(pump)
        self.dec = Decoder()
        self.enc = Encoder()
        # issue 17: the bench console on this port (firmware/demux.py splits text from frames)
        self.mux = shared_console(pump, hw, self.dec)
        if self.mux is not None:
            self.dec = self.serial = self.mux
        self.chunk = bytearray(CHUNK)
        self.last = array("i", [0] * 3)  # the pump's last command: id, code, detail
        self.rec = None  # a history record: made by the first get_history (link_cold)
        self.stats = array("i", [0] * STATS)
        if self.mux is not None:
            self.mux.stats = self.stats
        self.faults = 0  # exceptions caught in the link (a bug if ever nonzero)
        self.dup_code = 0
        self.dup_detail = 0
        self.sign = False  # sign the answer being built (an authenticated request)
        self.reply_counter = 0  # ... with this counter: the request's
        self.values = array("i", [0] * LINK_LEN)
        self.slots = Slots(hw.storage, R_LINK_A, R_LINK_B, self.values, (LINK_LEN_1,))
        self.locked = False
        # the link state's load runs once: firmware/link_boot.py, dropped once it ran
        import firmware.link_boot

        try:
            firmware.link_boot.load(self, firmware.link_boot.key_id(key))
        finally:
            unimport("link_boot")
        self.buckets = bytearray(BUCKETS)
        v = self.values
        for i in range(L_RING, L_RING + 3 * RING, 3):
            self.buckets[v[i] & (BUCKETS - 1)] += 1
        self.counter = unsigned32(self.values[L_COUNTER])  # last accepted auth counter
        # one handler per message of the table that the host may send: a method here (HOT),
        # else one of firmware/link_cold.py's, imported at its first use (_on_cold)
        self.handlers = {}
        cold = self._on_cold
        for mid in MESSAGES:
            if mid >= M_RESULT:
                continue
            if EMU_FIRST <= mid <= EMU_LAST:
                if self.emulator is not None:
                    self.handlers[mid] = cold  # firmware/link_cold.py emulator()
                continue
            name = MESSAGES[mid][0]
            self.handlers[mid] = getattr(self, "_on_" + name) if name in HOT else cold

    # ------------------------------------------------------------------ receive
    def poll(self):
        """Handle whatever input is waiting, then send queued events. Never raises."""
        try:
            self._read()
            if self.mux is not None:
                self.mux.poll()
            self._events()
        except Exception:
            self.faults += 1
            self.dec.reset()
            self.pump.cmd = 0
            self.sign = False

    def _read(self):
        serial = self.serial
        chunk = self.chunk
        dec = self.dec
        reads = 0
        while reads < MAX_READS:
            reads += 1
            n = serial.readinto(chunk)
            if not n:
                return
            i = 0
            while i < n:
                i = dec.feed(chunk, i, n)
                if dec.done:
                    dec.done = False
                    try:
                        self._frame(dec.size)
                    except Exception:
                        self.faults += 1
                        self.pump.cmd = 0
                    self.sign = False
            if n < CHUNK:
                return

    def _frame(self, n):
        if n == 0:
            return
        st = self.stats
        st[FRAMES_IN] += 1
        if n < _HEADER_SIZE + _CRC_SIZE:  # also n < 0: bad COBS or too long
            st[BAD_FRAME] += 1
            return
        buf = self.dec.buf
        if not stamped(buf, n - _CRC_SIZE):
            st[BAD_CRC] += 1
            return
        flags = buf[1]
        seq = buf[2] | (buf[3] << 8)
        mid = buf[4]
        if buf[0] != _VERSION:
            st[BAD_FRAME] += 1
            if mid == M_HELLO:
                self._on_hello(mid, seq)
            return
        if flags & ~_F_AUTH:
            st[BAD_FRAME] += 1
            return
        handler = self.handlers.get(mid)
        if handler is None:
            st[UNKNOWN] += 1
            if (flags & _F_AUTH and known(mid)
                    and n == _HEADER_SIZE + PAYLOAD_SIZE[mid] + _AUTH_SIZE + _CRC_SIZE):
                # a table message this board refuses: signed if the MAC is good
                self._mac_ok(buf, n - _TRAILER)
            self._result(seq, 0, E_UNKNOWN_MESSAGE, mid)
            return
        auth = _AUTH_SIZE if flags & _F_AUTH else 0
        if n != _HEADER_SIZE + PAYLOAD_SIZE[mid] + auth + _CRC_SIZE:
            st[BAD_FRAME] += 1
            self._result(seq, 0, E_BAD_ARG, -1)
            return
        if mid < _CMD_FIRST:
            # an authenticated query: its answer is signed with the query's counter
            if flags & _F_AUTH and not self._mac_ok(buf, n - _TRAILER):
                st[BAD_AUTH] += 1
                self._result(seq, 0, E_BAD_AUTH, AUTH_BAD_MAC)
                return
            handler(mid, seq)
        else:
            self._command(mid, seq, flags, handler)

    def _mac_ok(self, buf, at):
        """Is the MAC of the received frame's auth trailer (at buf[at]) good? Then the answer
        is signed with its counter (one call: Auth's check returns the trailer's counter,
        None for a bad MAC)."""
        auth = self.auth
        if auth is None:
            return False
        counter = auth.check(buf, at, _MAC_SIZE)
        if counter is None:
            return False
        self.sign = True
        self.reply_counter = counter
        return True

    # ------------------------------------------------------------------ commands
    def _command(self, mid, seq, flags, handler):
        buf = self.dec.buf
        st = self.stats
        cmd = get_int(buf, _CMD_ID_AT, 4)  # every command's first field: cmd_id <I
        if not flags & _F_AUTH:
            st[BAD_AUTH] += 1
            self._result(seq, cmd, E_BAD_AUTH, AUTH_MISSING)
            return
        if not self._mac_ok(buf, _HEADER_SIZE + PAYLOAD_SIZE[mid]):  # if good: answer signed
            st[BAD_AUTH] += 1
            self._result(seq, cmd, E_BAD_AUTH, AUTH_BAD_MAC)
            return
        counter = self.reply_counter
        if self.locked:
            st[BAD_AUTH] += 1
            self._result(seq, cmd, E_BAD_AUTH, AUTH_UNPAIRED)
            return
        if counter <= self.counter:
            st[REPLAYED] += 1
            self._result(seq, cmd, E_BAD_AUTH, AUTH_REPLAYED)
            return
        # u32 -> the same bits as a signed 32-bit int (array('i') storage), inline: a call
        # costs ~1,200 M0+ instructions (issue 12)
        scmd = cmd - 0x100000000 if cmd >= 0x80000000 else cmd
        self.pump.last_command(self.last)  # once: _lookup and _push_last read it
        seen = cmd != 0 and self._lookup(scmd)
        # The counter is persisted before anything acts; the save also moves the previous
        # command from the pump state into the ring.
        self.counter = counter
        self._push_last()
        self.values[L_COUNTER] = counter - 0x100000000 if counter >= 0x80000000 else counter
        if not self.slots.save():
            self._result(seq, cmd, E_STORAGE, 0)
            return
        if mid == M_FENCE:
            self._fence_info(seq, cmd, seen)
            return
        if seen:
            st[DUPLICATES] += 1
            self._result(seq, cmd, self.dup_code, self.dup_detail)
            return
        if cmd == 0:
            self._result(seq, 0, E_BAD_ARG, 0)
            return
        pump = self.pump
        pump.begin_command(scmd)
        code = handler(mid, seq)  # an exception here: poll() resets pump.cmd
        pump.end_command(code)
        self._result(seq, cmd, code, pump.detail)

    def _lookup(self, scmd):
        """Was command `scmd` carried out before (self.last: the pump's last command)?
        Sets dup_code/dup_detail."""
        last = self.last
        if last[0] == scmd:
            self.dup_code = last[1]
            self.dup_detail = last[2]
            return True
        if not self.buckets[scmd & (BUCKETS - 1)]:
            return False  # no ring entry can hold it
        v = self.values
        i = L_RING
        end = L_RING + 3 * RING
        while i < end:
            if v[i] == scmd:
                self.dup_code = v[i + 1]
                self.dup_detail = v[i + 2]
                return True
            i += 3
        return False

    def _push_last(self):
        """Copy the pump state's last command (self.last) into the ring (unless it is
        there)."""
        last = self.last
        cmd = last[0]
        if not cmd:
            return
        v = self.values
        pos = v[L_RING_POS]
        newest = L_RING + 3 * ((pos - 1) % RING)
        if v[newest] == cmd:
            return
        at = L_RING + 3 * pos
        buckets = self.buckets
        buckets[v[at] & (BUCKETS - 1)] -= 1
        buckets[cmd & (BUCKETS - 1)] += 1
        v[at] = cmd
        v[at + 1] = last[1]
        v[at + 2] = last[2]
        v[L_RING_POS] = (pos + 1) % RING

    def _get(self, mid, index):
        return get(self.dec.buf, mid, index)

    def _on_bolus(self, mid, seq):
        # the fields at their fixed offsets (issue 12: a get() per field cost ~3,000 M0+
        # instructions): kind B, now I, ext I, ext_minutes H
        b = self.dec.buf
        return self.pump.bolus(b[_BOLUS_KIND_AT], get_int(b, _BOLUS_NOW_AT, 4),
                               get_int(b, _BOLUS_EXT_AT, 4),
                               b[_BOLUS_MINUTES_AT] | (b[_BOLUS_MINUTES_AT + 1] << 8))

    def _on_cancel_bolus(self, mid, seq):
        return self.pump.cancel_bolus()

    def _on_suspend(self, mid, seq):
        return self.pump.suspend()

    def _on_resume(self, mid, seq):
        return self.pump.resume()

    def _on_ack_alarm(self, mid, seq):
        return self.pump.ack_alarm(self._get(mid, 1))

    def _on_cold(self, mid, seq):
        """A rarely used message: its handler is firmware/link_cold.py's function of the
        message's name, imported here at the first such message, not at boot (heap, issue
        12: loaded from .mpy files, bytecode lives in RAM). An import the heap cannot hold
        changes nothing: a query is answered RESULT(0, E_NO_MEMORY, message id), a command
        gets E_NO_MEMORY (detail: the message id) as its result; the next such message
        tries again."""
        try:
            import firmware.link_cold
        except MemoryError:
            forget_half_imported()  # else the next import fails (firmware/compat.py)
            if mid < _CMD_FIRST:
                self._result(seq, 0, E_NO_MEMORY, mid)
                return None
            self.pump.detail = mid
            return E_NO_MEMORY
        if EMU_FIRST <= mid <= EMU_LAST:
            return firmware.link_cold.emulator(self, mid, seq)
        return getattr(firmware.link_cold, MESSAGES[mid][0])(self, mid, seq)

    # ------------------------------------------------------------------ queries
    def _on_hello(self, mid, seq):
        e = self.enc
        e.begin(M_HELLO_INFO, seq, F_RESPONSE)
        e.put(0, PROTOCOL_VERSION)
        e.put(1, SCHEMA)
        e.put(2, self.hw.board)
        e.put(3, self.pump.pulse)
        e.put(4, VERSION)
        e.put(5, self.pump.boots())
        e.put(6, self.counter)
        self._send()

    def _on_status(self, mid, seq):
        """status_info: the pump's status snapshot (firmware/status.py), read and packed
        into the preallocated frame buffer with one struct call (no allocation)."""
        e = self.enc
        e.begin(M_STATUS_INFO, seq, _F_RESPONSE)
        self.status.pack_into(e.buf, _HEADER_SIZE)
        self._send()

    def _on_fence(self, mid, seq):  # answered in _command: it acts on nothing
        return E_BAD_ARG

    def _fence_info(self, seq, cmd, seen):
        e = self.enc
        e.begin(M_FENCE_INFO, seq, F_RESPONSE)
        e.put(0, cmd)
        e.put(1, 1 if seen else 0)
        e.put(2, self.dup_code if seen else 0)
        e.put(3, self.dup_detail if seen else 0)
        self._send()

    # ------------------------------------------------------------------ send
    def _result(self, seq, cmd, code, detail):
        """A RESULT frame: header and payload in one pack_into, then the auth trailer, CRC
        and COBS in one call (signed with the request's counter when it was authenticated),
        not through Encoder.begin/finish and _send (issue 12: ~6,000 M0+ instructions)."""
        e = self.enc
        buf = e.buf
        sign = self.sign
        pack_into(_RESULT_FRAME_FORMAT, buf, 0, _VERSION,
                  _F_RESPONSE | _F_AUTH if sign else _F_RESPONSE, seq, M_RESULT, cmd, code,
                  detail)
        if sign:
            n = self.auth.seal(buf, _RESULT_END, self.reply_counter, _MAC_SIZE, e.wire)
        else:
            n = seal(buf, _RESULT_END, e.wire)
        self.stats[FRAMES_OUT] += 1
        self.serial.write(e.wire, n)

    def _send(self):
        e = self.enc
        n = e.finish(self.auth, self.reply_counter) if self.sign else e.finish()
        self.stats[FRAMES_OUT] += 1
        self.serial.write(e.wire, n)

    def _events(self):
        """Send queued pump events, at most MAX_EVENTS frames per poll. Each frame is
        packed whole (header and payload, one pack_into) straight from the pump's event
        ring, then CRC and COBS by wire.seal (as every answer): not through
        Encoder.begin/finish and the `ev` copy (issue 12: ~36,000 M0+ instructions a frame
        that way)."""
        events = self.pump.events
        if not events.count:
            return  # nothing queued (the common case)
        if self.mux is not None and self.mux.typing:
            return  # a person is typing on this port: events wait in the pump's queue
        buf = self.enc.buf
        wire = self.enc.wire
        ring = events.buf
        stats = self.stats
        sent = 0
        while sent < MAX_EVENTS and events.count:
            i = events.pop()
            pack_into(_EVENT_FRAME_FORMAT, buf, 0, _VERSION, _F_EVENT, 0, M_EVENT,
                      ring[i], ring[i + 1], ring[i + 2], ring[i + 3])
            stats[FRAMES_OUT] += 1
            self.serial.write(wire, seal(buf, _EVENT_END, wire))  # CRC and COBS
            sent += 1
