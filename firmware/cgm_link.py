"""The sensor link on a byte stream (SNS-4): hw.radio for a CGM transmitter on a UART (the
boards) or a pty (the emulator), allocation-free.

Frames (protocol/cgm_record.py builds them on the host):

    COBS(transmitter <I + CGM Measurement record + crc16 <H) + 0x00

crc16 is the main link's CRC-16/CCITT-FALSE over transmitter id and record; the record is
decoded by firmware/cgm_record.py. `read()` follows the hw.radio contract (firmware/hal.py):
0 nothing new, mg/dL > 0, CGM_WARMUP or CGM_EXPIRED; `sensor_min` is then the record's time
offset (when the sensor measured it: firmware/cgm.py times the trend by it), -1 after a
read() that returned nothing. It returns at most one reading per
call and leaves the rest of the received bytes for the next poll, so a transmitter that
sends a backlog quickly loses nothing.

What a valid record means:
  from a transmitter other than `paired` (the pump's sensor_id setting; 0: not paired)
                               dropped, counted as foreign
  time offset not above the last accepted one (same session)
                               dropped, counted as duplicate or out_of_order
  a fault annunciated (sensor type incorrect, malfunction, general device fault)
                               dropped, counted as sensor_fault
  session stopped              CGM_EXPIRED; the next session's offsets start over
  glucose NaN                  CGM_WARMUP (the sensor runs and has no result yet)
  "lower / higher than the device can process" annunciated
                               CGM_LOW / CGM_HIGH whatever the glucose field says
  glucose outside GLUCOSE_MIN..GLUCOSE_MAX or another special value
                               dropped, counted as impossible
  else                         the glucose in mg/dL
Frames that are not valid COBS, too short or too long, or fail the frame CRC count as
bad_frame; records that fail their E2E-CRC as bad_crc; records that do not parse (size,
reserved flags) as malformed. Nothing dropped reaches the pump: no alarm from a bad record.

Pairing lost (issue 15, A_PAIRING_LOST): `pairing_lost` is 1 while records from other
transmitters came within the last WINDOW_MS and none from the paired one did;
`foreign_id` is the last such transmitter. Changing `paired` restarts the time-offset order.
The order (`order_for`, `last_offset`) survives a reboot: firmware/cgm.py saves it in the
pump's persistent state when it changes and gives it back with `restore_order` at boot, so
a record replayed after a reboot is dropped like one replayed before it.
"""

from array import array

from firmware import cgm_record as R
from firmware.compat import const, ticks_diff
from firmware.crc import stamped
from firmware.wire import Decoder
from protocol.spec import CGM_EXPIRED, CGM_HIGH, CGM_LOW, CGM_WARMUP, SIGNAL_LOSS_MIN

GLUCOSE_MIN = const(20)  # mg/dL: a reading below is not a glucose (CGMs send LOW instead)
GLUCOSE_MAX = const(600)
FRAME_MIN = const(4 + 6 + 2)  # id, the smallest record, crc
FRAME_MAX = const(4 + 15 + 2)
CHUNK = const(32)

# stats[] slots
ST_FRAMES = const(0)  # frames received (delimiters seen)
ST_ACCEPTED = const(1)  # readings and sensor states passed to the pump
ST_BAD_FRAME = const(2)
ST_BAD_CRC = const(3)  # E2E-CRC mismatch
ST_MALFORMED = const(4)
ST_FOREIGN = const(5)
ST_DUPLICATE = const(6)
ST_OUT_OF_ORDER = const(7)
ST_IMPOSSIBLE = const(8)
ST_SENSOR_FAULT = const(9)
STATS = ("frames", "accepted", "bad_frame", "bad_crc", "malformed", "foreign", "duplicate",
         "out_of_order", "impossible", "sensor_fault")

WINDOW_MS = SIGNAL_LOSS_MIN * 60000  # pairing lost: foreign records within, none paired
CAP_MS = WINDOW_MS + 1000  # ages are counted up to just past the window


