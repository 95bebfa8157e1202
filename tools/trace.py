"""Requirement traceability: requirement -> tests -> pass / fail / skip.

    python -m tools.trace                 # table from the last run (build/trace.json)
    python -m tools.trace --run           # run the whole suite first (pytest -n 2)
    python -m tools.trace --run -- hil_tests -x      # ... or these pytest arguments
    make trace

Reads the test results that tools/req_plugin.py wrote (each test's node id, requirement
ids, outcome, the asserts it passed and where the firmware ran) and the requirements from
../shared/REQUIREMENTS.md (`--requirements`; without it, the ids the tests name). Prints a
table (id, title, tests, asserting, passed, failed, skipped, runtimes, status) in the order
of the requirements document, then the requirements without a test, and writes the same as
Markdown to build/trace.md, with the tests of each requirement.

Only asserting tests count: a requirement is "verified" when at least one test naming it
passed having passed at least one assert (or pytest.raises); a test that asserted nothing
is listed but proves nothing ("no assert"). Runtimes are those of the asserting passed
tests: cpython, unix (MicroPython unix port, the emulator), wasm, arm (the 32-bit ARM image
under qemu), board (a real device, hil_tests --port).
Exit status 1 if a test failed (or the run did), 2 if there are no results.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "build" / "trace.json"
DEFAULT_MD = REPO / "build" / "trace.md"
DEFAULT_REQUIREMENTS = REPO.parent / "shared" / "REQUIREMENTS.md"
TITLE_WORDS = 7

REQ_LINE = re.compile(r"^\s*[-*]\s+([A-Z][A-Z0-9]*-\d+)\b[.:]?\s*(.*)$")
HEADING = re.compile(r"^#{1,6}\s")
ID_ORDER = re.compile(r"^([A-Z][A-Z0-9]*)-(\d+)$")

PASS, FAIL, SKIP = "pass", "fail", "skip"
RUNTIME_ORDER = ("cpython", "unix", "wasm", "arm", "board")
OUTCOME_CLASS = {"passed": PASS, "xpassed": PASS, "failed": FAIL, "error": FAIL,
                 "skipped": SKIP, "xfailed": SKIP}


# ---------------------------------------------------------------------------- parsing
def title_of(text: str, words: int = TITLE_WORDS) -> str:
    """The first words of a requirement: up to the end of its first sentence or label (. :
    ;), at most `words` words ("…" marks a cut), without a parenthesis left open."""
    text = " ".join(text.split())
    clause = re.split(r"[.:;](?:\s|$)", text, maxsplit=1)[0]
    parts = clause.split()
    cut = len(parts) > words
    title = " ".join(parts[:words])
    if title.count("(") > title.count(")"):
        title = title[:title.rindex("(")]
    title = title.rstrip(" ,")
    return title + " …" if cut else title


def parse_requirements(text: str) -> dict[str, str]:
    """{id: title} of the requirements in a REQUIREMENTS.md text, in document order.

    A requirement is a list item starting with its id (`- THR-1 Basal profiles. ...`); its
    text goes on over indented continuation lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = REQ_LINE.match(line)
        if m:
            current = found.setdefault(m.group(1), [])
            current.append(m.group(2))
        elif current is not None and line.strip() and line[:1] in " \t" \
                and not HEADING.match(line.strip()):
            current.append(line.strip())
        else:
            current = None
    return {rid: title_of(" ".join(parts)) for rid, parts in found.items()}


