"""Alarm manager (ALM-1, ALM-2, ALM-6, ALM-8): priorities, repeat, escalation, acknowledge
and the alarm-management rules of IEC 60601-1-8.

One auditory signal at a time: the highest-priority unacknowledged alarm's (the board
repeats its burst, firmware/signals.py). A lower-priority alarm raised meanwhile is logged
as hidden and sounds once the higher one is acknowledged or clears. A condition that ends
before anyone acknowledged it is logged as such and shown until acknowledged. A condition
that starts and stops _CYCLES times within CYCLE_MS starts again one level louder instead
of from the start.

Preallocated per-alarm arrays; `tick` and `set` never allocate. Every raise, acknowledge
and clear goes to the `log(alarm_id, action, value)` callback (history and host event).

The tick is lazy (issue 12: a scan of every alarm costs ~40k instructions on a Cortex-M0+):
it only adds its dt to `pending` until the first repeat timer or cycle window can run out
(`due`), and scans then; an operation that reads or sets a timer or window first brings
them up to date (`_settle`). Timers run out at the same tick as with a scan every tick.
The LED follows the highest active priority, which changes only when an alarm is raised or
cleared (`dirty`); `due` is 0 while `dirty`, so one test (pending < due) tells whether a
tick has anything to do (Pump.tick makes that test itself).
"""

from array import array

from firmware.compat import const
from protocol import spec as S  # the raise, clear and acknowledge paths: one globals entry
from protocol.spec import ALARM_COUNT, ALARMS  # ALARMS[alarm][1]: the alarm's priority

_MAX_LEVEL = const(2)  # escalation steps: 0 normal, 1 louder, 2 loudest
# Latched alarms report an event, not a lasting condition: acknowledging clears them.
LATCHED = (S.A_OCCLUSION, S.A_AUTO_OFF, S.A_SUSPEND_REMINDER, S.A_SET_CHANGE)
_CYCLES = const(3)  # raises within CYCLE_MS that escalate instead of restarting
CYCLE_MS = 600000
_NEVER = const(1 << 29)  # `due` while no timer or window runs


