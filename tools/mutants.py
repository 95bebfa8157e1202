"""Mutation check of the firmware's safety core (issue 19): `make mutants`.

tools/mutants.toml lists one-line mutants of firmware safety and security code: the file,
the exact original line (unique in its file, or made unique by the line just before it),
its replacement and the tests that must kill it. Each mutant is applied to a copy of the
tree (the working tree is never edited), its killer tests run there with pytest, and the
result is one of:

  killed      a killer test failed (or the run hung past the time limit)
  survived    every killer test passed: a hole in the tests, the run fails
  accepted    survived, and the list gives the reason (an equivalent mutant): the run passes
  stale       the original line is gone or no longer unique: the run fails, naming the line,
              so the list stays true as the code changes
  error       pytest could not run the killers (a bad node id, a mutant that does not
              import): the run fails
  wrong       listed with a reason, yet killed: the reason is out of date, the run fails

Command lines:
  python -m tools.mutants                     all mutants, 2 workers, progress and a table
  python -m tools.mutants --only ID [ID ...]  some of them
  python -m tools.mutants --sample 6 --seed 1 a seeded sample (what `make test` runs)
  python -m tools.mutants --discover FILE ... --only ID
                                              which tests of FILE... kill a mutant (to
                                              choose its killers when adding it)
  python -m tools.mutants --check             only check that every mutant still applies

Before the mutants, the union of all killer tests runs once on the unmutated copy: a
killer that fails without a mutant would make every mutant look killed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "tools" / "mutants.toml"
MAX_JOBS = 2  # the machines have 2 cores shared by several people
TIMEOUT_S = 240  # a killer run longer than this hangs (e.g. a loop that no longer ends)
# What the copy of the tree leaves out: caches, the virtualenv, build output, git.
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".pytest_cache",
                                ".ruff_cache", ".hypothesis", ".benchmarks", "*.mpy",
                                "*.egg-info", "wt-*")
FIELDS = {"id", "file", "line", "in", "before", "to", "kill", "reason"}


class ListError(Exception):
    """The mutant list is malformed."""


class Stale(Exception):
    """A mutant's original line is gone from its file, or no longer unique."""


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    line: str  # the original line, stripped
    to: str  # its replacement (indentation is the original's)
    kill: tuple[str, ...]  # pytest node ids or files
    inside: str = ""  # the function it is in, when `line` alone is not unique
    before: str = ""  # the line just before it, stripped, when that is not enough either
    reason: str = ""  # why it survives (equivalent mutant); empty: it must be killed

    def where(self) -> str:
        at = f" in {self.inside}()" if self.inside else ""
        at += f" after {self.before!r}" if self.before else ""
        return f"{self.file}: {self.line!r}{at}"


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed, survived, accepted, stale, error, wrong
    seconds: float = 0.0
    detail: str = ""  # the failing test, the stale line, pytest's complaint
    failed: list[str] = field(default_factory=list)  # discover mode: every failing test

    @property
    def ok(self) -> bool:
        return self.status in ("killed", "accepted")


def load(path: Path = LIST) -> tuple[int, list[Mutant]]:
    """(version, mutants) of a mutant list. Raises ListError naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ListError(f"{path}: {e}") from None
    version = data.get("version")
    if not isinstance(version, int):
        raise ListError(f"{path}: 'version = N' (an integer) is missing")
    out = []
    seen = set()
    for i, m in enumerate(data.get("mutant", [])):
        name = m.get("id", f"mutant #{i + 1}")
        unknown = set(m) - FIELDS
        if unknown:
            raise ListError(f"{path}: {name}: unknown field(s) {sorted(unknown)}")
        for key in ("id", "file", "line", "to", "kill"):
            if key not in m:
                raise ListError(f"{path}: {name}: field '{key}' is missing")
        if name in seen:
            raise ListError(f"{path}: id {name!r} is listed twice")
        seen.add(name)
        kill = m["kill"]
        if not isinstance(kill, list) or not kill or not all(isinstance(k, str) for k in kill):
            raise ListError(f"{path}: {name}: 'kill' must be a non-empty list of test ids")
        if m["line"].strip() == m["to"].strip():
            raise ListError(f"{path}: {name}: the replacement equals the original")
        out.append(Mutant(id=name, file=m["file"], line=m["line"].strip(), to=m["to"],
                          kill=tuple(kill), inside=m.get("in", ""),
                          before=m.get("before", "").strip(),
                          reason=m.get("reason", "").strip()))
    if not out:
        raise ListError(f"{path}: no [[mutant]] entries")
    return version, out


def _function_of(lines: list[str], i: int) -> str:
    """Name of the innermost `def` that line i is in ("" at module level)."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    for j in range(i - 1, -1, -1):
        ln = lines[j]
        body = ln.lstrip()
        if body and len(ln) - len(body) < indent:
            indent = len(ln) - len(body)
            found = re.match(r"def (\w+)\(", body)
            if found:
                return found.group(1)
    return ""


