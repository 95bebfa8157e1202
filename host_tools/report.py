"""`pumpctl report`: what a pump did, read over the protocol, drawn as a PNG (matplotlib).

    data = collect(pump, hours=24, days=7)   # queries only: status, CGM, history, totals,
    render_png(data, "report.png")           # profiles, schedule, settings
    render_html(data, "report.png", "report.html")
    summary(data)                            # the numbers printed and drawn

The PNG (Agg backend, no display needed) has, on one time axis in the pump's local time:
glucose (CGM readings) with the 70-180 mg/dL target range shaded, the pump's low and high
alert limits and the urgent-low line (55), reboots and clock changes marked; the basal rate
actually running (the programmed profile of the weekly schedule, changed by temp basals,
zero while delivery is suspended or basal is suspended before low), with suspensions
shaded; boluses as stems labelled with the units delivered; alarms raised, by name. Beside
it: the consensus CGM metrics (cgm_metrics: time below 54 and 70, in 70-180, above 180 and
250 mg/dL, mean, GMI, CV, sensor wear; "no CGM data" when there is none) and the daily
totals (basal and bolus, THR-10) of the last days, so a rising insulin need shows as a
trend. Readings of two days or more (the pump keeps 24 h; earlier exports add to them) get
an ambulatory glucose profile below: percentile bands by time of day. export() writes
history and CGM as CSV and JSON for other tools.

The basal rate is rebuilt from the profiles and schedule the pump holds now and the
history records of the window (temp basal, suspend/resume, suspend before low); a profile
reprogrammed during the window is drawn as it is now.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from host_tools import client as C
from protocol import refusals
from protocol import spec as S

TIR_LOW = 70
TIR_HIGH = 180
URGENT_LOW_LIMIT = 54  # consensus level-2 hypoglycaemia: below 54 mg/dL
VERY_HIGH = 250  # consensus level-2 hyperglycaemia: above 250 mg/dL
STEP_MIN = 1  # basal series resolution


@dataclass
class ReportData:
    now: int  # pump UTC seconds
    offset: int  # UTC offset, minutes
    since: int  # UTC seconds of the window start
    readings: list[C.Reading]
    history: list[C.HistoryRecord]
    profiles: list[C.Profile]
    schedule: list[int]
    settings: dict[str, int]
    totals: list[C.Totals]  # newest first
    status: C.Status | None = None
    basal: list[tuple[int, int]] = field(default_factory=list)  # (UTC s, mU/h) steps


# ----------------------------------------------------------------------------- reading
def history_since(pump: C.Client, since: int, next_seq: int) -> list[C.HistoryRecord]:
    """History records with time >= `since` (pump UTC s), oldest first: pages read
    backwards from the newest until one starts before `since`."""
    out: list[C.HistoryRecord] = []
    last = next_seq - 1
    page = S.HISTORY_PAGE
    while last >= 1:
        first = max(1, last - page + 1)
        recs = pump.get_history(first, last - first + 1)
        out = recs + out
        if not recs or recs[0].time < since or first == 1:
            break
        last = first - 1
    return [r for r in out if r.time >= since]


def collect(pump: C.Client, hours: int = 24, days: int = 7,
            earlier: list[C.Reading] | None = None) -> ReportData:
    """Read the report's window (`hours` back from now) from the pump. The pump keeps 24 h
    of CGM readings (SNS-1): `earlier` ones (exported before) fill the rest of a longer
    window, for the metrics and the ambulatory glucose profile of several days."""
    st = pump.status()
    now = st.utc
    since = now - hours * 3600
    readings = merge_readings(pump.get_cgm(since // 60),
                              [r for r in earlier or [] if since <= r.utc <= now])
    hist = history_since(pump, since, st.history_next)
    profiles = [pump.get_profile(i) for i in range(S.PROFILES)]
    schedule = pump.get_schedule()
    settings = pump.get_settings()
    today = st.local_day
    totals = [pump.get_totals(d) for d in range(today, max(-1, today - days), -1)]
    data = ReportData(now, st.offset, since, readings, hist, profiles, schedule, settings,
                      totals, st)
    data.basal = basal_series(data)
    return data


# ----------------------------------------------------------------------------- analysis
def programmed_rate(data: ReportData, utc: int) -> int:
    local = utc + data.offset * 60
    day, sec = divmod(local, 86400)
    weekday = (day + 2) % 7  # 2020-01-01 was a Wednesday
    prof = data.profiles[data.schedule[weekday]] if data.schedule else data.profiles[0]
    slot = sec // 1800
    rate = prof.rates[0] if prof.rates else 0
    for s, r in zip(prof.starts, prof.rates, strict=True):
        if s <= slot:
            rate = r
    return rate


def _windows(data: ReportData, is_start, is_end, was_on=None) -> list[tuple[int, int]]:
    """(from, to) UTC s spans between start and end records; open at the window's start
    when the first record is one that says the state was on (`was_on`, default: any end),
    at its end when the last one is a start. An end that may also come without the state
    (a reboot) is no evidence that it was on."""
    was_on = was_on or is_end
    spans = []
    begin = None
    seen = False
    for r in data.history:
        if is_start(r):
            if begin is None:
                begin = r.time
            seen = True
        elif is_end(r):
            if begin is None and not seen and was_on(r):
                begin = data.since  # it was on when the window began
            if begin is not None:
                spans.append((begin, r.time))
            begin = None
            seen = True
    if begin is not None:
        spans.append((begin, data.now))
    return spans


def suspensions(data: ReportData) -> list[tuple[int, int, str]]:
    """Delivery stopped (user, occlusion, ...) and basal suspended before low spans."""
    out = []
    reasons = {r.time: r.arg for r in data.history if r.kind == S.H_SUSPEND}
    for a, b in _windows(data, lambda r: r.kind == S.H_SUSPEND,
                         lambda r: r.kind == S.H_RESUME):
        why = reasons.get(a)
        out.append((a, b, refusals.STOP_REASONS[why] if why is not None and why < 7 else "stopped"))
    for a, b in _windows(data, lambda r: r.kind == S.H_SBL and r.arg == 1,
                         lambda r: (r.kind == S.H_SBL and r.arg == 0) or r.kind == S.H_BOOT,
                         lambda r: r.kind == S.H_SBL):
        out.append((a, b, "suspend before low"))
    return sorted(x for x in out if x[1] > x[0])


def temp_basals(data: ReportData) -> list[tuple[int, int, int, int]]:
    """(from, to, kind, value) of the temp basals in the window."""
    out = []
    cur = None
    for r in data.history:
        if r.kind == S.H_TEMP_START:
            if cur is not None:
                out.append((cur[0], r.time, cur[1], cur[2]))
            cur = (r.time, r.arg, r.v1, r.time + r.v2 * 60)
        elif r.kind == S.H_TEMP_END and cur is not None:
            out.append((cur[0], r.time, cur[1], cur[2]))
            cur = None
    if cur is not None:
        out.append((cur[0], min(cur[3], data.now), cur[1], cur[2]))
    return out


def basal_series(data: ReportData) -> list[tuple[int, int]]:
    """(UTC s, mU/h) each minute of the window: the rate running then."""
    stops = suspensions(data)
    temps = temp_basals(data)
    out = []
    t = data.since - data.since % 60
    while t <= data.now:
        rate = programmed_rate(data, t)
        for a, b, kind, value in temps:
            if a <= t < b:
                rate = value if kind == S.TEMP_ABSOLUTE else rate * value // 100
        if any(a <= t < b for a, b, _ in stops):
            rate = 0
        out.append((t, rate))
        t += STEP_MIN * 60
    return out


def boluses(data: ReportData) -> list[tuple[int, int, int]]:
    """(UTC s of the start, delivered mU, bolus id): from the end records (delivered),
    the start record's amount while one is still running."""
    starts = {r.v1: r for r in data.history if r.kind == S.H_BOLUS_START}
    out = []
    ended = set()
    for r in data.history:
        if r.kind == S.H_BOLUS_END:
            s = starts.get(r.v1)
            out.append((s.time if s else r.time, r.v2, r.v1))
            ended.add(r.v1)
    for bid, s in starts.items():
        if bid not in ended:
            out.append((s.time, s.v2 + s.v3, bid))
    return sorted(out)


