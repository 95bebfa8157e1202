"""Emulator board, part 6: hw.emulator, the emulator-only messages (SEC-3): clock
control (emu_clock: real time, speed, lockstep, ADVANCE and UNTIL_EVENT run in lockstep,
the link served between ticks) and fault injection (emu_fault, boards/emu_faults.py), and
the telemetry snapshot of the pump and the simulated parts."""

import json
import sys
import time

from micropython import heap_lock, heap_unlock

from boards.emu_faults import inject
from boards.emu_transport import QueryView
from boards.emu_world import EXIT_ALLOC
from firmware.layout import S_BOOTS, S_TIME_SET
from firmware.signals import COLOUR, FLASH
from protocol import spec as S

STEP_MS = 1000  # lockstep tick
SERVICE_STEPS = 64  # lockstep ticks between two looks at the link during an ADVANCE
TELEMETRY_MS = 1000
SPEED_MAX = 10000000  # per mille: 10,000 times real time

PULSES_MS = 60000  # telemetry carries the tone pulses of the last minute of virtual time


def led_pattern(priority, since):
    """The alarm LED as a person sees it (ALM-8): colour, flash timing and rate."""
    on, off = FLASH[priority]
    return {"priority": priority, "colour": COLOUR[priority], "on_ms": on, "off_ms": off,
            "flash_mhz": 1000000 // (on + off) if off else 0,
            "steady": 1 if priority and not off else 0, "since_ms": since}


