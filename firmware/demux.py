"""Text and frames on one port: the bench console shares the protocol port (issue 17, HW-5).

A person at picocom and a host running pumpctl use the same USB CDC port (Pico), UART
(ESP32) or pty (emulator), one after the other or mixed on one connection, with no mode
switch. Frames are COBS-encoded and end in 0x00; typed text never contains 0x00. The link
(firmware/link.py) reads through a `Demux`, which looks like its frame Decoder: the bytes of
frames reach the decoder, typed bytes reach a line editor whose lines go to the console
(firmware/console.py `handle_line`), and the answers of both go out whole, never one cut by
the other.

Input, byte by byte (allocation-free; buffers are fixed):
  typed byte   printable ASCII, CR, LF, TAB, BS, DEL, Ctrl-C, Ctrl-D, Ctrl-U, ESC: the line
               editor. The first one after a 0x00 (or a frame, or boot) is `held` until
               the next byte or for HOLD_MS: a frame's first COBS byte may look typed,
               and only the byte after it tells. A UART or a CDC port may hand a frame
               over in pieces, so a short read does not decide; time does (a host sends
               a frame's bytes back to back, a person types the next key much later).
  0x00         ends a segment. After text it is ignored (a host's resync byte: a half-typed
               line survives it; a line with binary noise in it is dropped, silently). A frame that
               comes in drops a half-typed line, with a line that says so.
  other bytes  (0x01, 0x02, 0x05-0x07, 0x0B, 0x0C, 0x0E-0x14, 0x16-0x1A, 0x1C-0x1F,
               0x80-0xFF): right after a 0x00 (or at boot) they begin a frame: the held
               byte and this one go to the decoder, and so does everything up to the next
               0x00, which the link then handles (bad frames counted there, LNK-5). A frame
               begins with its COBS code byte and the version byte (1..31) and flags (0..7):
               a segment that does not is abandoned at once (counted in `noise`) and the
               byte is read as text again; so is a frame left unfinished for FRAME_GAP_MS.
               In the middle of typed text these bytes are noise: counted, and the line
               they fell into is dropped at Enter with a clear line, never executed.
               A segment with noise in it counts as one bad frame in the link's
               statistics when its 0x00 comes (LNK-5), like garbage on a plain link.
Hosts send 0x00 before their first frame (host_tools/client.py does), which ends whatever
a person left half-typed.

Line editor: echo (picocom's defaults: no local echo, Enter sends CR), CR, LF and CRLF end
a line, BS and DEL erase a character, Ctrl-U the line, ESC sequences (arrow keys) are
swallowed, TAB is a space. Ctrl-C drops the line and any confirmation waiting; Ctrl-D is
answered with a line (this is not the REPL: the board runs with Ctrl-C off, SEC-4, and the
REPL is not reading). A line longer than MAX_LINE rings the bell and is refused at Enter.
An empty line greets a new session (after frames) or prints the prompt.

Output: echo is gathered in a fixed buffer and written before anything else goes out. Text
never contains 0x00; when text went out since the last 0x00, a 0x00 goes before the next
frame, so a host splitting at 0x00 gets the text as one chunk and every frame whole.
While a person is typing (text arrived after the last frame), event frames are held in the
pump's queue (Link._events asks `typing`): binary frames would garble the terminal.

Local confirmation (SEC-2, HW-5): whoever reaches the port may type, also a remote host
(rfc2217, ser2net). Commands that deliver insulin, raise it or change limits, settings,
the clock or alarms (GUARDED) act only after a press of the pump's ACK button within
CONFIRM_MS; a bolus is checked first (the console's own `bolus` answer), then the press
stands for its "yes". While a confirmation waits, the ACK press is taken by it (it
acknowledges no alarm). Stopping insulin (`suspend`, `cancel`) needs no press: it is the
safe direction, like a pump's stop button. docs/boards.md tells the whole decision.
"""

from firmware.compat import ticks_diff
from firmware.hal import BUTTON_ACK
from firmware.wire import D_BAD, D_N

