"""pumpctl: the micropump command line.

    pumpctl --port URL [--key FILE] [--json] COMMAND ...
    pumpctl emulate [--state DIR] [--speed X | --lockstep] [--seed N] [--setup] [--seconds N]
    pumpctl flash --board pico|esp32 --port PORT ...     (host_tools/flash.py)

`emulate` starts the emulator board (host_tools/launch.py) behind a pty, prints its ports and
key, optionally sets it up over the protocol, and shows its live status until Ctrl-C (or
--seconds). `flash` hands its arguments to host_tools.flash.

Amounts are in insulin units (U) on the command line and exact: an amount that is not a
whole number of 0.001 U is refused, never rounded. Exit codes: 0 done, 1 a bolus did not
complete, 2 bad input, 3 refused by the pump, 4 link problem (port, timeout, schema),
130 interrupted. Errors are one line on stderr (and a JSON object on stdout with --json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

from host_tools import client as C
from host_tools import config
from host_tools.paths import in_checkout
from protocol import codec, refusals, spec

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # rich is imported where a table or a progress bar is drawn (start-up)
    from rich.console import Console
    from rich.table import Table

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_LINK = 4
EXIT_INTERRUPTED = 130

PRIORITIES = {spec.PRIO_LOW: "low", spec.PRIO_MEDIUM: "medium", spec.PRIO_HIGH: "high"}
DEFAULT_EMULATOR_STATE = config.default_emulator_state()
TEMP_KINDS = {spec.TEMP_NONE: "none", spec.TEMP_ABSOLUTE: "absolute", spec.TEMP_PERCENT: "percent"}


class BadInput(Exception):
    """A user mistake on the command line (exit 2)."""


class Incomplete(Exception):
    """A bolus was cancelled or interrupted while we watched (exit 1)."""


class BolusLinkLost(C.LinkError):
    """The link dropped while a bolus ran (exit 4): which bolus, what was delivered when
    last seen, and how to find out the rest."""

    def __init__(self, bolus_id: int, delivered: int, requested: int, cause: Exception):
        self.extra = {"bolus_id": bolus_id, "delivered": delivered, "requested": requested}
        super().__init__(
            f"link lost while bolus #{bolus_id} was running: {C.mu_to_units(delivered)} of "
            f"{C.mu_to_units(requested)} U delivered when last seen. The pump goes on by "
            f"itself: once it answers again, `pumpctl status` shows the bolus if it still "
            f"runs and `pumpctl history` how it ended (bolus_end #{bolus_id}); do not repeat "
            f"it before. (cause: {cause})")


# ============================================================================ parsing
class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 (never a usage dump)."""

    def error(self, message):
        raise BadInput(did_you_mean(message))


_INVALID_CHOICE = re.compile(r"argument (\w+): invalid choice: '([^']*)' \(choose from (.*)\)$")


def did_you_mean(message: str) -> str:
    """argparse's "invalid choice" for a command, with the nearest known ones suggested."""
    m = _INVALID_CHOICE.match(message)
    if not m or m.group(1) not in ("COMMAND", "ACTION"):
        return message
    import difflib

    given = m.group(2)
    choices = [c.strip().strip("'") for c in m.group(3).split(",")]
    close = difflib.get_close_matches(given, choices, n=3, cutoff=0.6)
    close += [c for c in choices if c.startswith(given) and given and c not in close]
    what = "command" if m.group(1) == "COMMAND" else "action"
    if not close:
        return f"unknown {what} {given!r}; {what}s: {', '.join(choices)}"
    return (f"unknown {what} {given!r}: did you mean "
            + " or ".join(repr(c) for c in close[:3]) + "?")


def version_text() -> str:
    """Package version, protocol version and schema hash: what a bug report needs."""
    from importlib import metadata  # 40 ms to import: only for --version

    try:
        version = metadata.version("micropump")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return (f"pumpctl {version} (micropump), protocol {spec.PROTOCOL_VERSION}, "
            f"schema {spec.schema_hash():#010x}")


