"""Plain-text tables of the figures `make bench` collects (benchmarks/conftest.py prints
them at the end of the run; build/bench/figures.json keeps the raw values).

    .venv/bin/python benchmarks/report.py [build/bench/figures.json]   # print them again
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TICK_TARGET_US = 20
PICO_PERIOD_US = 100_000  # the 100-ms tick
HEAP_TARGET = 48 * 1024
MPY_TARGET = 96 * 1024
RT_TARGET_MS = 1.0
RT_TARGET_RPS = 1000
ACCEL_TARGET_S = 10.0


def kb(n: float) -> str:
    return f"{n / 1024:.1f} kB"


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def tick(f: dict) -> list[str]:
    out = [f"{'state':16} {'unix med us':>11} {'p99 us':>7} {'CPython us':>10} "
           f"{'wasm fuel':>10} {'Pico us':>8} {'Pico %':>7}"]
    unix, fuel, cpy = f.get("unix_us", {}), f.get("wasm_fuel", {}), f.get("cpython_median_us",
                                                                           {})
    worst = 0.0
    for state in unix or fuel or cpy:
        u = unix.get(state, {})
        w = fuel.get(state, {})
        pico = w.get("pico_us_estimate")
        share = 100 * pico / PICO_PERIOD_US if pico else float("nan")
        worst = max(worst, share if pico else 0)
        out.append(f"{state:16} {u.get('median_us', '-'):>11} {u.get('p99_us', '-'):>7} "
                   f"{cpy.get(state, float('nan')):>10.1f} {w.get('fuel_per_tick', '-'):>10} "
                   f"{pico if pico else '-':>8} {share:>7.2f}")
    if unix:
        m = max(u["median_us"] for u in unix.values())
        out.append(f"unix median <= {TICK_TARGET_US} us: {met(m <= TICK_TARGET_US)} "
                   f"(worst state {m} us)")
    if fuel:
        out.append(f"Pico estimate < 1 % of the 100-ms period: {met(worst < 1)} "
                   f"(worst {worst:.2f} %)")
    return out


def firmware(f: dict) -> list[str]:
    out = []
    req = f.get("bytes_per_request")
    if req:
        rts = list(req)
        out.append("bytes allocated per request handled (gc.mem_alloc, collector off); "
                   "heap_lock: MemoryErrors/link faults")
        out.append(f"{'request':20} " + " ".join(f"{rt + ' B':>9} {rt + ' lock':>10}"
                                               for rt in rts))
        for label in req[rts[0]]["per_request"]:
            row = [f"{label:20}"]
            for rt in rts:
                r = req[rt]["per_request"].get(label, {})
                lock = (f"{r.get('locked_fails')}/{r.get('locked_faults')}"
                        if r.get("locked_fails", -1) >= 0 else "-")
                row.append(f"{r.get('bytes_per_request', float('nan')):>9.1f} {lock:>10}")
            out.append(" ".join(row))
        out.append("MAC check alone: " + ", ".join(f"{rt} {req[rt]['mac_check_bytes']} B"
                                                   for rt in rts))
        status = [req[rt]["per_request"]["status"]["bytes_per_request"] for rt in rts]
        out.append(f"status request: target 0 bytes: {met(not any(status))}")
        out.append("")
    ticks = f.get("bytes_per_tick")
    if ticks:
        rts = list(ticks)
        out.append("bytes allocated per tick, 300 ticks per state (heap_lock fails in "
                   "brackets)")
        for state in ticks[rts[0]]:
            cells = []
            for rt in rts:
                r = ticks[rt].get(state, {})
                cells.append(f"{rt} {r.get('bytes', '-')} B in {r.get('allocating_ticks', '-')}"
                             f" ticks [{r.get('locked_fails', '-')}] {r.get('status', '')}")
            out.append(f"  {state:16} " + "; ".join(cells))
        out.append("")
    us, fuel = f.get("codec_unix_us"), f.get("codec_wasm_fuel", {})
    if us:
        out.append(f"{'firmware codec':30} {'bytes':>6} {'unix us':>8} {'p90':>6} "
                   f"{'wasm fuel':>10} {'Pico us':>8}")
        for label, r in us.items():
            w = fuel.get(label, {})
            out.append(f"{label:30} {r['wire_bytes']:>6} {r['median_us']:>8.1f} "
                       f"{r['p90_us']:>6.1f} {w.get('fuel', '-'):>10} "
                       f"{w.get('pico_us_estimate', '-'):>8}")
        out.append("")
    heap = f.get("heap_after_boot")
    if heap:
        out.append(f"heap in use after boot (target <= {kb(HEAP_TARGET)}):")
        for key, r in heap.items():
            if "firmware_modules" in r:
                out.append(f"  {key:20} {kb(r['in_use_after_boot']):>9} = start "
                           f"{kb(r['start'])} + firmware modules {kb(r['firmware_modules'])}"
                           f" + board modules {kb(r['board_modules'])} + objects after boot "
                           f"{kb(r['boot_objects'])} ({r['word'] * 8}-bit): "
                           f"{met(r['in_use_after_boot'] <= HEAP_TARGET)}")
            else:
                out.append(f"  {key:20} {kb(r['in_use_after_boot']):>9} (imports "
                           f"{kb(r['imported'] - r['machine_imported'])}, after boot "
                           f"{kb(r['booted'] - r['imported'])})")
        out.append("")
    sizes = f.get("mpy_bytes")
    if sizes:
        for board, r in sizes.items():
            out.append(f".mpy deploy set {board}: {kb(r['total'])} (firmware/ "
                       f"{kb(r['firmware'])}, protocol/ {kb(r['protocol'])}, boards/ "
                       f"{kb(r['boards'])}), target <= {kb(MPY_TARGET)}: "
                       f"{met(r['total'] <= MPY_TARGET)}")
    return out


def system(f: dict) -> list[str]:
    out = []
    for clock, r in f.get("status_round_trip", {}).items():
        for side in ("construct", "fast", "raw"):
            s = r.get(side)
            if not s:
                continue
            ok = s["median_ms"] <= RT_TARGET_MS and s["requests_per_s"] >= RT_TARGET_RPS
            out.append(f"status round trip ({clock}, host {side:9}): median "
                       f"{s['median_ms']:.3f} ms, p90 {s['p90_ms']:.3f}, p99 "
                       f"{s['p99_ms']:.3f}, {s['requests_per_s']:.0f} requests/s: {met(ok)}")
    a = f.get("lockstep_72h")
    if a:
        out.append(f"72 h in lockstep: {a['wall_s']:.2f} s wall ({a['x_real_time']:.0f}x real "
                   f"time), target <= {ACCEL_TARGET_S:.0f} s: "
                   f"{met(a['wall_s'] <= ACCEL_TARGET_S)}")
    for key, h in f.get("hil_wall", {}).items():
        out.append(f"HIL suite {key}: {h['wall_s']:.1f} s wall ({h['command']}; "
                   f"{h['summary']})")
    return out


def codec_table(values: dict) -> list[str]:
    """Medians (us) and throughput ratios against pymavlink, per operation and pair:
    pytest-benchmark's medians, and the interleaved ratios (the headline)."""
    medians = values.get("medians_us", {})
    inter = values.get("interleaved", {})
    lines = [f"{'operation':42} {'pymavlink':>9} {'construct':>9} {'fast':>6} "
             f"{'constr/pml':>10} {'fast/pml':>8} {'interleaved fast/pml':>21}"]

    def num(v, width, fmt=".2f", suffix=""):
        return f"{format(v, fmt) + suffix:>{width}}" if v else f"{'-':>{width}}"

    for group in dict.fromkeys([*medians, *inter]):
        m = medians.get(group, {})
        pml = m.get("pymavlink")
        ratio = inter.get(group, {}).get("ratio", {})
        c, f = m.get("construct"), m.get("fast")
        lines.append(f"{group:42} {num(pml, 9)} {num(c, 9)} {num(f, 6)} "
                     f"{num(pml / c if pml and c else 0, 10, suffix='x')} "
                     f"{num(pml / f if pml and f else 0, 8, suffix='x')} "
                     f"{num(ratio.get('fast'), 21, suffix='x')}")
    lines.append("(medians in us per message; ratio = pymavlink's time / ours = our throughput as"
                 " a multiple of pymavlink's; target >= 2x)")
    return lines


RENDER = {"tick": tick, "firmware": firmware, "system": system}


def render(figures: dict) -> list[str]:
    lines = []
    for section, values in figures.items():
        lines.append(f"[{section}]")
        if section == "codec_speed":
            lines += codec_table(values)
        elif section in RENDER:
            lines += RENDER[section](values)
        else:
            lines += [f"{k}: {json.dumps(v, default=str)}" for k, v in values.items()]
        lines.append("")
    return lines


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "build/bench/figures.json")
    data = json.loads(path.read_text())
    print(f"machine: {data['machine']}")
    print("\n".join(render(data["figures"])))