class Alarms:
    def __init__(self, annunciator, log):
        self.annunciator = annunciator
        self.log = log
        # priorities and latching are read from ALARMS and LATCHED: no copy (heap, issue 12)
        self.active = bytearray(ALARM_COUNT)
        self.acked = bytearray(ALARM_COUNT)
        self.level = bytearray(ALARM_COUNT)
        self.timer = array("i", [0] * ALARM_COUNT)  # ms until the next annunciation
        self.repeat_ms = 300000
        self.snooze_ms = 1800000
        self.led = 0
        self.count = 0  # active alarms: the tick skips its scan when none is active
        self.sounding = -1  # the alarm whose signal the annunciator plays, -1 none
        self.missed = bytearray(ALARM_COUNT)  # cleared before acknowledged: shown until acked
        self.cycles = bytearray(ALARM_COUNT)  # raises within the current cycle window
        self.window = array("i", [0] * ALARM_COUNT)  # ms left of each cycle window
        self.windows = 0  # cycle windows running
        self.pending = 0  # ms the timers and windows have not been counted down by yet
        self.due = _NEVER  # pending ms at which the first timer or window runs out
        self.dirty = False  # an alarm was raised or cleared: the LED may change

    def raise_(self, alarm, value):
        if self.active[alarm]:
            return
        self._settle()
        self.active[alarm] = 1
        self.count += 1
        self.dirty = True
        self.due = 0  # the next tick updates the LED
        self.acked[alarm] = 0
        self.missed[alarm] = 0
        if self.window[alarm] > 0:
            if self.cycles[alarm] < 255:  # a byte: a condition flapping every tick stays put
                self.cycles[alarm] += 1
        else:
            self.cycles[alarm] = 1
            self.window[alarm] = CYCLE_MS
            self.windows += 1
        if self.cycles[alarm] >= _CYCLES:  # start-stop cycling: louder than last time
            if self.level[alarm] < _MAX_LEVEL:
                self.level[alarm] += 1
        else:
            self.level[alarm] = 0
        self.timer[alarm] = self.repeat_ms
        self._due(self.repeat_ms)
        self._due(self.window[alarm])
        self.log(alarm, S.ALARM_RAISED, value)
        s = self.sounding
        if not self._annunciate(alarm):
            self.log(alarm, S.ALARM_HIDDEN, s)

    def _annunciate(self, alarm):
        """Sound the alarm's signal unless a higher-priority one is sounding: True if sounded."""
        s = self.sounding
        if s >= 0 and s != alarm and ALARMS[s][1] > ALARMS[alarm][1]:
            return False
        self.sounding = alarm
        self.annunciator.sound(ALARMS[alarm][1], self.level[alarm])
        return True

    def _next(self):
        """The sounding alarm was acknowledged or cleared: sound the next one, if any."""
        best = self.top_unacked()
        self.sounding = -1
        if best < 0:
            self.annunciator.silence()
        else:
            self._annunciate(best)

    def clear(self, alarm, value):
        if not self.active[alarm]:
            return
        self.active[alarm] = 0
        self.count -= 1
        self.dirty = True
        self.due = 0  # the next tick updates the LED
        self.log(alarm, S.ALARM_CLEARED, value)
        if not self.acked[alarm] and alarm not in LATCHED:
            self.missed[alarm] = 1
            self.log(alarm, S.ALARM_UNACKED, self.level[alarm])
        if self.sounding == alarm:
            self._next()

    def set(self, alarm, condition, value):
        """Raise or clear a condition alarm from its condition."""
        if condition:
            self.raise_(alarm, value)
        elif self.active[alarm]:
            self.clear(alarm, value)

    def ack(self, alarm):
        if alarm < 0 or alarm >= ALARM_COUNT:
            return S.E_UNKNOWN_ALARM
        if not self.active[alarm]:
            if not self.missed[alarm]:
                return S.E_UNKNOWN_ALARM
            self.missed[alarm] = 0  # "cleared, was not acknowledged" seen
            self.log(alarm, S.ALARM_ACKED, 0)
            return S.OK
        self.log(alarm, S.ALARM_ACKED, 0)
        self.acked[alarm] = 1
        if alarm in LATCHED:
            self.clear(alarm, 0)
            return S.OK
        self.level[alarm] = 0
        # High-priority alarms cannot be snoozed: silenced only until the next repeat.
        self._settle()
        t = self.repeat_ms if ALARMS[alarm][1] == S.PRIO_HIGH else self.snooze_ms
        self.timer[alarm] = t
        self._due(t)
        if self.sounding == alarm:
            self._next()
        return S.OK

    def top_unacked(self):
        """The alarm an acknowledgement without an id is for: the highest-priority active,
        unacknowledged alarm, the lowest id among equals; -1 if none."""
        best = -1
        for i in range(ALARM_COUNT):
            if self.active[i] and not self.acked[i]:
                if best < 0 or ALARMS[i][1] > ALARMS[best][1]:
                    best = i
        return best

    def ack_top(self):
        """Acknowledge the highest-priority unacknowledged alarm (the button)."""
        best = self.top_unacked()
        if best < 0:
            return S.E_UNKNOWN_ALARM
        return self.ack(best)

    def highest(self):
        """Highest active priority (0 if none)."""
        top = 0
        for i in range(ALARM_COUNT):
            if self.active[i] and ALARMS[i][1] > top:
                top = ALARMS[i][1]
        return top

    def tick(self, dt):
        # Pump.tick does the first step itself while nothing runs out and the LED stands
        # (saves a call)
        p = self.pending + dt
        dirty = self.dirty
        self.dirty = False  # before the scan (a dirty `due` is 0): it sets the next `due`
        if p < self.due:
            self.pending = p  # nothing runs out yet: no scan
        else:
            self.pending = 0
            self._count_down(p)
        if dirty:
            top = self.highest()
            if top != self.led:
                self.led = top
                self.annunciator.led(top)

    def _settle(self):
        """Count the timers and windows down by the pending ms (none runs out: pending <
        due), before an operation reads or sets one."""
        p = self.pending
        if p:
            self.pending = 0
            self._count_down(p)

    def _due(self, t):
        if t < self.due:
            self.due = t

    def _count_down(self, dt):
        """Count every running timer and window down by dt: what runs out escalates and
        sounds again, or ends its cycle window. Sets `due` for the next scan."""
        due = _NEVER
        if self.windows:
            window = self.window
            for i in range(ALARM_COUNT):
                if window[i] > 0:
                    t = window[i] - dt
                    if t <= 0:
                        t = 0
                        self.cycles[i] = 0
                        self.windows -= 1
                    elif t < due:
                        due = t
                    window[i] = t
        if self.count:
            active = self.active
            timer = self.timer
            for i in range(ALARM_COUNT):
                if not active[i]:
                    continue
                t = timer[i] - dt
                if t <= 0:
                    if not self.acked[i] and self.level[i] < _MAX_LEVEL:
                        self.level[i] += 1  # escalate: left unacknowledged
                    self.acked[i] = 0
                    self._annunciate(i)  # hidden behind a higher one: it waits its turn
                    t = self.repeat_ms
                timer[i] = t
                if t < due:
                    due = t
        self.due = 0 if self.dirty else due  # dirty: the next tick scans (and sets it)
