"""A refused command in words (LNK-4, THR-6): one table for pumpctl and the bench console;
and the one description of history records in words for both (describe(), at the end);
and the names of the protocol's ids (ERRORS, HISTORY_KINDS, STOP_REASONS, ...: spec.py
holds only what the pump needs at boot).

The pump answers a refused command with a result code (spec E_*) and a detail whose meaning
depends on the command: the index of the argument at fault (E_BAD_ARG, E_OUT_OF_RANGE; for
set_setting the setting id), the setting id of the limit (E_OVER_LIMIT), the pulse size
(E_INCREMENT), what the reservoir holds (E_RESERVOIR_EMPTY), ... `explain()` names the
argument or the limit with its value in units (U, U/h, min, g, mg/dL); `text()` puts the
error's name in front. The request is the wire message name (spec.MESSAGES): "bolus",
"temp_basal", "fill", ...

Runs on MicroPython (firmware/console.py imports it) and CPython (host_tools/client.py):
plain data, %-formatting, no f-strings. Not part of schema_hash(): wording may change
without breaking the link.
"""

from protocol.spec import (
    ALARM_COUNT,
    ALARMS,
    AUTH_BAD_MAC,
    AUTH_MISSING,
    AUTH_REPLAYED,
    AUTH_UNPAIRED,
    AUTO_OFF_MIN_HOURS,
    CALC_BG_MAX,
    CALC_BG_MIN,
    CALC_CARB_RATIO,
    CALC_KINDS,
    CALC_MAX_CARBS,
    CALC_RANGES,
    CALC_SEGMENTS,
    CALC_TARGET,
    E_BAD_ARG,
    E_BAD_AUTH,
    E_BATTERY_DEPLETED,
    E_BOLUS_RUNNING,
    E_INCREMENT,
    E_NO_BOLUS,
    E_NO_MEMORY,
    E_NO_TEMP_BASAL,
    E_NOT_CONFIGURED,
    E_NOT_FILLED,
    E_NOT_REWOUND,
    E_NOT_SUSPENDED,
    E_OUT_OF_RANGE,
    E_OVER_LIMIT,
    E_PROFILE_IN_USE_OVER_LIMIT,
    E_RESERVOIR_EMPTY,
    E_SAFE_STATE,
    E_STORAGE,
    E_SUSPENDED,
    E_UNKNOWN_ALARM,
    E_UNKNOWN_MESSAGE,
    EXT_MAX_MIN,
    EXT_MIN_MIN,
    H_ALARM,
    H_BATTERY_CHANGE,
    H_BOLUS_END,
    H_BOLUS_START,
    H_BOOT,
    H_CALC_SCHEDULE,
    H_CRASH,
    H_DAY_TOTAL,
    H_FILL,
    H_LINK,
    H_PRIME,
    H_PROFILE,
    H_RESUME,
    H_REWIND,
    H_SBL,
    H_SCHEDULE,
    H_SETTING,
    H_SUSPEND,
    H_TEMP_END,
    H_TEMP_START,
    H_TIME_CHANGE,
    H_TIME_LOST,
    MAX_RATE,
    MIN_BOLUS,
    OK,
    PRIME_CANNULA,
    PROFILE_NAME_LEN,
    PROFILES,
    SET_AUTO_OFF,
    SET_MAX_BASAL,
    SET_MAX_BOLUS,
    SET_MAX_BOLUS_1H,
    SET_MAX_TDD,
    SETTINGS,
    SETTINGS_COUNT,
    SLOTS,
    ST_BUZZER,
    ST_CRASH,
    ST_FIRMWARE,
    ST_LINK,
    ST_MOTOR,
    ST_STORAGE,
    TEMP_ABSOLUTE,
    TEMP_MAX_MIN,
    TEMP_MAX_PERCENT,
    TEMP_PERCENT,
    TEMP_STEP_MIN,
)

