"""A lossy serial port for the link-fault campaign: duplicates and reorders whole frames in
both directions between the client and a real port (pyserial-compatible where the client
needs it: write, flush, in_waiting, read, timeout, close).

Drops and corruption are the emulator's own faults (FAULT_DROP_RX/TX, FAULT_CORRUPT_RX/TX),
so they happen inside the board, after and before its UART; this port adds what a relay on
the way can do:

- duplicate: a frame is delivered twice in a row;
- reorder: a frame is held back and delivered right after the next frame in the same
  direction, or when its hold time (random, up to ``hold_max`` s) runs out, whichever
  comes first;
- late: a frame is held for ``late_s`` (a range, s: longer than the client's whole retry
  window, fence included) while later frames pass, then delivered (LNK-6); at random, or
  the next ``hold_next`` frames (every try of one command).

Frames are cut at the 0x00 delimiter. Every decision comes from a seeded random.Random;
when a held frame is released depends on timing (the client's reads), so a rerun with the
same seed makes the same decisions on the same frames but may interleave releases a little
differently.
"""

from __future__ import annotations

import collections
import random
import time


class Direction:
    """One way through the relay: frames in, frames out (duplicated, reordered)."""

    def __init__(self, name: str, rng: random.Random, dup: float, reorder: float,
                 hold_max: float, emit, late: float = 0.0,
                 late_s: tuple[float, float] = (1.0, 2.0)):
        self.name = name
        self.rng = rng
        self.dup = dup
        self.reorder = reorder
        self.hold_max = hold_max
        self.late = late
        self.late_s = late_s
        self.emit = emit  # callable(bytes)
        self.partial = bytearray()
        self.held: tuple[float, bytes] | None = None
        self.late_held: list[tuple[float, bytes]] = []
        self.hold_next = 0  # the next frames to hold late, whatever the odds
        self.stats = collections.Counter()

    def feed(self, data: bytes) -> None:
        self.partial += data
        while True:
            i = self.partial.find(0)
            if i < 0:
                return
            frame = bytes(self.partial[:i + 1])
            del self.partial[:i + 1]
            self.frame(frame)

    def frame(self, frame: bytes) -> None:
        self.stats["frames"] += 1
        if len(frame) < 2:  # a lone delimiter: pass it on
            self.emit(frame)
            return
        rng = self.rng
        if self.hold_next or (self.late and rng.random() < self.late):
            self.hold_next = max(0, self.hold_next - 1)
            self.stats["late"] += 1
            lo, hi = self.late_s
            self.late_held.append((time.monotonic() + lo + rng.random() * (hi - lo), frame))
            self.late_held.sort(key=lambda held: held[0])
            return
        if self.held is None and rng.random() < self.reorder:
            self.stats["held"] += 1
            self.held = (time.monotonic() + rng.random() * self.hold_max, frame)
            return
        self.emit(frame)
        if rng.random() < self.dup:
            self.stats["duplicated"] += 1
            self.emit(frame)
        if self.held is not None:
            self.stats["reordered"] += 1  # the held frame goes out after a later one
            _, held = self.held
            self.held = None
            self.emit(held)

    def tick(self) -> None:
        """Release a held frame whose hold time ran out (delayed, nothing overtook it),
        and the late frames whose time has come."""
        now = time.monotonic()
        if self.held is not None and now >= self.held[0]:
            self.stats["delayed"] += 1
            _, held = self.held
            self.held = None
            self.emit(held)
        while self.late_held and now >= self.late_held[0][0]:
            self.stats["late_delivered"] += 1
            self.emit(self.late_held.pop(0)[1])

    def flush(self) -> None:
        if self.held is not None:
            _, held = self.held
            self.held = None
            self.emit(held)
        self.release_late()

    def release_late(self) -> None:
        """Deliver the late frames now (in the order they were held)."""
        for _, frame in sorted(self.late_held, key=lambda held: held[0]):
            self.stats["late_delivered"] += 1
            self.emit(frame)
        self.late_held.clear()


class LossyPort:
    """Wraps an open pyserial port; ``tx`` is host -> pump, ``rx`` pump -> host."""

    def __init__(self, inner, seed: int, dup: float = 0.0, reorder: float = 0.0,
                 hold_max: float = 0.05):
        self.inner = inner
        self.rng = random.Random(seed)
        self.ready = bytearray()  # bytes for the client
        self.tx = Direction("tx", self.rng, dup, reorder, hold_max, self._to_pump)
        self.rx = Direction("rx", self.rng, dup, reorder, hold_max, self.ready.extend)
        self.enabled = True

    # faults can be switched off (set-up and checks run clean)
    def set_faults(self, dup: float, reorder: float, hold_max: float | None = None,
                   late: float = 0.0, late_s: tuple[float, float] | None = None) -> None:
        for d in (self.tx, self.rx):
            d.dup = dup
            d.reorder = reorder
            d.late = late
            if hold_max is not None:
                d.hold_max = hold_max
            if late_s is not None:
                d.late_s = late_s
            if not reorder and not late:
                d.flush()

    # pyserial surface used by host_tools.client
    @property
    def timeout(self):
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value):
        self.inner.timeout = value

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def _to_pump(self, frame: bytes) -> None:
        self.inner.write(frame)

    def _tick(self) -> None:
        self.tx.tick()
        self.rx.tick()

    def write(self, data: bytes) -> int:
        self._tick()
        self.tx.feed(bytes(data))
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def _pull(self, block: bool) -> None:
        n = self.inner.in_waiting
        if n:
            self.rx.feed(self.inner.read(n))
        elif block:
            data = self.inner.read(1)  # waits up to the port's timeout
            if data:
                n = self.inner.in_waiting
                if n:
                    data += self.inner.read(n)
                self.rx.feed(data)
        self._tick()

    @property
    def in_waiting(self) -> int:
        self._pull(False)
        return len(self.ready)

    def read(self, size: int = 1) -> bytes:
        self._tick()
        if not self.ready:
            self._pull(True)
        out = bytes(self.ready[:size])
        del self.ready[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()
        self.ready.clear()
        self.rx.partial.clear()
        self.rx.held = None

    def close(self) -> None:
        self.inner.close()

    def stats(self) -> dict:
        out = {}
        for d in (self.tx, self.rx):
            for k, v in d.stats.items():
                out[f"{d.name}_{k}"] = v
        return out