def load_results(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ValueError(f"{path}: not a trace file written by tools/req_plugin.py")
    return data


def id_key(rid: str):
    m = ID_ORDER.match(rid)
    return (m.group(1), int(m.group(2))) if m else (rid, 0)


# ---------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class TestRun:
    nodeid: str
    cls: str  # pass / fail / skip
    asserts: int = 0  # asserts (and pytest.raises) passed in the call phase
    runtimes: tuple[str, ...] = ()

    @property
    def asserting(self) -> bool:
        """Passed, having asserted something: evidence for its requirements."""
        return self.cls == PASS and self.asserts > 0


@dataclass
class Row:
    rid: str
    title: str
    known: bool = True  # listed in the requirements document
    tests: list[TestRun] = field(default_factory=list)

    def count(self, cls: str) -> int:
        return sum(1 for t in self.tests if t.cls == cls)

    @property
    def asserting(self) -> int:
        return sum(1 for t in self.tests if t.asserting)

    @property
    def runtimes(self) -> list[str]:
        """Where the asserting passed tests ran the firmware."""
        got = {r for t in self.tests if t.asserting for r in t.runtimes}
        return [r for r in RUNTIME_ORDER if r in got] + sorted(got - set(RUNTIME_ORDER))

    @property
    def status(self) -> str:
        if not self.tests:
            return "no test"
        if self.count(FAIL):
            return "FAILING"
        if self.asserting:
            return "verified"
        if self.count(PASS):
            return "no assert"
        return "skipped"


@dataclass
class Trace:
    rows: list[Row]
    untagged: list[str]  # tests that name no requirement
    results: dict

    @property
    def uncovered(self) -> list[Row]:
        return [r for r in self.rows if not r.tests]

    @property
    def failing(self) -> bool:
        return any(r.count(FAIL) for r in self.rows) or any(
            OUTCOME_CLASS.get(t["outcome"]) == FAIL for t in self.results.get("tests", []))


def build(results: dict, requirements: dict[str, str] | None) -> Trace:
    rows: dict[str, Row] = {}
    for rid, title in (requirements or {}).items():
        rows[rid] = Row(rid, title)
    untagged = []
    for test in results.get("tests", []):
        cls = OUTCOME_CLASS.get(test.get("outcome"), FAIL)
        reqs = test.get("reqs") or []
        if not reqs:
            untagged.append(test["nodeid"])
        for rid in reqs:
            row = rows.get(rid)
            if row is None:
                row = rows[rid] = Row(rid, "" if requirements is None
                                      else "(not in the requirements)",
                                      known=requirements is None)
            row.tests.append(TestRun(test["nodeid"], cls, int(test.get("asserts") or 0),
                                     tuple(test.get("runtimes") or ())))
    order = list(requirements or {})
    extra = sorted((r for r in rows if r not in (requirements or {})), key=id_key)
    return Trace([rows[r] for r in order + extra], untagged, results)


def _columns(trace: Trace) -> tuple[list[str], list[list[str]]]:
    head = ["Requirement", "Title", "Tests", "Asserting", "Pass", "Fail", "Skip", "Runtimes",
            "Status"]
    body = [[r.rid, r.title, str(len(r.tests)), str(r.asserting), str(r.count(PASS)),
             str(r.count(FAIL)), str(r.count(SKIP)), " ".join(r.runtimes) or "-", r.status]
            for r in trace.rows]
    return head, body


def summary(trace: Trace) -> str:
    rows = [r for r in trace.rows if r.known]
    covered = [r for r in rows if r.tests]
    verified = [r for r in rows if r.status == "verified"]
    failing = [r for r in rows if r.status == "FAILING"]
    no_assert = [r for r in rows if r.status == "no assert"]
    tests = trace.results.get("tests", [])
    counts = {c: sum(1 for t in tests if OUTCOME_CLASS.get(t["outcome"], FAIL) == c)
              for c in (PASS, FAIL, SKIP)}
    return (f"{len(rows)} requirements: {len(covered)} with tests, {len(verified)} verified "
            f"(by asserting tests), {len(no_assert)} with tests that assert nothing, "
            f"{len(failing)} failing, {len(rows) - len(covered)} without a test. "
            f"{len(tests)} tests: {counts[PASS]} passed, {counts[FAIL]} failed, "
            f"{counts[SKIP]} skipped.")


def render_text(trace: Trace) -> str:
    head, body = _columns(trace)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = {2, 3, 4, 5, 6}

    def line(cells: Iterable[str]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(cell.rjust(w) if i in right else cell.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(head), line("-" * w for w in widths)]
    lines += [line(row) for row in body]
    lines.append("")
    uncovered = trace.uncovered
    if uncovered:
        lines.append(f"Requirements without a test ({len(uncovered)}):")
        lines += [f"  {r.rid}  {r.title}" for r in uncovered]
        lines.append("")
    unknown = [r for r in trace.rows if not r.known]
    if unknown:
        lines.append("Ids named by tests but not in the requirements: "
                     + ", ".join(r.rid for r in unknown))
    if trace.untagged:
        lines.append(f"Tests naming no requirement: {len(trace.untagged)}")
    lines.append(summary(trace))
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(trace: Trace) -> str:
    head, body = _columns(trace)
    res = trace.results
    out = ["# Requirement traceability", ""]
    if res.get("generated"):
        args = " ".join(res.get("args") or [])
        out.append(f"From the test run of {res['generated']} (`pytest {args}`".rstrip()
                   + f", exit status {res.get('exitstatus', '?')}).")
        out.append("")
    out.append(summary(trace))
    out += ["", "| " + " | ".join(head) + " |",
            "|" + "|".join(["---", "---", "--:", "--:", "--:", "--:", "--:", "---", "---"])
            + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
    uncovered = trace.uncovered
    if uncovered:
        out += ["", f"## Requirements without a test ({len(uncovered)})", ""]
        out += [f"- **{r.rid}** {_md_cell(r.title)}" for r in uncovered]
    out += ["", "## Tests per requirement", ""]
    for r in trace.rows:
        if not r.tests:
            continue
        out.append(f"### {r.rid} {r.title}".rstrip())
        out.append("")
        out += [f"- {t.cls}, {t.asserts} asserts, {' '.join(t.runtimes) or '-'}: `{t.nodeid}`"
                for t in r.tests]
        out.append("")
    if trace.untagged:
        out += ["## Tests naming no requirement", ""]
        out += [f"- `{n}`" for n in trace.untagged]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------- command line
def run_pytest(results: Path, args: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", *(args or ["-n", "2", "-q"]),
           f"--req-trace={results}"]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog="python -m tools.trace", description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help=f"trace JSON written by tools/req_plugin.py (default {DEFAULT_RESULTS})")
    p.add_argument("--requirements", type=Path, default=DEFAULT_REQUIREMENTS,
                   help="REQUIREMENTS.md (default ../shared/REQUIREMENTS.md; if absent, the "
                        "ids named by the tests)")
    p.add_argument("--md", type=Path, default=DEFAULT_MD, help="Markdown output")
    p.add_argument("--run", action="store_true",
                   help="run pytest first (arguments after --, default: -n 2 -q)")
    args = p.parse_args(argv)
    status = 0
    if args.run:
        status = run_pytest(args.results, pytest_args)
    try:
        results = load_results(args.results)
    except (OSError, ValueError) as exc:
        print(f"trace: no test results: {exc}\n(run `make trace` or `python -m tools.trace "
              "--run`)", file=sys.stderr)
        return 2
    requirements = None
    if args.requirements.is_file():
        requirements = parse_requirements(args.requirements.read_text())
    else:
        print(f"trace: {args.requirements} not found: listing the ids the tests name",
              file=sys.stderr)
    trace = build(results, requirements)
    sys.stdout.write(render_text(trace))
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(render_markdown(trace))
    print(f"written: {args.md}")
    return 1 if (trace.failing or status not in (0, 5)) else 0


if __name__ == "__main__":
    sys.exit(main())
