"""Bench console: plain-text commands on a serial port of its own (HW-3, issue 4).

A person at picocom or screen types a command and reads a plain answer. The console has its
own port, so the binary link (firmware/link.py) is never disturbed; on the boards' protocol
port firmware/demux.py edits the lines and calls handle_line() (issue 17). It is a local user at
the bench: no authentication, but every state change is a user interaction (auto-off,
ALM-4: the pump operations count it) and a bolus is delivered only after the next line
says `yes`.

    console = Console(pump)
    port.write(console.greeting())
    port.write(console.feed(port.read()))      # bytes in, echo + answers + prompt out

`handle_line(line)` answers one line: the text, lines separated by CRLF, ending with CRLF
(no prompt); "" for an empty line. Bad input of any kind is one "error: ..." line and
changes nothing; a refusal by the pump is "refused: <refusals.ERRORS text> (<detail>)", in the
words of protocol/refusals.py, which pumpctl uses too.
It allocates (it is not in the tick), so call it between ticks, never from inside one.
"""

from firmware.compat import forget_half_imported, ticks_diff
from firmware.dates import date_of, day_of
from firmware.pump_cold import local_day, local_seconds, rewound
from firmware.status import snapshot
from protocol.refusals import BOLUS_KINDS, STOP_REASONS, describe, offset_text, selftest_text
from protocol.refusals import text as refusal_text
from protocol.spec import (
    ALARM_COUNT,
    ALARMS,
    AUTO_OFF_MIN_HOURS,
    BOLUS_DUAL,
    BOLUS_EXTENDED,
    BOLUS_NORMAL,
    E_OVER_LIMIT,
    SET_AUTO_OFF,
    SET_UTC_OFFSET,
    SETTINGS,
    SETTINGS_COUNT,
    TEMP_ABSOLUTE,
    TEMP_PERCENT,
)

PROMPT = "pump> "
NL = "\r\n"
MAX_LINE = 80  # characters kept per line; more rings the bell and is dropped
CONFIRM_MS = 60000  # a bolus confirmation older than this is refused
HISTORY_DEFAULT = 10
HISTORY_MAX = 100
TOTALS_DEFAULT = 7
TOTALS_MAX = 90
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PRIORITIES = ("-", "low", "medium", "high")
SHOWN_UNITS = {"mU": " U", "mU/h": " U/h", "mU/min": " U/min"}

# (command, arguments, what it does): the help text, the usage lines and the dispatch
COMMANDS = (
    ("help", "[COMMAND]", "this list, or one command's usage"),
    ("status", "", "delivery, basal, bolus, reservoir, alarms, time"),
    ("bolus", "U [ext U MIN]", "bolus U now (+ U over MIN min); asks yes"),
    ("cancel", "", "cancel the running bolus"),
    ("temp", "abs U/h MIN | pct P MIN", "temp basal for MIN min (15-min steps)"),
    ("canceltemp", "", "end the temp basal"),
    ("suspend", "", "stop all delivery"),
    ("resume", "", "resume delivery"),
    ("alarms", "", "active alarms"),
    ("ack", "[ID|NAME|all]", "acknowledge (default: the most urgent)"),
    ("history", "[N]", "the last N records (default 10, max 100)"),
    ("totals", "[DAYS]", "daily totals (default 7 days, max 90)"),
    ("settings", "", "settings, values and ranges"),
    ("set", "NAME VALUE", "change a setting (insulin in U)"),
    ("time", "[DATE TIME [+HH:MM]]", "show or set the local clock"),
)


class ConsoleError(Exception):
    """Bad input: answered with one error line; nothing changed."""


def date_text(day):
    return "%04d-%02d-%02d" % date_of(day)