class _VersionAction(argparse._VersionAction):
    """--version, its text looked up only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = version_text()
        super().__call__(parser, namespace, values, option_string)


def amount_mu(text: str) -> int:
    """argparse type: an amount in U on the command line -> mU, exactly as
    client.units_to_mu parses it (the host's one parser of units)."""
    try:
        return C.units_to_mu(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def parse_slot(text: str) -> int:
    """'HH:MM' on a 30-minute boundary -> slot 0..47."""
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise BadInput(f"bad time {text!r}: use HH:MM") from None
    if not (0 <= h < 24 and m in (0, 30)):
        raise BadInput(f"bad segment start {text!r}: basal segments start on the hour or "
                       "half hour (HH:00 or HH:30)")
    return h * 2 + m // 30


def parse_segment(text: str) -> tuple[int, int]:
    """'HH:MM=U/h' -> (slot, mU/h)."""
    when, sep, rate = text.partition("=")
    if not sep:
        raise BadInput(f"bad segment {text!r}: use HH:MM=RATE (rate in U/h)")
    try:
        mu = C.units_to_mu(rate.removesuffix("U/h").strip())
    except ValueError as exc:
        raise BadInput(f"bad rate in {text!r}: {exc}") from None
    return parse_slot(when), mu


def setting_to_wire(sid: int, text: str) -> int:
    try:
        return C.setting_from_text(sid, text)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


setting_display = C.setting_text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pumpctl", description="Drive a micropump over its serial link.")
    p.add_argument("--port",
                   help="pyserial URL: /dev/ttyACM0, a pty path, socket://host:port, "
                        "rfc2217://host:port (default: --state, $PUMPCTL_PORT, the config "
                        "file, or the running default emulator)")
    p.add_argument("--key",
                   help="pairing key file: 32 raw bytes or 64 hex digits (default: from "
                        "where the port came, $PUMPCTL_KEY or the config file); needed for "
                        "commands that change state")
    p.add_argument("--state", dest="state_dir", metavar="DIR",
                   help="talk to the emulator running in state directory DIR (`pumpctl "
                        "emulate --state DIR`): its port and key")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=C.DEFAULT_TIMEOUT,
                   help="seconds to wait for each answer (default %(default)s)")
    p.add_argument("--retries", type=whole, default=C.DEFAULT_RETRIES,
                   help="extra tries when an answer is lost (default %(default)s)")
    p.add_argument("--version", action=_VersionAction,
                   help="package version, protocol version and schema hash")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("status", help="delivery, reservoir, battery, alarms")
    b = sub.add_parser("bolus", help="deliver a bolus (waits and shows progress)")
    b.add_argument("amount", type=amount_mu, help="immediate amount, U (0 for extended only)")
    b.add_argument("--extended", type=amount_mu, default=0, metavar="U",
                   help="extended part, U (dual wave when AMOUNT > 0)")
    b.add_argument("--minutes", type=whole, default=0, help="duration of the extended part")
    b.add_argument("--no-wait", action="store_true", help="return once the pump accepts")
    sub.add_parser("cancel-bolus", help="stop the running bolus")
    t = sub.add_parser("temp-basal", help="temporary basal rate")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--rate", type=amount_mu, metavar="U/h", help="absolute rate, U/h")
    g.add_argument("--percent", type=whole, metavar="P", help="percent of the profile rate")
    t.add_argument("--minutes", type=whole, required=True, help="duration (multiple of 15)")
    sub.add_parser("cancel-temp", help="end the temp basal")
    sub.add_parser("suspend", help="stop all delivery")
    sub.add_parser("resume", help="resume delivery")

    bs = sub.add_parser("basal", help="basal profiles").add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser)
    bs.required = True
    show = bs.add_parser("show", help="show profile N (default: all)")
    show.add_argument("index", type=whole, nargs="?")
    bset = bs.add_parser("set", help="program profile N: NAME HH:MM=U/h ...")
    bset.add_argument("index", type=whole)
    bset.add_argument("name")
    bset.add_argument("segments", nargs="+", metavar="HH:MM=U/h")

    sc = sub.add_parser("schedule", help="weekly profile schedule")
    sc.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    sc.add_argument("days", nargs="*", type=whole, metavar="P",
                    help="7 profile indexes, Monday first")

    st = sub.add_parser("settings", help="show or change settings and limits")
    st.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    st.add_argument("name", nargs="?")
    st.add_argument("value", nargs="?")

    tm = sub.add_parser("time", help="show or set the pump clock")
    tm.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    tm.add_argument("when", nargs="?", help="ISO date-time (local time of the pump), or 'now'")
    tm.add_argument("--offset", type=whole, help="UTC offset in minutes (default: from the "
                                                 "ISO time, else the host's)")

    h = sub.add_parser("history", help="history records")
    h.add_argument("--from", dest="first", type=whole, help="first sequence number")
    h.add_argument("--count", type=whole, default=20)
    tt = sub.add_parser("totals", help="daily totals")
    tt.add_argument("--days", type=whole, default=7)
    sub.add_parser("alarms", help="active alarms")
    a = sub.add_parser("ack", help="acknowledge an alarm")
    a.add_argument("alarm", help="alarm id or name")

    r = sub.add_parser("reservoir", help="rewind, fill, prime")
    ra = r.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ra.required = True
    ra.add_parser("rewind", help="rewind the plunger before a new reservoir")
    f = ra.add_parser("fill", help="record a filled reservoir of U units")
    f.add_argument("amount", type=amount_mu)
    pr = ra.add_parser("prime", help="prime the tubing (or --cannula) with U units")
    pr.add_argument("amount", type=amount_mu)
    pr.add_argument("--cannula", action="store_true")

    cg = sub.add_parser("cgm", help="CGM readings of the sensor link, with the trend")
    cg.add_argument("--hours", type=whole, default=3, help="hours back (1..24, default 3)")

    w = sub.add_parser("wizard", help="bolus calculator: show a suggestion, ask, deliver")
    w.add_argument("--carbs", type=whole, required=True, metavar="G", help="carbohydrates, g")
    w.add_argument("--bg", default="0", metavar="MG_DL",
                   help="blood glucose mg/dL, 'cgm' for the pump's latest reading (at most "
                        "10 min old), or 0 for none (default)")
    w.add_argument("--yes", action="store_true", help="deliver without asking (scripts)")
    w.add_argument("--no-wait", action="store_true", help="return once the pump accepts")

    ca = sub.add_parser("calc", help="bolus calculator schedules").add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser)
    ca.required = True
    ca.add_parser("show", help="carb ratio, sensitivity and target schedules")
    cs = ca.add_parser("set", help="program a schedule: KIND HH:MM=VALUE ... (carb_ratio g/U, "
                                   "sensitivity mg/dL per U, target LOW-HIGH mg/dL)")
    cs.add_argument("kind", choices=spec.CALC_KINDS)
    cs.add_argument("segments", nargs="+", metavar="HH:MM=VALUE")

    m = sub.add_parser("monitor", help="print events as they arrive (Ctrl-C stops)")
    m.add_argument("--seconds", type=float, help="stop after this many seconds")
    sub.add_parser("link-stats", help="frame counters of the pump's link")
    sub.add_parser("sensor-stats", help="the sensor link's counters: records taken and "
                                        "dropped (corrupt, other transmitters, replays)")

    e = sub.add_parser("emulate", help="run the emulator board behind a pty, with live status",
                       description="Run the pump firmware on the MicroPython unix port with "
                                   "simulated hardware (the emulator board) behind a pty, "
                                   "print its ports and key, then show its live status "
                                   "until Ctrl-C. --port and --key are not used.")
    e.add_argument("--state", default=str(DEFAULT_EMULATOR_STATE), metavar="DIR",
                   help="state directory: flash.bin, world.json, key (default %(default)s)")
    e.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="virtual clock speed, times real time (default 1)")
    e.add_argument("--lockstep", action="store_true",
                   help="the virtual clock moves only when a host advances it (emu_clock)")
    e.add_argument("--seed", type=whole, help="seed of the random faults and clock jitter")
    e.add_argument("--pulse", type=whole, default=50, choices=(10, 25, 50),
                   help="insulin per motor pulse, mU (default 50)")
    e.add_argument("--fresh", action="store_true",
                   help="start from an empty flash: a new pump (the pairing key stays)")
    e.add_argument("--setup", action="store_true",
                   help="set the pump up over the protocol: clock, basal profile, rewind, "
                        "fill, prime, resume")
    e.add_argument("--seconds", type=float, metavar="N",
                   help="stop after N seconds (for scripts and CI; default: until Ctrl-C)")
    e.add_argument("--alarm-wav", metavar="FILE",
                   help="at the end, write what the alarm buzzer played (the last 64 "
                        "signals of this boot) as a WAV file to listen to")
    e.add_argument("--no-console", dest="console", action="store_false",
                   help="no bench console pty")
    e.add_argument("--cgm-trace", metavar="FILE",
                   help="CSV of `minute,mg_dl`: the emulated sensor link sends a reading "
                        "from it every 5 virtual minutes")
    e.add_argument("--sensor", action="store_true",
                   help="the sensor link on a third pty, as a board's sensor UART: drive it "
                        "with `pumpctl sensor --port PTY` (SNS-4)")
    e.add_argument("--patient", metavar="NAME",
                   help="a simglucose virtual patient (adult#001 .. adult#010, adolescent#..., "
                        "child#...) on the sensor link, in lockstep with the virtual clock: "
                        "the insulin the pump delivers goes into it, its CGM comes back "
                        "(needs pip install 'micropump[patient]')")
    e.add_argument("--scenario", metavar="FILE",
                   help="meals for --patient: JSON [{\"time\": \"1:00\", \"grams\": 50}] or "
                        "CSV `time,grams`; times from the start (minutes, H:MM or D+H:MM)")
    e.add_argument("--run", type=float, metavar="HOURS",
                   help="with --patient: set the pump up for the patient (clock at 06:00 "
                        "today = the scenario's minute 0, basal and calculator from the "
                        "patient's therapy), then run HOURS of virtual time in lockstep, "
                        "giving each meal its calculator bolus; then show the live status "
                        "(`pumpctl report` draws the run)")
    e.add_argument("--sensitivity", type=float, default=1.0, metavar="F",
                   help="insulin sensitivity factor of --patient (default 1; 0.5 = "
                        "insulin resistant)")

    rp = sub.add_parser("report", help="PNG report: glucose, basal, boluses, suspensions, "
                                       "alarms, daily totals, time in range")
    rp.add_argument("--hours", type=whole, default=24,
                    help=f"hours back (1..{REPORT_MAX_HOURS}, default 24); the pump keeps 24 h "
                         "of CGM readings, --cgm adds earlier ones")
    rp.add_argument("--out", default="report.png", metavar="PNG",
                    help="PNG file to write (default report.png)")
    rp.add_argument("--html", action="store_true",
                    help="also write an HTML page beside the PNG (same name, .html)")
    rp.add_argument("--days", type=whole, default=7, help="days of daily totals (default 7)")
    rp.add_argument("--export", metavar="DIR",
                    help="also write history and CGM readings as CSV and JSON into DIR "
                         "(history.csv, history.json, cgm.csv, cgm.json)")
    rp.add_argument("--cgm", action="append", default=[], metavar="FILE",
                    help="earlier CGM readings (a cgm.json or cgm.csv of --export) for a "
                         "window longer than the pump's 24 h: metrics and, over 2 days or "
                         "more, the ambulatory glucose profile (repeatable)")

    sn = sub.add_parser("sensor", help="play a CGM transmitter onto a sensor-link port "
                                       "(a board's sensor UART, the emulator's sensor pty)")
    sn.add_argument("--port", dest="sensor_port", required=True, metavar="URL",
                    help="the sensor-link port: pyserial URL (a USB-serial adapter wired to "
                         "the board's sensor RX, or `pumpctl emulate --sensor`'s third pty)")
    src = sn.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", metavar="FILE",
                     help="glucose trace: CSV `minute,mg_dl` or JSON [[minute, mg_dl], ...]")
    src.add_argument("--patient", metavar="NAME",
                     help="a simglucose virtual patient (adult#001 .. adult#010, "
                          "adolescent#..., child#...) fed the insulin the pump delivers "
                          "(read over its protocol port: --pump-port, --pump-key); needs "
                          "pip install 'micropump[patient]'")
    sn.add_argument("--pump-port", metavar="URL",
                    help="the pump's protocol port, to pace the readings by the pump and "
                         "read the insulin it delivers (default: --state, $PUMPCTL_PORT, the "
                         "config file or the running default emulator, as for other commands)")
    sn.add_argument("--pump-key", metavar="FILE",
                    help="the pump's pairing key (needed for --fast on a simulated board)")
    sn.add_argument("--fast", action="store_true",
                    help="as fast as the pump accepts: on a simulated board (the emulator, "
                         "the QEMU ARM board), its clock in lockstep, "
                         "advanced 5 minutes per reading once the pump has taken the previous "
                         "one; a board's clock cannot be hurried: its real time, with a note")
    sn.add_argument("--scenario", metavar="FILE",
                    help="meals for --patient (as `pumpctl emulate --scenario`)")
    sn.add_argument("--sensitivity", type=float, default=1.0, metavar="F",
                    help="insulin sensitivity factor of --patient (default 1)")
    sn.add_argument("--calibrate-every", type=whole, default=None, metavar="MIN",
                    help="the sensor asks for a calibration every MIN minutes after the "
                         "warm-up and sends nothing until it gets one (a seeded gap)")
    sn.add_argument("--calibration-gap", type=whole, default=30, metavar="MIN",
                    help="longest calibration gap, minutes (default 30; each is 5..MIN)")
    sn.add_argument("--tx", type=whole, default=None, metavar="ID",
                    help="transmitter id (pair the pump: `pumpctl settings set sensor_id ID`; "
                         "default 0x00C6A1 = 50849)")
    sn.add_argument("--warmup", type=whole, default=0, metavar="MIN",
                    help="minutes of warm-up at the session start (NaN glucose)")
    sn.add_argument("--expiry", type=whole, default=None, metavar="MIN",
                    help="minute at which the session stops (sensor expired)")
    sn.add_argument("--noise", type=whole, default=None, metavar="SEED",
                    help="add simglucose's CGM noise model, seeded")
    sn.add_argument("--dropout", type=float, default=0.0, metavar="P",
                    help="probability that a reading is lost (0..1)")
    sn.add_argument("--seed", type=whole, default=0,
                    help="seed of the dropouts and calibration gaps")
    sn.add_argument("--speed", type=float, default=1.0,
                    help="without a pump to pace it: times real time, a reading every "
                         "300/SPEED s (default 1)")
    sn.add_argument("--minutes", type=whole, default=None,
                    help="minutes to play (default: to the trace's end or expiry; "
                         "--patient needs it or --expiry)")
    sn.add_argument("--from", dest="first", type=whole, default=0, metavar="MIN",
                    help="start at this session minute, a multiple of 5 (continue a session "
                         "the pump already has readings of; default 0)")

    co = sub.add_parser("completion", help="shell completion script: bash, zsh or fish",
                        description="Print the completion script for your shell. bash: "
                                    "eval \"$(pumpctl completion bash)\" in ~/.bashrc; "
                                    "zsh: the same in ~/.zshrc; fish: pumpctl completion "
                                    "fish > ~/.config/fish/completions/pumpctl.fish")
    co.add_argument("shell", choices=("bash", "zsh", "fish"))

    fl = sub.add_parser("flash", add_help=False,
                        help="compile the firmware and deploy it to a board "
                             "(pumpctl flash --help)")
    fl.add_argument("args", nargs=argparse.REMAINDER)
    return p


