"""Shared-port scenarios (firmware/demux.py) that run inside MicroPython (unix port) and
under CPython alike: a transcript, a seeded interleaving of typed lines, frames and events,
a seeded noise fuzz, and the allocation check of the typing path.

tests/test_demux.py sends this file's source followed by one call (``main_transcript()``,
``main_mix(seed, n)``, ``main_noise(seed, n)``, ``main_alloc()``) to the unix port and
compares what it prints with what CPython computes. Keep it importable by both: no imports
from tests/, no CPython-only syntax. The PRNG is xorshift32, so both runtimes see the very
same bytes.
"""

import json

from boards.fakes import Rig, Serial
from firmware import wire
from firmware.console import Console
from firmware.demux import HOLD_MS
from firmware.hal import BUTTON_ACK
from firmware.link import Link
from firmware.pump import S_STOP, Pump
from protocol import spec as S

try:
    import micropython
except ImportError:  # CPython: nothing to lock
    micropython = None

KEY = bytes(range(1, 33))
SIZES = (2048, 2048, 512, 512, 24 * 256, 18 * 96, 256, 256, 1552, 1552, 24 * 16)
MONDAY = 2511 * 86400  # 2026-11-16 00:00 UTC, a Monday
ID = wire.INDEX
PROMPT = "pump> "
READ_ONLY = ("status", "help", "alarms", "history 3", "settings", "totals 2", "time",
             "help bolus")


class Rand:
    """xorshift32: the same numbers on every runtime."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


def bench():
    """(rig, pump, link): a pump delivering basal (1 U/h), its link on a shared port."""
    rig = Rig(50, storage_sizes=SIZES)
    rig.serial = Serial(8192)
    rig.key = KEY
    pump = Pump(rig.hardware())
    pump.boot()
    assert pump.settings.set_profile(0, b"test", [0], [1000]) == S.OK
    assert pump.set_time(MONDAY + 13 * 3600, 60) == S.OK
    assert pump.rewind() == S.OK
    assert pump.fill(200000) == S.OK
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK
    assert pump.resume() == S.OK
    for _ in range(5):
        rig.clock.advance(1000)
        pump.tick()
    hw = rig.hardware()
    hw.shared_console = True
    link = Link(pump, hw)
    while pump.events.count:
        link.poll()
    rig.serial.out_count = 0
    return rig, pump, link


def status_frame(seq, counter=0):
    """A status request after a 0x00; authenticated with `counter` > 0 (such frames begin
    with 0x03, 0x04 or 0x08: bytes a person could type, so only the next byte tells)."""
    if counter:
        return b"\x00" + wire.encode_frame(ID["status"], seq, 0, [], key=KEY, counter=counter)
    return b"\x00" + wire.encode_frame(ID["status"], seq, 0, [])


def split(data):
    """Pump output -> (frames as (msg id, seq, flags), text, broken chunks). A chunk
    between 0x00s is a frame if it decodes with a good CRC, text if every byte is one the
    console writes, else broken."""
    frames = []
    text = []
    broken = 0
    for part in bytes(data).split(b"\x00"):
        if not part:
            continue
        try:
            f = wire.decode_frame(part)
            frames.append((f[0], f[1], f[2]))
            continue
        except Exception:  # noqa: BLE001 - not a frame: text or broken
            pass
        ok = True
        for b in part:
            if not (0x20 <= b < 0x7F or b in (7, 8, 10, 13)):
                ok = False
                break
        if ok:
            text.append(str(part, "ascii"))
        else:
            broken += 1
    return frames, "".join(text), broken


def snapshot(pump):
    al = pump.alarms
    return (list(pump.state), list(pump.settings.values), pump.history.next_seq,
            list(al.active), list(al.acked))


# --------------------------------------------------------------------------- transcript
STEPS = (
    ("bytes", b"\r"),
    ("bytes", b"help bolus\r"),
    ("bytes", b"stat"),
    ("bytes", b"us\r\n"),
    ("bytes", b"hel\x08\x7flp\r"),
    ("bytes", b"hist\x1b[Aory 2\r"),
    ("bytes", b"junk line\x15alarms\n"),
    ("bytes", b"\x03"),
    ("bytes", b"he\x04"),
    ("bytes", b"\r"),
    ("bytes", b"x" * 90 + b"\r"),
    ("bytes", b"sta\x00"),
    ("frame", 7),
    ("bytes", b"tus\r"),
    ("bytes", b"bolus 0.5\r"),
    ("bytes", b"yes\r"),
    ("press", 0),
    ("bytes", b"status\r"),
    ("bytes", b"set max_bolus 5\r"),
    ("wait", 11),
    ("bytes", b"suspend\r"),
    ("bytes", b"resume\r"),
    ("bytes", b"\x03"),
    ("bytes", b"zz\x01\x02zz\r"),
)


def transcript():
    rig, pump, link = bench()
    out = []
    for kind, arg in STEPS:
        if kind == "bytes":
            rig.serial.send(arg)
        elif kind == "frame":
            rig.serial.send(status_frame(arg))
        elif kind == "press":
            rig.buttons.press(BUTTON_ACK)
        if kind in ("press", "wait"):
            for _ in range(arg or 1):
                rig.clock.advance(1000)
                pump.tick()
        link.poll()
        if kind == "bytes":  # a person pauses: a key held after a 0x00 counts as typed
            rig.clock.advance(HOLD_MS + 1)
            link.poll()
        frames, text, broken = split(rig.serial.take())
        out.append([kind, [f[0] for f in frames], text, broken])
    out.append(["state", pump.state[S_STOP], pump.bolus_progress()[0], link.mux.noise,
                link.mux.ctrl, link.faults])
    return out


def main_transcript():
    print("RESULT " + json.dumps(transcript()))


# --------------------------------------------------------------------------- interleave
class Host:
    """The host's side of a mixed connection, fed as output arrives (no big buffers: the
    unix port's heap is small): frames decoded, text compared with what is expected."""

    def __init__(self):
        self.tail = bytearray()
        self.frames = []  # (msg id, seq) of the frames received
        self.expect = ""  # console text still to come
        self.text_ok = True
        self.broken = 0

    def feed(self, data):
        self.tail.extend(data)
        while True:
            at = self.tail.find(b"\x00")
            if at < 0:
                return
            part = bytes(self.tail[:at])
            self.tail = self.tail[at + 1:]
            self._part(part)

    def _part(self, part):
        if not part:
            return
        frames, text, broken = split(part)
        self.broken += broken
        for f in frames:
            self.frames.append((f[0], f[1]))
        if text:
            if self.expect.startswith(text):
                self.expect = self.expect[len(text):]
            else:
                self.text_ok = False

    def end(self):
        self._part(bytes(self.tail))
        self.tail = bytearray()
        return self.text_ok and not self.expect