def alarms_raised(data: ReportData) -> list[tuple[int, str, int]]:
    """(UTC s, alarm name, priority) of every alarm raised in the window."""
    out = []
    for r in data.history:
        if r.kind == S.H_ALARM and r.arg == 0 and 0 <= r.v1 < S.ALARM_COUNT:
            name, prio = S.ALARMS[r.v1]
            out.append((r.time, name, prio))
    return out


def cgm_metrics(readings: list[C.Reading], minutes: float) -> dict | None:
    """The standard CGM metrics of the international consensus on time in range (Battelino
    et al., Diabetes Care 2019) over `minutes` of time: % of readings below 54 and 70
    mg/dL, in 70-180, above 180 and 250; mean; standard deviation; coefficient of
    variation (%); glucose management indicator (GMI %, 3.31 + 0.02392 x mean mg/dL);
    sensor wear (% of the 5-min readings expected that arrived). The sensor's LOW (39)
    and HIGH (401) count as below 54 and above 250. None: no CGM data, nothing to say."""
    vals = [r.mg_dl for r in readings if r.mg_dl > 0]
    n = len(vals)
    if not n:
        return None
    mean = statistics.fmean(vals)
    sd = statistics.stdev(vals) if n > 1 else 0.0

    def pct(count: int) -> float:
        return 100 * count / n

    expected = max(1, int(minutes // 5))
    return {
        "readings": n,
        "below_54": pct(sum(v < URGENT_LOW_LIMIT for v in vals)),
        "below_70": pct(sum(v < TIR_LOW for v in vals)),
        "in_range": pct(sum(TIR_LOW <= v <= TIR_HIGH for v in vals)),
        "above_180": pct(sum(v > TIR_HIGH for v in vals)),
        "above_250": pct(sum(v > VERY_HIGH for v in vals)),
        "mean": mean,
        "sd": sd,
        "cv": 100 * sd / mean,
        "gmi": 3.31 + 0.02392 * mean,
        "wear": min(100.0, 100 * n / expected),
    }


def metrics_text(m: dict | None) -> str:
    """One line of the consensus metrics, or 'no CGM data'."""
    if m is None:
        return "no CGM data"
    return (f"time in range 70-180 mg/dL {m['in_range']:.1f} %, below 70 {m['below_70']:.1f} % "
            f"(below 54 {m['below_54']:.1f} %), above 180 {m['above_180']:.1f} % (above 250 "
            f"{m['above_250']:.1f} %); mean {m['mean']:.0f} mg/dL, GMI {m['gmi']:.1f} %, "
            f"CV {m['cv']:.1f} %; {m['readings']} readings, sensor wear {m['wear']:.0f} %")


AGP_PERCENTILES = (5, 25, 50, 75, 95)
AGP_MIN_DAYS = 2  # an ambulatory glucose profile needs readings of several days


def agp(readings: list[C.Reading], offset: int, bin_min: int = 60) -> list[tuple[int, ...]]:
    """Ambulatory glucose profile: for each `bin_min` of the day (pump local time), the
    5th, 25th, 50th, 75th and 95th percentiles of every reading in it across the days, as
    (minute of the day, p5, p25, p50, p75, p95). Empty when the readings span fewer than
    AGP_MIN_DAYS days (a profile of one day is only that day)."""
    vals = [(r.utc, r.mg_dl) for r in readings if r.mg_dl > 0]
    if len(vals) < 2 or vals[-1][0] - vals[0][0] < (AGP_MIN_DAYS * 24 - 1) * 3600:
        return []
    bins: dict[int, list[int]] = {}
    for utc, mg in vals:
        minute = (utc + offset * 60) % 86400 // 60
        bins.setdefault(minute - minute % bin_min, []).append(mg)
    out = []
    for start in sorted(bins):
        got = bins[start]
        if len(got) < 2:
            continue
        cuts = statistics.quantiles(got, n=100, method="inclusive")
        out.append((start, *(cuts[p - 1] for p in AGP_PERCENTILES)))
    return out


def marks(data: ReportData) -> list[tuple[int, str]]:
    """(UTC s, what) of the events marked on the time axis: reboots and clock changes."""
    out = []
    for r in data.history:
        if r.kind == S.H_BOOT:
            out.append((r.time, "reboot"))
        elif r.kind == S.H_TIME_CHANGE:
            out.append((r.time, "clock set"))
    return out


def merge_readings(pump: list[C.Reading], earlier: list[C.Reading]) -> list[C.Reading]:
    """The pump's readings and earlier exported ones, one per minute, oldest first (the
    pump's own win a tie)."""
    by_minute = {r.minute: r for r in earlier}
    by_minute.update({r.minute: r for r in pump})
    return [by_minute[m] for m in sorted(by_minute)]


def load_readings(path: str | os.PathLike) -> list[C.Reading]:
    """CGM readings exported by `pumpctl report --export` (cgm.json or cgm.csv)."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
            return [C.Reading(int(r["minute"]), int(r["mg_dl"])) for r in rows]
        return [C.Reading(int(r["minute"]), int(r["mg_dl"]))
                for r in csv.DictReader(io.StringIO(text))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read CGM readings from {path}: {exc}") from None


def export(data: ReportData, folder: str | os.PathLike, describe=None) -> list[Path]:
    """History and CGM readings of the report as CSV and JSON for other tools:
    history.csv/.json (seq, time UTC and pump local, kind, arg, v1..v3, text) and
    cgm.csv/.json (UTC minute, time UTC and pump local, mg/dL, text). `describe` turns a
    history record into words (pumpctl.describe_record)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def when(utc: int) -> tuple[str, str]:
        return (C.from_pump_seconds(utc, 0).strftime("%Y-%m-%dT%H:%M:%SZ"),
                _local(data, utc).isoformat(timespec="seconds"))

    history = [{"seq": r.seq, "utc": when(r.time)[0], "local": when(r.time)[1],
                "kind": r.kind_name, "arg": r.arg, "v1": r.v1, "v2": r.v2, "v3": r.v3,
                "text": describe(r) if describe else ""} for r in data.history]
    cgm = [{"minute": r.minute, "utc": when(r.utc)[0], "local": when(r.utc)[1],
            "mg_dl": r.mg_dl, "text": r.text} for r in data.readings]
    written = []
    for name, rows, fields in (
            ("history", history, ("seq", "utc", "local", "kind", "arg", "v1", "v2", "v3",
                                  "text")),
            ("cgm", cgm, ("minute", "utc", "local", "mg_dl", "text"))):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        (folder / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
        written += [folder / f"{name}.csv", folder / f"{name}.json"]
    return written


def summary(data: ReportData) -> dict:
    totals = [{"day": t.day, "date": t.date.isoformat(), "basal_u": t.basal / 1000,
               "bolus_u": t.bolus / 1000, "total_u": (t.basal + t.bolus) / 1000}
              for t in data.totals if t.valid]
    return {"hours": (data.now - data.since) / 3600,
            "cgm": cgm_metrics(data.readings, (data.now - data.since) / 60),
            "totals": totals,
            "boluses": len(boluses(data)),
            "bolus_u": sum(mu for _t, mu, _i in boluses(data)) / 1000,
            "suspensions": len(suspensions(data)),
            "alarms": len(alarms_raised(data)),
            "alarm_names": sorted({n for _t, n, _p in alarms_raised(data)}),
            "reboots": sum(1 for _t, what in marks(data) if what == "reboot"),
            "clock_changes": sum(1 for _t, what in marks(data) if what == "clock set"),
            "agp": [dict(zip(("minute", *(f"p{p}" for p in AGP_PERCENTILES)), row,
                             strict=True)) for row in agp(data.readings, data.offset)]}


# ----------------------------------------------------------------------------- drawing
def _local(data: ReportData, utc: int) -> dt.datetime:
    return C.from_pump_seconds(utc, data.offset).replace(tzinfo=None)


def render_png(data: ReportData, path: str | os.PathLike, dpi: int = 110) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    path = Path(path)
    profile = agp(data.readings, data.offset)
    fig = plt.figure(figsize=(14, 12 if profile else 8.5), layout="constrained")
    heights = (2.2, 1.2, 0.7, 2.0) if profile else (2.2, 1.2, 0.7)
    gs = fig.add_gridspec(len(heights), 2, width_ratios=(3.2, 1), height_ratios=heights)
    ax_g = fig.add_subplot(gs[0, 0])
    ax_b = fig.add_subplot(gs[1, 0], sharex=ax_g)
    ax_a = fig.add_subplot(gs[2, 0], sharex=ax_g)
    ax_tir = fig.add_subplot(gs[0, 1])
    ax_tot = fig.add_subplot(gs[1:3, 1])
    x0, x1 = _local(data, data.since), _local(data, data.now)
    low = data.settings.get("glucose_low", 70)
    high = data.settings.get("glucose_high", 250)

    # glucose
    ax_g.axhspan(TIR_LOW, TIR_HIGH, color="#d8f0d8", label="target 70-180")
    ax_g.axhline(low, color="#d98c00", ls="--", lw=1, label=f"low alert {low}")
    ax_g.axhline(high, color="#c05000", ls="--", lw=1, label=f"high alert {high}")
    ax_g.axhline(S.URGENT_LOW, color="#c00000", ls=":", lw=1,
                 label=f"urgent low {S.URGENT_LOW}")
    if data.readings:
        xs = [_local(data, r.utc) for r in data.readings]
        ys = [r.mg_dl for r in data.readings]
        ax_g.plot(xs, ys, ".-", color="#1f4e9a", ms=3, lw=1, label="CGM")
    for t, what in marks(data):  # reboots and clock changes, across the glucose plot
        x = _local(data, t)
        ax_g.axvline(x, color="#555555", ls="-." if what == "reboot" else ":", lw=1)
        ax_g.annotate(what, (x, 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                      textcoords="offset points", fontsize=7, rotation=90, va="top")
    ax_g.set_ylabel("glucose, mg/dL")
    top = max([300] + [r.mg_dl + 20 for r in data.readings])
    ax_g.set_ylim(30, min(420, top))
    ax_g.legend(loc="upper left", fontsize=8, ncol=5)
    ax_g.set_title(f"micropump report: {x0:%Y-%m-%d %H:%M} to {x1:%Y-%m-%d %H:%M} "
                   f"(pump local time)", loc="left")
    ax_g.grid(alpha=0.3)

    # basal, suspensions, boluses
    if data.basal:
        bx = [_local(data, t) for t, _r in data.basal]
        by = [r / 1000 for _t, r in data.basal]
        ax_b.step(bx, by, where="post", color="#2a7f62", lw=1.5, label="basal U/h")
        ax_b.fill_between(bx, by, step="post", color="#2a7f62", alpha=0.15)
    for a, b, why in suspensions(data):
        color = "#f0a030" if why == "suspend before low" else "#999999"
        ax_b.axvspan(_local(data, a), _local(data, b), color=color, alpha=0.35)
        ax_g.axvspan(_local(data, a), _local(data, b), color=color, alpha=0.15)
    ax_b.set_ylabel("basal, U/h")
    peak = max([0.5] + [r / 1000 for _t, r in data.basal])
    ax_b.set_ylim(0, peak * 1.4)
    ax_bol = ax_b.twinx()
    bol = boluses(data)
    if bol:
        bxs = [_local(data, t) for t, _mu, _i in bol]
        bys = [mu / 1000 for _t, mu, _i in bol]
        ax_bol.vlines(bxs, 0, bys, color="#7a3db8", lw=2)
        ax_bol.plot(bxs, bys, "v", color="#7a3db8", ms=7)
        for x, y in zip(bxs, bys, strict=True):
            ax_bol.annotate(f"{y:.2f} U", (x, y), textcoords="offset points", xytext=(4, 2),
                            fontsize=8, color="#7a3db8")
        ax_bol.set_ylim(0, max(bys) * 1.35)
    else:
        ax_bol.set_ylim(0, 1)
    ax_bol.set_ylabel("bolus, U", color="#7a3db8")
    from matplotlib.patches import Patch

    ax_b.legend(handles=[Patch(color="#2a7f62", alpha=0.5, label="basal running"),
                         Patch(color="#999999", alpha=0.5, label="delivery suspended"),
                         Patch(color="#f0a030", alpha=0.5, label="suspend before low"),
                         Patch(color="#7a3db8", label="bolus (U)")],
                loc="upper left", fontsize=8, ncol=4)
    ax_b.grid(alpha=0.3)

    # alarms
    prio_y = {S.PRIO_HIGH: 3, S.PRIO_MEDIUM: 2, S.PRIO_LOW: 1}
    prio_c = {S.PRIO_HIGH: "#c00000", S.PRIO_MEDIUM: "#d98c00", S.PRIO_LOW: "#4a78c0"}
    last_label: dict[tuple[str, int], int] = {}
    for t, name, prio in alarms_raised(data):
        x = _local(data, t)
        y = prio_y.get(prio, 1)
        ax_a.plot([x], [y], "o", color=prio_c.get(prio, "k"), ms=6)
        key = (name, y)
        if t - last_label.get(key, -10**9) > 3600:  # one label per alarm and hour
            ax_a.annotate(name, (x, y), textcoords="offset points", xytext=(3, 4),
                          fontsize=7, rotation=20)
            last_label[key] = t
    ax_a.set_yticks([1, 2, 3], ["low", "medium", "high"])
    ax_a.set_ylim(0.4, 3.9)
    ax_a.set_ylabel("alarms")
    ax_a.grid(alpha=0.3)
    ax_a.set_xlim(x0, x1)
    ax_a.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    plt.setp(ax_g.get_xticklabels(), visible=False)
    plt.setp(ax_b.get_xticklabels(), visible=False)

    # time in range (consensus metrics)
    m = cgm_metrics(data.readings, (data.now - data.since) / 60)
    if m is None:
        ax_tir.text(0.5, 0.5, "no CGM data", ha="center", va="center", fontsize=12,
                    transform=ax_tir.transAxes)
        ax_tir.set_axis_off()
        ax_g.text(0.5, 0.5, "no CGM data", ha="center", va="center", fontsize=14,
                  color="#777777", transform=ax_g.transAxes)
    else:
        parts = (("below 54", m["below_54"], "#a01010"),
                 ("54-69", m["below_70"] - m["below_54"], "#e05050"),
                 ("70-180", m["in_range"], "#40a040"),
                 ("181-250", m["above_180"] - m["above_250"], "#f0c040"),
                 ("above 250", m["above_250"], "#e08020"))
        bottom = 0.0
        for label, pct, color in parts:
            ax_tir.bar(["time in ranges"], [pct], bottom=bottom, color=color, width=0.5)
            if pct >= 3:
                ax_tir.text(0, bottom + pct / 2, f"{label}: {pct:.1f} %", ha="center",
                            va="center", fontsize=9)
            bottom += pct
        ax_tir.set_ylim(0, 100)
        ax_tir.set_ylabel("% of readings")
        ax_tir.set_title(f"time in range {m['in_range']:.1f} %\nmean {m['mean']:.0f} mg/dL, "
                         f"GMI {m['gmi']:.1f} %, CV {m['cv']:.1f} %\n{m['readings']} "
                         f"readings, sensor wear {m['wear']:.0f} %", fontsize=9)

    # daily totals
    days = [t for t in reversed(data.totals) if t.valid]
    labels = [t.date.strftime("%m-%d") for t in days]
    basal = [t.basal / 1000 for t in days]
    bolus = [t.bolus / 1000 for t in days]
    ax_tot.bar(labels, basal, color="#2a7f62", label="basal")
    ax_tot.bar(labels, bolus, bottom=basal, color="#7a3db8", label="bolus")
    for i, (b1, b2) in enumerate(zip(basal, bolus, strict=True)):
        ax_tot.text(i, b1 + b2, f"{b1 + b2:.1f}", ha="center", va="bottom", fontsize=8)
    ax_tot.set_ylabel("U per day")
    ax_tot.set_title("daily totals (THR-10)", fontsize=10)
    ax_tot.legend(fontsize=8, loc="upper left")
    if days:
        ax_tot.set_ylim(0, max(a + b for a, b in zip(basal, bolus, strict=True)) * 1.3 + 0.1)
    ax_tot.tick_params(axis="x", labelrotation=45, labelsize=8)

    if profile:  # ambulatory glucose profile: percentile bands by time of day
        ax_p = fig.add_subplot(gs[3, :])
        hours = [row[0] / 60 for row in profile]
        p5, p25, p50, p75, p95 = (list(col) for col in zip(*(row[1:] for row in profile),
                                                           strict=True))
        ax_p.axhspan(TIR_LOW, TIR_HIGH, color="#d8f0d8")
        ax_p.fill_between(hours, p5, p95, color="#9db8e0", alpha=0.5, step="post",
                          label="5-95th percentile")
        ax_p.fill_between(hours, p25, p75, color="#4a78c0", alpha=0.6, step="post",
                          label="25-75th percentile")
        ax_p.step(hours, p50, where="post", color="#1f2f6a", lw=2, label="median")
        days_n = (data.readings[-1].utc - data.readings[0].utc) / 86400
        ax_p.set_title(f"ambulatory glucose profile, {days_n:.1f} days of readings (pump "
                       "local time)", loc="left", fontsize=10)
        ax_p.set_xlim(0, 24)
        ax_p.set_xticks(range(0, 25, 3))
        ax_p.set_xlabel("hour of the day")
        ax_p.set_ylabel("glucose, mg/dL")
        ax_p.legend(fontsize=8, loc="upper left", ncol=3)
        ax_p.grid(alpha=0.3)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def render_html(data: ReportData, png: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A small page: the PNG (embedded as data, so the page travels alone) and the tables."""
    import base64

    out = Path(out)
    s = summary(data)
    img = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    rows = "".join(f"<tr><td>{html.escape(t['date'])}</td><td>{t['basal_u']:.2f}</td>"
                   f"<td>{t['bolus_u']:.2f}</td><td>{t['total_u']:.2f}</td></tr>"
                   for t in s["totals"])
    bol = "".join(f"<tr><td>{_local(data, t):%Y-%m-%d %H:%M}</td><td>#{i}</td>"
                  f"<td>{mu / 1000:.2f}</td></tr>" for t, mu, i in boluses(data))
    alm = "".join(f"<tr><td>{_local(data, t):%Y-%m-%d %H:%M}</td>"
                  f"<td>{html.escape(name)}</td></tr>" for t, name, _p in alarms_raised(data))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>micropump report</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:right}}</style></head><body>
<h1>micropump report</h1>
<p>{html.escape(metrics_text(s["cgm"]))}.</p>
<img src="data:image/png;base64,{img}" alt="glucose, basal, boluses, alarms" width="100%">
<h2>Daily totals</h2>
<table><tr><th>day</th><th>basal U</th><th>bolus U</th><th>total U</th></tr>{rows}</table>
<h2>Boluses</h2><table><tr><th>time</th><th>bolus</th><th>U</th></tr>{bol}</table>
<h2>Alarms raised</h2><table><tr><th>time</th><th>alarm</th></tr>{alm}</table>
</body></html>
"""
    out.write_text(page)
    return out