def apply(text: str, m: Mutant) -> str:
    """`text` with the mutant's line replaced. Raises Stale when the original line (in
    function `inside`, after `before`, where given) is not found exactly once."""
    lines = text.split("\n")
    hits = [i for i, ln in enumerate(lines)
            if ln.strip() == m.line
            and (not m.before or (i > 0 and lines[i - 1].strip() == m.before))
            and (not m.inside or _function_of(lines, i) == m.inside)]
    if len(hits) != 1:
        at = [h + 1 for h in hits]
        what = f"occurs {len(hits)} times (lines {at})" if hits else "is gone"
        raise Stale(f"{m.id}: the original line {what}: {m.where()}")
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = indent + m.to.strip()
    return "\n".join(lines)


def check_all(mutants: list[Mutant], root: Path = ROOT) -> list[str]:
    """Problems with the list against the tree at `root`: stale lines, killer files or
    test functions that do not exist. Empty when all is well."""
    problems = []
    for m in mutants:
        src = root / m.file
        if not src.is_file():
            problems.append(f"{m.id}: no file {m.file}")
            continue
        try:
            apply(src.read_text(), m)
        except Stale as e:
            problems.append(str(e))
        for k in m.kill:
            path, _, func = k.partition("::")
            test = root / path
            if not test.is_file():
                problems.append(f"{m.id}: killer file {path} does not exist")
            elif func and not re.search(rf"^\s*def {re.escape(func.split('[')[0])}\(",
                                        test.read_text(), re.M):
                problems.append(f"{m.id}: killer {k} is not a test in {path}")
    return problems