def mix(seed, n, events=True, piece=160):
    """`n` status requests (every other one authenticated) interleaved with typed
    read-only lines and queued events, the whole stream cut into random read sizes of 1 to
    `piece` bytes (1: a UART handing over one byte per read). What the host got: frames
    answered, events, broken chunks, and whether the text is exactly the echo + answers
    of the lines."""
    rnd = Rand(seed)
    rig, pump, link = bench()
    ref = Console(pump)
    host = Host()
    pending = bytearray()
    lines = 0
    queued = 0
    for i in range(n + 1):
        pending.extend(status_frame(1 + i, i & 1 and i))
        if i < n and rnd.below(3) == 0:
            line = READ_ONLY[rnd.below(len(READ_ONLY))]
            pending.extend(line.encode() + (b"\r", b"\n", b"\r\n")[rnd.below(3)])
            host.expect += line + "\r\n" + ref.handle_line(line) + PROMPT
            lines += 1
        if events and i < n and rnd.below(10) == 0 and pump.events.count < 8:
            pump.events.put(S.EV_ALARM, 1, 2, 3)
            queued += 1
        # what the stream has so far goes out in random pieces, polled between them
        while pending:
            k = 1 + rnd.below(piece)
            rig.serial.send(pending[:k])
            pending = pending[k:]
            link.poll()
            host.feed(rig.serial.take())
    link.poll()  # the last frame came after the last line: held events go out
    host.feed(rig.serial.take())
    text_ok = host.end()
    answers = [f[1] for f in host.frames if f[0] == 0x82]
    got_events = len([f for f in host.frames if f[0] == 0xC0])
    return {"answers_ok": answers == list(range(1, n + 2)), "answers": len(answers),
            "events": got_events, "queued": queued, "broken": host.broken,
            "text_ok": text_ok, "lines": lines, "faults": link.faults,
            "noise": link.mux.noise, "bad_frame": link.stats[2], "bad_crc": link.stats[1]}


