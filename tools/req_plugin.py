"""pytest plugin: record which requirements each test verifies, and how it went.

Registered in pyproject.toml (`addopts = "-p tools.req_plugin"`). Every test names the
requirement ids it verifies with `@pytest.mark.req("THR-3", ...)`; at the end of a run this
plugin writes build/trace.json (path: `--req-trace PATH`, `--req-trace none` to skip):

    {"generated": "...", "args": [...], "exitstatus": 0,
     "tests": [{"nodeid": "...", "reqs": ["THR-3"], "outcome": "passed",
                "duration": 0.12, "asserts": 14, "runtimes": ["cpython", "unix"]}, ...]}

Outcomes: passed, failed, error (setup or teardown failed), skipped, xfailed, xpassed.

Evidence that cannot flatter: `asserts` counts the checks the test's call phase passed:
each `assert` that held (pytest's assertion pass hook, `enable_assertion_pass_hook` in
pyproject.toml; helper modules of tests/ and hil_tests/ are rewritten too) and each
`pytest.raises` entered. A test with none asserted nothing, and tools/trace.py does not
count it for its requirements. `runtimes` says where the firmware ran in the test:
"cpython" always (the test body), and what the test harness notes with note_runtime():
"unix" (MicroPython unix port, also the emulator), "wasm", "arm" (the 32-bit ARM image
under qemu) and "board" (a real device, hil_tests with --port).

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

import pytest

DEFAULT_PATH = "build/trace.json"
PROPERTY = "req"
ASSERTS = "asserts"
RUNTIMES = "runtimes"
RUNTIME_NAMES = ("cpython", "unix", "wasm", "arm", "board")

# asserts in the test helpers count like those in the test modules
pytest.register_assert_rewrite("tests", "hil_tests")


class _Current:
    """The test whose call phase is running in this process (None between tests)."""

    item = None
    asserts = 0
    runtimes: set = set()


def note_runtime(name: str) -> None:
    """The running test ran firmware on `name` (one of RUNTIME_NAMES)."""
    if name not in RUNTIME_NAMES:
        raise ValueError(f"unknown runtime {name!r}: one of {', '.join(RUNTIME_NAMES)}")
    if _Current.item is not None:
        _Current.runtimes.add(name)


def note_assertion() -> None:
    if _Current.item is not None:
        _Current.asserts += 1

# how bad an outcome is: a test's final outcome is the worst of its phases
RANK = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 2, "failed": 4, "error": 5}


def pytest_addoption(parser):
    parser.addoption("--req-trace", metavar="PATH", default=DEFAULT_PATH,
                     help="write requirement traceability (test -> requirement ids -> "
                          f"outcome) as JSON to PATH (default {DEFAULT_PATH}; 'none': off)")


def pytest_configure(config):
    config.pluginmanager.register(Recorder(config), "req-trace-recorder")
    raises = pytest.raises
    if not getattr(raises, "counted", False):
        def counted_raises(*args, **kwargs):
            note_assertion()  # it fails the test unless the exception comes
            return raises(*args, **kwargs)

        counted_raises.counted = True
        counted_raises.__doc__ = raises.__doc__
        pytest.raises = counted_raises


def pytest_assertion_pass(item, lineno, orig, expl):
    note_assertion()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _Current.item = item
    _Current.asserts = 0
    _Current.runtimes = {"cpython"}
    try:
        return (yield)
    finally:
        _Current.item = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "call":  # before the report copies the properties
        item.user_properties.append((ASSERTS, _Current.asserts))
        item.user_properties.append((RUNTIMES, sorted(_Current.runtimes)))
    return (yield)


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
        props = {}
        for name, value in report.user_properties:
            if name == PROPERTY:
                reqs = list(value)
            elif name in (ASSERTS, RUNTIMES):
                props[name] = value
        entry = self.results.setdefault(report.nodeid, {
            "nodeid": report.nodeid, "reqs": reqs, "outcome": None, "duration": 0.0,
            ASSERTS: 0, RUNTIMES: []})
        if reqs:
            entry["reqs"] = reqs
        if report.when == "call" and props:
            entry[ASSERTS] = int(props.get(ASSERTS, 0))
            entry[RUNTIMES] = list(props.get(RUNTIMES, []))
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
