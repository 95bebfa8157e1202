"""The pump's persistent state: one int array saved in two copies (HIS-2), index names.

firmware/pump.py owns the array; firmware/cgm.py keeps its safety state in it too (HIS-3),
and the link and the console read it.
"""

from firmware.compat import const

_S_GEN = const(0)  # the generation (store.Slots): no global, nothing else reads it
S_POS = const(1)  # motor position when saved, before the planned movement
S_PLAN_BASAL = const(2)  # pulses about to move when saved, in this order: basal,
S_PLAN_BOLUS = const(3)  # bolus (immediate part first),
S_PLAN_PRIME = const(4)  # prime
S_DAY = const(5)  # local day of the running daily totals
S_BASAL_TODAY = const(6)
S_BOLUS_TODAY = const(7)
S_PRIME_TODAY = const(8)
S_BOLUS_ID = const(9)  # 0 = no bolus
S_BOLUS_KIND = const(10)
S_NOW_REQ = const(11)  # pulses
S_EXT_REQ = const(12)
S_NOW_DONE = const(13)
S_EXT_DONE = const(14)
S_EXT_DURATION = const(15)  # ms
S_EXT_ELAPSED = const(16)
S_TEMP_KIND = const(17)
S_TEMP_VALUE = const(18)
S_TEMP_LEFT = const(19)  # ms
S_STOP = const(20)
S_LOCAL_DAY = const(21)
S_LOCAL_MS = const(22)
S_FILL = const(23)  # reservoir volume in pulses at fill; remaining = fill - position
S_REWOUND = const(24)
S_SET_AGE = const(25)  # s since the cannula was filled
S_NEXT_BOLUS_ID = const(26)
S_BOOTS = const(27)
S_BATTERY = const(28)
S_BASAL_ACC = const(29)
S_BOLUS_ACC = const(30)
S_EXT_ACC = const(31)
S_TIME_SET = const(32)
# The last state-changing command from the link (LNK-3): saved by the command's own state
# save, so its id is persisted atomically with its effect. cmd id as signed 32-bit.
S_LAST_CMD = const(33)
S_LAST_CODE = const(34)
S_LAST_DETAIL = const(35)
STATE_LEN_1 = const(36)  # the layout before the time model (issue 9): older images load
# Safety state on the monotonic clock (THR-13, HIS-3; docs/time-model.md):
S_MONO_S = const(36)  # boot-independent seconds: delivery windows, IOB, every timer
S_TIME_LOST = const(37)  # 1: the time was lost at a power loss and is not set again
S_LAST_DELIVERY_S = const(38)  # mono second of the last pulse (no-delivery alarm, THR-5)
S_INTERACTION_S = const(39)  # mono second of the last command or button (auto-off, ALM-4)
S_REMINDER_S = const(40)  # mono second the suspend reminder period started (THR-5)
S_BLOCKED_MU = const(41)  # insulin pushed against a blocked line (occlusion, ALM-3)
S_BUCKET = const(42)  # the dose bucket being filled: number, bolus mU, total mU
S_BUCKET_BOLUS = const(43)  # (firmware/doses.py)
S_BUCKET_TOTAL = const(44)
S_SBL = const(45)  # 1: basal suspended before low (SNS-3)
S_SBL_S = const(46)  # mono second it started
S_SBL_WAIT_S = const(47)  # no new suspension before this mono second (-1: no wait)
S_MOTOR_TEST_S = const(48)  # mono second of the last periodic motor self-test
S_RTC_STALE = const(49)  # 1: setting the RTC failed: it holds an older time, not trusted
STATE_LEN_2 = const(50)  # the layout before the prime flag (issue 15): older images load
# --- alarm branch (issue 15): appended
S_PRIME = const(50)  # PRIME_*: the tubing prime after the last fill (A_PRIME_INCOMPLETE)
STATE_LEN_3 = const(51)  # the layout before the sensor's time-offset order (issue 13)
# --- sensor link branch (issue 13): appended. The time-offset order of the paired
# transmitter's session (firmware/cgm_link.py), so a reboot does not forget it and a
# replayed older record is still dropped. An older image loads with 0 0: no order yet.
S_CGM_TX = const(51)  # transmitter id the order belongs to (0: none)
S_CGM_OFFSET = const(52)  # last accepted time offset + 1 (0: none in this session)
STATE_LEN = const(53)
# S_PRIME values. An image of an older layout loads with PRIME_DONE: nothing is known about
# its last fill, and no alarm is raised by surprise.
PRIME_DONE = const(0)  # primed since the last fill (or no fill recorded)
PRIME_DUE = const(1)  # filled, the tubing prime has not completed yet
PRIME_SKIPPED = const(2)  # and delivery was resumed: A_PRIME_INCOMPLETE is active

# The settings: one int array, two copies (firmware/pump.py owns it). Layout:
V_SETTINGS = const(1)  # SETTINGS_COUNT values from here
V_SCHEDULE = const(1 + 13)  # 7 profile indexes, Monday first
V_RATES = const(V_SCHEDULE + 7)  # PROFILES * SLOTS rates, mU/h
V_NAMES = const(V_RATES + 4 * 48)  # PROFILES * 4 ints, 2 name bytes each
V_SEGMENTS = const(V_NAMES + 16)  # PROFILES segment counts (0 = profile unused)
SETTINGS_LEN_1 = const(V_SEGMENTS + 4)  # the layout before the sensor link (issue 5)
# Appended by issue 5 (older images still load: Slots legacy lengths, defaults after them):
V_SETTINGS_HI = const(SETTINGS_LEN_1)  # settings 13 .. SETTINGS_MAX - 1
SETTINGS_LO = const(13)  # settings below this id live at V_SETTINGS
V_CALC = const(V_SETTINGS_HI + 32 - 13)  # bolus calculator schedules, CALC_STRIDE each:
CALC_STRIDE = const(1 + 3 * 8)  # count, CALC_SEGMENTS starts, values, highs
SETTINGS_LEN = const(V_CALC + 3 * CALC_STRIDE)