def local_text(local_s):
    """Local seconds since 2020-01-01 -> 'YYYY-MM-DD HH:MM:SS'."""
    s = local_s % 86400
    return "%s %02d:%02d:%02d" % (date_text(local_s // 86400), s // 3600, s // 60 % 60, s % 60)


def mu_text(mu):
    """mU -> 'U.UUU' (always 3 decimals)."""
    sign = "-" if mu < 0 else ""
    if mu < 0:
        mu = -mu
    return "%s%d.%03d" % (sign, mu // 1000, mu % 1000)


def _digits(text):
    if not text:
        return False
    for c in text:
        if c < "0" or c > "9":
            return False
    return True


def parse_units(text, what="amount"):
    """'1.5' -> 1500 mU, exactly: a whole number of mU, not negative, below 1000000 U."""
    dot = text.find(".")
    whole = text if dot < 0 else text[:dot]
    frac = "" if dot < 0 else text[dot + 1:]
    if not (whole or frac) or (whole and not _digits(whole)) or (frac and not _digits(frac)):
        raise ConsoleError("bad %s '%s': give units, e.g. 1.5" % (what, text))
    frac = frac.rstrip("0")
    if len(frac) > 3:
        raise ConsoleError("bad %s '%s': not a whole number of 0.001 U" % (what, text))
    if len(whole.lstrip("0")) > 6:
        raise ConsoleError("bad %s '%s': too large" % (what, text))
    return int(whole or "0") * 1000 + int((frac + "000")[:3])


def parse_whole(text, what):
    if not _digits(text):
        raise ConsoleError("bad %s '%s': give a whole number" % (what, text))
    if len(text.lstrip("0")) > 9:
        raise ConsoleError("bad %s '%s': too large" % (what, text))
    return int(text)


def setting_text(sid, value):
    unit = SETTINGS[sid][4]
    shown = SHOWN_UNITS.get(unit)
    if shown:
        return mu_text(value) + shown
    if sid == SET_AUTO_OFF and value == 0:
        return "0 h (off)"
    return "%d %s" % (value, unit)


def range_text(sid):
    name, _default, lo, hi, unit = SETTINGS[sid]
    if sid == SET_AUTO_OFF:
        return "0 (off) or %d .. %d h" % (AUTO_OFF_MIN_HOURS, hi)
    shown = SHOWN_UNITS.get(unit)
    if shown:
        return "%s .. %s%s" % (mu_text(lo), mu_text(hi), shown)
    return "%d .. %d %s" % (lo, hi, unit)


def _usage(name):
    for cmd, args, _what in COMMANDS:
        if cmd == name:
            return "usage: " + (cmd + " " + args if args else cmd)
    return ""


def _lines(rows):
    return NL.join(rows) + NL


class Console:
    def __init__(self, pump):
        self.pump = pump
        self.status = snapshot(pump)  # what `status` shows (firmware/status.py)
        self.buf = bytearray(MAX_LINE)  # the line being typed: buf[:n]
        self.n = 0
        self.skip_lf = False  # a CR ended the last line: its LF (CRLF) is not a new one
        self.esc = 0  # inside an escape sequence (arrow keys): 1 after ESC, 2 after ESC [
        self.pending = None  # bolus awaiting "yes": (now mU, ext mU, minutes, ticks asked)
        self.faults = 0  # exceptions caught (a bug if ever nonzero)

    # ------------------------------------------------------------------ bytes
    def greeting(self):
        return ("micropump bench console (type help)" + NL + PROMPT).encode()

    def feed(self, data):
        """Bytes typed -> bytes to write back: echo, answers and the prompt."""
        if not data:
            return b""
        out = bytearray()
        buf = self.buf
        for b in data:
            if self.esc:
                # ESC [ ... final byte (0x40..0x7E); ESC O x; ESC x: swallowed whole
                if self.esc == 1 and (b == 0x5B or b == 0x4F):
                    self.esc = 2
                elif self.esc == 1 or 0x40 <= b <= 0x7E:
                    self.esc = 0
                continue
            if b == 0x0A and self.skip_lf:
                self.skip_lf = False
                continue
            self.skip_lf = b == 0x0D
            if b == 0x0D or b == 0x0A:
                line = str(buf[:self.n], "ascii")
                self.n = 0
                out.extend(NL.encode())
                out.extend(self.handle_line(line).encode())
                out.extend(PROMPT.encode())
            elif b == 0x08 or b == 0x7F:
                if self.n:
                    self.n -= 1
                    out.extend(b"\x08 \x08")
            elif b == 0x03:  # Ctrl-C: drop the line and any bolus awaiting confirmation
                self.n = 0
                out.extend(("^C" + NL).encode())
                if self.pending is not None:
                    self.pending = None
                    out.extend(("bolus not delivered" + NL).encode())
                out.extend(PROMPT.encode())
            elif b == 0x1B:
                self.esc = 1
            elif 0x20 <= b <= 0x7E:
                if self.n < MAX_LINE:
                    buf[self.n] = b
                    self.n += 1
                    out.append(b)
                else:
                    out.append(0x07)  # bell: the line is full
            # other control bytes and non-ASCII bytes are ignored
        return bytes(out)

    # ------------------------------------------------------------------ lines
    def handle_line(self, line):
        """One line -> the answer text (CRLF line ends, no prompt). Never raises."""
        try:
            return self._handle(line)
        except ConsoleError as e:
            return "error: " + e.args[0] + NL
        except MemoryError:
            # e.g. a rarely used operation's code, imported at its first use (issue 12)
            forget_half_imported()
            return "error: not enough memory now; see status before trying again" + NL
        except Exception as e:
            self.faults += 1
            return "error: internal fault (%s)" % type(e).__name__ + NL

    def _handle(self, line):
        words = line.split()
        if self.pending is not None:
            pending = self.pending
            self.pending = None
            return self._confirm(pending, words)
        if not words:
            return ""
        name = words[0].lower()
        if not _usage(name):
            raise ConsoleError("unknown command '%s' (type help)" % words[0])
        return getattr(self, "_c_" + name)(words[1:])

    def _args(self, name, args, least, most):
        if len(args) < least or len(args) > most:
            raise ConsoleError(_usage(name))

    def _refused(self, request, code, kind=-1):
        """A pump refusal in the words pumpctl uses too (protocol/refusals.py). `request`
        is the wire message name the detail belongs to; `kind` its kind field."""
        pump = self.pump
        d = pump.detail
        limit = pump.setting(d) if code == E_OVER_LIMIT and 0 <= d < SETTINGS_COUNT else None
        return "refused: " + refusal_text(request, code, d, kind, limit) + NL

    def _selftest(self, bits):
        return selftest_text(bits)

    # ------------------------------------------------------------------ commands
    def _c_help(self, args):
        self._args("help", args, 0, 1)
        if args:
            usage = _usage(args[0].lower())
            if not usage:
                raise ConsoleError("unknown command '%s' (type help)" % args[0])
            return usage + NL
        rows = []
        for cmd, cargs, what in COMMANDS:
            rows.append("%-30s %s" % (cmd + " " + cargs if cargs else cmd, what))
        rows.append("amounts in U with up to 3 decimals (1.5); time: 2026-11-16 08:30 +01:00")
        return _lines(rows)

    def _c_status(self, args):
        self._args("status", args, 0, 0)
        pump = self.pump
        snap = self.status
        snap.refresh()  # every row below reads this one snapshot (firmware/status.py)
        g = snap.get
        stop = g("stop")
        if not stop:
            delivery = "delivering"
        else:
            delivery = "stopped: " + STOP_REASONS[stop] if stop < len(STOP_REASONS) else "%d" % stop
            if pump.selftest_bits:
                delivery += " (%s)" % self._selftest(pump.selftest_bits)
        rows = [
            "delivery    " + delivery,
            "basal       %s U/h (profile %s U/h)" % (mu_text(g("basal_rate")),
                                                     mu_text(g("profile_rate"))),
            "temp basal  " + self._temp(),
            "bolus       " + self._bolus(),
            "reservoir   " + self._reservoir(),
            "battery     %d %%" % g("battery"),
            "IOB         %s U" % mu_text(g("iob")),
            "today       basal %s U, bolus %s U, prime %s U" % (
                mu_text(g("basal_today")), mu_text(g("bolus_today")), mu_text(g("prime_today"))),
            "alarms      " + self._alarm_names(),
            "time        " + self._now(),
        ]
        return _lines(rows)

    def _temp(self):
        """The temp basal of the last status snapshot."""
        g = self.status.get
        kind = g("temp_kind")
        if kind == TEMP_ABSOLUTE:
            what = mu_text(g("temp_value")) + " U/h"
        elif kind == TEMP_PERCENT:
            what = "%d %%" % g("temp_value")
        else:
            return "none"
        return "%s, %d min left" % (what, g("temp_left_min"))

    def _bolus(self):
        """The bolus of the last status snapshot (and how an extended one is split)."""
        g = self.status.get
        bolus_id = g("bolus_id")
        if not bolus_id:
            return "none"
        kind = g("bolus_kind")
        text = "#%d %s: %s of %s U" % (bolus_id, BOLUS_KINDS[kind] if kind < 4 else "?",
                                       mu_text(g("bolus_delivered")),
                                       mu_text(g("bolus_requested")))
        now_mu, ext_mu, ext_min = self.pump.bolus_parts()
        if ext_mu:
            later = "%s U over %d min" % (mu_text(ext_mu), ext_min)
            if now_mu:
                later = "now %s U, then %s" % (mu_text(now_mu), later)
            text += " (" + later + ")"
        return text

    def _reservoir(self):
        """The reservoir of the last status snapshot."""
        if rewound(self.pump):
            return "not filled (rewound)"
        g = self.status.get
        text = mu_text(g("reservoir")) + " U"
        left = g("minutes_left")
        if left >= 0:
            text += ", %d h %02d min at this rate" % (left // 60, left % 60)
        return text

    def _alarm_names(self):
        """The active alarms of the last status snapshot."""
        mask = self.status.get("alarms")
        names = [ALARMS[i][0] for i in range(ALARM_COUNT) if mask >> i & 1]
        return ", ".join(names) if names else "none"

    def _now(self):
        pump = self.pump
        local = local_seconds(pump)
        if local < 0:
            return "not set"
        return "%s %s %s" % (local_text(local), offset_text(pump.setting(SET_UTC_OFFSET)),
                             WEEKDAYS[pump.weekday()])

    def _c_bolus(self, args):
        if len(args) != 1 and (len(args) != 4 or args[1].lower() != "ext"):
            raise ConsoleError(_usage("bolus"))
        now_mu = parse_units(args[0])
        ext_mu = 0
        minutes = 0
        if len(args) == 4:
            ext_mu = parse_units(args[2], "extended amount")
            minutes = parse_whole(args[3], "minutes")
            if not ext_mu:
                raise ConsoleError("the extended amount must be more than 0")
        elif not now_mu:
            raise ConsoleError("nothing to deliver: give more than 0 U")
        self.pending = (now_mu, ext_mu, minutes, self.pump.clock.ticks_ms())
        return "deliver %s? type yes" % self._bolus_text(now_mu, ext_mu, minutes) + NL

    def _bolus_text(self, now_mu, ext_mu, minutes):
        if not ext_mu:
            return mu_text(now_mu) + " U"
        later = "%s U over %d min" % (mu_text(ext_mu), minutes)
        return mu_text(now_mu) + " U now and " + later if now_mu else later

    def _confirm(self, pending, words):
        now_mu, ext_mu, minutes, asked = pending
        if len(words) != 1 or words[0].lower() != "yes":
            return "bolus not delivered" + NL
        age = ticks_diff(self.pump.clock.ticks_ms(), asked)
        if age < 0 or age > CONFIRM_MS:
            return "bolus not delivered: confirmed after more than %d s" % (CONFIRM_MS // 1000) + NL
        kind = BOLUS_NORMAL if not ext_mu else (BOLUS_DUAL if now_mu else BOLUS_EXTENDED)
        code = self.pump.bolus(kind, now_mu, ext_mu, minutes)
        if code:
            return self._refused("bolus", code)
        return "bolus #%d started: %s" % (self.pump.detail,
                                          self._bolus_text(now_mu, ext_mu, minutes)) + NL

    def _c_cancel(self, args):
        self._args("cancel", args, 0, 0)
        pump = self.pump
        _id, done, req = pump.bolus_progress()
        code = pump.cancel_bolus()
        if code:
            return self._refused("cancel_bolus", code)
        return "bolus #%d cancelled: %s of %s U delivered" % (pump.detail, mu_text(done),
                                                            mu_text(req)) + NL

    def _c_temp(self, args):
        self._args("temp", args, 3, 3)
        kind = args[0].lower()
        if kind == "abs":
            value = parse_units(args[1], "rate")
            what = mu_text(value) + " U/h"
            kind = TEMP_ABSOLUTE
        elif kind == "pct":
            value = parse_whole(args[1], "percent")
            what = "%d %%" % value
            kind = TEMP_PERCENT
        else:
            raise ConsoleError(_usage("temp"))
        minutes = parse_whole(args[2], "minutes")
        code = self.pump.set_temp_basal(kind, value, minutes)
        if code:
            return self._refused("temp_basal", code, kind)
        return "temp basal %s for %d min" % (what, minutes) + NL

    def _simple(self, name, args, method, done):
        self._args(name, args, 0, 0)
        code = getattr(self.pump, method)()
        return self._refused(method, code) if code else done + NL

    def _c_canceltemp(self, args):
        return self._simple("canceltemp", args, "cancel_temp_basal", "temp basal cancelled")

    def _c_suspend(self, args):
        bolus_id = self.pump.bolus_progress()[0]
        done = "delivery suspended"
        if bolus_id:
            done += " (bolus #%d interrupted)" % bolus_id
        return self._simple("suspend", args, "suspend", done)

    def _c_resume(self, args):
        return self._simple("resume", args, "resume", "delivery resumed")

    def _c_alarms(self, args):
        self._args("alarms", args, 0, 0)
        al = self.pump.alarms
        rows = ["id  alarm               priority  acked  level"]
        for i in range(ALARM_COUNT):
            if al.active[i]:
                rows.append("%2d  %-19s %-9s %-6s %d" % (
                    i, ALARMS[i][0], PRIORITIES[ALARMS[i][1]], "yes" if al.acked[i] else "no",
                    al.level[i]))
            elif al.missed[i]:  # ALM-8: shown until acknowledged
                rows.append("%2d  %-19s %-9s cleared, was not acknowledged" % (
                    i, ALARMS[i][0], PRIORITIES[ALARMS[i][1]]))
        if len(rows) == 1:
            return "no active alarms" + NL
        return _lines(rows)

    def _c_ack(self, args):
        self._args("ack", args, 0, 1)
        al = self.pump.alarms
        if not args:
            best = al.top_unacked()
            ids = [best] if best >= 0 else []
        elif args[0].lower() == "all":
            ids = [i for i in range(ALARM_COUNT) if al.active[i] and not al.acked[i]]
        elif _digits(args[0]):
            ids = [parse_whole(args[0], "alarm id")]
        else:
            name = args[0].lower()
            ids = [i for i in range(ALARM_COUNT) if ALARMS[i][0] == name]
            if not ids:
                raise ConsoleError("unknown alarm '%s' (see alarms)" % args[0])
        if not ids:
            return "no alarm to acknowledge" + NL
        out = ""
        for i in ids:
            code = self.pump.ack_alarm(i)
            if code:
                out += self._refused("ack_alarm", code)
            else:
                out += "acknowledged " + ALARMS[i][0]
                out += ("" if al.active[i] else " (cleared)") + NL
        return out

    def _c_history(self, args):
        self._args("history", args, 0, 1)
        n = parse_whole(args[0], "count") if args else HISTORY_DEFAULT
        if n < 1 or n > HISTORY_MAX:
            raise ConsoleError("history shows 1 .. %d records" % HISTORY_MAX)
        h = self.pump.history
        first = h.next_seq - n
        if first < h.first_seq:
            first = h.first_seq
        if first >= h.next_seq:
            return "no history" + NL
        offset = self.pump.setting(SET_UTC_OFFSET) * 60
        rec = bytearray(24)
        rows = []
        for seq in range(first, h.next_seq):
            if not h.read(seq, rec):
                rows.append("#%d unreadable" % seq)
                continue
            r = h.decode(rec)
            rows.append("#%d %s %s" % (seq, local_text(r[1] + offset), self._record(r)))
        return _lines(rows)

    def _record(self, r):
        """One history record in words (protocol/refusals.py)."""
        return describe(r[2], r[3], r[4], r[5], r[6], mu_text, setting_text, local_text)

    def _c_totals(self, args):
        self._args("totals", args, 0, 1)
        n = parse_whole(args[0], "days") if args else TOTALS_DEFAULT
        if n < 1 or n > TOTALS_MAX:
            raise ConsoleError("totals shows 1 .. %d days" % TOTALS_MAX)
        today = local_day(self.pump)
        rows = ["day           basal U   bolus U   prime U   total U"]
        for day in range(today, today - n, -1):
            if day < 0:
                break
            got = self.pump.day_totals(day)
            if got is None:
                rows.append("%s    no record" % date_text(day))
            else:
                rows.append("%s %9s %9s %9s %9s" % (date_text(day), mu_text(got[0]),
                                                    mu_text(got[1]), mu_text(got[2]),
                                                    mu_text(got[0] + got[1])))
        return _lines(rows)

    def _c_settings(self, args):
        self._args("settings", args, 0, 0)
        rows = ["name                value          range"]
        for sid in range(SETTINGS_COUNT):
            rows.append("%-19s %-14s %s" % (SETTINGS[sid][0],
                                            setting_text(sid, self.pump.setting(sid)),
                                            range_text(sid)))
        return _lines(rows)

    def _c_set(self, args):
        self._args("set", args, 2, 2)
        name = args[0].lower()
        sid = -1
        for i in range(SETTINGS_COUNT):
            if SETTINGS[i][0] == name:
                sid = i
        if sid < 0:
            raise ConsoleError("unknown setting '%s' (see settings)" % args[0])
        if sid == SET_UTC_OFFSET:
            raise ConsoleError("the UTC offset is set with the clock: " + _usage("time"))
        if SETTINGS[sid][4] in SHOWN_UNITS:
            value = parse_units(args[1], "value")
        else:
            value = parse_whole(args[1], "value")
        pump = self.pump
        old = pump.setting(sid)
        code = pump.settings.set(sid, value)
        if code:
            return self._refused("set_setting", code)
        return "%s: %s -> %s" % (name, setting_text(sid, old), setting_text(sid, value)) + NL

    def _c_time(self, args):
        if not args:
            return "time " + self._now() + NL
        self._args("time", args, 2, 3)
        pump = self.pump
        offset = pump.setting(SET_UTC_OFFSET)
        if len(args) == 3:
            offset = self._offset(args[2])
        date = args[0].split("-")
        clock = args[1].split(":")
        if (len(date) != 3 or len(clock) < 2 or len(clock) > 3
                or not _digits("".join(date) + "".join(clock))
                or len(date[0]) != 4 or len(date[1]) > 2 or len(date[2]) > 2
                or len(clock[0]) > 2 or len(clock[1]) != 2 or len(clock[-1]) != 2):
            raise ConsoleError("bad date or time '%s %s': use YYYY-MM-DD HH:MM[:SS] [+HH:MM]"
                               % (args[0], args[1]))
        y, mo, d = int(date[0]), int(date[1]), int(date[2])
        hh, mm = int(clock[0]), int(clock[1])
        ss = int(clock[2]) if len(clock) == 3 else 0
        day = day_of(y, mo, d)
        if date_of(day) != (y, mo, d) or hh > 23 or mm > 59 or ss > 59 or day < 0:
            raise ConsoleError("no such date or time: %s %s (from 2020-01-01)"
                               % (args[0], args[1]))
        local = day * 86400 + hh * 3600 + mm * 60 + ss
        code = pump.set_time(local - offset * 60, offset)
        if code:
            return self._refused("set_time", code)
        return "time set: " + self._now() + NL

    def _offset(self, text):
        sign = 1
        body = text[3:] if text[:3].upper() == "UTC" else text
        if body[:1] == "+" or body[:1] == "-":
            sign = -1 if body[0] == "-" else 1
            body = body[1:]
            parts = body.split(":")
            if len(parts) == 2 and _digits(parts[0] + parts[1]) and len(parts[0]) <= 2 \
                    and len(parts[1]) == 2 and int(parts[1]) < 60:
                return sign * (int(parts[0]) * 60 + int(parts[1]))
        raise ConsoleError("bad UTC offset '%s': use +HH:MM or -HH:MM" % text)