# The protocol's words: the names of spec.py's ids, for pumpctl, the client and the bench
# console. They live here, not in spec.py: the pump never needs them at boot and every
# table in spec.py stays in its RAM (heap, issue 12). Append-only, like the ids.
ERRORS = {
    OK: "ok",
    E_BAD_ARG: "bad argument",
    E_OUT_OF_RANGE: "out of range",
    E_OVER_LIMIT: "over limit",
    E_SUSPENDED: "delivery suspended",
    E_BOLUS_RUNNING: "a bolus is running",
    E_NO_BOLUS: "no bolus running",
    E_RESERVOIR_EMPTY: "reservoir empty",
    E_BATTERY_DEPLETED: "battery depleted",
    E_NOT_SUSPENDED: "delivery is not suspended",
    E_SAFE_STATE: "pump is in safe state (self-test failed)",
    E_NO_TEMP_BASAL: "no temp basal running",
    E_INCREMENT: "amount is not a whole number of pulses",
    E_NOT_REWOUND: "rewind before filling",
    E_NOT_FILLED: "fill the reservoir first",
    E_STORAGE: "storage write failed",
    E_BAD_AUTH: "bad authentication",
    E_UNKNOWN_MESSAGE: "unknown message",
    E_UNKNOWN_ALARM: "unknown or inactive alarm",
    E_PROFILE_IN_USE_OVER_LIMIT: "a basal profile exceeds the new max basal rate",
    E_NOT_CONFIGURED: "bolus calculator schedule not programmed",
    # --- heap branch (issue 12, mpy5): appended
    E_NO_MEMORY: "not enough memory for this request now: nothing was done, try again",
}

BOLUS_KINDS = ("none", "normal", "extended", "dual")

BOLUS_ENDINGS = ("completed", "cancelled", "interrupted")

STOP_REASONS = ("delivering", "user", "occlusion", "reservoir empty", "battery depleted",
                "auto-off", "self-test failure")

ALARM_ACTIONS = ("raised", "acknowledged", "cleared", "hidden", "cleared, was not acknowledged")

HISTORY_KINDS = {
    H_BOOT: "boot",
    H_BOLUS_START: "bolus_start",
    H_BOLUS_END: "bolus_end",
    H_TEMP_START: "temp_basal_start",
    H_TEMP_END: "temp_basal_end",
    H_SUSPEND: "suspend",
    H_RESUME: "resume",
    H_ALARM: "alarm",
    H_REWIND: "rewind",
    H_FILL: "fill",
    H_PRIME: "prime",
    H_BATTERY_CHANGE: "battery_change",
    H_TIME_CHANGE: "time_change",
    H_SETTING: "setting",
    H_PROFILE: "profile",
    H_SCHEDULE: "schedule",
    H_DAY_TOTAL: "day_total",
    H_SBL: "suspend_before_low",
    H_CALC_SCHEDULE: "calc_schedule",
    H_LINK: "link_state",
    H_CRASH: "crash",
    H_TIME_LOST: "time_lost",
}

SBL_REASONS = ("predicted low", "recovered", "manual resume", "time limit", "switched off")

BOARD_NAMES = ("test", "unix", "pico", "esp32", "qemu-arm")

CLOCK_OPS = ("realtime", "speed", "lockstep", "advance", "until_event")

FAULTS = ("", "occlusion", "battery_level", "battery_drain", "sensor_loss", "button_stuck",
          "button_press", "storage_fail", "drop_rx", "drop_tx", "corrupt_rx", "corrupt_tx",
          "power_cut", "seed", "glucose", "outage", "rtc_backup", "motor")

# Insulin units: the pump counts mU, people read U.
_IN_UNITS = {"mU": "U", "mU/h": "U/h", "mU/min": "U/min"}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The window each dose limit applies to (THR-6)
_LIMIT_WINDOW = {SET_MAX_BOLUS: " per bolus", SET_MAX_BOLUS_1H: " in any 60 min",
                 SET_MAX_TDD: " in any 24 h", SET_MAX_BASAL: ""}
TUBING_MAX_MU = 30000  # prime amounts (firmware/pump.py Pump.prime)
CANNULA_MAX_MU = 3000
FILL_MIN_MU = 10000  # reservoir volumes (Pump.fill)
FILL_MAX_MU = 400000

