"""Alarm manager (ALM-1, ALM-2, ALM-6): priorities, repeat, escalation, acknowledge.

Preallocated per-alarm arrays; `tick` and `set` never allocate. Every raise, acknowledge
and clear goes to the `log(alarm_id, action, value)` callback (history and host event).
"""

from array import array

from protocol.spec import (
    A_AUTO_OFF,
    A_OCCLUSION,
    A_SET_CHANGE,
    A_SUSPEND_REMINDER,
    ALARM_ACKED,
    ALARM_CLEARED,
    ALARM_COUNT,
    ALARM_RAISED,
    ALARMS,
    E_UNKNOWN_ALARM,
    OK,
    PRIO_HIGH,
)

MAX_LEVEL = 2  # escalation steps: 0 normal, 1 louder, 2 loudest
# Latched alarms report an event, not a lasting condition: acknowledging clears them.
LATCHED = (A_OCCLUSION, A_AUTO_OFF, A_SUSPEND_REMINDER, A_SET_CHANGE)


class Alarms:
    def __init__(self, annunciator, log):
        self.annunciator = annunciator
        self.log = log
        self.priority = bytearray(ALARM_COUNT)
        self.latched = bytearray(ALARM_COUNT)
        for i in range(ALARM_COUNT):
            self.priority[i] = ALARMS[i][1]
        for i in LATCHED:
            self.latched[i] = 1
        self.active = bytearray(ALARM_COUNT)
        self.acked = bytearray(ALARM_COUNT)
        self.level = bytearray(ALARM_COUNT)
        self.timer = array("i", [0] * ALARM_COUNT)  # ms until the next annunciation
        self.repeat_ms = 300000
        self.snooze_ms = 1800000
        self.led = 0
        self.count = 0  # active alarms: the tick skips its scan when none is active

    def raise_(self, alarm, value):
        if self.active[alarm]:
            return
        self.active[alarm] = 1
        self.count += 1
        self.acked[alarm] = 0
        self.level[alarm] = 0
        self.timer[alarm] = self.repeat_ms
        self.log(alarm, ALARM_RAISED, value)
        self.annunciator.sound(self.priority[alarm], 0)

    def clear(self, alarm, value):
        if not self.active[alarm]:
            return
        self.active[alarm] = 0
        self.count -= 1
        self.log(alarm, ALARM_CLEARED, value)

    def set(self, alarm, condition, value):
        """Raise or clear a condition alarm from its condition."""
        if condition:
            self.raise_(alarm, value)
        elif self.active[alarm]:
            self.clear(alarm, value)

    def ack(self, alarm):
        if alarm < 0 or alarm >= ALARM_COUNT or not self.active[alarm]:
            return E_UNKNOWN_ALARM
        self.log(alarm, ALARM_ACKED, 0)
        if self.latched[alarm]:
            self.clear(alarm, 0)
            return OK
        self.acked[alarm] = 1
        self.level[alarm] = 0
        # High-priority alarms cannot be snoozed: silenced only until the next repeat.
        self.timer[alarm] = self.repeat_ms if self.priority[alarm] == PRIO_HIGH else self.snooze_ms
        return OK

    def ack_top(self):
        """Acknowledge the highest-priority unacknowledged alarm (the button)."""
        best = -1
        for i in range(ALARM_COUNT):
            if self.active[i] and not self.acked[i]:
                if best < 0 or self.priority[i] > self.priority[best]:
                    best = i
        if best < 0:
            return E_UNKNOWN_ALARM
        return self.ack(best)

    def highest(self):
        """Highest active priority (0 if none)."""
        top = 0
        for i in range(ALARM_COUNT):
            if self.active[i] and self.priority[i] > top:
                top = self.priority[i]
        return top

    def tick(self, dt):
        top = 0
        if self.count:
            for i in range(ALARM_COUNT):
                if not self.active[i]:
                    continue
                t = self.timer[i] - dt
                if t <= 0:
                    if not self.acked[i] and self.level[i] < MAX_LEVEL:
                        self.level[i] += 1  # escalate: left unacknowledged
                    self.acked[i] = 0
                    self.annunciator.sound(self.priority[i], self.level[i])
                    t = self.repeat_ms
                self.timer[i] = t
                if self.priority[i] > top:
                    top = self.priority[i]
        if top != self.led:
            self.led = top
            self.annunciator.led(top)