class Emulator:
    """hw.emulator: clock control and fault injection (SEC-3: only this board has it)."""

    def __init__(self, board, world, clock, serial, battery, line, buttons, storage, radio,
                 annunciator, telemetry=None):
        self.board = board
        self.world = world
        self.rng = world.rng
        self.clock = clock
        self.serial = serial
        self.battery = battery
        self.line = line
        self.buttons = buttons
        self.storage = storage
        self.radio = radio
        self.annunciator = annunciator
        self.runner = None
        self.view = QueryView(serial)
        self.chunk = bytearray(128)
        self.telemetry = telemetry  # a TelemetryPort (boards/emu_transport.py), or None
        self.tel_last = time.ticks_ms()
        self.advanced = 0  # virtual ms run by ADVANCE / UNTIL_EVENT since boot

    def attach(self, runner):
        self.runner = runner
        self.radio.runner = runner

    # ------------------------------------------------------------------ messages
    def command(self, msg_id, values):
        if msg_id == 0x30:
            return self._clock(values[1], values[2])
        if msg_id == 0x31:
            return inject(self, values[1], values[2])
        return S.E_UNKNOWN_MESSAGE, msg_id

    def _clock(self, op, ms):
        clock = self.clock
        old = clock.speed
        if op == S.CLK_REALTIME:
            self._set_speed(1000)
            return S.OK, old
        if op == S.CLK_SPEED:
            if not 1 <= ms <= SPEED_MAX:
                return S.E_OUT_OF_RANGE, 2
            self._set_speed(ms)
            return S.OK, old
        if op == S.CLK_LOCKSTEP:
            self._set_speed(0)
            return S.OK, old
        if op == S.CLK_ADVANCE or op == S.CLK_UNTIL_EVENT:
            if ms < 0:
                return S.E_OUT_OF_RANGE, 2
            return S.OK, self.advance(ms, op == S.CLK_UNTIL_EVENT)
        return S.E_BAD_ARG, 1

    def _set_speed(self, speed):
        clock = self.clock
        if clock.speed:
            clock._sync()
        clock.speed = speed
        clock.rebase()
        self.world.set("speed", speed)

    # ------------------------------------------------------------------ lockstep
    def advance(self, ms, until_event):
        """Run ticks of 1 s (+- jitter) of virtual time back to back, for `ms` or, with
        `until_event`, until the firmware queues an event. Returns the virtual ms run."""
        runner = self.runner
        pump = runner.pump
        clock = self.clock
        step_fn = runner.step
        service = self.service
        rng = self.rng
        jitter = self.world.get("jitter")
        span = 2 * jitter + 1
        heap_check = self.world.get("heap_check")
        board = self.board
        cmd = pump.cmd
        if cmd:
            # Record the run as started (a state save carrying its command id), so that a
            # retry after a power cut during the run is a duplicate, never a second run.
            pump.detail = 0
            pump.end_command(S.OK)
            pump.begin_command(cmd)
        if until_event:
            service()  # what was queued before goes out first
        done = 0
        n = 0
        while done < ms:
            step = STEP_MS
            if jitter:
                step += rng.below(span) - jitter
            left = ms - done
            if step > left:
                step = left
            cut = clock.cut_at
            if cut >= 0:
                to_cut = cut - clock.elapsed
                if to_cut < step:
                    step = to_cut if to_cut > 0 else 0
            done += step
            pump.detail = done  # a state save carries it: the answer to a retry after a cut
            if heap_check:
                board.locked = True
                heap_lock()
                try:
                    clock.add(step)
                    step_fn()
                except MemoryError as exc:
                    heap_unlock()
                    board.locked = False
                    self.allocated(exc)
                heap_unlock()
                board.locked = False
            else:
                clock.add(step)
                step_fn()
            if pump.events.count:
                if until_event:
                    break
                service()
            n += 1
            if n == SERVICE_STEPS:
                n = 0
                service()
                self.idle()
        if clock.speed:
            clock.rebase()
        self.advanced += done
        return done

    def allocated(self, exc):
        """A tick allocated while the heap was locked (heap_check): a firmware bug."""
        sys.stderr.write("emulator: a tick allocated with the heap locked (Pump.tick must "
                         "be allocation-free):\n")
        sys.print_exception(exc, sys.stderr)
        self.board.die(EXIT_ALLOC)

    def service(self):
        """Between lockstep ticks: send queued events, answer queries that arrived."""
        link = self.runner.link
        if link is None:
            return
        view = self.view
        self.serial.split_queries(view)
        serial = link.serial
        chunk = link.chunk
        view.serial = serial  # answers go out as the link writes them (text and frames apart)
        link.serial = view
        link.chunk = self.chunk
        try:
            link.poll()
            while view.at < view.n:
                link.poll()
        finally:
            link.serial = serial
            link.chunk = chunk

    # ------------------------------------------------------------------ telemetry
    def idle(self):
        """Called while the firmware waits for input: telemetry once a second."""
        if self.telemetry is None:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self.tel_last) < TELEMETRY_MS:
            return
        self.tel_last = now
        self.emit()

    def emit(self):
        runner = self.runner
        if runner is None or self.telemetry is None:
            return
        pump = runner.pump
        st = pump.status()
        link = runner.link
        serial = self.serial
        ann = self.annunciator
        motor = self.board.motor
        st["boots"] = pump.state[S_BOOTS]
        st["time_set"] = pump.state[S_TIME_SET]
        st["utc"] = pump.utc_seconds()
        st["offset"] = pump.setting(S.SET_UTC_OFFSET)
        st["emu"] = {
            "elapsed_ms": self.clock.elapsed,
            "advanced_ms": self.advanced,
            "speed": self.clock.speed,
            "battery_u": self.battery.level_u,
            "motor_pos": motor.pos,
            "odometer": motor.odometer,
            "line_kpa": self.line.kpa,
            "occluded": 1 if self.line.occluded else 0,
            "led": ann.led_priority,
            "led_pattern": led_pattern(ann.led_priority, ann.led_since),
            "sounds": [ann.sounds[1], ann.sounds[2], ann.sounds[3]],
            "last_sound": [ann.last_priority, ann.last_level],
            # ALM-8: what the buzzer plays: signals as (start ms, priority, level, stop ms
            # or -1 while playing), and the tone pulses of the last PULSES_MS as
            # (start ms, Hz, duration ms, level); times are virtual ms since boot
            "signals": [list(g) for g in ann.segments()],
            "pulses": [list(p) for p in ann.pulses(self.clock.elapsed,
                                                   self.clock.elapsed - PULSES_MS)],
            "stuck": self.buttons.stuck,
            "sensor_loss": self.radio.lost,
            "cgm_sent": self.radio.sent,
            "storage_fail": self.storage.fail,
            "link_faults": [serial.drop_rx, serial.drop_tx, serial.corrupt_rx,
                            serial.corrupt_tx],
            "frames": [link.stats[0], link.stats[7]] if link is not None else [0, 0],
            "dropped": [serial.dropped_rx, serial.dropped_tx, serial.corrupted_rx,
                        serial.corrupted_tx],
            "world_ms": self.world.get("world_ms") + self.clock.elapsed,
            "rtc": pump.rtc.now() if pump.rtc is not None else -1,
            "motor_fault": self.world.get("motor"),
            "cut_in_ms": (self.clock.cut_at - self.clock.elapsed
                          if self.clock.cut_at >= 0 else -1),
            "pulse_mu": pump.pulse,
        }
        if not self.telemetry.send(json.dumps(st)):
            self.telemetry = None
