"""pytest plugin: record which requirements each test verifies, and how it went.

Registered in pyproject.toml (`addopts = "-p tools.req_plugin"`). Every test names the
requirement ids it verifies with `@pytest.mark.req("THR-3", ...)`; at the end of a run this
plugin writes build/trace.json (path: `--req-trace PATH`, `--req-trace none` to skip):

    {"generated": "...", "args": [...], "exitstatus": 0,
     "tests": [{"nodeid": "...", "reqs": ["THR-3"], "outcome": "passed",
                "duration": 0.12}, ...]}

Outcomes: passed, failed, error (setup or teardown failed), skipped, xfailed, xpassed.
Under pytest-xdist the ids travel from the workers in each report's user_properties and
the controller writes the file. `python -m tools.trace` turns it into the table; the end of
the run's terminal report carries its summary line (requirements verified, failing,
without a test). The ids also reach a JUnit XML report (--junit-xml) as a property "req"
of each test case.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

DEFAULT_PATH = "build/trace.json"
PROPERTY = "req"

# how bad an outcome is: a test's final outcome is the worst of its phases
RANK = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 2, "failed": 4, "error": 5}


def pytest_addoption(parser):
    parser.addoption("--req-trace", metavar="PATH", default=DEFAULT_PATH,
                     help="write requirement traceability (test -> requirement ids -> "
                          f"outcome) as JSON to PATH (default {DEFAULT_PATH}; 'none': off)")


def pytest_configure(config):
    config.pluginmanager.register(Recorder(config), "req-trace-recorder")


def req_ids(item) -> list[str]:
    """The requirement ids of a test item, in order, without repeats."""
    out: list[str] = []
    for mark in item.iter_markers(PROPERTY):
        for rid in mark.args:
            if str(rid) not in out:
                out.append(str(rid))
    return out


def pytest_itemcollected(item):
    item.user_properties.append((PROPERTY, req_ids(item)))


def phase_outcome(report) -> str | None:
    """The outcome one phase (setup, call, teardown) contributes; None: nothing to say."""
    if hasattr(report, "wasxfail"):
        return "xpassed" if report.passed else "xfailed"
    if report.when == "call":
        return report.outcome
    if report.failed:
        return "error"
    if report.skipped:
        return "skipped"
    return None


class Recorder:
    def __init__(self, config):
        self.config = config
        self.results: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report):
        reqs: list[str] = []
        for name, value in report.user_properties:
            if name == PROPERTY:
                reqs = list(value)
        entry = self.results.setdefault(report.nodeid, {
            "nodeid": report.nodeid, "reqs": reqs, "outcome": None, "duration": 0.0})
        if reqs:
            entry["reqs"] = reqs
        entry["duration"] = round(entry["duration"] + float(report.duration or 0.0), 4)
        got = phase_outcome(report)
        if got is not None and (entry["outcome"] is None
                                or RANK[got] >= RANK[entry["outcome"]]):
            entry["outcome"] = got

    def pytest_terminal_summary(self, terminalreporter):
        if hasattr(self.config, "workerinput") or not self.results:
            return
        from tools import trace

        requirements = None
        if trace.DEFAULT_REQUIREMENTS.is_file():
            requirements = trace.parse_requirements(trace.DEFAULT_REQUIREMENTS.read_text())
        tests = [dict(e, outcome=e["outcome"] or "passed") for e in self.results.values()]
        text = trace.summary(trace.build({"tests": tests}, requirements))
        terminalreporter.write_sep("-", "requirement trace")
        terminalreporter.write_line(text + " (table: `python -m tools.trace`)")

    def pytest_sessionfinish(self, session, exitstatus):
        config = self.config
        target = config.getoption("--req-trace")
        worker = hasattr(config, "workerinput")  # pytest-xdist: the controller writes
        if worker or not target or target.lower() == "none" or not self.results:
            return
        path = Path(target)
        if not path.is_absolute():
            path = Path(config.rootpath) / path
        tests = [dict(e, outcome=e["outcome"] or "passed") for e in self.results.values()]
        data = {
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": [str(a) for a in config.invocation_params.args],
            "exitstatus": int(exitstatus),
            "tests": sorted(tests, key=lambda e: e["nodeid"]),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