# ============================================================================ output
def _rich_console(**kwargs) -> Console:
    """rich's Console as pumpctl prints: markup, no highlighting, no :emoji: codes (a
    name such as ":smile:" stays text; and rich's emoji table is not imported: 20 ms)."""
    from rich.console import Console

    return Console(highlight=False, emoji=False, **kwargs)


def table(**kwargs) -> Table:
    """A rich Table (rich is imported by the first one: --json and --help need none)."""
    from rich.table import Table

    return Table(**kwargs)


class Out:
    def __init__(self, as_json: bool, console: Console | None = None,
                 err: Console | None = None):
        self.json = as_json
        self._console = console
        self._err = err

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = _rich_console()
        return self._console

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _rich_console(stderr=True)
        return self._err

    def emit(self, data, table=None, text: str | None = None):
        if self.json:
            print(json.dumps(data, default=_json_default, sort_keys=False), flush=True)
        elif table is not None:
            self.console.print(table)
        if text and not self.json:
            self.console.print(text)


def _json_default(o):
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, dt.datetime | dt.date):
        return o.isoformat()
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError(type(o).__name__)


def _local(seconds: int, offset: int) -> str:
    return C.from_pump_seconds(seconds, offset).strftime("%Y-%m-%d %H:%M:%S")


def status_dict(st: C.Status, info: C.Hello | None) -> dict:
    d = asdict(st)
    d.update(stop_reason=st.stop_reason, delivering=st.delivering, alarm_names=st.alarm_names,
             last_error=st.last_error)
    d["local_time"] = st.local_time.isoformat() if st.time_set else None
    if info is not None:
        d["pump"] = asdict(info)
    return d


def status_table(st: C.Status, info: C.Hello | None) -> Table:
    t = table(title="micropump status", show_header=False, title_justify="left")
    t.add_column("item", style="bold")
    t.add_column("value")
    delivery = ("[green]delivering[/]" if st.delivering
                else f"[red]stopped: {st.stop_reason}[/]")
    t.add_row("Delivery", delivery)
    basal = f"{C.mu_to_units(st.basal_rate)} U/h"
    if st.temp_kind == spec.TEMP_ABSOLUTE:
        basal += (f" (temp {C.mu_to_units(st.temp_value)} U/h, {st.temp_left_min} min left; "
                  f"profile {C.mu_to_units(st.profile_rate)} U/h)")
    elif st.temp_kind == spec.TEMP_PERCENT:
        basal += (f" (temp {st.temp_value} %, {st.temp_left_min} min left; "
                  f"profile {C.mu_to_units(st.profile_rate)} U/h)")
    t.add_row("Basal rate", basal)
    if st.bolus_id:
        kind = refusals.BOLUS_KINDS[st.bolus_kind] if st.bolus_kind < 4 else st.bolus_kind
        t.add_row("Bolus", f"#{st.bolus_id} {kind}: {C.mu_to_units(st.bolus_delivered)} of "
                           f"{C.mu_to_units(st.bolus_requested)} U")
    else:
        t.add_row("Bolus", "none running")
    res = f"{C.mu_to_units(st.reservoir)} U"
    if st.minutes_left >= 0:
        res += f" (about {st.minutes_left // 60} h {st.minutes_left % 60} min at this rate)"
    t.add_row("Reservoir", res)
    t.add_row("Battery", f"{st.battery} %")
    t.add_row("Insulin on board", f"{C.mu_to_units(st.iob)} U")
    t.add_row("Today", f"basal {C.mu_to_units(st.basal_today)} U, "
                       f"bolus {C.mu_to_units(st.bolus_today)} U")
    if st.glucose:
        trend = "" if st.trend == spec.NO_TREND else (
            f" {C.trend_arrow(st.trend)} {st.trend / 10:+g} mg/dL/min")
        t.add_row("Glucose", f"{C.glucose_text(st.glucose)}{trend}, {st.glucose_age} min ago")
    if st.cgm & spec.CGMF_SBL:
        t.add_row("Basal", "[yellow]suspended before low (resumes by itself)[/]")
    names = st.alarm_names
    t.add_row("Alarms", "[red]" + ", ".join(names) + "[/]" if names else "none")
    if st.time_set:
        off = st.offset
        t.add_row("Pump time", f"{_local(st.utc, off)} (UTC{'+' if off >= 0 else '-'}"
                               f"{abs(off) // 60:02d}:{abs(off) % 60:02d})")
    else:
        t.add_row("Pump time", "[yellow]not set[/]")
    if st.last_cmd_id:
        t.add_row("Last command", f"#{st.last_cmd_id}: {st.last_error}"
                  + (f" (detail {st.last_detail})" if st.last_code else ""))
    t.add_row("Self-test", "passed" if not st.selftest else f"[red]failed (bits {st.selftest})[/]")
    if info is not None:
        board = (refusals.BOARD_NAMES[info.board] if info.board < len(refusals.BOARD_NAMES)
                 else f"board {info.board}")
        t.add_row("Pump", f"{board} board, firmware "
                          f"{info.firmware}, pulse {C.mu_to_units(info.pulse_mu)} U, "
                          f"{info.boots} boots")
    return t


def describe_record(r: C.HistoryRecord) -> str:
    """A history record in words: the console's description (protocol/refusals.py), with the
    host's way of writing amounts and settings."""
    return refusals.describe(r.kind, r.arg, r.v1, r.v2, r.v3, C.mu_to_units, setting_display,
                             lambda s: _local(s, 0))


# ============================================================================ commands
def cmd_status(pump: C.Client, args, out: Out):
    st = pump.status()
    out.emit(status_dict(st, pump.info), None if out.json else status_table(st, pump.info))


def _result(out: Out, what: str, res: C.Result, **extra):
    data = {"ok": True, "command": what, "cmd_id": res.cmd_id, "detail": res.detail,
            "reconciled": res.reconciled, **extra}
    text = f"{what}: done" + (" (outcome learned from a fence)" if res.reconciled else "")
    out.emit(data, text=text)


def cmd_bolus(pump: C.Client, args, out: Out):
    now, ext, minutes = args.amount, args.extended, args.minutes
    if now == 0 and ext == 0:
        raise BadInput("bolus amount must be more than 0 U")
    if ext and not minutes:
        raise BadInput("an extended bolus needs --minutes")
    if minutes and not ext:
        raise BadInput("--minutes goes with --extended")
    res = pump.bolus(now, ext, minutes)
    bolus_id = res.detail
    total = now + ext
    if args.no_wait:
        out.emit({"ok": True, "command": "bolus", "cmd_id": res.cmd_id, "bolus_id": bolus_id,
                  "requested": total, "reconciled": res.reconciled},
                 text=f"bolus #{bolus_id} of {C.mu_to_units(total)} U started")
        return EXIT_OK
    delivered, ending = watch_bolus(pump, bolus_id, total, out)
    data = {"ok": ending == spec.BOLUS_COMPLETED, "command": "bolus", "cmd_id": res.cmd_id,
            "bolus_id": bolus_id, "requested": total, "delivered": delivered,
            "ending": refusals.BOLUS_ENDINGS[ending] if 0 <= ending < 3 else ending}
    word = data["ending"]
    out.emit(data, text=f"bolus #{bolus_id} {word}: {C.mu_to_units(delivered)} of "
                        f"{C.mu_to_units(total)} U delivered")
    return EXIT_OK if ending == spec.BOLUS_COMPLETED else EXIT_INCOMPLETE


def _bolus_end_from_history(pump: C.Client, bolus_id: int, next_seq: int):
    first = max(1, next_seq - 16)
    for r in reversed(pump.get_history(first, next_seq - first)):
        if r.kind == spec.H_BOLUS_END and r.v1 == bolus_id:
            return r.v2, r.arg
    return None


def watch_bolus(pump: C.Client, bolus_id: int, total: int, out: Out,
                status_every: float = 2.0) -> tuple[int, int]:
    """Follow a bolus to its end: events first, status as a fallback for lost events."""
    seen = [0]  # delivered when last seen, for the message if the link drops
    try:
        return _follow_bolus(pump, bolus_id, total, out, status_every, seen)
    except (C.LinkError, codec.ProtocolError) as exc:
        raise BolusLinkLost(bolus_id, seen[0], total, exc) from None


def _follow_bolus(pump: C.Client, bolus_id: int, total: int, out: Out, status_every: float,
                  seen: list[int]) -> tuple[int, int]:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    delivered = 0
    progress = Progress(TextColumn("bolus #{task.fields[bid]}"), BarColumn(),
                        TextColumn("{task.fields[done]} of {task.fields[total_u]} U"),
                        TaskProgressColumn(), TimeElapsedColumn(),
                        console=out.err, disable=out.json, transient=False)
    with progress:
        task = progress.add_task("bolus", total=total, bid=bolus_id,
                                 done=C.mu_to_units(0), total_u=C.mu_to_units(total))
        last_status = time.monotonic()
        while True:
            for ev in pump.poll_events(0.25):
                if ev.kind == spec.EV_BOLUS and ev.a == bolus_id:
                    delivered = ev.b
                    # every step drawn: a loaded host reads several events at once, and
                    # the bar's own refresh would show only the last of them
                    progress.update(task, completed=delivered, done=C.mu_to_units(delivered),
                                    refresh=True)
                elif ev.kind == spec.EV_BOLUS_END and ev.a == bolus_id:
                    delivered = ev.b
                    progress.update(task, completed=delivered, done=C.mu_to_units(delivered))
                    return delivered, ev.c
                elif ev.kind == spec.EV_ALARM and not out.json:
                    progress.console.print(f"[red]{ev.describe()}[/]")
            progress.update(task, completed=delivered, done=C.mu_to_units(delivered))
            seen[0] = delivered
            if time.monotonic() - last_status >= status_every:
                last_status = time.monotonic()
                st = pump.status()
                if st.bolus_id == bolus_id:
                    delivered = seen[0] = max(delivered, st.bolus_delivered)
                    continue
                # the end event was lost: the history knows how it ended
                got = _bolus_end_from_history(pump, bolus_id, st.history_next)
                if got is not None:
                    delivered, ending = got
                    progress.update(task, completed=delivered, done=C.mu_to_units(delivered))
                    return delivered, ending
                return delivered, spec.BOLUS_INTERRUPTED