# (request, code) -> {detail: (argument, low, high, unit)} where low or high may be None
# ("at least" / "at most"), or {detail: (argument, text)}. Entries that depend on the
# command's kind field are filled in by _argument().
_ARGUMENTS = {
    ("bolus", E_BAD_ARG): {0: ("kind", "normal, extended or dual"),
                           1: ("amount", "0 U for an extended bolus"),
                           2: ("extended amount", "none for a normal bolus")},
    ("bolus", E_OUT_OF_RANGE): {1: ("amount", MIN_BOLUS, None, "mU"),
                                2: ("extended amount", MIN_BOLUS, None, "mU"),
                                3: ("duration", EXT_MIN_MIN, EXT_MAX_MIN, "min")},
    ("temp_basal", E_BAD_ARG): {0: ("kind", "absolute rate or percent")},
    ("temp_basal", E_OUT_OF_RANGE): {2: ("duration", "%d .. %d min in steps of %d" % (
        TEMP_STEP_MIN, TEMP_MAX_MIN, TEMP_STEP_MIN))},
    ("fill", E_OUT_OF_RANGE): {0: ("volume", FILL_MIN_MU, FILL_MAX_MU, "mU")},
    ("prime", E_BAD_ARG): {0: ("kind", "tubing or cannula")},
    ("set_time", E_OUT_OF_RANGE): {0: ("date", "2020-01-01 .. 2053"),
                                   1: ("UTC offset", "UTC-12:00 .. UTC+14:00")},
    ("set_profile", E_BAD_ARG): {
        0: ("profile", "0 .. %d" % (PROFILES - 1)),
        1: ("name", "1 .. %d printable ASCII characters" % PROFILE_NAME_LEN),
        2: ("segments", "1 .. %d, the first at 00:00, later ones on later half hours"
            % SLOTS)},
    ("set_profile", E_OUT_OF_RANGE): {3: ("rate", 0, MAX_RATE, "mU/h")},
    ("set_setting", E_BAD_ARG): {0: ("setting", "not settable this way (the UTC offset is "
                                                "set with the clock)")},
    ("set_calc_schedule", E_BAD_ARG): {
        0: ("kind", ", ".join(CALC_KINDS)),
        1: ("segments", "1 .. %d, the first at 00:00, later ones on later half hours"
            % CALC_SEGMENTS),
        3: ("target highs", "one per segment")},
    ("calc", E_OUT_OF_RANGE): {0: ("carbs", 0, CALC_MAX_CARBS, "g"),
                               1: ("glucose", CALC_BG_MIN, CALC_BG_MAX, "mg/dL")},
    ("get_profile", E_BAD_ARG): {0: ("profile", "0 .. %d" % (PROFILES - 1))},
    ("get_calc_schedule", E_BAD_ARG): {0: ("kind", ", ".join(CALC_KINDS))},
}


