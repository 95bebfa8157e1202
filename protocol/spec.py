"""The single source of truth shared by firmware and host: plain data only.

Imports under MicroPython and CPython. The firmware uses the integer constants and the
tables it needs (settings, alarm priorities, the message table and its schema hash). The
words (error names, history kinds, stop reasons, ...) are in protocol/refusals.py, which
host tools and the bench console import: every name here is one more entry of this
module's globals dict in the pump's RAM, for the life of the pump (heap, issue 12).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


PROTOCOL_VERSION = 1

# Result codes returned by every firmware operation (LNK-4). `detail` carries the limit,
# setting or argument concerned.
OK = 0
E_BAD_ARG = 1  # detail: index of the offending argument
E_OUT_OF_RANGE = 2  # detail: setting id or argument index
E_OVER_LIMIT = 3  # detail: the setting id of the limit (SET_MAX_BOLUS, ...)
E_SUSPENDED = 4
E_BOLUS_RUNNING = 5
E_NO_BOLUS = 6
E_RESERVOIR_EMPTY = 7
E_BATTERY_DEPLETED = 8
E_NOT_SUSPENDED = 9
E_SAFE_STATE = 10  # detail: self-test failure bits
E_NO_TEMP_BASAL = 11
E_INCREMENT = 12  # amount is not a whole number of pulses; detail: pulse size in mU
E_NOT_REWOUND = 13  # fill needs a rewind first
E_NOT_FILLED = 14
E_STORAGE = 15
E_BAD_AUTH = 16
E_UNKNOWN_MESSAGE = 17
E_UNKNOWN_ALARM = 18
E_PROFILE_IN_USE_OVER_LIMIT = 19  # detail: profile index
E_NOT_CONFIGURED = 20  # bolus calculator: detail = the CALC_* schedule kind not programmed
# --- heap branch (issue 12, mpy5): appended
E_NO_MEMORY = 21  # the heap could not hold the code of a rarely used message's handler (its
#                   module is imported at first use): nothing was done; detail: message id
# their names: protocol/refusals.py ERRORS

# Settings: id -> (name, default, min, max, unit). Limits (THR-6) are settings too.
SET_MAX_BOLUS = 0
SET_MAX_BASAL = 1
SET_MAX_BOLUS_1H = 2
SET_MAX_TDD = 3
SET_BOLUS_SPEED = 4
SET_RES_LOW = 5
SET_NO_DELIVERY = 6
SET_SUSPEND_REMINDER = 7
SET_ALARM_REPEAT = 8
SET_SNOOZE = 9
SET_AUTO_OFF = 10
SET_DIA = 11
SET_UTC_OFFSET = 12
# sensor link (SNS-2, SNS-3)
SET_GLUCOSE_LOW = 13  # low glucose alert threshold; also the SBL low limit
SET_GLUCOSE_HIGH = 14
SET_GLUCOSE_RATE = 15  # fast rise / fall alert threshold
SET_GLUCOSE_ALERTS = 16  # bit mask of the optional glucose alerts (GA_*)
SET_SBL = 17  # suspend before low: 0 off, 1 on
# --- sensor branch (issue 13, SNS-4): appended
SET_SENSOR_ID = 18  # the paired CGM transmitter's id (firmware/cgm_link.py); 0: none
SETTINGS_COUNT = 19
SETTINGS_MAX = 32  # room in the firmware's settings layout and in settings_info

SETTINGS = (
    ("max_bolus", 10000, 0, 25000, "mU"),
    ("max_basal", 5000, 0, 35000, "mU/h"),
    ("max_bolus_1h", 15000, 0, 50000, "mU"),
    ("max_tdd", 80000, 0, 250000, "mU"),
    ("bolus_speed", 1500, 500, 3000, "mU/min"),
    ("reservoir_low", 20000, 5000, 50000, "mU"),
    ("no_delivery", 240, 60, 720, "min"),
    ("suspend_reminder", 30, 5, 120, "min"),
    ("alarm_repeat", 5, 1, 30, "min"),
    ("snooze", 30, 5, 120, "min"),
    ("auto_off", 0, 0, 24, "h"),  # 0 = off, else 5..24
    ("dia", 300, 120, 480, "min"),
    ("utc_offset", 0, -720, 840, "min"),
    ("glucose_low", 70, 60, 100, "mg/dL"),
    ("glucose_high", 250, 120, 400, "mg/dL"),
    ("glucose_rate", 3, 1, 10, "mg/dL/min"),
    ("glucose_alerts", 31, 0, 31, "bits"),  # GA_* bits; urgent low is always on
    ("suspend_before_low", 0, 0, 1, "on/off"),
    # --- sensor branch (issue 13, SNS-4): appended
    ("sensor_id", 0, 0, (1 << 29) - 1, "id"),  # 29 bits: a small int on every board
)
# SET_GLUCOSE_ALERTS bits: which optional glucose alerts are on (SNS-2). Urgent low, signal
# loss, sensor expiry and warm-up are always on.
GA_LOW = 1
GA_HIGH = 2
GA_RISE = 4
GA_FALL = 8
GA_URGENT_LOW_SOON = 16
AUTO_OFF_MIN_HOURS = 5

# Therapy constants
PROFILES = 4
SLOTS = 48  # 30-minute basal segments per day
SLOT_MS = 1800000
PROFILE_NAME_LEN = 8
MAX_RATE = 35000  # mU/h, hard ceiling of any basal rate
MIN_BOLUS = 50  # mU
TEMP_STEP_MIN = 15
TEMP_MAX_MIN = 1440
TEMP_MAX_PERCENT = 250
EXT_MIN_MIN = 30
EXT_MAX_MIN = 480
EPOCH_YEAR = 2020  # wall-clock seconds count from 2020-01-01 00:00 UTC (a Wednesday)

# Delivery
BOLUS_NONE = 0
BOLUS_NORMAL = 1
BOLUS_EXTENDED = 2
BOLUS_DUAL = 3

BOLUS_COMPLETED = 0
BOLUS_CANCELLED = 1
BOLUS_INTERRUPTED = 2  # suspend, safety stop or power loss

TEMP_NONE = 0
TEMP_ABSOLUTE = 1
TEMP_PERCENT = 2

TEMP_END_EXPIRED = 0
TEMP_END_CANCELLED = 1
TEMP_END_SUSPENDED = 2
TEMP_END_TIME_LOST = 3  # ended at boot: the time (and so its progress) was lost (THR-13)

# Why delivery is stopped (0 = delivering)
STOP_NONE = 0
STOP_USER = 1
STOP_OCCLUSION = 2
STOP_RESERVOIR = 3
STOP_BATTERY = 4
STOP_AUTO_OFF = 5
STOP_SELFTEST = 6

PRIME_TUBING = 0
PRIME_CANNULA = 1

# Alarms (ALM-1): id -> (name, priority). Priority 3 high, 2 medium, 1 low. const(): the
# compiler puts the numbers into ALARMS, which so is one constant tuple (in flash when
# frozen) instead of 28 tuples built in RAM at import.
PRIO_LOW = const(1)
PRIO_MEDIUM = const(2)
PRIO_HIGH = const(3)

A_OCCLUSION = 0
A_RESERVOIR_EMPTY = 1
A_BATTERY_DEPLETED = 2
A_NO_DELIVERY = 3
A_MOTOR_FAULT = 4
A_SELFTEST = 5
A_AUTO_OFF = 6
A_URGENT_LOW = 7
A_RESERVOIR_LOW = 8
A_RESERVOIR_VERY_LOW = 9
A_BATTERY_LOW = 10
A_BATTERY_VERY_LOW = 11
A_SIGNAL_LOSS = 12
A_GLUCOSE_LOW = 13
A_GLUCOSE_HIGH = 14
A_SUSPEND_REMINDER = 15
A_SET_CHANGE = 16
A_GLUCOSE_RISE = 17
A_GLUCOSE_FALL = 18
A_URGENT_LOW_SOON = 19
A_SENSOR_EXPIRED = 20
A_SENSOR_WARMUP = 21
A_SBL = 22  # basal suspended before a predicted low (SNS-3): active while it lasts
A_TIME_UNSET = 23  # the time was lost at a power loss: set it (THR-13)
A_DOSE_LIMIT = 24  # the rolling 24-h total reached max_tdd: boluses refused (THR-6)
# --- sensor branch (issue 13/15): appended
A_PAIRING_LOST = 25  # records come from other transmitters, none from the paired one for
#                      SIGNAL_LOSS_MIN (firmware/cgm_link.py); value: that transmitter's id
# --- alarm branch (issue 15): appended
A_PRIME_INCOMPLETE = 26  # delivery resumed after a fill without a completed tubing prime
#                          (THR-12): active until a tubing prime completes or a new fill
ALARM_COUNT = 27
ALARM_MAX = 32  # alarm bit masks are 32-bit; alarms_info carries 32 levels

ALARMS = (
    ("occlusion", PRIO_HIGH),
    ("reservoir_empty", PRIO_HIGH),
    ("battery_depleted", PRIO_HIGH),
    ("no_delivery", PRIO_HIGH),
    ("motor_fault", PRIO_HIGH),
    ("selftest_failure", PRIO_HIGH),
    ("auto_off", PRIO_HIGH),
    ("urgent_low", PRIO_HIGH),
    ("reservoir_low", PRIO_MEDIUM),
    ("reservoir_very_low", PRIO_MEDIUM),
    ("battery_low", PRIO_MEDIUM),
    ("battery_very_low", PRIO_MEDIUM),
    ("signal_loss", PRIO_MEDIUM),
    ("glucose_low", PRIO_MEDIUM),
    ("glucose_high", PRIO_MEDIUM),
    ("suspend_reminder", PRIO_LOW),
    ("set_change", PRIO_LOW),
    ("glucose_rise", PRIO_MEDIUM),
    ("glucose_fall", PRIO_MEDIUM),
    ("urgent_low_soon", PRIO_HIGH),
    ("sensor_expired", PRIO_MEDIUM),
    ("sensor_warmup", PRIO_LOW),
    ("suspend_before_low", PRIO_LOW),
    ("time_unset", PRIO_MEDIUM),
    ("dose_limit", PRIO_MEDIUM),
    # --- sensor branch (issue 13/15): appended
    ("pairing_lost", PRIO_MEDIUM),
    # --- alarm branch (issue 15): appended
    ("prime_incomplete", PRIO_MEDIUM),
)

ALARM_RAISED = 0
ALARM_ACKED = 1
ALARM_CLEARED = 2
# ALM-8: raised while a higher-priority alarm sounds (value: that alarm's id); it sounds once
# the higher one is acknowledged or clears.
ALARM_HIDDEN = 3
# The condition ended by itself before anyone acknowledged it: logged right after the clear,
# shown until acknowledged (value: escalation level it had reached).
ALARM_UNACKED = 4

# Self-test failure bits (ALM-5)
ST_FIRMWARE = 1
ST_STORAGE = 2
ST_MOTOR = 4
ST_BUZZER = 8
ST_LINK = 16  # link state (auth counter, command ids) lost: pair the pump again (SEC-4)
ST_CRASH = 32  # an exception or Ctrl-C escaped the firmware loop (SEC-4)

# History record kinds (HIS-1); v1..v3 meanings in the comment; their names:
# protocol/refusals.py HISTORY_KINDS.
H_BOOT = 1  # arg: reset cause; v1: self-test failure bits; v2: boot count
H_BOLUS_START = 2  # arg: kind; v1: bolus id; v2: immediate mU; v3: extended mU
H_BOLUS_END = 3  # arg: ending; v1: bolus id; v2: delivered mU; v3: requested mU
H_TEMP_START = 4  # arg: temp kind; v1: value; v2: duration min
H_TEMP_END = 5  # arg: ending
H_SUSPEND = 6  # arg: stop reason
H_RESUME = 7
H_ALARM = 8  # arg: action; v1: alarm id; v2: value
H_REWIND = 9
H_FILL = 10  # v1: volume mU
H_PRIME = 11  # arg: tubing/cannula; v1: mU
H_BATTERY_CHANGE = 12  # v1: old %; v2: new %
H_TIME_CHANGE = 13  # v1: old local seconds; v2: new local seconds; v3: offset min
H_SETTING = 14  # arg: setting id; v1: old; v2: new
H_PROFILE = 15  # arg: profile index; v1: segments
H_SCHEDULE = 16  # v1: 7 profile indexes, 3 bits each
H_DAY_TOTAL = 17  # v1: day; v2: basal mU; v3: bolus mU
H_SBL = 18  # arg: 1 basal suspended before low, 0 resumed; v1: SBL_* reason;
#             v2: glucose mg/dL; v3: glucose predicted in 30 min
H_CALC_SCHEDULE = 19  # arg: CALC_* kind; v1: segments
H_LINK = 20  # arg: LINK_CORRUPT or LINK_PAIRED; v1: self-test failure bits (SEC-4)
H_CRASH = 21  # arg: CRASH_EXCEPTION or CRASH_INTERRUPT; v1: self-test failure bits (SEC-4)
LINK_CORRUPT = 1  # both copies of the link state invalid: commands refused until paired
LINK_PAIRED = 2  # a new pairing key: commands accepted again
CRASH_EXCEPTION = 1
CRASH_INTERRUPT = 2  # KeyboardInterrupt (Ctrl-C on a console)
H_TIME_LOST = 22  # the time was lost at boot (THR-13): v1: the pump's last known UTC
#                   seconds; v2: the RTC's reading (-1: none or invalid)

RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2

# Unsolicited events queued by the firmware for the host (ALM-6, LNK-2)
EV_ALARM = 1  # a: alarm id; b: action; c: value
EV_BOLUS = 2  # a: bolus id; b: delivered mU; c: requested mU
EV_STATE = 3  # a: stop reason (0 = delivering)
EV_BOLUS_END = 4  # a: bolus id; b: delivered mU; c: ending (BOLUS_COMPLETED, ...)
EV_GLUCOSE = 5  # a: mg/dL (or CGM_WARMUP / CGM_EXPIRED); b: UTC minute; c: trend (NO_TREND)
EV_SBL = 6  # a: 1 basal suspended before low, 0 resumed; b: SBL_* reason; c: glucose mg/dL

# ---------------------------------------------------------------------------- sensor link
# hw.radio.read() (firmware/hal.py): 0 nothing new, > 0 a reading in mg/dL (39 means LOW,
# below 40; 401 means HIGH, above 400), CGM_WARMUP, CGM_EXPIRED.
CGM_WARMUP = -1
CGM_EXPIRED = -2
CGM_LOW = 39
CGM_HIGH = 401
CGM_READINGS = 288  # 24 h of 5-min readings kept (SNS-1)
CGM_PAGE = 24  # readings per cgm_page
URGENT_LOW = 55  # mg/dL, always on (SNS-2)
SIGNAL_LOSS_MIN = 20
URGENT_SOON_MIN = 20  # urgent-low-soon looks this far ahead
SBL_AHEAD_MIN = 30  # suspend before low looks this far ahead (SNS-3)
SBL_MARGIN = 20  # ... for glucose within this much of the low limit
SBL_WAIT_MIN = 30  # no new suspension this long after a manual resume
SBL_MAX_MIN = 120  # longest suspension: then basal resumes and the wait starts
SBL_RESUME_MARGIN = 20  # resume by itself only at glucose >= low + this (hysteresis) ...
SBL_RESUME_AHEAD = 40  # ... and predicted >= low + this in SBL_AHEAD_MIN
NO_TREND = -32768  # trend unknown (fewer than 3 recent readings)
# status_info "cgm" bits
CGMF_WARMUP = 1
CGMF_EXPIRED = 2
CGMF_LOST = 4  # signal loss
CGMF_SBL = 8  # basal suspended before low
CGMF_SBL_WAIT = 16  # waiting after a manual resume
# SBL reasons (H_SBL v1, EV_SBL b)
SBL_PREDICTED = 0  # suspended: predicted low
SBL_RECOVERED = 1  # resumed by itself: glucose recovered
SBL_MANUAL = 2  # resumed by the user (resume command): the wait starts
SBL_MAX = 3  # resumed after SBL_MAX_MIN: the wait starts
SBL_OFF = 4  # resumed: the feature was switched off

# ---------------------------------------------------------------------------- calculator
# Bolus calculator schedules (THR-8): up to CALC_SEGMENTS segments starting at 30-min slots.
CALC_CARB_RATIO = 0  # g/U x 10
CALC_SENSITIVITY = 1  # mg/dL per U
CALC_TARGET = 2  # target range: values = low mg/dL, highs = high mg/dL
CALC_KINDS = ("carb_ratio", "sensitivity", "target")
CALC_SEGMENTS = 8
CALC_RANGES = ((10, 1500), (5, 400), (70, 200))  # per kind, inclusive
CALC_MAX_CARBS = 300  # g
CALC_BG_MIN = 20  # mg/dL (0 = no blood glucose given)
CALC_BG_MAX = 600
# calc_result flags
CALC_ROUNDED = 1  # total rounded down to a whole pulse
CALC_NO_BG = 2  # no blood glucose: no correction
CALC_FLOORED = 4  # food + correction - IOB was below 0: total 0
CALC_OVER_MAX = 8  # total above max bolus: a bolus of it would be refused

# ---------------------------------------------------------------------------- wire protocol
# Frame (LNK-1): COBS(header + payload + [auth] + crc16) + 0x00.
#   header  <BBHB: version, flags, sequence, message id
#   auth    <I8s: counter, first 8 bytes of
#           HMAC-SHA256(key, schema hash <I + header + payload + counter)
#   crc16   <H: CRC-16/CCITT-FALSE over everything before it
# A response carries the sequence number of its request. Events use sequence 0.
# The MAC covers the schema hash, so the pump refuses a command from a host built from
# another message table (LNK-1, LNK-6), and the header flags, whose F_RESPONSE bit gives
# the direction: the pump drops frames with F_RESPONSE, the client wants it on answers, so
# a frame can never be reflected back to its sender. The pump signs its answer to an
# authenticated request (command or query) with the request's counter: the host knows the
# answer is the pump's, and to which request (LNK-6).
HEADER_FMT = "<BBHB"
HEADER_SIZE = 5
AUTH_FMT = "<I8s"
AUTH_SIZE = 12
MAC_SIZE = 8
CRC_SIZE = 2
MAX_PAYLOAD = 240
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + AUTH_SIZE + CRC_SIZE

F_AUTH = 1  # auth trailer present
F_RESPONSE = 2
F_EVENT = 4

# Message table: id -> (name, fields). A field is (name, struct code); codes are one value
# each ("B", "H", "I", "b", "h", "i") or fixed-size bytes ("8s"). Ids 0x01-0x0F are open
# queries, 0x10-0x2F state-changing commands (authenticated, first field cmd_id: LNK-3,
# SEC-2), 0x30-0x3F emulator-only commands (SEC-3), 0x80 and up pump-to-host messages.
CMD_FIRST = 0x10
EMU_FIRST = 0x30
EMU_LAST = 0x3F

MESSAGES = {
    # queries
    0x01: ("hello", ()),
    0x02: ("status", ()),
    0x03: ("get_profile", (("index", "B"),)),
    0x04: ("get_schedule", ()),
    0x05: ("get_settings", ()),
    0x06: ("get_history", (("first", "I"), ("count", "B"))),
    0x07: ("get_totals", (("day", "I"),)),
    0x08: ("get_alarms", ()),
    0x09: ("get_link_stats", ()),
    0x0A: ("get_cgm", (("since", "I"), ("count", "B"))),  # readings from UTC minute `since`
    0x0B: ("calc", (("carbs", "H"), ("bg", "H"))),  # bolus suggestion; delivers nothing
    0x0C: ("get_calc_schedule", (("kind", "B"),)),
    # --- sensor branch (issue 13, SNS-4): appended
    0x0D: ("get_sensor_stats", ()),
    # commands
    0x10: ("bolus", (("cmd_id", "I"), ("kind", "B"), ("now", "I"), ("ext", "I"),
                     ("ext_minutes", "H"))),
    0x11: ("cancel_bolus", (("cmd_id", "I"),)),
    0x12: ("temp_basal", (("cmd_id", "I"), ("kind", "B"), ("value", "I"), ("minutes", "H"))),
    0x13: ("cancel_temp_basal", (("cmd_id", "I"),)),
    0x14: ("suspend", (("cmd_id", "I"),)),
    0x15: ("resume", (("cmd_id", "I"),)),
    0x16: ("set_profile", (("cmd_id", "I"), ("index", "B"), ("name", "8s"), ("count", "B"),
                           ("starts", "48s"), ("rates", "96s"))),
    0x17: ("set_schedule", (("cmd_id", "I"), ("days", "7s"))),
    0x18: ("set_setting", (("cmd_id", "I"), ("setting", "B"), ("value", "i"))),
    0x19: ("set_time", (("cmd_id", "I"), ("utc", "I"), ("offset", "h"))),
    0x1A: ("ack_alarm", (("cmd_id", "I"), ("alarm", "B"))),
    0x1B: ("rewind", (("cmd_id", "I"),)),
    0x1C: ("fill", (("cmd_id", "I"), ("volume", "I"))),
    0x1D: ("prime", (("cmd_id", "I"), ("kind", "B"), ("amount", "I"))),
    0x1E: ("set_calc_schedule", (("cmd_id", "I"), ("kind", "B"), ("count", "B"),
                                 ("starts", "8s"), ("values", "16s"), ("highs", "16s"))),
    # Fence (LNK-6): moves the pump's counter floor above every try of command `cmd_id`
    # (the fence's own counter is higher), so no late copy of it can act afterwards, and
    # answers fence_info: whether that command was carried out and its result. It acts on
    # nothing else and is not itself remembered as a command.
    0x1F: ("fence", (("cmd_id", "I"),)),
    # emulator only
    0x30: ("emu_clock", (("cmd_id", "I"), ("op", "B"), ("ms", "I"))),
    0x31: ("emu_fault", (("cmd_id", "I"), ("fault", "B"), ("value", "i"))),
    # pump to host
    0x80: ("result", (("cmd_id", "I"), ("code", "B"), ("detail", "i"))),
    0x81: ("hello_info", (("version", "B"), ("schema", "I"), ("board", "B"),
                          ("pulse_mu", "H"), ("firmware", "H"), ("boots", "I"),
                          ("counter", "I"))),  # last authenticated counter accepted
    0x82: ("status_info", (("stop", "B"), ("basal_rate", "I"), ("profile_rate", "I"),
                           ("temp_kind", "B"), ("temp_value", "I"), ("temp_left_min", "H"),
                           ("bolus_id", "I"), ("bolus_kind", "B"), ("bolus_delivered", "I"),
                           ("bolus_requested", "I"), ("reservoir", "I"),
                           ("minutes_left", "i"), ("battery", "B"), ("iob", "I"),
                           ("basal_today", "I"), ("bolus_today", "I"), ("alarms", "I"),
                           ("utc", "I"), ("offset", "h"), ("time_set", "B"),
                           ("last_cmd_id", "I"), ("last_code", "B"), ("last_detail", "i"),
                           ("history_next", "I"), ("selftest", "B"),
                           ("glucose", "h"), ("glucose_age", "H"), ("trend", "h"),
                           ("cgm", "B"))),
    0x83: ("profile_info", (("index", "B"), ("name", "8s"), ("count", "B"),
                            ("starts", "48s"), ("rates", "96s"))),
    0x84: ("schedule_info", (("days", "7s"),)),
    0x85: ("settings_info", (("values", "128s"),)),  # SETTINGS_MAX x i32
    0x86: ("history_page", (("first", "I"), ("count", "B"), ("records", "192s"))),
    0x87: ("totals_info", (("day", "I"), ("valid", "B"), ("basal", "I"), ("bolus", "I"),
                           ("prime", "I"))),
    0x88: ("alarms_info", (("active", "I"), ("acked", "I"), ("levels", "32s"))),
    0x89: ("link_stats", (("frames_in", "I"), ("bad_crc", "I"), ("bad_frame", "I"),
                          ("unknown", "I"), ("bad_auth", "I"), ("replayed", "I"),
                          ("duplicates", "I"), ("frames_out", "I"), ("events_dropped", "I"))),
    # CGM_PAGE readings (u32 UTC minute, u16 mg/dL each), oldest first; more: 1 if the pump
    # holds later readings than this page
    0x8A: ("cgm_page", (("count", "B"), ("more", "B"), ("minutes", "96s"),
                        ("values", "48s"))),
    0x8B: ("calc_result", (("food", "i"), ("correction", "i"), ("iob", "i"),
                           ("unrounded", "i"), ("total", "i"), ("flags", "B"),
                           ("carb_ratio", "H"), ("sensitivity", "H"), ("target_low", "H"),
                           ("target_high", "H"))),
    0x8C: ("calc_schedule_info", (("kind", "B"), ("count", "B"), ("starts", "8s"),
                                  ("values", "16s"), ("highs", "16s"))),
    0x8D: ("fence_info", (("cmd_id", "I"), ("seen", "B"), ("code", "B"), ("detail", "i"))),
    # --- sensor branch (issue 13, SNS-4): appended. The sensor link's counters
    # (firmware/cgm_link.py STATS order), the paired id and the last other transmitter heard;
    # all 0 on a board whose sensor link is not a CgmLink (the emulator's trace, none)
    0x8E: ("sensor_stats", (("sensor_id", "I"), ("foreign_id", "I"), ("frames", "I"),
                            ("accepted", "I"), ("bad_frame", "I"), ("bad_crc", "I"),
                            ("malformed", "I"), ("foreign", "I"), ("duplicate", "I"),
                            ("out_of_order", "I"), ("impossible", "I"),
                            ("sensor_fault", "I"))),
    0xC0: ("event", (("kind", "B"), ("a", "i"), ("b", "i"), ("c", "i"))),
}

HISTORY_PAGE = 8  # records per history_page (24 bytes each, CRC included, as stored)

# E_BAD_AUTH details (SEC-2)
AUTH_MISSING = 1  # a command without the auth trailer
AUTH_BAD_MAC = 2  # the MAC does not match (or the board has no key)
AUTH_REPLAYED = 3  # counter not above the last accepted one
AUTH_UNPAIRED = 4  # the pump lost its link state (SEC-4): pair it again with a new key

# Board ids reported by HELLO
BOARD_TEST = 0  # simulated parts in tests (boards/fakes.py)
BOARD_UNIX = 1  # the emulator on the MicroPython unix port (boards/emulator.py, unix.py)
BOARD_PICO = 2  # Raspberry Pi Pico (boards/pico.py)
BOARD_ESP32 = 3  # ESP32 DevKitC (boards/esp32.py)
BOARD_QEMU_ARM = 4  # MicroPython's QEMU port on ARMv6-M, firmware frozen (boards/qemu_arm.py)


def schema_hash(messages=None):
    """32-bit FNV-1a over the protocol version and the message table, in id order.

    Both ends compute it from this table; a HELLO exchange refuses a mismatch and every MAC
    covers it (LNK-1). `messages`: another table (tests of a host built from another one).
    """
    if messages is None:
        messages = MESSAGES
    h = 0x811C9DC5
    text = str(PROTOCOL_VERSION)
    for mid in sorted(messages):
        name, fields = messages[mid]
        text += ";%d:%s" % (mid, name)
        for fname, code in fields:
            text += ",%s:%s" % (fname, code)
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return h

# Emulator-only messages (SEC-3): emu_clock ops and emu_fault ids. Boards without an
# emulator refuse both with E_UNKNOWN_MESSAGE.
CLK_REALTIME = 0  # virtual clock follows real time (ms ignored)
CLK_SPEED = 1  # virtual clock runs `ms` / 1000 times real time (1000 = real time)
CLK_LOCKSTEP = 2  # virtual clock stops; only CLK_ADVANCE moves it
CLK_ADVANCE = 3  # lockstep: run `ms` of therapy now; the result comes when done
CLK_UNTIL_EVENT = 4  # lockstep: run up to `ms` until the firmware queues an event;
#                      detail = ms actually run

FAULT_OCCLUSION = 1  # value 1 blocks the line, 0 clears it
FAULT_BATTERY_LEVEL = 2  # value: battery level in % (a sag, depletion or a new battery)
FAULT_BATTERY_DRAIN = 3  # value: drain multiplier in per mille (1000 = the model's normal)
FAULT_SENSOR_LOSS = 4  # value 1 silences the sensor link, 0 restores it
FAULT_BUTTON_STUCK = 5  # value: button mask held down (0 releases)
FAULT_BUTTON_PRESS = 6  # value: button mask pressed once
FAULT_STORAGE_FAIL = 7  # value 1 makes flash writes fail, 0 heals them
FAULT_DROP_RX = 8  # value: per-mille of frames to the pump dropped
FAULT_DROP_TX = 9  # value: per-mille of frames from the pump dropped
FAULT_CORRUPT_RX = 10  # value: per-mille of frames to the pump with a flipped byte
FAULT_CORRUPT_TX = 11  # value: per-mille of frames from the pump with a flipped byte
FAULT_POWER_CUT = 12  # value: virtual ms until the power dies (0 = now, -1 = random
#                       within the next 60 s); the emulator restarts from its flash file
FAULT_SEED = 13  # value: seed of the emulator's random faults
FAULT_GLUCOSE = 14  # value: the sensor link's next reading, mg/dL (39..401), or CGM_WARMUP /
#                     CGM_EXPIRED; delivered at the next poll (not while sensor_loss is on)
FAULT_OUTAGE = 15  # value: seconds the supply stays off at the next power cut (one shot)
FAULT_RTC_BACKUP = 16  # value 0 removes the real-time clock's backup cell, 1 puts it back
FAULT_MOTOR = 17  # value: MOTOR_OK, MOTOR_FAULT_PIN (driver signals a fault) or MOTOR_STALL
#                   (the plunger does not move, no fault signal)
MOTOR_OK = 0
MOTOR_FAULT_PIN = 1
MOTOR_STALL = 2
