"""Raspberry Pi Pico (RP2040) board: pins, constants and make_hardware() (HW-1).

Wiring table and calibration: docs/boards.md. Deploy with
`pumpctl flash --board pico --port /dev/ttyACM0`; the main.py it writes calls main().

- Protocol over the USB CDC serial port (sys.stdin.buffer / sys.stdout.buffer, polled);
  Ctrl-C is turned off while the firmware runs, so hold ACK at reset to reach the REPL.
- Stepper driver on STEP/DIR/EN; no encoder: the counted plunger position is kept in a
  file on the internal flash (boards/drivers.py Stepper).
- Line pressure from a force sensor on ADC0; battery from VSYS/3 on ADC3 (the Pico's own
  divider) through a 1S LiPo discharge curve.
- Piezo buzzer on PWM, the on-board LED, an ACK button, LittleFS storage, machine.WDT.
- Optional DS3231 real-time clock with a backup cell on I2C0 (GP8/GP9): the time survives
  power loss; without one the pump asks for the time after each power loss.
"""

import select
import sys
import time

import machine

from boards import drivers
from firmware.hal import BUTTON_ACK
from protocol import spec

BOARD_ID = spec.BOARD_PICO  # reported by HELLO

# Pins (GPIO numbers)
PIN_STEP = 2
PIN_DIR = 3
PIN_EN = 4  # active low
PIN_FAULT = 5  # driver nFAULT, active low
PIN_HOME = 6  # plunger home switch at the rewound end, to GND
# (None if no home switch is fitted: rewinds then trust the counted position)
PIN_BUTTON_ACK = 14  # to GND
PIN_BUZZER = 15  # piezo through an NPN transistor
PIN_LED = "LED"  # on-board LED (GPIO25 on the Pico)
# Optional RGB alarm LED (red, green, blue; docs/boards.md): e.g. (10, 11, 12). None: the one
# LED tells priorities apart by its flash rate alone (ALM-8).
PIN_RGB = None
PIN_FORCE = 26  # ADC0: force sensor amplifier output
PIN_VSYS = 29  # ADC3: VSYS / 3 on the Pico board
# DS3231 real-time clock module with backup cell (optional: the board runs without one)
RTC_I2C_ID = 0
# sensor link (SNS-4): UART0 to the CGM transmitter, a BLE bridge or a USB-serial adapter
# (None: a build without one; the sensor link is then neither imported nor built)
SENSOR_UART_ID = 0
PIN_SENSOR_TX = 0  # GP0 (unused by the pump: the link only listens, kept for a bridge)
PIN_SENSOR_RX = 1  # GP1
PIN_RTC_SDA = 8
PIN_RTC_SCL = 9
RTC_I2C_HZ = 400000

# Mechanics: 200 steps/rev motor at 1/16 microstepping on a 0.5 mm lead screw moves
# 0.156 um per microstep; a 9.5 mm bore reservoir (70.9 mm2) of U-100 insulin holds
# 0.5 uL = 50 mU in 7.05 um of travel: 45 microsteps per pulse.
PULSE_MU = 50
MICROSTEPS_PER_PULSE = 45
STEP_US = 500  # low time between STEP pulses: 45 microsteps take about 25 ms
RELIEVE_STEPS = 2 * MICROSTEPS_PER_PULSE  # back-off after an occlusion
HOME_MARGIN = 200 * MICROSTEPS_PER_PULSE  # extra travel a rewind may take to find home

# Line pressure: kPa = (raw - FORCE_ZERO) * FORCE_NUM // FORCE_DEN (calibrate per unit)
FORCE_ZERO = 2000
FORCE_NUM = 1
FORCE_DEN = 100
OCCLUSION_KPA = 150

# Battery: mV = raw * 3300 * 3 // 65535 (3.3 V reference, VSYS/3 divider)
VSYS_NUM = 9900
VSYS_DEN = 65535
DISCHARGE = (  # 1S LiPo at rest, (mV, %), highest first
    (4200, 100),
    (4100, 90),
    (4000, 80),
    (3900, 65),
    (3800, 50),
    (3750, 40),
    (3700, 30),
    (3650, 20),
    (3600, 10),
    (3500, 5),
    (3300, 0),
)

TIMER_MS = 20  # service timer: buzzer patterns and button polling
DEBOUNCE_MS = 40
WDT_MS = 5000  # the RP2040 allows up to 8388 ms
ROOT = ""  # files live in the flash filesystem's root, next to main.py