def units_text(mu):
    """mU -> U with no trailing zeros: 10000 -> '10', 1500 -> '1.5', 50 -> '0.05'."""
    sign = "-" if mu < 0 else ""
    if mu < 0:
        mu = -mu
    frac = ("%03d" % (mu % 1000)).rstrip("0")
    return sign + "%d" % (mu // 1000) + ("." + frac if frac else "")


def value_text(value, unit):
    """A value in its unit as people read it: insulin in U, others as they are."""
    if unit in _IN_UNITS:
        return units_text(value) + " " + _IN_UNITS[unit]
    return "%d %s" % (value, unit) if unit else "%d" % value


def range_text(low, high, unit):
    """'10 .. 400 U', 'at least 0.05 U', 'at most 3 U' (None: no bound that side)."""
    if high is None:
        return "at least " + value_text(low, unit)
    if low is None:
        return "at most " + value_text(high, unit)
    return (units_text(low) if unit in _IN_UNITS else "%d" % low) + " .. " + \
        value_text(high, unit)


def _tenths(value):
    return "%d" % (value // 10) + ("" if value % 10 == 0 else ".%d" % (value % 10))


def setting_range(sid):
    """'max_bolus: 0 .. 25 U' for setting `sid`."""
    name, _default, low, high, unit = SETTINGS[sid]
    if sid == SET_AUTO_OFF:
        return "%s: 0 (off) or %d .. %d h" % (name, AUTO_OFF_MIN_HOURS, high)
    return name + ": " + range_text(low, high, unit)


def limit_text(sid, value=None):
    """'max_bolus 10 U per bolus': a dose limit (THR-6), with its value when known."""
    name, _default, _low, _high, unit = SETTINGS[sid]
    window = _LIMIT_WINDOW.get(sid, "")
    if value is None:
        return "limit " + name + window
    return name + " " + value_text(value, unit) + window


def _argument(request, code, detail, kind):
    """(argument, low, high, unit) or (argument, text) for an argument refusal, or None."""
    if code == E_OUT_OF_RANGE:
        if request == "temp_basal" and detail == 1:
            if kind == TEMP_PERCENT:
                return ("percent", 0, TEMP_MAX_PERCENT, "%")
            return ("rate", 0, MAX_RATE, "mU/h")
        if request == "prime" and detail == 1:
            top = CANNULA_MAX_MU if kind == PRIME_CANNULA else TUBING_MAX_MU
            return ("amount", "one pulse .. " + value_text(top, "mU"))
        if request == "set_calc_schedule" and 0 <= kind < len(CALC_KINDS):
            low, high = CALC_RANGES[kind]
            if detail == 2 and kind == CALC_CARB_RATIO:  # stored in tenths of g/U
                return (CALC_KINDS[kind], "%s .. %s g/U" % (_tenths(low), _tenths(high)))
            if detail == 2:
                return (CALC_KINDS[kind], low, high, "mg/dL" if kind == CALC_TARGET
                        else "mg/dL per U")
            if detail == 3 and kind == CALC_TARGET:
                return ("target high", "target low .. %d mg/dL" % high)
    if request == "set_schedule" and code == E_BAD_ARG and 0 <= detail < 7:
        return (WEEKDAYS[detail], "a programmed profile 0 .. %d" % (PROFILES - 1))
    return _ARGUMENTS.get((request, code), {}).get(detail)


def explain(request, code, detail, kind=-1, limit=None):
    """The detail of a refusal in words; '' when there is nothing to add.

    request: the wire message name; kind: the command's kind field where the meaning
    depends on it (temp_basal TEMP_*, prime PRIME_*, set_calc_schedule CALC_*; -1 unknown);
    limit: the current value of the setting an E_OVER_LIMIT names, if known."""
    if code == E_OVER_LIMIT and 0 <= detail < SETTINGS_COUNT:
        return limit_text(detail, limit)
    if code == E_OUT_OF_RANGE and request == "set_setting" and 0 <= detail < SETTINGS_COUNT:
        return setting_range(detail)
    if code == E_BAD_ARG or code == E_OUT_OF_RANGE:
        if detail == -1:
            return "the message's length does not match the protocol table"
        arg = _argument(request, code, detail, kind)
        if arg is None:
            return "argument %d" % detail
        if len(arg) == 2:
            return arg[0] + ": " + arg[1]
        return arg[0] + ": " + range_text(arg[1], arg[2], arg[3])
    if code == E_SUSPENDED and 0 < detail < len(STOP_REASONS):
        return "stopped: " + STOP_REASONS[detail]
    if code == E_BOLUS_RUNNING:
        return "bolus #%d" % detail
    if code == E_RESERVOIR_EMPTY:
        return units_text(detail) + " U left"
    if code == E_INCREMENT:
        return "whole pulses of " + units_text(detail) + " U"
    if code == E_SAFE_STATE:
        names = [name for bit, name in ((ST_FIRMWARE, "firmware"), (ST_STORAGE, "storage"),
                                        (ST_MOTOR, "motor"), (ST_BUZZER, "buzzer"),
                                        (ST_LINK, "link state lost"),
                                        (ST_CRASH, "firmware fault"))
                 if detail & bit]
        return ", ".join(names)
    if code == E_UNKNOWN_ALARM:
        return ALARMS[detail][0] if 0 <= detail < ALARM_COUNT else "alarm %d" % detail
    if code == E_PROFILE_IN_USE_OVER_LIMIT:
        return "profile %d" % detail
    if code == E_NOT_CONFIGURED and 0 <= detail < len(CALC_KINDS):
        return CALC_KINDS[detail] + ": program it with `pumpctl calc set`"
    if code == E_BAD_AUTH:
        if detail == AUTH_MISSING:
            return "no authentication: give the pairing key with --key"
        if detail == AUTH_BAD_MAC:
            return ("wrong pairing key, or host tools built from another protocol/spec.py "
                    "than the pump's firmware: compare the schema hashes with `pumpctl "
                    "status` and update the older side")
        if detail == AUTH_REPLAYED:
            return "replayed or stale counter"
        if detail == AUTH_UNPAIRED:
            return ("the pump lost its link state and accepts no command until it is paired "
                    "again: `pumpctl flash` with a new key file")
    if code == E_STORAGE:  # what was not saved
        if request == "set_setting" and 0 <= detail < SETTINGS_COUNT:
            return SETTINGS[detail][0] + " not saved"
        if request == "bolus" and detail > 0:
            return "bolus #%d not started" % detail
        if request == "cancel_bolus" and detail > 0:
            return "bolus #%d stopped, but the state save failed" % detail
        return ""
    if (code == E_UNKNOWN_MESSAGE or code == E_NO_MEMORY) and detail > 0:
        return "message 0x%02X" % detail
    return "detail %d" % detail if detail else ""


def text(request, code, detail, kind=-1, limit=None):
    """'out of range (volume: 10 .. 400 U)': the error's name and its detail in words."""
    why = explain(request, code, detail, kind, limit)
    name = ERRORS.get(code, "error %d" % code)
    return name + " (" + why + ")" if why else name


# ============================================================ history records in words
SELFTESTS = ((ST_FIRMWARE, "firmware"), (ST_STORAGE, "storage"), (ST_MOTOR, "motor"),
             (ST_BUZZER, "buzzer"))
TEMP_ENDINGS = ("expired", "cancelled", "ended by suspend")


def offset_text(minutes):
    """UTC offset in minutes -> 'UTC+HH:MM'."""
    m = -minutes if minutes < 0 else minutes
    return "UTC%s%02d:%02d" % ("-" if minutes < 0 else "+", m // 60, m % 60)


def selftest_text(bits):
    """Self-test bits -> the names of the parts that failed ('none')."""
    names = [name for bit, name in SELFTESTS if bits & bit]
    return ", ".join(names) if names else "none"


def describe(k, arg, v1, v2, v3, units, setting, local):
    """A history record (kind `k`, arg, v1..v3) in words: the one description of record
    kinds. The console and the host write some values their own way: units(mu) an amount
    of insulin (without ' U'), setting(sid, value) a setting in its unit, local(s) local
    seconds since 2020-01-01 as 'YYYY-MM-DD HH:MM:SS'."""
    if k == H_BOOT:
        return "boot %d (reset cause %d, self-test %s)" % (v2, arg, selftest_text(v1))
    if k == H_BOLUS_START:
        kind = BOLUS_KINDS[arg] if arg < 4 else "?"
        ext = " + %s U extended" % units(v3) if v3 else ""
        return "bolus #%d %s: %s U%s" % (v1, kind, units(v2), ext)
    if k == H_BOLUS_END:
        ending = BOLUS_ENDINGS[arg] if arg < 3 else "?"
        return "bolus #%d %s: %s of %s U" % (v1, ending, units(v2), units(v3))
    if k == H_TEMP_START:
        what = units(v1) + " U/h" if arg == TEMP_ABSOLUTE else "%d %%" % v1
        return "temp basal %s for %d min" % (what, v2)
    if k == H_TEMP_END:
        return "temp basal " + (TEMP_ENDINGS[arg] if arg < 3 else "ended")
    if k == H_SUSPEND:
        return "suspended: " + (STOP_REASONS[arg] if arg < len(STOP_REASONS) else "?")
    if k == H_RESUME:
        return "resumed"
    if k == H_ALARM:
        name = ALARMS[v1][0] if 0 <= v1 < ALARM_COUNT else "alarm %d" % v1
        return "alarm %s %s" % (name, ALARM_ACTIONS[arg] if arg < len(ALARM_ACTIONS) else "?")
    if k == H_REWIND:
        return "rewind"
    if k == H_FILL:
        return "fill %s U" % units(v1)
    if k == H_PRIME:
        return "prime %s %s U" % ("cannula" if arg else "tubing", units(v1))
    if k == H_BATTERY_CHANGE:
        return "battery changed: %d %% -> %d %%" % (v1, v2)
    if k == H_TIME_CHANGE:
        return "clock set: %s %s" % (local(v2), offset_text(v3))
    if k == H_SETTING:
        if 0 <= arg < SETTINGS_COUNT:
            return "setting %s: %s -> %s" % (SETTINGS[arg][0], setting(arg, v1), setting(arg, v2))
        return "setting %d: %d -> %d" % (arg, v1, v2)
    if k == H_PROFILE:
        return "profile %d programmed: %d segment%s, max %s U/h" % (
            arg, v1, "" if v1 == 1 else "s", units(v2))
    if k == H_SCHEDULE:
        return "schedule Mon..Sun: " + " ".join(["%d" % (v1 >> (3 * i) & 7) for i in range(7)])
    if k == H_SBL:
        why = SBL_REASONS[v1] if 0 <= v1 < len(SBL_REASONS) else "reason %d" % v1
        what = "basal suspended before low" if arg else "basal resumed"
        return "%s (%s): glucose %d mg/dL, in 30 min %d mg/dL" % (what, why, v2, v3)
    if k == H_CALC_SCHEDULE:
        kind = CALC_KINDS[arg] if 0 <= arg < len(CALC_KINDS) else "kind %d" % arg
        return "calculator %s schedule programmed: %d segment%s" % (
            kind, v1, "" if v1 == 1 else "s")
    if k == H_DAY_TOTAL:
        return "day total %s: basal %s U, bolus %s U" % (local(v1 * 86400)[:10], units(v2),
                                                         units(v3))
    return "%s %d %d %d %d" % (HISTORY_KINDS.get(k, "kind %d" % k), arg, v1, v2, v3)
