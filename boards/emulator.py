"""Emulator board: the firmware, unchanged, on the MicroPython unix port with simulated parts.

    micropython boards/emulator.py --state DIR [--pulse 50] [--reset-cause N]
        [--console-in FD --console-out FD] [--telemetry FD] [--cgm-trace FILE]
        [--patient-in FD --patient-out FD] [--sensor-in FD]

Normally started by host_tools/launch.py (`pumpctl emulate`, `make emulate`), which puts
the protocol link (this process's stdin/stdout) and the bench console (two pipe fds) on
pseudo-terminals, restarts this process after a power cut and reads the telemetry lines.

This file is the entry point: it parses the arguments and wires the parts together
(make_hardware). The parts live in sibling modules, imported from here; among them only
emu_clock (the exit statuses) and emu_control (faults, QueryView, EXIT_ALLOC) import
others, so a part can be read on its own:
- boards/emu_world.py      World (world.json), Rng, Board (power cut and watchdog exits);
- boards/emu_clock.py      VirtualClock (lockstep, speed, cut and watchdog instants),
                           EmuRtc, EmuWatchdog;
- boards/emu_parts.py      battery, plunger (motor), flash file, buttons, sensor link;
- boards/emu_faults.py     emu_fault: each fault's range and where its setting goes;
- boards/emu_transport.py  every fd to the launcher: protocol serial (with link faults),
                           bench console, virtual patient pipe, telemetry;
- boards/emu_control.py    Emulator (hw.emulator): emu_clock, lockstep ADVANCE with the
                           link served between ticks, telemetry snapshot.
boards/qemu_arm.py reuses them with its own World, Board and storage.

Simulated parts (HW-3). The physical ones survive a power cut in DIR/flash.bin, laid out as
in boards/unix.py (storage regions, then plunger position, odometer, battery level):
- plunger and reservoir: boards/fakes.Motor, position and odometer saved on every move;
- line pressure: boards/fakes.Line, pressure rises by 25 kPa per pulse pushed against an
  occlusion (FAULT_OCCLUSION) up to 400 kPa, back to 20 kPa when a pulse flows or the
  firmware relieves it; the firmware alarms at 150 kPa after 2.5 U (ALM-3);
- battery: starts at 100 %; drains 0.002 % per motor pulse plus 0.05 % per hour of
  virtual time (a 200 U reservoir at 50 mU per pulse is 8 % of the battery, three days of
  standby 3.6 %), both times FAULT_BATTERY_DRAIN / 1000; kept in millionths of a percent,
  reported rounded up to whole percent (0 only when empty) (BAT-1);
- sensor link (hw.radio, SNS-1): readings from a trace file (--cgm-trace FILE: CSV lines
  `minute,mg_dl`, minutes of virtual time from launch, ascending; a header line and `#`
  comments are skipped; mg_dl may be -1 warm-up or -2 expired). Every 5 virtual minutes
  (minute 0, 5, 10, ...) the link sends the trace's row at or before that minute if it is
  less than 5 min old (a gap in the trace is a gap in the readings; after the last row the
  sensor is silent). FAULT_SENSOR_LOSS 1 silences it (readings due meanwhile are lost);
  FAULT_GLUCOSE sends one reading (mg/dL, or -1 / -2) at the firmware's next poll. Its
  position in the trace survives power cuts (world.json "sensor_ms");
- virtual patient (--patient-out FD --patient-in FD, instead of a trace; the launcher hosts
  the patient model, host_tools/patient.py): at every emission (every 5 virtual minutes,
  in lockstep and in real time alike) the link writes 8 bytes, struct "<ii" (virtual
  minute of the emission, insulin in mU the plunger pushed into the patient since the
  last exchange) and blocks until the launcher answers 4 bytes, struct "<i" (the
  patient's CGM value in mg/dL, 0 for none). The exchange happens while the sensor link
  is silenced too (the patient lives on; the reading is lost). Insulin into the patient:
  motor pulses while delivery runs; pulses while the pump is suspended are priming (the
  set is off the body) and go nowhere. Insulin not yet reported survives a power cut
  (world.json "patient_mu");
- sensor link on a pty (--sensor-in FD, the master side of the launcher's third pty,
  instead of a trace or patient): CGM Measurement records as a board's sensor UART gets
  them, through firmware/cgm_link.py (boards/sensor_link.py, SNS-4);
- buzzer and LED: boards/fakes.Annunciator (annunciations per priority, LED priority) on
  the virtual clock: telemetry carries the signals it played, the tone pulses of the last
  minute (ALM-8, firmware/signals.py) and the LED's colour and flash rate;
- buttons: FAULT_BUTTON_PRESS presses once; FAULT_BUTTON_STUCK holds buttons down, which
  this board's driver reports as a press at every scan (each tick), like a held key: a
  stuck ACK acknowledges every alarm as soon as it is raised (the firmware has no
  stuck-button detection yet);
- flash: the storage regions in DIR/flash.bin; FAULT_STORAGE_FAIL 1 makes writes to the
  pump's data (settings, state, history, totals) fail with OSError and the storage
  self-test fail (it lasts across power cuts until healed with 0). The link's region (auth
  counter, recent command ids) stays writable: the link persists the counter before any
  command acts, so a failing counter would refuse the emulator's own messages too and
  leave no way to heal the fault;
- watchdog: fires when it was not fed for 8 s of virtual time while the firmware read the
  clock 1000 times (a loop that runs but does not feed; a host that stalls does not fire
  it): the process exits with EXIT_WATCHDOG and the launcher restarts it with reset
  cause RESET_WATCHDOG;
- clock: virtual, starting 2 to 8 s (from the seed) before the 2**30 tick wrap. Real time,
  a speed factor, or lockstep (CLK_* in protocol/spec.py). Lockstep runs ticks of 1 s of
  virtual time back to back, each 1 s +- the jitter (default 20 ms; the total is exact).
- power: FAULT_POWER_CUT ends the process (EXIT_POWER_CUT) at a chosen virtual instant;
  the launcher starts it again from DIR/flash.bin on the same ptys, so the host sees a
  reboot (HELLO boots + 1). FAULT_OUTAGE s makes the next power cut an outage of s
  seconds: the world's time (world.json "world_ms", which the RTC and the sensor's
  transmitter follow) moves on by s while the board is off (no real waiting);
- real-time clock (hw.rtc, THR-13): counts the world's virtual time, also while the
  board is off; unset (-1) until the firmware sets the time; FAULT_RTC_BACKUP 0 removes
  its backup cell, so the next power cut makes it forget the time (1 puts it back);
- motor driver: FAULT_MOTOR MOTOR_FAULT_PIN makes the driver signal a fault and move
  nothing, MOTOR_STALL makes it move nothing without a signal (ALM-7); MOTOR_OK heals
  it (kept across power cuts).
- bench console: firmware/console.py on the second pty (Runner in firmware/main.py), and on
  the protocol pty beside the frames (hw.shared_console, firmware/demux.py, issue 17);
- telemetry: one JSON line a second of real time on the telemetry fd: the pump's status()
  plus the simulated parts (battery in millionths of a percent, plunger, line pressure,
  LED and buzzer, faults, clock), for `pumpctl emulate`'s live table;
- heap check (launch(heap_check=True)): every tick of CLK_ADVANCE (and the simulated
  parts' share of the time step) runs under micropython.heap_lock(), with these drivers
  plugged in; a tick that allocates ends the process (EXIT_ALLOC, traceback on stderr),
  and the launcher leaves it down.

The environment (clock mode, speed, jitter, seed and random state, fault settings except
a pending power cut) is kept in DIR/world.json, so it survives the power
cuts it simulates. host_tools/launch.py writes a fresh one at each launch.

Emulator-only messages (SEC-3; other boards refuse them, their Hardware has no emulator):
emu_clock(op, ms) and emu_fault(fault, value), answered by Emulator.command(). Answers:
OK with detail = the previous value of what changed (speed in per mille, 0 for lockstep;
a fault's previous setting), for CLK_ADVANCE and CLK_UNTIL_EVENT the virtual ms run, for
FAULT_POWER_CUT the ms until the cut. E_BAD_ARG detail 1: unknown op or fault id;
E_OUT_OF_RANGE detail 2: value out of range.

While CLK_ADVANCE runs (72 h of virtual time take a few seconds), the link keeps working:
queued events go out as they happen and queries are answered between ticks; commands that
arrive meanwhile (a host's retry of the ADVANCE itself) wait until it is done. A power cut
during an ADVANCE ends it: after the reboot a retry of it (same cmd_id) is answered as a
duplicate, OK with detail = the virtual ms run up to the pump's last state save (0 if none
since the run started). Once a power cut is due, nothing more is read from the host.
"""