def main_mix(seed, n, piece=160):
    print("RESULT " + json.dumps(mix(seed, n, piece=piece)))


# --------------------------------------------------------------------------- noise
def noise(seed, n):
    """`n` rounds of random bytes (text-like, binary, 0x00s, Ctrl-C/D, ESC, frame pieces);
    after each: the pump state unchanged, no fault, and a resync (0x00, two Ctrl-C) brings
    back a console that answers `help` exactly and a link that answers a status frame."""
    rnd = Rand(seed)
    rig, pump, link = bench()
    before = snapshot(pump)
    help_text = "help\r\n" + Console(pump).handle_line("help") + PROMPT
    recovered = 0
    frames_ok = 0
    for r in range(n):
        junk = bytearray()
        for _ in range(1 + rnd.below(300)):
            c = rnd.below(10)
            if c < 4:
                junk.append(rnd.below(256))
            elif c < 7:
                junk.append(0x20 + rnd.below(95))
            elif c == 7:
                junk.append((0, 3, 4, 13, 10, 0x1B, 0x7F, 0x15)[rnd.below(8)])
            else:
                f = status_frame(r & 0xFFFF)
                cut = rnd.below(len(f) + 1)
                junk.extend(f[:cut] if rnd.below(2) else f[cut:])
        rig.serial.send(junk)
        link.poll()
        rig.serial.take()
        rig.serial.send(b"\x00 \x03\x03")  # a key, then Ctrl-C twice
        link.poll()
        rig.serial.take()
        rig.serial.send(b"help\r")
        link.poll()
        frames, text, broken = split(rig.serial.take())
        if text.endswith(help_text):
            recovered += 1
        rig.serial.send(status_frame(0x7000 + r))
        link.poll()
        frames, text, broken = split(rig.serial.take())
        if (0x82, 0x7000 + r) in [(f[0], f[1]) for f in frames]:
            frames_ok += 1
    return {"rounds": n, "recovered": recovered, "frames_ok": frames_ok,
            "state_same": snapshot(pump) == before, "faults": link.faults,
            "noise": link.mux.noise, "ctrl": link.mux.ctrl, "pending": link.mux.pending}


def main_noise(seed, n):
    print("RESULT " + json.dumps(noise(seed, n)))


# --------------------------------------------------------------------------- allocation
TYPING = (b"s", b"t", b"a", b"\x08", b"\x7f", b"\x1b[A", b"\x15", b"xy", b"\x03", b"\x04",
          b"\x00")


def locked(fn, rounds):
    fails = 0
    if micropython is not None:
        micropython.heap_lock()
    try:
        for _ in range(rounds):
            try:
                fn()
            except MemoryError:
                fails += 1
    finally:
        if micropython is not None:
            micropython.heap_unlock()
    return fails


def alloc_report(rounds=20):
    """MemoryErrors under heap_lock: typed keys (echo, erase, Ctrl-U/C/D, ESC, 0x00), a
    status frame after text, the tick with a confirmation waiting for the ACK button."""
    rig, pump, link = bench()
    serial = rig.serial
    out = {}
    for keys in TYPING:
        def step(keys=keys):
            serial.out_count = 0
            serial.send(keys)
            link.poll()
        step()  # warm up
        out["key " + str(keys)] = locked(step, rounds)
    frame = status_frame(9)

    def frame_after_text():
        serial.out_count = 0
        serial.send(b"st")
        serial.send(frame)
        link.poll()
    frame_after_text()
    out["frame after text"] = locked(frame_after_text, rounds)
    answered = [f[0] for f in split(serial.out[:serial.out_count])[0]] == [0x82]
    # a confirmation waiting: the ACK press is taken by it, inside the tick
    serial.send(b"\x03resume\r")
    link.poll()
    buttons = pump.buttons

    def tick_press():
        buttons.waiting = True
        rig.buttons.press(BUTTON_ACK)
        rig.clock.advance(100)
        pump.tick()
    tick_press()
    out["tick with ACK confirmation"] = locked(tick_press, rounds)
    return {"fails": out, "answered": answered, "got": buttons.got,
            "locked": micropython is not None}


def main_alloc(rounds=20):
    print("RESULT " + json.dumps(alloc_report(rounds)))