class Sandbox:
    """A copy of the tree in a temporary folder, where one mutant at a time is applied."""

    def __init__(self, root: Path = ROOT):
        self.tmp = tempfile.TemporaryDirectory(prefix="micropump-mut-")
        self.root = Path(self.tmp.name) / "tree"
        self.proc = None
        shutil.copytree(root, self.root, ignore=IGNORE, symlinks=True)

    def close(self):
        self.tmp.cleanup()

    def pytest(self, tests, stop_first=True, timeout=TIMEOUT_S, extra=()):
        """Run pytest on `tests` in the copy. (exit code or None on time-out, output)."""
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--req-trace",
               "none", "-rfE", "--no-header", "--tb=line", *extra]
        if stop_first:
            cmd.append("-x")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root)  # the copy's firmware/, not the installed tree
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant of the same size and second as the
        # original would otherwise reuse a stale .pyc
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # seconds of start-up per run: the
        # killers need none of the installed plugins (xdist, benchmark, hypothesis's)
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        p = subprocess.Popen(cmd + list(tests), cwd=self.root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.proc = p
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            out, _ = p.communicate()
            return None, out or ""
        finally:
            self.proc = None
        return p.returncode, out

    def stop(self):
        """End the pytest run in progress, with its children (Ctrl-C, time-out)."""
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass

    def run(self, m: Mutant, tests=None, stop_first=True) -> Result:
        """Apply `m`, run its killers (or `tests`), put the original back."""
        src = self.root / m.file
        original = src.read_text()
        t0 = time.monotonic()
        try:
            src.write_text(apply(original, m))
        except Stale as e:
            return Result(m, "stale", 0.0, str(e))
        try:
            code, out = self.pytest(tests or m.kill, stop_first)
        finally:
            src.write_text(original)
        secs = time.monotonic() - t0
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
        if code is None:
            return Result(m, "wrong" if m.reason else "killed", secs,
                          f"timed out after {TIMEOUT_S} s (hangs)", failed)
        if code == 1:
            return Result(m, "wrong" if m.reason else "killed", secs,
                          failed[0] if failed else "a test failed", failed)
        if code == 0:
            return Result(m, "accepted" if m.reason else "survived", secs,
                          m.reason if m.reason else "every killer test passed", failed)
        tail = " | ".join(ln for ln in out.strip().splitlines()[-4:])
        return Result(m, "error", secs, f"pytest exit {code}: {tail}", failed)


def run_all(mutants: list[Mutant], jobs: int = MAX_JOBS, on_result=None, tests=None,
            stop_first=True) -> list[Result]:
    """Run every mutant in `jobs` copies of the tree (at most MAX_JOBS), calling
    `on_result(result)` as each ends. Results come back in list order."""
    jobs = max(1, min(jobs, MAX_JOBS, len(mutants)))
    boxes = queue.Queue()
    made = []
    for _ in range(jobs):
        box = Sandbox()
        made.append(box)
        boxes.put(box)
    results: dict[str, Result] = {}
    lock = threading.Lock()
    todo = queue.Queue()
    for m in mutants:
        todo.put(m)
    halt = threading.Event()

    def worker():
        box = boxes.get()
        while not halt.is_set():
            try:
                m = todo.get_nowait()
            except queue.Empty:
                return
            r = box.run(m, tests, stop_first)
            if halt.is_set():
                return
            with lock:
                results[m.id] = r
                if on_result:
                    on_result(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(jobs)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        halt.set()
        for box in made:
            box.stop()
        for t in threads:
            t.join(10)
        raise
    finally:
        for box in made:
            box.close()
    return [results[m.id] for m in mutants]


def baseline(mutants: list[Mutant], jobs: int = MAX_JOBS) -> tuple[bool, str]:
    """Run the union of the killers on an unmutated copy, in `jobs` xdist workers: (all
    passed, pytest's output)."""
    tests = sorted({k for m in mutants for k in m.kill})
    box = Sandbox()
    extra = ("-p", "xdist", "-n", str(jobs)) if jobs > 1 else ()
    try:
        code, out = box.pytest(tests, stop_first=False, timeout=6 * TIMEOUT_S, extra=extra)
    finally:
        box.close()
    return code == 0, out


def sample(mutants: list[Mutant], n: int, seed: int) -> list[Mutant]:
    """`n` mutants chosen by `seed`, from those that must be killed (no listed reason)."""
    pool = [m for m in mutants if not m.reason]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def table(results: list[Result], version: int):
    """The result table: one row per mutant, the test that killed it or why it lives."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"mutants (tools/mutants.toml, version {version})")
    t.add_column("mutant", overflow="ellipsis", no_wrap=True, max_width=34)
    t.add_column("file", no_wrap=True, min_width=9)
    t.add_column("expected killer", overflow="ellipsis", no_wrap=True, max_width=38)
    t.add_column("result", no_wrap=True, min_width=8)
    t.add_column("s", justify="right", no_wrap=True, min_width=5)
    t.add_column("killed by / detail", overflow="ellipsis", no_wrap=True, max_width=38)
    colour = {"killed": "green", "accepted": "cyan", "survived": "bold red",
              "stale": "bold red", "error": "bold red", "wrong": "bold red"}
    for r in results:
        m = r.mutant
        kill = ", ".join(k.split("::")[-1] for k in m.kill)
        detail = r.detail.split("::")[-1] if r.status in ("killed", "wrong") else r.detail
        t.add_row(m.id, m.file.removeprefix("firmware/"), escape(kill),
                  f"[{colour[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", escape(detail))
    return t


def summary(results: list[Result]) -> str:
    counts = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    must = [r for r in results if not r.mutant.reason]
    killed = sum(r.status == "killed" for r in must)
    rate = f"{killed}/{len(must)} killed ({100 * killed / len(must):.0f} %)" if must else ""
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return f"{len(results)} mutants: {parts}. Kill rate of those that must die: {rate}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.mutants", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", dest="path", type=Path, default=LIST, help="the mutant list")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    ap.add_argument("--jobs", type=int, default=MAX_JOBS, help=f"workers (at most {MAX_JOBS})")
    ap.add_argument("--sample", type=int, metavar="N", help="a seeded sample of N mutants")
    ap.add_argument("--seed", type=int, default=1, help="seed of --sample (default 1)")
    ap.add_argument("--check", action="store_true", help="only check the list applies")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the run of the killers on the unmutated tree")
    ap.add_argument("--discover", nargs="*", metavar="TEST",
                    help="run these tests (none given: the listed killers) to the end and "
                         "print every test that fails")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)  # make, CI and logs: one line per mutant, a readable table
    try:
        version, mutants = load(args.path)
    except ListError as e:
        con.print(f"[bold red]mutant list: {e}")
        return 2
    if args.jobs < 1 or args.jobs > MAX_JOBS:
        con.print(f"[bold red]--jobs {args.jobs}: use 1..{MAX_JOBS} (2 shared cores)")
        return 2
    if args.only:
        known = {m.id for m in mutants}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            con.print(f"[bold red]--only: no mutant {', '.join(unknown)} in {args.path}")
            return 2
        mutants = [m for m in mutants if m.id in args.only]
    if args.sample:
        mutants = sample(mutants, args.sample, args.seed)
    problems = check_all(mutants)
    if problems:
        for p in problems:
            con.print("[bold red]" + escape(p))
        con.print(f"[bold red]{len(problems)} problem(s) in {args.path}: fix the list "
                  "(a line that changed needs its mutant updated or removed)")
        return 1
    if args.check:
        con.print(f"{len(mutants)} mutants of version {version} apply to the tree")
        return 0

    t0 = time.monotonic()
    if not args.no_baseline and args.discover is None:
        con.print(f"baseline: the killers of {len(mutants)} mutants on the unmutated tree ...")
        ok, out = baseline(mutants, args.jobs)
        if not ok:
            con.print(out[-3000:])
            con.print("[bold red]the killer tests fail without any mutant: fix them first")
            return 1
        con.print(f"baseline passed ({time.monotonic() - t0:.0f} s)")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=con) as bar:
        task = bar.add_task("mutants", total=len(mutants))

        def done(r: Result):
            bar.console.print(escape(f"{r.status:8} {r.seconds:6.1f} s  {r.mutant.id}  "
                                     f"({r.detail})"))
            if args.discover is not None:
                for f in r.failed:
                    bar.console.print(escape(f"           killed by {f}"))
            bar.advance(task)

        try:
            results = run_all(mutants, args.jobs, done, args.discover or None,
                              args.discover is None)
        except KeyboardInterrupt:
            con.print("[bold red]interrupted: no result")
            return 130
    wall = time.monotonic() - t0
    if args.discover is not None:
        return 0
    con.print(table(results, version))
    con.print(summary(results) + f". Wall time {wall:.0f} s with {args.jobs} worker(s).")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "version": version, "wall_s": round(wall, 1), "jobs": args.jobs,
            "results": [{"id": r.mutant.id, "file": r.mutant.file, "status": r.status,
                         "seconds": round(r.seconds, 1), "detail": r.detail,
                         "kill": list(r.mutant.kill)} for r in results]}, indent=1))
    bad = [r for r in results if not r.ok]
    for r in bad:
        con.print("[bold red]" + escape(f"{r.status}: {r.mutant.id}: {r.mutant.where()} -> "
                                        f"{r.mutant.to.strip()!r}: {r.detail}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
