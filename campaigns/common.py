"""What the campaigns share: outcomes and their table, progress lines, guest runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.req_plugin import note_runtime

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2  # the project's machines have 2 cores


@dataclass
class Target:
    what: str
    got: object
    want: str
    ok: bool


@dataclass
class Outcome:
    """A campaign's result: counts (ordered), targets met or missed, notes."""

    name: str
    mode: str
    seed: int
    wall: float = 0.0
    counts: dict = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def target(self, what: str, got, want: str, ok: bool) -> None:
        self.targets.append(Target(what, got, want, bool(ok)))

    @property
    def ok(self) -> bool:
        return bool(self.targets) and all(t.ok for t in self.targets)

    def missed(self) -> list[Target]:
        return [t for t in self.targets if not t.ok]

    def as_dict(self) -> dict:
        return {"name": self.name, "mode": self.mode, "seed": self.seed,
                "wall_s": round(self.wall, 2), "ok": self.ok, "counts": self.counts,
                "targets": [t.__dict__ for t in self.targets], "notes": self.notes}


class Progress:
    """Progress lines: `name: done/total (pct) elapsed, eta`, at most one per `every` s
    (and always the last). `quiet` prints nothing (the short runs inside pytest)."""

    def __init__(self, name: str, total: int, unit: str = "", quiet: bool = False,
                 every: float = 2.0, stream=None):
        self.name = name
        self.total = max(total, 1)
        self.unit = unit
        self.quiet = quiet
        self.every = every
        self.stream = stream or sys.stdout
        self.t0 = time.perf_counter()
        self.last = -1e9

    def __call__(self, done: int, extra: str = "") -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if done < self.total and now - self.last < self.every:
            return
        self.last = now
        el = now - self.t0
        eta = el / done * (self.total - done) if done else 0.0
        unit = f" {self.unit}" if self.unit else ""
        print(f"  {self.name}: {done:,}/{self.total:,}{unit} ({100 * done / self.total:.0f} %)"
              f"  {el:.1f} s, eta {eta:.0f} s" + (f"  {extra}" if extra else ""),
              file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"  {self.name}: {text}", file=self.stream, flush=True)


def micropython() -> str:
    from host_tools.launch import find_micropython

    return find_micropython()


def run_guest(code: str, timeout: float = 600) -> list[dict]:
    """Run ``code`` on the MicroPython unix port (repo root on its path); the JSON of every
    ``RESULT`` line it printed. A guest that fails raises RuntimeError with its output."""
    note_runtime("unix")
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{REPO_ROOT}{os.pathsep}.frozen"
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        script = Path(tmp) / "guest.py"
        script.write_text(code)
        proc = subprocess.run([micropython(), str(script)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=tmp, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"micropython exited with {proc.returncode}\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-4000:]}")
    return [json.loads(line[7:]) for line in proc.stdout.splitlines()
            if line.startswith("RESULT ")]


def run_chunks(calls: list[str], on_done: Callable[[int, dict], None], workers: int = WORKERS,
               timeout: float = 600) -> list[dict]:
    """Run one guest process per call (a line of MicroPython code printing one RESULT),
    `workers` at a time; `on_done(index, result)` as each finishes. Results in call order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    results: list[dict | None] = [None] * len(calls)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_guest, code, timeout): i for i, code in enumerate(calls)}
        for fut in as_completed(futures):
            i = futures[fut]
            got = fut.result()
            if len(got) != 1:
                raise RuntimeError(f"chunk {i}: expected one RESULT, got {len(got)}")
            results[i] = got[0]
            on_done(i, got[0])
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------- the table
def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def table(outcomes: list[Outcome], width: int = 110) -> str:
    """The result table: one block per campaign, its targets, then its counts."""
    import textwrap

    lines = []
    head = f"{'campaign':<11} {'mode':<5} {'seed':>5} {'wall s':>7}  {'target':<48} {'want':>9}"
    head += f" {'got':>11}  result"
    lines.append(head)
    lines.append("-" * len(head))
    pad = " " * 32
    for o in outcomes:
        first = True
        for t in o.targets:
            pre = f"{o.name:<11} {o.mode:<5} {o.seed:>5} {o.wall:>7.1f}  " if first else pad
            first = False
            lines.append(f"{pre}{t.what:<48} {t.want:>9} {fmt(t.got):>11}  "
                         + ("PASS" if t.ok else "FAIL"))
        counts = "counts: " + "; ".join(f"{k} {fmt(v)}" for k, v in o.counts.items())
        lines += textwrap.wrap(counts, width, initial_indent=pad, subsequent_indent=pad + "  ")
        for n in o.notes:
            lines += textwrap.wrap("note: " + n, width, initial_indent=pad,
                                   subsequent_indent=pad + "  ")
    return "\n".join(lines)
