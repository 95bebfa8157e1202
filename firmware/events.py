"""The host event queue: the last 16 events of (kind, a, b, c), oldest dropped first.

The pump and the sensor link put events in (from the tick: no allocation); the link takes
them out to send them to the host (EV_* in protocol/spec.py).
"""

from array import array


class Events:
    def __init__(self):
        self.buf = array("i", [0] * 64)  # 16 events of 4 ints, a ring
        self.head = 0
        self.count = 0
        self.dropped = 0  # events overwritten because the host did not take them in time

    def put(self, kind, a, b, c):
        ev = self.buf
        if self.count == 16:
            self.dropped += 1
            self.head = (self.head + 1) & 15
            self.count -= 1
        i = ((self.head + self.count) & 15) * 4
        ev[i] = kind
        ev[i + 1] = a
        ev[i + 2] = b
        ev[i + 3] = c
        self.count += 1

    def take(self, out):
        """Move the oldest queued event into out[0:4]. False if none."""
        i = self.pop()
        if i < 0:
            return False
        ev = self.buf
        out[0] = ev[i]
        out[1] = ev[i + 1]
        out[2] = ev[i + 2]
        out[3] = ev[i + 3]
        return True

    def pop(self):
        """Dequeue the oldest event: its index in buf (kind, a, b, c at buf[i:i + 4], there
        until the next put), -1 if none. The link packs its event frames from there
        (issue 12: no copy)."""
        if not self.count:
            return -1
        i = self.head * 4
        self.head = (self.head + 1) & 15
        self.count -= 1
        return i