_service_timer = None  # kept referenced while the firmware runs


def reset_cause():
    if machine.reset_cause() == machine.WDT_RESET:
        return spec.RESET_WATCHDOG
    return spec.RESET_POWER_ON


def usb_serial():
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    # 0x03 in protocol frames on stdin is an ordinary byte: board_main turns Ctrl-C off
    return drivers.StreamSerial(sys.stdin.buffer, sys.stdout.buffer, poller)


def rtc():
    """The DS3231 on I2C0 (GP8 SDA, GP9 SCL), or None (and a console line) when none answers."""
    Pin = machine.Pin
    i2c = machine.I2C(RTC_I2C_ID, scl=Pin(PIN_RTC_SCL), sda=Pin(PIN_RTC_SDA),
                      freq=RTC_I2C_HZ)
    return drivers.find_rtc(i2c)


def make_hardware(root=ROOT, serial=None):
    """Build the Pico's drivers. `serial` replaces the USB CDC port (tests)."""
    global _service_timer
    Pin = machine.Pin
    storage = drivers.FlashStorage(drivers.join(root, drivers.DATA))  # first boot: slow
    wdt = machine.WDT(timeout=WDT_MS)
    motor = drivers.Stepper(
        Pin(PIN_STEP, Pin.OUT, value=0),
        Pin(PIN_DIR, Pin.OUT, value=0),
        Pin(PIN_EN, Pin.OUT, value=1),
        drivers.join(drivers.join(root, drivers.DATA), "motor.pos"),
        MICROSTEPS_PER_PULSE,
        time.sleep_us,
        step_us=STEP_US,
        relieve_steps=RELIEVE_STEPS,
        fault=Pin(PIN_FAULT, Pin.IN, Pin.PULL_UP),
        home=Pin(PIN_HOME, Pin.IN, Pin.PULL_UP) if PIN_HOME is not None else None,
        feed=wdt.feed,
        home_margin=HOME_MARGIN,
    )
    pressure = drivers.ForceSensor(machine.ADC(Pin(PIN_FORCE)), FORCE_ZERO, FORCE_NUM,
                                   FORCE_DEN)
    battery = drivers.BatteryGauge(machine.ADC(Pin(PIN_VSYS)), DISCHARGE, VSYS_NUM, VSYS_DEN)
    rgb = None if PIN_RGB is None else tuple(Pin(n, Pin.OUT, value=0) for n in PIN_RGB)
    annunciator = drivers.Annunciator(machine.PWM(Pin(PIN_BUZZER), freq=2000, duty_u16=0),
                                      Pin(PIN_LED, Pin.OUT, value=0), TIMER_MS, rgb)
    buttons = drivers.Buttons((Pin(PIN_BUTTON_ACK, Pin.IN, Pin.PULL_UP),), (BUTTON_ACK,),
                              time.ticks_ms, DEBOUNCE_MS, timer=True)

    def service(_timer):
        annunciator.advance()
        buttons.poll()

    _service_timer = machine.Timer(-1, period=TIMER_MS, mode=machine.Timer.PERIODIC,
                                   callback=service)  # -1: the RP2040's virtual timer

    parts = (motor, pressure, battery, annunciator, buttons, storage, wdt)
    # clock: time's ticks_ms() and sleep_ms() wrap at 2**30 like the firmware's
    sensor = None
    if SENSOR_UART_ID is not None:
        sensor = machine.UART(SENSOR_UART_ID, baudrate=drivers.SENSOR_BAUD,
                              tx=Pin(PIN_SENSOR_TX), rx=Pin(PIN_SENSOR_RX),
                              rxbuf=drivers.SENSOR_RXBUF, timeout=0)
    return drivers.assemble(root, time, parts, serial if serial is not None else usb_serial(),
                            PULSE_MU, OCCLUSION_KPA, reset_cause(), BOARD_ID, rtc=rtc(),
                            radio=drivers.sensor_link(sensor, time))


def maintenance():
    """ACK held at reset: stay in the REPL (for mpremote) instead of starting the pump."""
    return drivers.ack_held(machine.Pin(PIN_BUTTON_ACK, machine.Pin.IN, machine.Pin.PULL_UP))


def main(root=ROOT, serial=None):
    """Power-on entry (main.py): maintenance check, provisioning, then the firmware."""

    def build(root):
        return make_hardware(root, serial)

    return drivers.board_main(build, maintenance, machine.reset, root)