import sys

# the repository root, so `firmware`, `boards` and `protocol` import as packages
sys.path.insert(0, (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/..")

from boards.emu_clock import EmuRtc, EmuWatchdog, RealClock, VirtualClock  # noqa: E402
from boards.emu_control import Emulator  # noqa: E402
from boards.emu_parts import (  # noqa: E402
    EmuBattery,
    EmuButtons,
    EmuMotor,
    EmuRadio,
    EmuStorage,
    read_trace,
)
from boards.emu_transport import ConsolePort, EmuSerial, PatientPipe, TelemetryPort  # noqa: E402
from boards.emu_world import Board, World  # noqa: E402
from boards.fakes import Annunciator, Line  # noqa: E402
from boards.unix import parse_options, read_key  # noqa: E402
from firmware import main  # noqa: E402
from firmware.compat import TICKS_PERIOD  # noqa: E402
from firmware.hal import Hardware  # noqa: E402
from protocol import spec as S  # noqa: E402


def make_hardware(state_dir, pulse_mu=50, reset_cause=S.RESET_POWER_ON, console=None,
                  telemetry_fd=None, cgm_trace=None, patient=None, world=None, board=None,
                  storage=None, key=None, board_id=S.BOARD_UNIX, sensor_in=None,
                  sensor_port=None, read_chunk=1):
    """patient: (fd out, fd in) of the virtual patient's pipes, or None. A board without
    files (boards/qemu_arm.py) passes its own world, board, storage and key, and its
    sensor UART as `sensor_port` (instead of a pty's fd `sensor_in`). read_chunk: bytes
    per read of stdin; above 1 only when stdin is non-blocking (the launcher's pipe), as a
    blocking read waits for all of them."""
    if world is None:
        world = World(state_dir)
    if board is None:
        board = Board(state_dir, world)
    rng = world.rng
    clock = VirtualClock(board, TICKS_PERIOD - 2000 - rng.below(6001), world.get("speed"))
    board.clock = clock
    battery = EmuBattery(world)
    clock.battery = battery
    if storage is None:
        storage = EmuStorage(state_dir + "/flash.bin", world)
    line = Line()
    line.occluded = bool(world.get("occluded"))
    motor = EmuMotor(line, storage, battery)
    motor.set_fault(world.get("motor"))
    board.motor = motor
    buttons = EmuButtons(world)
    radio_class = EmuRadio
    if sensor_in is not None:  # sensor link on a pty (SNS-4): boards/sensor_link.py
        from boards.sensor_link import FdPort
        sensor_port = FdPort(sensor_in)
    if sensor_port is not None:
        from boards.sensor_link import sensor_radio_class
        radio_class = sensor_radio_class(EmuRadio, sensor_port)
    radio = radio_class(world, clock, read_trace(cgm_trace) if cgm_trace else None,
                        PatientPipe(patient[0], patient[1]) if patient is not None else None,
                        pulse_mu)
    board.radio = radio
    motor.radio = radio
    # the buzzer's timeline in virtual ms since boot ("q": past 2**31 ms, 24 days)
    annunciator = Annunciator(lambda: clock.elapsed, "q")
    serial = EmuSerial(board, world, clock, console.inp if console is not None else None,
                       read_chunk)
    emu = Emulator(board, world, clock, serial, battery, line, buttons, storage, radio,
                   annunciator,
                   TelemetryPort(telemetry_fd) if telemetry_fd is not None else None)
    board.emulator = emu
    hw = Hardware(clock, motor, line, battery, annunciator, buttons, storage,
                  EmuWatchdog(clock), serial=serial, radio=radio, pulse_mu=pulse_mu,
                  reset_cause=reset_cause,
                  key=key if key is not None else read_key(state_dir + "/key"),
                  board=board_id, emulator=emu, rtc=EmuRtc(world, clock))
    hw.console = console
    hw.shared_console = True  # text on the protocol pty too (firmware/demux.py, issue 17)
    hw.port_clock = RealClock()
    return hw


def parse_args(argv):
    opts = {"--state": None, "--pulse": "50", "--reset-cause": "0", "--console-in": None,
            "--console-out": None, "--telemetry": None, "--cgm-trace": None,
            "--patient-in": None, "--patient-out": None, "--sensor-in": None,
            "--read-chunk": "1"}
    return parse_options(argv, opts)


def start(argv):
    try:
        opts, pulse = parse_args(argv)
        console = None
        if opts["--console-in"] is not None and opts["--console-out"] is not None:
            console = ConsolePort(int(opts["--console-in"]), int(opts["--console-out"]))
        tel = opts["--telemetry"]
        patient = None
        if opts["--patient-out"] is not None and opts["--patient-in"] is not None:
            patient = (int(opts["--patient-out"]), int(opts["--patient-in"]))
        hw = make_hardware(opts["--state"], pulse, int(opts["--reset-cause"]), console,
                           int(tel) if tel is not None else None, opts["--cgm-trace"],
                           patient, sensor_in=int(opts["--sensor-in"]) if opts["--sensor-in"]
                           else None, read_chunk=int(opts["--read-chunk"]))
    except (ValueError, OSError) as exc:
        sys.stderr.write("boards/emulator.py: {}\n".format(exc))
        sys.exit(2)
    main.run(hw)


if __name__ == "__main__":
    start(sys.argv[1:])
