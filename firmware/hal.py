"""Hardware abstraction: the duck-typed driver interfaces the firmware calls.

A board module builds these drivers and hands them over in a `Hardware`; the firmware never
creates drivers and never imports `machine`. Fakes live in boards/fakes.py.

clock        ticks_ms() -> int in [0, 2**30); wraps like a Pico's ticks_ms().
motor        step(n): push the plunger n pulses; position() -> pulses from home (the
             plunger position survives power loss: encoder or counted steps);
             rewind(): back to home (position 0); relieve(): back off line pressure
             without changing position; self_test() -> bool; fault() -> bool: the
             driver signals a fault now (fault pin, stall detection). The firmware checks
             fault() and the position around every move and counts only what moved
             (ALM-7).
rtc          (optional) real-time clock with a backup supply (THR-13): now() -> UTC
             seconds since 2020-01-01, or -1 when it does not know the time (never set,
             or its oscillator stopped: backup cell flat or removed); set(utc_s). Read at
             boot (what time is it after a power loss?) and written when the time is set.
pressure     read() -> line pressure in kPa (int).
battery      percent() -> 0..100.
annunciator  sound(priority, level): start the priority's auditory signal (ALM-8,
             firmware/signals.py): its burst of tone pulses, repeated every
             BURST_INTERVAL_MS until silence() or the next sound(); level 0..2 is the
             escalation (louder). silence(): stop the signal now (the alarm manager calls
             it when the sounding alarm is acknowledged or clears and none is left);
             allocation-free, like sound(). led(priority): the visual signal of the
             highest active alarm (0 = off): flashing at the priority's rate, steady
             for low (signals.FLASH). The driver times pulses and flashes itself (a
             service timer on boards); the firmware only says what to show.
             self_test() -> bool.
buttons      pressed() -> bitmask of presses since the last call (BUTTON_ACK, ...).
storage      size(region) -> bytes; read(region, offset, buf) fills buf;
             write(region, offset, buf); self_test() -> bool. buf is a bytearray.
watchdog     feed().
serial       protocol bytes (firmware/link.py): readinto(buf) -> bytes copied (0 or None
             when nothing is waiting; never blocks); write(buf, n) sends buf[0:n];
             optional wait(ms) -> bool: block up to ms for input (lets the main loop
             answer at once instead of at the next tick).
console      (optional) a second serial port, same shape as `serial`, for the bench console
             (firmware/console.py): plain text for a person at a terminal.
shared_console  True: the bench console is on `serial` too, typed text beside the frames
             (firmware/demux.py); the boards and the emulator set it.
radio        (optional) sensor-link driver for CGM readings (SNS-1, firmware/cgm.py),
             polled once a second by the pump's housekeeping: read() -> int, never
             blocks, allocation-free: 0 nothing new; > 0 a new reading in mg/dL (39
             means LOW, below 40; 401 means HIGH, above 400; values beyond are taken as
             those); -1 sensor warming up (CGM_WARMUP); -2 sensor expired (CGM_EXPIRED).
             A sensor status may be repeated at every poll while it lasts. Readings
             normally come every 5 min; the driver does the pairing and radio protocol.
emulator     (emulator board only) command(msg_id, values) -> (code, detail) for the
             emulator-only messages 0x30-0x3F; absent (None) on real boards (SEC-3).
"""

# Storage regions
R_SETTINGS_A = 0
R_SETTINGS_B = 1
R_STATE_A = 2
R_STATE_B = 3
R_HISTORY = 4
R_TOTALS = 5
R_LINK_A = 6  # link state (auth counter, recent command ids): two copies
R_LINK_B = 7
R_DOSES_A = 8  # insulin delivered per 5 min on the monotonic clock (IOB, dose windows)
R_DOSES_B = 9
R_CGM = 10  # the last 24 h of CGM readings (SNS-1, HIS-3)
REGIONS = 11
# Bytes per region, for boards with no constraint of their own (fakes, unix, pico, esp32):
# settings A/B, state A/B, history (6144 records), daily totals (96 days), link A/B, dose
# rings A/B, CGM readings (320 history-format records: 24 h of readings and spare).
REGION_SIZES = (2048, 2048, 512, 512, 24 * 6144, 18 * 96, 256, 256, 2048, 2048, 24 * 320)

BUTTON_ACK = 1


def shared_console(pump, hw, decoder):
    """The protocol port's Demux (firmware/demux.py) on a board whose bench console shares
    that port (hw.shared_console), or None. The link calls it once, at boot; demux.py is
    imported only on such a board (heap, issue 12: 1.2 kB of RAM frozen, 5.8 kB from .mpy,
    on boards with a console port of their own or none)."""
    if not getattr(hw, "shared_console", False) or hw.serial is None:
        return None
    from firmware.demux import shared_console as build

    return build(pump, hw, decoder)


class Hardware:
    """What a board hands to the firmware: drivers plus board constants."""

    def __init__(self, clock, motor, pressure, battery, annunciator, buttons, storage,
                 watchdog, serial=None, radio=None, pulse_mu=50, occlusion_kpa=150,
                 firmware_ok=None, reset_cause=0, key=None, board=0, emulator=None,
                 console=None, rtc=None, shared_console=False):
        self.clock = clock
        self.motor = motor
        self.pressure = pressure
        self.battery = battery
        self.annunciator = annunciator
        self.buttons = buttons
        self.storage = storage
        self.watchdog = watchdog
        self.serial = serial
        self.radio = radio
        self.pulse_mu = pulse_mu  # insulin per motor pulse, mU (10, 25 or 50)
        self.occlusion_kpa = occlusion_kpa  # line pressure that means "did not flow"
        self.firmware_ok = firmware_ok  # callable -> bool: firmware hash matches
        self.reset_cause = reset_cause
        self.key = key  # 32-byte pairing key (SEC-1): never sent, never logged
        self.board = board  # board id reported by HELLO (protocol.spec BOARD_*)
        self.emulator = emulator  # emulator hook for ids 0x30-0x3F (SEC-3); None on boards
        self.console = console  # bench console port, or None
        self.rtc = rtc  # real-time clock with backup, or None (THR-13)
        # the bench console also on `serial`, text beside frames (firmware/demux.py)
        self.shared_console = shared_console
        # the clock of byte timing on `serial` when `clock` is virtual (emulator), or None
        self.port_clock = None