class CgmLink:
    """hw.radio on `port` (readinto(buf) -> count or None, never blocks) with `clock`
    (ticks_ms())."""

    def __init__(self, port, clock, paired=0):
        self.port = port
        self.clock = clock
        self.paired = paired  # transmitter id accepted (0: none); the pump's sensor_id
        self.dec = Decoder(FRAME_MAX)
        self.chunk = bytearray(CHUNK)
        self.at = 0  # next unprocessed byte of chunk
        self.n = 0  # bytes in chunk
        self.out = array("i", [0] * R.OUT_LEN)
        self.stats = array("i", [0] * len(STATS))
        self.order_for = paired  # the pairing the time-offset order belongs to
        self.last_offset = -1  # -1: no record accepted in this session yet
        self.last_ms = clock.ticks_ms()
        self.paired_age = CAP_MS  # ms since the paired transmitter's last valid record
        self.foreign_age = CAP_MS  # ms since another transmitter's last valid record
        self.foreign_id = 0
        self.pairing_lost = 0
        self.sensor_min = -1  # time offset of the value read() returned (-1: none)
        self.last_trend = R.NO_VALUE  # 0.1 mg/dL/min, as the transmitter sent it
        self.last_quality = R.NO_VALUE
        self.last_status = 0

    def read(self):
        now = self.clock.ticks_ms()
        dt = ticks_diff(now, self.last_ms)
        self.last_ms = now
        if dt > 0:
            self.paired_age = self.paired_age + dt if self.paired_age < CAP_MS else CAP_MS
            self.foreign_age = self.foreign_age + dt if self.foreign_age < CAP_MS else CAP_MS
        if self.order_for != self.paired:
            self.order_for = self.paired
            self.last_offset = -1
        v = 0
        self.sensor_min = -1
        dec = self.dec
        chunk = self.chunk
        while not v:
            if self.at >= self.n:
                got = self.port.readinto(chunk)
                if not got:
                    break
                self.at = 0
                self.n = got
            self.at = dec.feed(chunk, self.at, self.n)
            if dec.done:
                dec.done = False
                v = self._frame(dec.size)
        lost = self.foreign_age < WINDOW_MS and self.paired_age >= WINDOW_MS
        self.pairing_lost = 1 if lost else 0
        return v

    def _frame(self, size):
        st = self.stats
        st[ST_FRAMES] += 1
        if size < FRAME_MIN:  # also -1: not COBS or too long; 0: an empty frame
            if size:
                st[ST_BAD_FRAME] += 1
            else:
                st[ST_FRAMES] -= 1  # a lone delimiter (resynchronisation), not a frame
            return 0
        buf = self.dec.buf
        if not stamped(buf, size - 2):
            st[ST_BAD_FRAME] += 1
            return 0
        out = self.out
        r = R.decode(buf, 4, size - 6, out) if buf[4] == size - 6 else R.R_SIZE
        if r != R.OK:
            st[ST_BAD_CRC if r == R.R_CRC else ST_MALFORMED] += 1
            return 0
        paired = self.paired
        if buf[3] & 0xC0 or not paired or (buf[0] | buf[1] << 8 | buf[2] << 16
                                            | buf[3] << 24) != paired:
            st[ST_FOREIGN] += 1
            self.foreign_age = 0
            self.foreign_id = buf[0] | buf[1] << 8 | buf[2] << 16 | (buf[3] & 0x3F) << 24
            return 0
        self.paired_age = 0  # the paired transmitter is there, whatever it says
        status = out[R.O_STATUS]
        if status & R.SS_FAULTS:
            st[ST_SENSOR_FAULT] += 1
            return 0
        offset = out[R.O_OFFSET]
        if offset == self.last_offset:
            st[ST_DUPLICATE] += 1
            return 0
        if offset < self.last_offset:
            st[ST_OUT_OF_ORDER] += 1
            return 0
        g = out[R.O_GLUCOSE]
        raw = buf[6] | buf[7] << 8
        if status & R.SS_SESSION_STOPPED:
            v = CGM_EXPIRED
        elif status & R.SS_BELOW_DEVICE:
            v = CGM_LOW
        elif status & R.SS_ABOVE_DEVICE:
            v = CGM_HIGH
        elif raw == R.SF_NAN:
            v = CGM_WARMUP
        elif GLUCOSE_MIN <= g <= GLUCOSE_MAX:
            v = g
        else:
            st[ST_IMPOSSIBLE] += 1
            return 0
        self.last_offset = -1 if v == CGM_EXPIRED else offset
        self.sensor_min = offset
        self.last_trend = out[R.O_TREND]
        self.last_quality = out[R.O_QUALITY]
        self.last_status = status
        st[ST_ACCEPTED] += 1
        return v

    def restore_order(self, tx, offset):
        """At boot: the time-offset order saved before (transmitter id, last accepted
        offset or -1). A pairing changed since then restarts it at the next read."""
        self.order_for = tx
        self.last_offset = offset

    def available(self):
        return True
