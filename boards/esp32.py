"""ESP32 DevKitC board: pins, constants and make_hardware() (HW-1).

Wiring table and calibration: docs/boards.md. Deploy with
`pumpctl flash --board esp32 --port /dev/ttyUSB0` (the DevKitC's USB-UART, which carries
the REPL); the main.py it writes calls main().

- Protocol over UART2 (GPIO17 TX, GPIO16 RX) to a USB-serial adapter or a host UART; the
  REPL stays on UART0. Hold ACK at reset to keep the firmware (and its watchdog) stopped.
- Stepper driver (TMC2209 in step/dir mode, 1/32 microstepping) on STEP/DIR/EN; no encoder:
  the counted plunger position is kept in a file on the internal flash.
- Line pressure from a force sensor on GPIO36; battery through a 100k/100k divider on
  GPIO39 (both ADC1, 11 dB attenuation, calibrated read_uv()).
- Piezo buzzer on PWM, an alarm LED, an ACK button, LittleFS storage, machine.WDT.
- Optional DS3231 real-time clock with a backup cell on I2C0 (GPIO21/GPIO22): the time
  survives power loss; without one the pump asks for the time after each power loss.
"""

import select
import time

import machine

from boards import drivers
from firmware.hal import BUTTON_ACK
from protocol import spec

BOARD_ID = spec.BOARD_ESP32  # reported by HELLO

# Pins (GPIO numbers)
PIN_STEP = 25
PIN_DIR = 26
PIN_EN = 27  # active low
PIN_FAULT = 34  # TMC2209 DIAG through an inverter (active low); input-only pin, ext pull-up
PIN_HOME = 32  # plunger home switch at the rewound end, to GND
# (None if no home switch is fitted: rewinds then trust the counted position)
PIN_BUTTON_ACK = 4  # to GND
PIN_BUZZER = 18  # piezo through an NPN transistor
PIN_LED = 19  # alarm LED through 330 ohm (the DevKitC has no user LED)
# Optional RGB alarm LED (red, green, blue; docs/boards.md): e.g. (13, 23, 33). None: the one
# LED tells priorities apart by its flash rate alone (ALM-8).
PIN_RGB = None
PIN_FORCE = 36  # ADC1_CH0 (VP)
PIN_BATTERY = 39  # ADC1_CH3 (VN), battery / 2
UART_ID = 2
PIN_UART_TX = 17
PIN_UART_RX = 16
BAUDRATE = 115200
# DS3231 real-time clock module with backup cell (optional: the board runs without one)
RTC_I2C_ID = 0
# sensor link (SNS-4): UART1 remapped to free pins, to the CGM transmitter, a BLE bridge or
# a USB-serial adapter (GPIO35 is input-only: fine for RX); None: a build without one
SENSOR_UART_ID = 1
PIN_SENSOR_TX = 14
PIN_SENSOR_RX = 35
PIN_RTC_SDA = 21
PIN_RTC_SCL = 22
RTC_I2C_HZ = 400000

# Mechanics: 200 steps/rev at 1/32 microstepping on a 0.5 mm lead screw, 9.5 mm bore:
# 25 mU (0.25 uL) is 3.53 um of travel, 45 microsteps per pulse.
PULSE_MU = 25
MICROSTEPS_PER_PULSE = 45
STEP_US = 250
RELIEVE_STEPS = 4 * MICROSTEPS_PER_PULSE
HOME_MARGIN = 400 * MICROSTEPS_PER_PULSE

FORCE_ZERO = 1500
FORCE_NUM = 1
FORCE_DEN = 100
OCCLUSION_KPA = 150

# Battery: mV = read_uv() * 2 // 1000 (divider 2:1)
BATTERY_NUM = 2
BATTERY_DEN = 1000
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

TIMER_ID = 0  # hardware timer group 0
TIMER_MS = 20
DEBOUNCE_MS = 40
WDT_MS = 5000
ROOT = ""

_service_timer = None


def reset_cause():
    cause = machine.reset_cause()
    if cause == machine.WDT_RESET:
        return spec.RESET_WATCHDOG
    if cause == machine.SOFT_RESET:
        return spec.RESET_SOFT
    return spec.RESET_POWER_ON


def uart_serial():
    uart = machine.UART(UART_ID, baudrate=BAUDRATE, tx=PIN_UART_TX, rx=PIN_UART_RX,
                        rxbuf=1024, timeout=0)
    poller = select.poll()
    poller.register(uart, select.POLLIN)
    return drivers.UartSerial(uart, poller)


def rtc():
    """The DS3231 on I2C0 (GPIO21 SDA, GPIO22 SCL), or None (and a console line) when
    none answers."""
    Pin = machine.Pin
    i2c = machine.I2C(RTC_I2C_ID, scl=Pin(PIN_RTC_SCL), sda=Pin(PIN_RTC_SDA),
                      freq=RTC_I2C_HZ)
    return drivers.find_rtc(i2c)


def make_hardware(root=ROOT, serial=None):
    """Build the ESP32's drivers. `serial` replaces UART2 (tests)."""
    global _service_timer
    Pin = machine.Pin
    ADC = machine.ADC
    storage = drivers.FlashStorage(drivers.join(root, drivers.DATA))
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
        fault=Pin(PIN_FAULT, Pin.IN),
        home=Pin(PIN_HOME, Pin.IN, Pin.PULL_UP) if PIN_HOME is not None else None,
        feed=wdt.feed,
        home_margin=HOME_MARGIN,
    )
    pressure = drivers.ForceSensor(ADC(Pin(PIN_FORCE), atten=ADC.ATTN_11DB), FORCE_ZERO,
                                   FORCE_NUM, FORCE_DEN)
    battery = drivers.BatteryGauge(ADC(Pin(PIN_BATTERY), atten=ADC.ATTN_11DB), DISCHARGE,
                                   BATTERY_NUM, BATTERY_DEN, microvolts=True)
    rgb = None if PIN_RGB is None else tuple(Pin(n, Pin.OUT, value=0) for n in PIN_RGB)
    annunciator = drivers.Annunciator(machine.PWM(Pin(PIN_BUZZER), freq=2000, duty_u16=0),
                                      Pin(PIN_LED, Pin.OUT, value=0), TIMER_MS, rgb)
    buttons = drivers.Buttons((Pin(PIN_BUTTON_ACK, Pin.IN, Pin.PULL_UP),), (BUTTON_ACK,),
                              time.ticks_ms, DEBOUNCE_MS, timer=True)

    def service(_timer):
        annunciator.advance()
        buttons.poll()

    _service_timer = machine.Timer(TIMER_ID)
    _service_timer.init(period=TIMER_MS, mode=machine.Timer.PERIODIC, callback=service)

    parts = (motor, pressure, battery, annunciator, buttons, storage, wdt)
    # clock: time's ticks_ms() and sleep_ms() wrap at 2**30 like the firmware's
    sensor = None
    if SENSOR_UART_ID is not None:
        sensor = machine.UART(SENSOR_UART_ID, baudrate=drivers.SENSOR_BAUD, tx=PIN_SENSOR_TX,
                              rx=PIN_SENSOR_RX, rxbuf=drivers.SENSOR_RXBUF, timeout=0)
    return drivers.assemble(root, time, parts, serial if serial is not None else uart_serial(),
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