def cmd_simple(method: str, what: str):
    def run(pump: C.Client, args, out: Out):
        _result(out, what, getattr(pump, method)())
    return run


def cmd_temp(pump: C.Client, args, out: Out):
    if args.rate is not None:
        res = pump.temp_basal(spec.TEMP_ABSOLUTE, args.rate, args.minutes)
        what = f"temp basal {C.mu_to_units(args.rate)} U/h for {args.minutes} min"
    else:
        if args.percent < 0:
            raise BadInput("percent must not be negative")
        res = pump.temp_basal(spec.TEMP_PERCENT, args.percent, args.minutes)
        what = f"temp basal {args.percent} % for {args.minutes} min"
    _result(out, what, res)


def _profile_table(profiles: list[C.Profile], schedule: list[int] | None) -> Table:
    t = table(title="basal profiles", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("name")
    t.add_column("from")
    t.add_column("rate U/h", justify="right")
    t.add_column("used on")
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    for p in profiles:
        used = ", ".join(d for d, i in zip(days, schedule or [], strict=False) if i == p.index)
        for n, (start, rate) in enumerate(p.segments()):
            t.add_row(str(p.index) if n == 0 else "", p.name if n == 0 else "", start,
                      C.mu_to_units(rate), used if n == 0 else "")
    return t


def cmd_basal(pump: C.Client, args, out: Out):
    if args.action == "show":
        indexes = [args.index] if args.index is not None else range(spec.PROFILES)
        profiles = []
        for i in indexes:
            try:
                profiles.append(pump.get_profile(i))
            except C.PumpRefused:
                if args.index is not None:
                    raise
        sched = pump.get_schedule()
        profiles = [p for p in profiles if p.starts]
        out.emit({"profiles": [asdict(p) for p in profiles], "schedule": sched},
                 _profile_table(profiles, sched))
        return
    segs = [parse_segment(s) for s in args.segments]
    segs.sort()
    starts = [s for s, _ in segs]
    if starts[0] != 0:
        raise BadInput("the first segment must start at 00:00")
    if len(set(starts)) != len(starts):
        raise BadInput("two segments start at the same time")
    if not 0 <= args.index < spec.PROFILES:
        raise BadInput(f"profile index must be 0..{spec.PROFILES - 1}")
    try:
        name = args.name.encode("ascii")
    except UnicodeEncodeError:
        raise BadInput("profile name must be ASCII") from None
    if not 1 <= len(name) <= spec.PROFILE_NAME_LEN:
        raise BadInput(f"profile name must be 1..{spec.PROFILE_NAME_LEN} characters")
    res = pump.set_profile(args.index, name, starts, [r for _, r in segs])
    _result(out, f"profile {args.index} '{args.name}' ({len(segs)} segments)", res)


def cmd_schedule(pump: C.Client, args, out: Out):
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    if args.action == "show":
        if args.days:
            raise BadInput("schedule show takes no arguments")
        sched = pump.get_schedule()
        t = table(title="weekly schedule", title_justify="left")
        for d in days:
            t.add_column(d, justify="center")
        t.add_row(*(str(i) for i in sched))
        out.emit({"schedule": sched}, t)
        return
    if len(args.days) != 7:
        raise BadInput("schedule set needs 7 profile indexes, Monday first")
    if any(not 0 <= d < spec.PROFILES for d in args.days):
        raise BadInput(f"profile indexes are 0..{spec.PROFILES - 1}")
    _result(out, "schedule " + " ".join(map(str, args.days)), pump.set_schedule(args.days))


def cmd_settings(pump: C.Client, args, out: Out):
    if args.action == "show":
        if args.value is not None:
            raise BadInput("settings show takes at most a setting name")
        values = pump.get_settings()
        rows = spec.SETTINGS
        if args.name:
            sid = _setting(args.name)
            rows = (spec.SETTINGS[sid],)
        t = table(title="settings", title_justify="left")
        for col, just in (("name", "left"), ("value", "right"), ("default", "right"),
                          ("range", "right")):
            t.add_column(col, justify=just)
        data = {}
        for row in rows:
            sid = spec.SETTINGS.index(row)
            name, default, lo, hi, unit = row
            data[name] = {"value": values[name], "unit": unit, "default": default,
                          "min": lo, "max": hi}
            t.add_row(name, setting_display(sid, values[name]), setting_display(sid, default),
                      f"{setting_display(sid, lo)} .. {setting_display(sid, hi)}")
        out.emit(data, t)
        return
    if args.name is None or args.value is None:
        raise BadInput("usage: settings set NAME VALUE")
    sid = _setting(args.name)
    value = setting_to_wire(sid, args.value)
    _, _, lo, hi, _unit = spec.SETTINGS[sid]
    if not lo <= value <= hi:
        raise BadInput(f"{args.name} must be {setting_display(sid, lo)} .. "
                       f"{setting_display(sid, hi)}")
    _result(out, f"setting {args.name} = {setting_display(sid, value)}",
            pump.set_setting(sid, value), value=value)


def _setting(name: str) -> int:
    try:
        return C.setting_id(name)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def cmd_time(pump: C.Client, args, out: Out):
    if args.action == "show":
        if args.when is not None:
            raise BadInput("time show takes no arguments (did you mean: time set ...?)")
        st = pump.status()
        host = dt.datetime.now(dt.UTC)
        data = {"time_set": bool(st.time_set), "utc": st.utc, "offset": st.offset,
                "local_time": st.local_time.isoformat() if st.time_set else None,
                "drift_s": st.utc - C.pump_seconds(host)}
        text = (f"pump time {st.local_time.isoformat()} (host differs by "
                f"{data['drift_s']} s)" if st.time_set else "pump time not set")
        out.emit(data, text=text)
        return
    if not args.when:
        raise BadInput("usage: time set ISO-DATETIME|now [--offset MIN]")
    if args.when == "now":
        when = dt.datetime.now().astimezone()
    else:
        try:
            when = dt.datetime.fromisoformat(args.when)
        except ValueError:
            raise BadInput(f"bad date-time {args.when!r}: use ISO 8601, e.g. "
                           "2026-11-16T08:30 or 2026-11-16T08:30+01:00") from None
    if args.offset is not None:
        offset = args.offset
    elif when.tzinfo is not None:
        offset = int(when.utcoffset().total_seconds() // 60)
    else:
        offset = int(dt.datetime.now().astimezone().utcoffset().total_seconds() // 60)
    lo, hi = spec.SETTINGS[spec.SET_UTC_OFFSET][2:4]
    if not lo <= offset <= hi:
        raise BadInput(f"UTC offset must be {lo}..{hi} minutes")
    # the pump's local time is the wall time given; UTC = local - offset
    local = when.replace(tzinfo=None)
    utc = C.pump_seconds(local) - offset * 60
    if utc < 0:
        raise BadInput(f"the pump clock starts at {spec.EPOCH_YEAR}-01-01")
    res = pump.set_time(utc, offset)
    _result(out, f"time set to {local.isoformat(timespec='seconds')} (UTC offset {offset} min)",
            res, utc=utc, offset=offset)


def cmd_history(pump: C.Client, args, out: Out):
    if args.count < 1:
        raise BadInput("--count must be at least 1")
    st = pump.status()
    first = args.first if args.first is not None else max(1, st.history_next - args.count)
    if first < 0:
        raise BadInput("--from must not be negative")
    recs = pump.get_history(first, args.count) if first < st.history_next else []
    t = table(title=f"history from #{first}", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("time")
    t.add_column("kind")
    t.add_column("what")
    for r in recs:
        t.add_row(str(r.seq), _local(r.time, st.offset), r.kind_name, describe_record(r))
    data = [dict(asdict(r), kind_name=r.kind_name, text=describe_record(r)) for r in recs]
    out.emit(data, t)


def cmd_totals(pump: C.Client, args, out: Out):
    if not 1 <= args.days <= 366:
        raise BadInput("--days must be 1..366")
    st = pump.status()
    today = st.local_day
    t = table(title="daily totals", title_justify="left")
    for col in ("day", "basal U", "bolus U", "prime U", "total U"):
        t.add_column(col, justify="right" if "U" in col else "left")
    data = []
    for day in range(today, max(-1, today - args.days), -1):
        tot = pump.get_totals(day)
        row = {"day": day, "date": tot.date.isoformat(), "valid": tot.valid,
               "basal": tot.basal, "bolus": tot.bolus, "prime": tot.prime}
        data.append(row)
        if tot.valid:
            t.add_row(row["date"], C.mu_to_units(tot.basal), C.mu_to_units(tot.bolus),
                      C.mu_to_units(tot.prime), C.mu_to_units(tot.basal + tot.bolus))
        else:
            t.add_row(row["date"], "-", "-", "-", "no record")
    out.emit(data, t)


def cmd_alarms(pump: C.Client, args, out: Out):
    alarms = [a for a in pump.get_alarms() if a.active]
    t = table(title="active alarms", title_justify="left")
    for col in ("id", "alarm", "priority", "acknowledged", "level"):
        t.add_column(col)
    for a in alarms:
        t.add_row(str(a.alarm), a.name, PRIORITIES.get(a.priority, str(a.priority)),
                  "yes" if a.acked else "no", str(a.level))
    out.emit([asdict(a) for a in alarms], t if alarms else None,
             text=None if alarms else "no active alarms")


def cmd_ack(pump: C.Client, args, out: Out):
    try:
        aid = C.alarm_id(args.alarm)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    _result(out, f"alarm {spec.ALARMS[aid][0]} acknowledged", pump.ack_alarm(aid))


def cmd_reservoir(pump: C.Client, args, out: Out):
    if args.action == "rewind":
        _result(out, "rewind", pump.rewind())
    elif args.action == "fill":
        _result(out, f"fill {C.mu_to_units(args.amount)} U", pump.fill(args.amount))
    else:
        kind = spec.PRIME_CANNULA if args.cannula else spec.PRIME_TUBING
        what = f"prime {'cannula' if args.cannula else 'tubing'} {C.mu_to_units(args.amount)} U"
        _result(out, what, pump.prime(kind, args.amount))


def cmd_monitor(pump: C.Client, args, out: Out):
    end = None if args.seconds is None else time.monotonic() + args.seconds
    if not out.json:
        out.err.print("monitoring events (Ctrl-C to stop)")
    while end is None or time.monotonic() < end:
        wait = 0.25 if end is None else max(0.0, min(0.25, end - time.monotonic()))
        for ev in pump.poll_events(wait):
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            out.emit({"time": stamp, "kind": ev.name, "a": ev.a, "b": ev.b, "c": ev.c,
                      "text": ev.describe()}, text=f"{stamp}  {ev.describe()}")


def cmd_cgm(pump: C.Client, args, out: Out):
    if not 1 <= args.hours <= 24:
        raise BadInput("--hours must be 1..24")
    st = pump.status()
    since = max(0, st.utc // 60 - args.hours * 60)
    readings = pump.get_cgm(since)
    t = table(title=f"CGM readings, last {args.hours} h", title_justify="left")
    for col, just in (("time", "left"), ("glucose", "right"), ("change", "right")):
        t.add_column(col, justify=just)
    rows = []
    prev = None
    for r in readings:
        change = None
        if prev is not None and r.minute > prev.minute:
            change = round((r.mg_dl - prev.mg_dl) / (r.minute - prev.minute), 1)
        rows.append({"minute": r.minute, "time": _local(r.utc, st.offset), "mg_dl": r.mg_dl,
                     "text": r.text, "change_per_min": change})
        t.add_row(_local(r.utc, st.offset), r.text,
                  "" if change is None else f"{change:+g}/min")
        prev = r
    trend = None if st.trend == spec.NO_TREND else st.trend / 10
    flags = [name for bit, name in ((spec.CGMF_WARMUP, "sensor warming up"),
                                    (spec.CGMF_EXPIRED, "sensor expired"),
                                    (spec.CGMF_LOST, "signal loss"),
                                    (spec.CGMF_SBL, "basal suspended before low"),
                                    (spec.CGMF_SBL_WAIT, "suspend before low waiting"))
             if st.cgm & bit]
    if st.glucose:
        text = (f"latest {C.glucose_text(st.glucose)} {st.glucose_age} min ago, trend "
                + ("unknown" if trend is None else
                   f"{C.trend_arrow(st.trend)} {trend:+g} mg/dL/min"))
    else:
        text = "no reading since the pump started"
    if flags:
        text += "; " + ", ".join(flags)
    out.emit({"readings": rows, "latest": st.glucose, "age_min": st.glucose_age,
              "trend": trend, "flags": flags}, t if readings else None, text=text)


def _calc_value(kind: int, text: str) -> tuple[int, int]:
    """A schedule value from the command line -> (value, high) as the pump stores them."""
    try:
        if kind == spec.CALC_CARB_RATIO:
            d = Decimal(text.strip())
            v = d * 10
            if v != v.to_integral_value():
                raise BadInput(f"carb ratio {text} g/U: at most one decimal")
            return int(v), 0
        if kind == spec.CALC_SENSITIVITY:
            return int(text, 10), 0
        low, sep, high = text.partition("-")
        if not sep:
            raise BadInput(f"target {text!r}: use LOW-HIGH in mg/dL, e.g. 100-120")
        return int(low, 10), int(high, 10)
    except (ArithmeticError, ValueError):
        raise BadInput(f"bad {spec.CALC_KINDS[kind]} value {text!r}") from None


def _calc_display(kind: int, value: int, high: int) -> str:
    if kind == spec.CALC_CARB_RATIO:
        return f"{value / 10:g} g/U"
    if kind == spec.CALC_SENSITIVITY:
        return f"{value} mg/dL per U"
    return f"{value}-{high} mg/dL"


def cmd_calc(pump: C.Client, args, out: Out):
    if args.action == "show":
        t = table(title="bolus calculator", title_justify="left")
        for col in ("schedule", "from", "value"):
            t.add_column(col)
        data = {}
        for kind, name in enumerate(spec.CALC_KINDS):
            sch = pump.get_calc_schedule(kind)
            if sch is None:
                data[name] = None
                t.add_row(name, "-", "[yellow]not programmed[/]")
                continue
            data[name] = [{"from": f, "value": v, "high": h} for f, v, h in sch.segments()]
            for n, (f, v, h) in enumerate(sch.segments()):
                t.add_row(name if n == 0 else "", f, _calc_display(kind, v, h))
        out.emit(data, t)
        return
    kind = spec.CALC_KINDS.index(args.kind)
    segs = []
    for text in args.segments:
        when, sep, value = text.partition("=")
        if not sep:
            raise BadInput(f"bad segment {text!r}: use HH:MM=VALUE")
        segs.append((parse_slot(when), *_calc_value(kind, value)))
    segs.sort()
    starts = [s for s, _, _ in segs]
    if starts[0] != 0:
        raise BadInput("the first segment must start at 00:00")
    if len(set(starts)) != len(starts):
        raise BadInput("two segments start at the same time")
    if len(segs) > spec.CALC_SEGMENTS:
        raise BadInput(f"at most {spec.CALC_SEGMENTS} segments")
    lo, hi = spec.CALC_RANGES[kind]
    for _, v, h in segs:
        if not lo <= v <= hi or (kind == spec.CALC_TARGET and not v <= h <= hi):
            raise BadInput(f"{args.kind} must be {_calc_display(kind, lo, lo)} .. "
                           f"{_calc_display(kind, hi, hi)}"
                           + (" with LOW <= HIGH" if kind == spec.CALC_TARGET else ""))
    res = pump.set_calc_schedule(kind, starts, [v for _, v, _ in segs],
                                 [h for _, _, h in segs])
    _result(out, f"calculator {args.kind} ({len(segs)} segments)", res)


def _ask(question: str, out: Out) -> bool:
    out.err.print(question, end="", markup=False)
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_wizard(pump: C.Client, args, out: Out):
    if not 0 <= args.carbs <= spec.CALC_MAX_CARBS:
        raise BadInput(f"--carbs must be 0..{spec.CALC_MAX_CARBS} g")
    bg_text = args.bg.strip().lower()
    if bg_text == "cgm":
        st = pump.status()
        # the sensor's LOW (below 40) is a usable reading: it is low; HIGH has no value
        if not st.glucose or st.glucose_age > 10 or st.glucose == spec.CGM_HIGH:
            raise BadInput("no usable CGM reading from the last 10 min: give --bg MG_DL")
        bg = st.glucose
    else:
        try:
            bg = int(bg_text, 10)
        except ValueError:
            raise BadInput(f"--bg takes mg/dL, 'cgm' or 0, not {args.bg!r}") from None
        if bg != 0 and not spec.CALC_BG_MIN <= bg <= spec.CALC_BG_MAX:
            raise BadInput(f"--bg must be {spec.CALC_BG_MIN}..{spec.CALC_BG_MAX} mg/dL "
                           "(or 0 for none)")
    sug = pump.calc(args.carbs, bg)
    low = pump.get_settings()["glucose_low"] if bg else 0
    warning = None
    if bg and bg < low:
        warning = (f"glucose {C.glucose_text(bg)} is below the low limit {low} mg/dL"
                   + (" (urgent low)" if bg <= spec.URGENT_LOW else "")
                   + ": treat the low first (fast-acting carbohydrate) and check again; "
                     "no correction insulin is suggested")
    t = table(title=f"bolus suggestion: {args.carbs} g"
                    + (f", glucose {bg} mg/dL" if bg else ", no glucose"),
              show_header=False, title_justify="left")
    t.add_column("part")
    t.add_column("U", justify="right")
    t.add_column("how")
    t.add_row("food", C.mu_to_units(sug.food),
              f"{args.carbs} g / {sug.carb_ratio / 10:g} g/U")
    how = "no glucose given" if sug.no_bg else (
        f"to target {sug.target_low}-{sug.target_high} mg/dL, "
        f"{sug.sensitivity} mg/dL per U")
    t.add_row("correction", C.mu_to_units(sug.correction), how)
    t.add_row("insulin on board", C.mu_to_units(-sug.iob), "subtracted")
    notes = []
    if sug.floored:
        notes.append("not below 0")
    if sug.rounded:
        notes.append(f"rounded down from {C.mu_to_units(sug.unrounded)} U to whole pulses")
    t.add_row("[bold]suggested[/]", f"[bold]{C.mu_to_units(sug.total)}[/]", "; ".join(notes))
    data = {"carbs": args.carbs, "bg": bg, **asdict(sug), "rounded": sug.rounded,
            "delivered": 0, "bolus_id": None, "warning": warning}
    if not out.json:
        out.console.print(t)
    if warning:
        out.err.print(f"[bold red]warning:[/] {warning}")
        if sug.correction > 0:  # the pump's calculator never does this below its target
            raise C.ProtocolError(f"the pump suggests {C.mu_to_units(sug.correction)} U of "
                                  "correction for a low glucose: not delivered")
    if sug.total == 0:
        data["ok"] = True
        out.emit(data, text="nothing to deliver")
        return EXIT_OK
    if sug.over_max:
        raise C.PumpRefused(spec.E_OVER_LIMIT, spec.SET_MAX_BOLUS, "suggested bolus")
    if warning and args.yes:  # a low is never treated with insulin unasked
        data["ok"] = True
        out.emit(data, text="not delivered: glucose is low (--yes does not confirm a bolus "
                            "at low glucose; answer the question instead)")
        return EXIT_OK
    question = "glucose is low: deliver anyway" if warning else "deliver"
    if not args.yes and not _ask(f"{question} {C.mu_to_units(sug.total)} U? [y/N] ", out):
        data["ok"] = True
        out.emit(data, text="not delivered")
        return EXIT_OK
    res = pump.bolus(sug.total)
    bolus_id = res.detail
    data.update(bolus_id=bolus_id, cmd_id=res.cmd_id)
    if args.no_wait:
        data["ok"] = True
        out.emit(data, text=f"bolus #{bolus_id} of {C.mu_to_units(sug.total)} U started")
        return EXIT_OK
    delivered, ending = watch_bolus(pump, bolus_id, sug.total, out)
    data.update(ok=ending == spec.BOLUS_COMPLETED, delivered=delivered,
                ending=refusals.BOLUS_ENDINGS[ending] if 0 <= ending < 3 else ending)
    out.emit(data, text=f"bolus #{bolus_id} {data['ending']}: {C.mu_to_units(delivered)} of "
                        f"{C.mu_to_units(sug.total)} U delivered")
    return EXIT_OK if ending == spec.BOLUS_COMPLETED else EXIT_INCOMPLETE


REPORT_MAX_HOURS = 14 * 24  # the consensus ambulatory glucose profile covers 14 days


def cmd_report(pump: C.Client, args, out: Out):
    if not 1 <= args.hours <= REPORT_MAX_HOURS:
        raise BadInput(f"--hours must be 1..{REPORT_MAX_HOURS}")
    if not 1 <= args.days <= 96:
        raise BadInput("--days must be 1..96")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise BadInput("the report needs matplotlib: pip install 'micropump[report]'")
    from host_tools import report

    earlier = []
    for name in args.cgm:
        try:
            earlier += report.load_readings(name)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    data = report.collect(pump, hours=args.hours, days=args.days, earlier=earlier)
    png = Path(args.out)
    report.render_png(data, png)
    summary = report.summary(data)
    html = None
    if args.html:
        html = png.with_suffix(".html")
        report.render_html(data, png, html)
    exported = []
    if args.export:
        exported = report.export(data, args.export, describe=describe_record)
    t = table(title="daily totals", title_justify="left")
    for col in ("day", "basal U", "bolus U", "total U"):
        t.add_column(col, justify="left" if col == "day" else "right")
    for row in summary["totals"]:
        t.add_row(row["date"], f"{row['basal_u']:.2f}", f"{row['bolus_u']:.2f}",
                  f"{row['total_u']:.2f}")
    text = (f"{report.metrics_text(summary['cgm'])}; {_count(summary['boluses'], 'bolus')}, "
            f"{_count(summary['suspensions'], 'suspension')}, "
            f"{_count(summary['alarms'], 'alarm')}; wrote {png}"
            + (f" and {html}" if html else "")
            + (f"; exported history and CGM to {args.export}" if exported else ""))
    out.emit(dict(summary, png=str(png), html=str(html) if html else None,
                  exported=[str(p) for p in exported]), t, text=text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _emit_counters(title: str, counters, out: Out):
    t = table(title=title, title_justify="left")
    t.add_column("counter")
    t.add_column("value", justify="right")
    for k, v in asdict(counters).items():
        t.add_row(k, str(v))
    out.emit(asdict(counters), t)


def cmd_link_stats(pump: C.Client, args, out: Out):
    _emit_counters("link statistics", pump.get_link_stats(), out)


def cmd_sensor_stats(pump: C.Client, args, out: Out):
    _emit_counters("sensor link statistics", pump.get_sensor_stats(), out)


COMMANDS = {
    "status": cmd_status,
    "bolus": cmd_bolus,
    "cancel-bolus": cmd_simple("cancel_bolus", "cancel bolus"),
    "temp-basal": cmd_temp,
    "cancel-temp": cmd_simple("cancel_temp_basal", "cancel temp basal"),
    "suspend": cmd_simple("suspend", "suspend"),
    "resume": cmd_simple("resume", "resume"),
    "basal": cmd_basal,
    "schedule": cmd_schedule,
    "settings": cmd_settings,
    "time": cmd_time,
    "history": cmd_history,
    "totals": cmd_totals,
    "alarms": cmd_alarms,
    "ack": cmd_ack,
    "reservoir": cmd_reservoir,
    "monitor": cmd_monitor,
    "link-stats": cmd_link_stats,
    "sensor-stats": cmd_sensor_stats,
    "cgm": cmd_cgm,
    "wizard": cmd_wizard,
    "calc": cmd_calc,
    "report": cmd_report,
}


# ============================================================================ emulate
# The pump `pumpctl emulate --setup` (and so `make emulate`) programs: a plain adult basal
# profile, a 200 U reservoir, tubing and cannula primed.
SETUP_PROFILE = ("day", [0, 12, 22, 44], [800, 1200, 1000, 700])  # 00:00 06:00 11:00 22:00
SETUP_FILL = 200000
SETUP_PRIME = ((spec.PRIME_TUBING, 10000), (spec.PRIME_CANNULA, 300))


def emulator_setup(pump: C.Client, say) -> None:
    """Bring a fresh pump to delivering basal, one command at a time, saying why."""
    st = pump.status()
    if st.delivering:
        say("  the pump is delivering already: set-up skipped")
        return
    now = dt.datetime.now().astimezone()
    offset = int(now.utcoffset().total_seconds() // 60)
    name, starts, rates = SETUP_PROFILE
    steps = [
        (f"clock: {now:%Y-%m-%d %H:%M} (UTC offset {offset} min), from this computer",
         lambda: pump.set_time(C.pump_seconds(now.astimezone(dt.UTC)), offset)),
        ("basal profile 0 'day': 00:00 0.8 U/h, 06:00 1.2, 11:00 1.0, 22:00 0.7",
         lambda: pump.set_profile(0, name, starts, rates)),
        ("rewind the plunger for a new reservoir", pump.rewind),
        ("fill: a 200 U reservoir", lambda: pump.fill(SETUP_FILL)),
        ("prime the tubing with 10 U (not counted as delivered)",
         lambda: pump.prime(*SETUP_PRIME[0])),
        ("fill the cannula with 0.3 U", lambda: pump.prime(*SETUP_PRIME[1])),
        ("resume: basal delivery starts (a new pump boots suspended)", pump.resume),
    ]
    for what, action in steps:
        try:
            action()
            say(f"  [green]ok[/]  {what}")
        except C.PumpRefused as exc:
            say(f"  [yellow]refused[/]  {what}: {_with_limit(pump, exc).describe()}")


def _clock_text(emu_t: dict) -> str:
    speed = emu_t.get("speed", 1000)
    if speed == 0:
        return "lockstep (moves when a host advances it)"
    if speed == 1000:
        return "real time"
    return f"{speed / 1000:g} x real time"


def _tel_local(tel: dict) -> str:
    if not tel.get("time_set"):
        return "not set"
    return _local(tel["utc"], tel.get("offset", 0))


def led_buzzer_text(e: dict) -> str:
    """The alarm LED pattern and what the buzzer plays now (ALM-8), from telemetry."""
    led = e.get("led_pattern") or {"priority": e.get("led", 0), "colour": "off"}
    prio = led["priority"]
    if not prio:
        text = "LED off"
    elif led.get("steady"):
        text = f"LED {led['colour']} steady ({PRIORITIES.get(prio)})"
    else:
        text = (f"LED {led['colour']} flashing {led['flash_mhz'] / 1000:g} Hz "
                f"({PRIORITIES.get(prio)})")
    playing = [g for g in e.get("signals", []) if g[3] < 0]
    if playing:
        _start, p, level, _stop = playing[-1]
        text += f" / buzzer: {PRIORITIES.get(p)} priority signal, level {level}"
    else:
        text += " / buzzer silent"
    sounds = sum(e.get("sounds", []))
    return text + f", {sounds} annunciation" + ("" if sounds == 1 else "s")


def save_alarm_wav(tel: dict, path: str, say) -> None:
    """Write what the emulator's buzzer played this boot (its recorded signals) as a WAV."""
    from host_tools.alarm_signals import recorded_pulses, write_wav

    pulses = recorded_pulses((tel or {}).get("emu", {}))
    if not pulses:
        say(f"no alarm sounded: {path} not written")
        return
    seconds = write_wav(pulses, path)
    say(f"alarm sounds written to {path} ({len(pulses)} tone pulses, {seconds:.1f} s)")


def emulate_table(tel: dict, emu) -> Table:
    """The live status table of `pumpctl emulate`, from the emulator's telemetry."""
    t = table(title="micropump emulator (Ctrl-C stops)", show_header=False,
              title_justify="left")
    t.add_column("item", style="bold")
    t.add_column("value")
    if not tel:
        t.add_row("Pump", "booting ...")
        return t
    e = tel.get("emu", {})
    stop = tel.get("stop", 0)
    t.add_row("Pump time", f"{_tel_local(tel)}   clock: {_clock_text(e)}")
    t.add_row("Delivery", "[green]delivering[/]" if stop == 0 else
              f"[red]stopped: {refusals.STOP_REASONS[stop] if stop < 7 else stop}[/]")
    basal = f"{C.mu_to_units(tel['basal_rate'])} U/h"
    if tel.get("temp_kind"):
        basal += f" (temp basal, {tel['temp_left_min']} min left)"
    t.add_row("Basal rate", basal)
    if tel.get("bolus_id"):
        t.add_row("Bolus", f"#{tel['bolus_id']}: {C.mu_to_units(tel['bolus_delivered'])} of "
                           f"{C.mu_to_units(tel['bolus_requested'])} U")
    t.add_row("Reservoir", f"{C.mu_to_units(tel['reservoir'])} U")
    t.add_row("Battery", f"{e.get('battery_u', tel['battery'] * 10**6) / 10**6:.3f} %")
    t.add_row("Insulin on board", f"{C.mu_to_units(tel['iob'])} U")
    t.add_row("Today", f"basal {C.mu_to_units(tel['basal_today'])} U, "
                       f"bolus {C.mu_to_units(tel['bolus_today'])} U")
    names = [spec.ALARMS[a][0] for a in tel.get("alarms", []) if 0 <= a < spec.ALARM_COUNT]
    t.add_row("Alarms", "[red]" + ", ".join(names) + "[/]" if names else "none")
    t.add_row("LED / buzzer", led_buzzer_text(e))
    t.add_row("Plunger", f"{e.get('motor_pos', 0)} pulses from home, odometer "
                         f"{e.get('odometer', 0)}; line {e.get('line_kpa', 0)} kPa"
                         + (" [red](occluded)[/]" if e.get("occluded") else ""))
    faults = [k for k in ("stuck", "sensor_loss", "storage_fail") if e.get(k)]
    faults += [n for n, v in zip(("drop_rx", "drop_tx", "corrupt_rx", "corrupt_tx"),
                                 e.get("link_faults", []), strict=False) if v]
    if e.get("cut_in_ms", -1) >= 0:
        faults.append(f"power cut in {e['cut_in_ms'] / 1000:g} s")
    t.add_row("Faults", ", ".join(faults) if faults else "none")
    t.add_row("Boots", f"{tel.get('boots', 0)} ({emu.restarts} power cuts this session)")
    return t


def emulate_line(tel: dict) -> str:
    """One plain line of status (when stdout is not a terminal)."""
    if not tel:
        return "booting ..."
    e = tel.get("emu", {})
    stop = tel.get("stop", 0)
    names = [spec.ALARMS[a][0] for a in tel.get("alarms", []) if 0 <= a < spec.ALARM_COUNT]
    return (f"pump {_tel_local(tel)} | "
            + ("delivering" if stop == 0 else f"stopped: {refusals.STOP_REASONS[stop]}")
            + f" | basal {C.mu_to_units(tel['basal_rate'])} U/h"
            f" | reservoir {C.mu_to_units(tel['reservoir'])} U"
            f" | battery {e.get('battery_u', 0) / 10**6:.3f} %"
            f" | IOB {C.mu_to_units(tel['iob'])} U"
            f" | alarms {', '.join(names) or '-'}")


def run_patient(emu, args, patient, say) -> None:
    """`emulate --patient NAME --run HOURS`: set up for the patient, run in lockstep."""
    from host_tools.patient import DayDriver, setup_pump

    now = dt.datetime.now().astimezone()
    offset = int(now.utcoffset().total_seconds() // 60)
    six = now.replace(hour=6, minute=0, second=0, microsecond=0)
    with C.connect(emu.port, key=C.load_key(emu.key_path)) as pump:
        th = setup_pump(pump, args.patient, C.pump_seconds(six.astimezone(dt.UTC)),
                        offset=offset)
        say(f"set up for {args.patient}: clock {six:%Y-%m-%d %H:%M}, basal "
            f"{th['rate_mu'] / 1000:g} U/h, carb ratio {th['carb_ratio']:g} g/U, "
            f"sensitivity {th['correction']:.0f} mg/dL/U; running {args.run:g} h ...")
        drv = DayDriver(pump, patient.meals, say=lambda text: say("  " + text))
        end = int(args.run * 60)
        for hour in range(60, end + 60, 60):
            drv.run_to(min(hour, end))
            st = pump.status()
            say(f"  {C.from_pump_seconds(st.utc, st.offset):%H:%M}  glucose "
                f"{C.glucose_text(st.glucose)}, basal {C.mu_to_units(st.basal_rate)} U/h, "
                f"today {C.mu_to_units(st.basal_today + st.bolus_today)} U")
        say(f"done: {args.run:g} h of virtual time. `pumpctl report` draws it.")


def cmd_emulate(args, out: Out) -> int:
    from rich.live import Live

    from host_tools.launch import launch

    say = out.err.print if out.json else out.console.print
    patient = None
    try:
        if (args.scenario or args.run) and not args.patient:
            raise ValueError("--scenario and --run need --patient")
        if args.patient:
            from host_tools.patient import PatientConfig, PatientUnavailable

            try:
                patient = PatientConfig.from_files(args.patient, args.scenario,
                                                   args.sensitivity)
            except PatientUnavailable as exc:
                raise ValueError(str(exc)) from None
        emu = launch(args.state, speed=args.speed, seed=args.seed,
                     lockstep=args.lockstep or bool(args.run),
                     console=args.console, pulse_mu=args.pulse, fresh=args.fresh,
                     cgm_trace=args.cgm_trace, patient=patient, sensor=args.sensor)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise C.LinkError(f"cannot start the emulator: {exc}") from None
    try:
        info = {"port": emu.port, "console_port": emu.console_port,
                "sensor_port": emu.sensor_port,
                "key": str(emu.key_path), "state": str(emu.state_dir), "seed": emu.seed}
        if out.json:
            print(json.dumps({"emulator": info}), flush=True)
        say(f"[bold]protocol port[/]  {emu.port}")
        if emu.console_port:
            say(f"[bold]bench console[/]  {emu.console_port}")
        if emu.sensor_port:
            say(f"[bold]sensor link[/]    {emu.sensor_port}")
        say(f"[bold]pairing key[/]    {emu.key_path}")
        say(f"[bold]state[/]          {emu.state_dir} (seed {emu.seed})")
        if emu.patient is not None:
            say(f"[bold]patient[/]        {args.patient} (simglucose, UVA/Padova 2008), "
                f"{len(patient.meals)} meals, insulin sensitivity x{args.sensitivity:g}, "
                f"steady-state basal {emu.patient.basal_u_per_h:.2f} U/h")
        if args.run:
            run_patient(emu, args, patient, say)
        elif args.setup:
            say("setting the pump up over the protocol, as a user would:")
            with C.connect(emu.port, key=C.load_key(emu.key_path)) as pump:
                emulator_setup(pump, say)
        say("drive it from another terminal, like a pump on a USB port:", soft_wrap=True)
        say(f"  export PUMPCTL_PORT={emu.port} PUMPCTL_KEY={emu.key_path}", soft_wrap=True)
        say(f"  (or give --state {emu.state_dir} to each command)", soft_wrap=True)
        ctl = ".venv/bin/pumpctl" if in_checkout() else "pumpctl"
        say(f"  {ctl} status; {ctl} bolus 1.5", soft_wrap=True)
        if emu.console_port:
            say(f"  picocom {emu.console_port}   (the bench console: text commands)",
                soft_wrap=True)
        end = None if args.seconds is None else time.monotonic() + args.seconds
        live = out.console.is_terminal and not out.json

        def done() -> bool:
            return end is not None and time.monotonic() >= end

        if live:
            with Live(emulate_table(emu.telemetry, emu), console=out.console,
                      refresh_per_second=4) as view:
                while not done() and emu.running():
                    emu.next_telemetry(1.5)
                    view.update(emulate_table(emu.telemetry, emu))
        else:
            last = None
            while not done() and emu.running():
                tel = emu.next_telemetry(1.5)
                line = json.dumps(tel) if out.json else emulate_line(tel)
                if line != last:  # a paused (lockstep) clock would repeat the same line
                    print(line, flush=True)
                    last = line
        if not emu.running():
            raise C.LinkError(f"the emulator stopped (exit status {emu.exit_code})")
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        emu.close()
        say(f"emulator stopped; its state is kept in {emu.state_dir}")
        if args.alarm_wav:
            save_alarm_wav(emu.telemetry, args.alarm_wav, say)


_GLOBAL_VALUE_OPTIONS = ("--port", "--key", "--timeout", "--retries", "--state")


def _flash_argv(argv: list[str]) -> list[str] | None:
    """For `pumpctl [global options] flash ARGS`: the arguments for host_tools.flash
    (ARGS, plus --port/--key given before `flash`); None for any other command."""
    given: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_VALUE_OPTIONS:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            given[name] = value
        elif arg != "--json":
            break
        i += 1
    if i >= len(argv) or argv[i] != "flash":
        return None
    if "--state" in given:  # an emulator is not flashed: it runs the sources as they are
        raise BadInput("flash deploys to a board's REPL port (--port), not to an emulator "
                       "(--state)")
    rest = argv[i + 1:]
    for opt in ("--port", "--key"):
        if opt in given and not any(a == opt or a.startswith(opt + "=") for a in rest):
            rest += [opt, given[opt]]
    return rest


def _flash(rest: list[str]) -> int:
    from host_tools import flash

    return flash.main(rest)


def cmd_completion(args, out: Out) -> int:
    import argcomplete

    print(argcomplete.shellcode(["pumpctl"], shell=args.shell), end="", flush=True)
    return EXIT_OK


def cmd_sensor(args, out: Out) -> int:
    """Play a CGM transmitter (host_tools/sensor.py): one record every 5 session minutes,
    one line (or JSON object) per record, a summary at the end. From a trace, paced by the
    host's clock (--speed), or by the pump when its protocol port is given; from the
    virtual patient, fed the insulin the pump delivers, paced by the pump (--fast: as fast
    as it accepts)."""
    from host_tools import sensor as SN

    say = out.err.print if out.json else out.console.print
    if not args.speed > 0:
        raise BadInput(f"--speed must be above 0, not {args.speed}")
    if args.patient and args.minutes is None and args.expiry is None:
        raise BadInput("--patient needs --minutes N (or --expiry): how long to play")
    if not args.patient and (args.scenario or args.sensitivity != 1.0):
        raise BadInput("--scenario and --sensitivity need --patient")
    if args.minutes is not None and args.minutes < 1:
        raise BadInput(f"--minutes must be 1 or more, not {args.minutes}")
    if args.first % SN.EVERY_MIN:
        raise BadInput(f"--from must be a multiple of {SN.EVERY_MIN} minutes, not {args.first}")
    patient = None
    try:
        if args.patient:
            from host_tools.patient import PatientConfig, PatientModel, PatientUnavailable

            try:
                patient = PatientModel(PatientConfig.from_files(
                    args.patient, args.scenario, args.sensitivity))
            except PatientUnavailable as exc:
                raise ValueError(str(exc)) from None
            source = SN.patient_glucose(patient)
            end = (args.first + args.minutes if args.minutes is not None
                   else args.expiry + 1)
        else:
            rows = SN.read_trace(args.trace)
            source = lambda m: SN.trace_value(rows, m)  # noqa: E731
            if args.minutes is not None:
                end = args.first + args.minutes
            else:
                end = rows[-1][0] + 1 if args.expiry is None else args.expiry + 1
        if end <= args.first:
            raise ValueError(f"nothing to play: --from {args.first} is at or after the end "
                             f"(minute {end})")
        session = SN.SensorSession(source, warmup_min=args.warmup, expiry_min=args.expiry,
                                   noise_seed=args.noise, dropout=args.dropout,
                                   seed=args.seed, calibration_every_min=args.calibrate_every,
                                   calibration_gap_min=args.calibration_gap)
        target = None
        if args.patient or args.fast or args.pump_port:
            target = config.resolve(args.pump_port, args.pump_key, args.state_dir)
            if not target.port:
                raise ValueError("--patient and --fast need the pump's protocol port: "
                                 "--pump-port URL (and --pump-key FILE), or --state DIR of "
                                 "an emulator")
        key = C.load_key(target.key) if target is not None and target.key else None
        tx = SN.Transmitter(args.sensor_port, SN.DEFAULT_TX if args.tx is None else args.tx)
    except (ValueError, OSError, config.ConfigError) as exc:
        raise BadInput(str(exc)) from None
    pump = None
    sent = taken = 0
    first = last = None
    try:
        with tx:
            if target is not None:
                pump = C.connect(target.port, key=key, timeout=args.timeout,
                                 retries=args.retries)
            try:
                steps = SN.play(session, tx, end, first=args.first, pump=pump,
                                patient=patient, fast=args.fast, speed=args.speed, say=say)
                for r in steps:
                    sent += r.record is not None
                    taken += bool(r.taken)
                    if r.glucose is not None:
                        first = r.glucose if first is None else first
                        last = r.glucose
                    _emit_reading(out, r)
            except SN.NotPaired as exc:
                raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if pump is not None:
            pump.close()
        if sent or session.dropped or session.uncalibrated:
            text = (f"{sent} readings sent" + (f", {taken} taken by the pump" if pump else "")
                    + f", {session.dropped} dropouts, {session.uncalibrated} in calibration "
                    "gaps")
            if patient is not None:
                text += (f"; insulin delivered {C.mu_to_units(patient.insulin_mu)} U, "
                         f"patient {first:.0f} -> {last:.0f} mg/dL")
            say(text)
    return EXIT_OK


def _emit_reading(out: Out, r) -> None:
    fields = _record_fields(r.record)
    data = {"minute": r.minute, "sent": r.record is not None, **fields}
    text = f"minute {r.minute:5d}: " + (_describe_record(fields) if r.record is not None
                                        else "nothing sent")
    if r.taken is not None:
        data["taken"] = r.taken
        text += ", taken" if r.taken else ", dropped by the pump (sensor-stats)"
    if r.insulin_mu is not None:
        data["glucose"] = None if r.glucose is None else round(r.glucose, 3)
        data["insulin_mu"] = r.insulin_mu
        text += f" (source {r.glucose:.1f}" if r.glucose is not None else " (source -"
        text += f", +{C.mu_to_units(r.insulin_mu)} U insulin)"
    out.emit(data, text=text)


def _record_fields(record: bytes | None) -> dict:
    from protocol import cgm_record as H

    if record is None:
        return {}
    p = H.parse_record(record)
    g = H.sfloat_value(p.glucose)
    status = (p.status or 0) | (p.cal_temp or 0) << 8 | (p.warning or 0) << 16
    return {"mg_dl": None if g is None else float(g), "status": status}


def _describe_record(fields: dict) -> str:
    from firmware import cgm_record as R

    st = fields["status"]
    if st & R.SS_SESSION_STOPPED:
        return "session stopped (sensor expired)"
    if fields["mg_dl"] is None:
        return "warming up (no glucose yet)"
    if st & R.SS_BELOW_DEVICE:
        return "LOW (below 40 mg/dL)"
    if st & R.SS_ABOVE_DEVICE:
        return "HIGH (above 400 mg/dL)"
    return f"{fields['mg_dl']:g} mg/dL"


LOCAL_COMMANDS = {"emulate": cmd_emulate, "completion": cmd_completion, "sensor": cmd_sensor}


# ============================================================================ main
def _with_limit(pump: C.Client | None, exc: C.PumpRefused) -> C.PumpRefused:
    """An over-limit refusal says the limit's value: read it back from the pump."""
    if (exc.code == spec.E_OVER_LIMIT and exc.limit is None and pump is not None
            and 0 <= exc.detail < spec.SETTINGS_COUNT):
        try:
            exc.explain(limit=pump.get_settings()[spec.SETTINGS[exc.detail][0]])
        except (C.PumpError, codec.ProtocolError):
            pass  # the refusal still names the limit
    return exc


def _fail(out: Out | None, status: int, message: str, **extra) -> int:
    """One line on stderr (and a JSON object on stdout with --json); returns the exit code."""
    print(f"pumpctl: error: {message}", file=sys.stderr, flush=True)
    if out is not None and out.json:
        print(json.dumps({"ok": False, "error": message, "exit": status, **extra}), flush=True)
    return status


def main(argv: list[str] | None = None, connect=C.connect) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (argcomplete)
        import argcomplete

        argcomplete.autocomplete(build_parser())
    try:
        flash_argv = _flash_argv(argv)
    except BadInput as exc:
        return _fail(None, EXIT_BAD_INPUT, str(exc))
    if flash_argv is not None:  # host_tools.flash parses its own arguments
        return _flash(flash_argv)
    out = Out("--json" in argv)
    try:
        args = build_parser().parse_args(argv)
    except BadInput as exc:
        return _fail(out, EXIT_BAD_INPUT, str(exc))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    out = Out(args.json)
    if args.command in LOCAL_COMMANDS:  # no connection: these start what they talk to
        try:
            return LOCAL_COMMANDS[args.command](args, out)
        except BadInput as exc:
            return _fail(out, EXIT_BAD_INPUT, str(exc))
        except C.PumpRefused as exc:
            return _fail(out, EXIT_REFUSED, str(exc), code=exc.code, name=exc.name,
                         detail=exc.detail)
        except (C.PumpError, codec.ProtocolError) as exc:
            return _fail(out, EXIT_LINK, str(exc))
    try:
        target = config.resolve(args.port, args.key, args.state_dir)
    except config.ConfigError as exc:
        return _fail(out, EXIT_BAD_INPUT, str(exc))
    if not target.port:
        return _fail(out, EXIT_BAD_INPUT,
                     f"no port: give --port URL or --state DIR, set PUMPCTL_PORT, or write "
                     f"port = \"...\" into {config.config_path()}")
    pump = None
    try:
        key = C.load_key(target.key) if target.key else None
        pump = connect(target.port, key=key, timeout=args.timeout, retries=args.retries)
        code = COMMANDS[args.command](pump, args, out)
        return EXIT_OK if code is None else code
    except (BadInput, C.KeyFileError) as exc:
        return _fail(out, EXIT_BAD_INPUT, str(exc))
    except C.PumpRefused as exc:
        return _fail(out, EXIT_REFUSED, str(_with_limit(pump, exc)), code=exc.code,
                     name=exc.name, detail=exc.detail)
    except (C.LinkError, C.SchemaMismatch) as exc:
        return _fail(out, EXIT_LINK, str(exc), **getattr(exc, "extra", {}))
    except codec.ProtocolError as exc:
        return _fail(out, EXIT_LINK, f"protocol error: {exc}")
    except ValueError as exc:  # a value the client refused before sending
        return _fail(out, EXIT_BAD_INPUT, str(exc))
    except KeyboardInterrupt:
        if args.command == "bolus":
            return _fail(out, EXIT_INTERRUPTED, "stopped watching; the bolus goes on: "
                                                "`pumpctl cancel-bolus` stops it")
        return _fail(out, EXIT_INTERRUPTED, "interrupted")
    finally:
        if pump is not None:
            pump.close()


if __name__ == "__main__":
    sys.exit(main())