NL = b"\r\n"
PROMPT = b"pump> "
MAX_LINE = 80  # characters kept per typed line
OUT_SIZE = 128  # echo gathered before it is written
CONFIRM_MS = 10000  # the ACK press must come within this
FRAME_GAP_MS = 1000  # a frame with no byte for this long is abandoned (someone typed)
# a held first byte with nothing after it for this long was typed. As long as a frame's
# own gap: the ARM board's UART takes one byte at a time and a loaded host can pause
# between them for a good part of a second; a person's first key after a frame waits for
# its echo at most this long (the next key decides at once)
HOLD_MS = FRAME_GAP_MS
GUARDED = ("bolus", "temp", "canceltemp", "resume", "set", "time", "ack")

TEXT = 0
BINARY = 1
FRAMES_IN = 0  # firmware/link.py's statistics (link_stats message order)
BAD_FRAME = 2

# Typed bytes (they go to the line editor; any other byte may begin a frame): 0x20..0x7F
# and, of the control bytes below 0x20, those marked here (Ctrl-C, Ctrl-D, BS, TAB, LF,
# CR, Ctrl-U, ESC). 2: right after a 0x00 (or a frame) this byte begins a frame, never a
# key: every authenticated frame begins with 0x03, 0x04 or 0x08 (its COBS code byte), and
# timing must not decide those (a late byte turned a bolus confirmation's ACK press frame
# into a typed Ctrl-C). A person's Ctrl-C, Ctrl-D or BS as the very first key after a host
# used the port does nothing (counted as noise).
# A bytes literal: in flash on a frozen build, not heap (issue 12).
TYPED_CONTROL = (b"\x00\x00\x00\x02\x02\x00\x00\x00\x02\x01\x01\x00\x00\x01\x00\x00"
                 b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00")
NO_CONSOLE = "error: this firmware has no bench console\r\n"
NO_MEMORY = "error: not enough free memory to start the console now: try again later\r\n"

ZERO = b"\x00"
ERASE = b"\x08 \x08"
BELL = b"\x07"
CTRL_C = b"^C\r\n"
CTRL_U = b"^U\r\n"
CTRL_D = b"^D ignored: this is the pump's console, not a REPL (type help)\r\n"
NOISE = b"error: line dropped: it had bytes that are not text in it\r\n"
HALF_LINE = b"(half-typed line dropped: a frame came in)\r\n"
TOO_LONG = b"error: line longer than 80 characters: not run\r\n"
GREETING = (b"micropump bench console on the protocol port: type help. Insulin, limits,"
            b" settings, clock and alarms need the pump's ACK button within 10 s.\r\n")
ASK = "confirm on the pump: press its ACK button within %d s (Ctrl-C cancels): %s\r\n"
TYPED_YES = b"not by typing: press the pump's ACK button (Ctrl-C cancels)\r\n"


class ConfirmButtons:
    """Wraps the pump's buttons: while a console confirmation waits, an ACK press is taken
    by it (`got`) and not passed on. Allocation-free: the pump's tick calls pressed()."""

    def __init__(self, buttons):
        self.buttons = buttons
        self.waiting = False
        self.got = False

    def pressed(self):
        bits = self.buttons.pressed()
        if self.waiting and bits & BUTTON_ACK:
            self.got = True
            self.waiting = False
            bits &= ~BUTTON_ACK
        return bits

    def __getattr__(self, name):  # other driver methods (held, poll) pass through
        return getattr(self.buttons, name)


class Demux:
    """The link's decoder for a shared port: duck-types firmware.wire.Decoder (feed, done,
    size, buf, reset) and the serial driver's write(buf, n) for frames.

    `console`: a firmware.console.Console, or None: then it is built for `pump` when the
    first complete line is typed (issue 12: the console module and its objects cost heap,
    and most boots never see a typed line)."""

    def __init__(self, decoder, serial, console, clock, buttons=None, port_clock=None,
                 pump=None):
        self.dec = decoder
        self.buf = decoder.buf
        self.serial = serial
        self.console = console
        self.pump = pump if pump is not None else console.pump
        self.clock = clock  # the pump's clock: the confirmation's time limit
        # how bytes arrive on the wire is real time, also where the pump's clock is
        # virtual (the emulator's lockstep clock stands still between ADVANCEs)
        self.port_clock = port_clock or clock
        self.buttons = buttons  # ConfirmButtons, or None: no confirmation possible
        self.done = False
        self.size = 0
        self.mode = TEXT
        self.after_zero = True  # no typed byte since the last 0x00 (or boot)
        self.held = -1  # the typed byte not yet given to the editor
        self.one = bytearray(1)
        self.seg_n = 0  # bytes of the frame being decoded
        self.last_ms = self.port_clock.ticks_ms()  # the last byte read
        self.typing = False  # text arrived after the last frame: events wait
        self.greeted = False
        self.text_out = False  # text went out since the last 0x00
        self.out = bytearray(OUT_SIZE)
        self.out_n = 0
        # the line editor
        self.line = bytearray(MAX_LINE)
        self.n = 0
        self.too_long = False
        self.dirty = False  # binary noise fell into this line
        self.skip_lf = False
        self.esc = 0
        # a confirmation waiting for the ACK button
        self.pending = None  # the command line
        self.bolus_yes = False  # the console asked "yes" for a bolus: the press gives it
        self.asked_ms = 0
        # counters
        self.stats = None  # the link's statistics: garbage segments count as bad frames
        self.garbage = False  # binary noise since the last 0x00
        self.noise = 0  # bytes that were neither text nor part of a frame
        self.lines = 0
        self.ctrl = 0  # Ctrl-C / Ctrl-D bytes
        self.no_console = NO_CONSOLE  # the answer while the console cannot be built

    # ------------------------------------------------------------------ Decoder face
    def reset(self):
        self.dec.reset()
        self.mode = TEXT
        self.done = False
        self.held = -1

    def feed(self, chunk, i, end):
        """Consume chunk[i:end] up to the end of one frame (then `done`, `size`); typed
        bytes go to the line editor. Returns the index after the last byte consumed."""
        dec = self.dec
        self.last_ms = self.port_clock.ticks_ms()
        while i < end:
            b = chunk[i]
            i += 1
            if self.mode == BINARY:
                dec.feed(chunk, i - 1, i)
                self.seg_n += 1
                if dec.done:
                    dec.done = False
                    self.mode = TEXT
                    self.after_zero = True
                    self.typing = False
                    self.greeted = False
                    self.done = True
                    self.size = dec.size
                    if self.n or self.dirty or self.too_long:
                        self._clear()  # another user's frame: the half line is not theirs
                        self._emit(NL)
                        self._emit(HALF_LINE)
                        self._prompt()
                    self._flush()
                    return i
                if not self._plausible():
                    self._abandon()
                    i -= 1  # read this byte again, as text
                continue
            if b == 0:
                self._apply_held()
                if self.dirty:
                    self._drop_line()
                if self.garbage:  # binary that was no frame: one bad frame for the link
                    self.garbage = False
                    st = self.stats
                    if st is not None:
                        st[FRAMES_IN] += 1
                        st[BAD_FRAME] += 1
                self.after_zero = True
                continue
            typed = 1 if 0x20 <= b < 0x80 else (TYPED_CONTROL[b] if b < 0x20 else 0)
            if typed == 2 and self.after_zero and self.held < 0:
                typed = 0  # a frame's first byte (see TYPED_CONTROL)
            if typed:
                if self.held >= 0:
                    self._apply_held()
                if self.after_zero:
                    self.held = b  # a frame's first byte, or typed: the next byte tells
                else:
                    self._key(b)
                continue
            if self.after_zero:
                self.mode = BINARY
                dec.reset()
                self.seg_n = 1
                if self.held >= 0:
                    self.one[0] = self.held
                    self.held = -1
                    dec.feed(self.one, 0, 1)
                    self.seg_n = 2
                dec.feed(chunk, i - 1, i)
                if not self._plausible():
                    self._abandon()
                continue
            self._apply_held()
            self.noise += 1
            self.dirty = True
            self.garbage = True
        self._flush()
        return i

    def _plausible(self):
        """Can the bytes decoded so far begin a frame? (version 1..31, flags 0..7)"""
        dec = self.dec
        n = dec.st[D_N]
        if dec.st[D_BAD]:
            return False
        if n >= 1 and not 1 <= dec.buf[0] <= 31:
            return False
        return not (n >= 2 and dec.buf[1] > 7)

    def _abandon(self):
        self.garbage = True
        self.noise += self.seg_n
        self.dec.reset()
        self.mode = TEXT
        self.after_zero = False

    def poll(self):
        """Between reads (Link.poll): a held byte or an unfinished frame left too long,
        the ACK press or the timeout of a confirmation."""
        quiet = ticks_diff(self.port_clock.ticks_ms(), self.last_ms)
        if self.mode == BINARY and quiet > FRAME_GAP_MS:
            self._abandon()
        if self.held >= 0 and quiet > HOLD_MS:
            self._apply_held()
        # not inside a link command (an emulator ADVANCE polls the link between its
        # ticks): the console's operation would be recorded under that command's id
        if self.pending is not None and not self.pump.cmd:
            bt = self.buttons
            if bt.got:
                bt.got = False
                self._confirmed()
            elif ticks_diff(self.clock.ticks_ms(), self.asked_ms) > CONFIRM_MS:
                self._cancel("not confirmed within %d s: not done" % (CONFIRM_MS // 1000))
        self._flush()

    # ------------------------------------------------------------------ serial face
    def readinto(self, buf):
        return self.serial.readinto(buf)

    def write(self, buf, n):
        """A frame (link answers and events): whole, after any text, 0x00-separated."""
        self._flush()
        if self.text_out:
            self.serial.write(ZERO, 1)
            self.text_out = False
        return self.serial.write(buf, n)

    def _emit(self, data):
        n = len(data)
        if self.out_n + n > OUT_SIZE:
            self._flush()
            if n > OUT_SIZE:
                self._text(data)
                return
        out = self.out
        at = self.out_n
        for k in range(n):
            out[at + k] = data[k]
        self.out_n = at + n

    def _emit_byte(self, b):
        if self.out_n == OUT_SIZE:
            self._flush()
        self.out[self.out_n] = b
        self.out_n += 1

    def _emit_typed(self):
        """The half-typed line again, after an answer that came in between."""
        line = self.line
        for k in range(self.n):
            self._emit_byte(line[k])

    def _flush(self):
        if self.out_n:
            self.serial.write(self.out, self.out_n)
            self.out_n = 0
            self.text_out = True

    def _text(self, data):
        """Console text (allocates: the command path, never the tick)."""
        self._flush()
        if isinstance(data, str):
            data = data.encode()
        if b"\x00" in data:  # never: text must not look like a frame's end
            data = data.replace(b"\x00", b"?")
        if data:
            self.serial.write(data, len(data))
            self.text_out = True

    def _prompt(self):
        self._emit(PROMPT)

    # ------------------------------------------------------------------ line editor
    def _apply_held(self):
        if self.held >= 0:
            b = self.held
            self.held = -1
            self._key(b)

    def _key(self, b):
        self.after_zero = False
        self.typing = True
        if self.esc:
            # ESC [ ... final byte (0x40..0x7E); ESC O x; ESC x: swallowed whole
            if self.esc == 1 and (b == 0x5B or b == 0x4F):
                self.esc = 2
            elif self.esc == 1 or 0x40 <= b <= 0x7E:
                self.esc = 0
            return
        if b == 0x0A and self.skip_lf:
            self.skip_lf = False
            return
        self.skip_lf = b == 0x0D
        if b == 0x0D or b == 0x0A:
            self._emit(NL)
            self._line()
        elif b == 0x08 or b == 0x7F:
            if self.n:
                self.n -= 1
                self._emit(ERASE)
        elif b == 0x15:
            self._clear()
            self._emit(CTRL_U)
            self._prompt()
        elif b == 0x03:
            self.ctrl += 1
            self._clear()
            self._emit(CTRL_C)
            if self.pending is not None:
                self._cancel("cancelled: not done")
            else:
                self._prompt()
        elif b == 0x04:
            self.ctrl += 1
            self._emit(NL)
            self._emit(CTRL_D)
            self._prompt()
            self._emit_typed()
        elif b == 0x1B:
            self.esc = 1
        else:
            if b == 0x09:
                b = 0x20
            if self.n < MAX_LINE:
                self.line[self.n] = b
                self.n += 1
                self._emit_byte(b)
            else:
                self.too_long = True
                self._emit(BELL)

    def _clear(self):
        self.n = 0
        self.too_long = False
        self.dirty = False

    def _drop_line(self):
        # a 0x00 ends a line with noise in it: that was a host's garbage, not a person's
        # typing (a person never sends 0x00): dropped and counted, no answer to a host
        self._clear()

    def _line(self):
        self.lines += 1
        if self.dirty:
            self._clear()
            self._emit(NOISE)
        elif self.too_long:
            self._clear()
            self._emit(TOO_LONG)
        elif not self.n:
            if self.pending is None and not self.greeted:
                self.greeted = True
                self._emit(GREETING)
        else:
            line = str(bytes(self.line[:self.n]), "ascii")
            self._clear()
            self._text(self._run(line))
        self._prompt()

    # ------------------------------------------------------------------ commands
    def _console(self):
        """The Console, built on first use; None if it cannot be (the answer then says
        why: `no_console`). The command path, never the tick: it may allocate."""
        if self.console is None:
            try:
                from firmware.console import Console

                self.console = Console(self.pump)
            except MemoryError:  # a fragmented heap: the pump goes on, the person may retry
                self.no_console = NO_MEMORY
            except ImportError:  # a build without the bench console
                self.no_console = NO_CONSOLE
        return self.console

    def _run(self, line):
        """One typed line -> the answer text. Guarded commands wait for the ACK button."""
        self.greeted = True
        words = line.split()
        if not words:
            return ""
        name = words[0].lower()
        if self.pending is not None:
            if name == "yes" and len(words) == 1:
                return TYPED_YES
            self._cancel("cancelled: not done")
            self._flush()
        if self._console() is None:
            return self.no_console
        if name not in GUARDED or (name == "time" and len(words) == 1):
            return self.console.handle_line(line)
        if self.buttons is None:
            return "error: %s needs the pump's ACK button, and this board has none\r\n" % name
        if name == "bolus":
            answer = self.console.handle_line(line)  # checked, asked: nothing delivered
            if getattr(self.console, "pending", None) is None:
                return answer  # refused or bad: nothing to confirm
            self.bolus_yes = True
            what = answer.split("?")[0]
        else:
            what = line
        self.pending = line
        self.asked_ms = self.clock.ticks_ms()
        self.buttons.got = False
        self.buttons.waiting = True
        return ASK % (CONFIRM_MS // 1000, what.strip())

    def _confirmed(self):
        line = self.pending
        self.pending = None
        self.buttons.waiting = False
        self._emit(NL)
        if self.bolus_yes:
            self.bolus_yes = False
            self._text(self.console.handle_line("yes"))
        else:
            self._text(self.console.handle_line(line))
        self._prompt()
        self._emit_typed()

    def _cancel(self, why):
        self.pending = None
        self.buttons.waiting = False
        self.buttons.got = False
        if self.bolus_yes:
            self.bolus_yes = False
            self.console.handle_line("no")  # the console forgets the bolus it asked about
        self._text(why + "\r\n")
        self._prompt()


def shared_console(pump, hw, decoder):
    """The Demux for a board whose protocol port also serves the bench console (the caller,
    firmware/hal.py's shared_console, has checked that). It takes over the pump's buttons
    (ConfirmButtons). The console itself is built when the first line is typed
    (Demux._console)."""
    buttons = None
    if pump.buttons is not None:
        buttons = ConfirmButtons(pump.buttons)
        pump.buttons = buttons
    return Demux(decoder, hw.serial, None, hw.clock, buttons, hw.port_clock, pump)
