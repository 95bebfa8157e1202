"""The traceability tool (tools/trace.py) and its pytest plugin (tools/req_plugin.py), on
small synthetic inputs: requirements parsing, the table, the Markdown, and the plugin's
JSON from a real pytest run with pytest-xdist. Only asserting tests verify a requirement;
the table shows per id the asserting tests and the runtimes they ran on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tools import trace as T

REPO = Path(__file__).resolve().parent.parent

REQUIREMENTS = """\
# demo requirements

Intro text with an id in it, THR-9, that is not a requirement.

## Therapy (THR)
- THR-1 Basal profiles. Up to 4 named profiles, each 1..48 segments starting on 30-min
  boundaries, rate 0..35 U/h.
- THR-2 Temporary basal. Absolute (U/h) or percent.
- THR-10 Daily totals: total daily dose with basal/bolus split, kept for at least 90 days,
  so rising insulin needs show as a trend.

## Alarms (ALM)
- ALM-4 Auto-off (optional, 5..24 h, default 12 h): no user interaction for that long
  raises an alarm.
- ALM-6 Every alarm raised, acknowledged or cleared is logged and sent to the host as an
  event.
- not a requirement: a plain bullet
"""

RESULTS = {
    "generated": "2026-01-01T00:00:00+00:00",
    "args": ["-n", "2"],
    "exitstatus": 1,
    "tests": [
        {"nodeid": "t.py::test_basal", "reqs": ["THR-1", "THR-10"], "outcome": "passed",
         "asserts": 3, "runtimes": ["cpython", "unix"]},
        {"nodeid": "t.py::test_weekend", "reqs": ["THR-1"], "outcome": "failed",
         "asserts": 1, "runtimes": ["cpython"]},
        {"nodeid": "t.py::test_auto_off", "reqs": ["ALM-4"], "outcome": "skipped"},
        {"nodeid": "t.py::test_known_gap", "reqs": ["ALM-4"], "outcome": "xfailed"},
        {"nodeid": "t.py::test_setup_broke", "reqs": ["THR-10"], "outcome": "error"},
        {"nodeid": "t.py::test_future", "reqs": ["SNS-1"], "outcome": "passed",
         "asserts": 2, "runtimes": ["cpython", "wasm"]},
        {"nodeid": "t.py::test_benchmark", "reqs": ["THR-2"], "outcome": "passed",
         "asserts": 0, "runtimes": ["cpython", "unix"]},
        {"nodeid": "t.py::test_board", "reqs": ["ALM-6"], "outcome": "passed",
         "asserts": 4, "runtimes": ["board", "cpython"]},
        {"nodeid": "t.py::test_helper", "reqs": [], "outcome": "passed"},
    ],
}


def test_parse_requirements_ids_titles_and_order():
    reqs = T.parse_requirements(REQUIREMENTS)
    assert list(reqs) == ["THR-1", "THR-2", "THR-10", "ALM-4", "ALM-6"]
    assert reqs == {
        "THR-1": "Basal profiles",
        "THR-2": "Temporary basal",
        "THR-10": "Daily totals",
        "ALM-4": "Auto-off (optional, 5..24 h, default 12 h)",
        "ALM-6": "Every alarm raised, acknowledged or cleared is …",
    }


def test_title_rules():
    assert T.title_of("Clock. Date, time and UTC offset are set") == "Clock"
    assert T.title_of("One two three four five six seven eight nine") == (
        "One two three four five six seven …")
    assert T.title_of("Self-tests at power-on (firmware hash, storage integrity, motor)") == (
        "Self-tests at power-on …")  # cut words, no parenthesis left open
    assert T.title_of("Limits, enforced by the firmware itself: max bolus") == (
        "Limits, enforced by the firmware itself")


def test_table_counts_order_uncovered_and_unknown():
    trace = T.build(RESULTS, T.parse_requirements(REQUIREMENTS))
    rows = {r.rid: r for r in trace.rows}
    assert [r.rid for r in trace.rows] == ["THR-1", "THR-2", "THR-10", "ALM-4", "ALM-6",
                                          "SNS-1"]
    got = {rid: (len(r.tests), r.asserting, r.count(T.PASS), r.count(T.FAIL),
                 r.count(T.SKIP), r.runtimes, r.status) for rid, r in rows.items()}
    assert got == {
        "THR-1": (2, 1, 1, 1, 0, ["cpython", "unix"], "FAILING"),
        "THR-2": (1, 0, 1, 0, 0, [], "no assert"),  # passed, asserted nothing: no evidence
        "THR-10": (2, 1, 1, 1, 0, ["cpython", "unix"], "FAILING"),
        "ALM-4": (2, 0, 0, 0, 2, [], "skipped"),
        "ALM-6": (1, 1, 1, 0, 0, ["cpython", "board"], "verified"),
        "SNS-1": (1, 1, 1, 0, 0, ["cpython", "wasm"], "verified"),
    }
    assert not rows["SNS-1"].known and [r.rid for r in trace.uncovered] == []
    assert trace.untagged == ["t.py::test_helper"] and trace.failing

    text = T.render_text(trace)
    lines = text.splitlines()
    assert lines[0].split() == ["Requirement", "Title", "Tests", "Asserting", "Pass", "Fail",
                                "Skip", "Runtimes", "Status"]
    assert lines[2].split() == ["THR-1", "Basal", "profiles", "2", "1", "1", "1", "0",
                                "cpython", "unix", "FAILING"]
    assert lines[3].split() == ["THR-2", "Temporary", "basal", "1", "0", "1", "0", "0",
                                "-", "no", "assert"]
    assert lines[7].split()[:2] == ["SNS-1", "(not"]
    assert "Requirements without a test" not in text
    assert "Ids named by tests but not in the requirements: SNS-1" in text
    assert "Tests naming no requirement: 1" in text
    assert lines[-1] == ("5 requirements: 5 with tests, 1 verified (by asserting tests), 1 "
                         "with tests that assert nothing, 2 failing, 0 without a test. "
                         "9 tests: 5 passed, 2 failed, 2 skipped.")
    # columns line up: every row as wide as the header's ruler
    widths = {len(line) for line in lines[1:8]}
    assert max(widths) == len(lines[1])


def test_ids_from_tests_only_when_there_is_no_requirements_file():
    trace = T.build(RESULTS, None)
    assert [r.rid for r in trace.rows] == ["ALM-4", "ALM-6", "SNS-1", "THR-1", "THR-2",
                                          "THR-10"]
    assert all(r.known and r.title == "" for r in trace.rows)
    assert trace.uncovered == []


def test_markdown():
    md = T.render_markdown(T.build(RESULTS, T.parse_requirements(REQUIREMENTS)))
    assert md.startswith("# Requirement traceability\n")
    assert "(`pytest -n 2`, exit status 1)" in md
    assert ("| Requirement | Title | Tests | Asserting | Pass | Fail | Skip | Runtimes | "
            "Status |") in md
    assert "| THR-1 | Basal profiles | 2 | 1 | 1 | 1 | 0 | cpython unix | FAILING |" in md
    assert "| THR-2 | Temporary basal | 1 | 0 | 1 | 0 | 0 | - | no assert |" in md
    assert ("### THR-10 Daily totals\n\n- pass, 3 asserts, cpython unix: `t.py::test_basal`"
            "\n- fail, 0 asserts, -: `t.py::test_setup_broke`") in md


def test_command_line(tmp_path, capsys):
    (tmp_path / "req.md").write_text(REQUIREMENTS)
    (tmp_path / "trace.json").write_text(json.dumps(RESULTS))
    md = tmp_path / "out" / "trace.md"
    code = T.main(["--results", str(tmp_path / "trace.json"), "--requirements",
                   str(tmp_path / "req.md"), "--md", str(md)])
    out = capsys.readouterr().out
    assert code == 1  # a test failed
    assert out.splitlines()[0].startswith("Requirement") and md.read_text().startswith("#")
    assert T.main(["--results", str(tmp_path / "missing.json")]) == 2
    assert "no test results" in capsys.readouterr().err


INNER = '''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup fails")

@pytest.mark.req("THR-1", "THR-7")
def test_pass():
    pass

@pytest.mark.req("THR-1")
def test_fail():
    assert False

@pytest.mark.req("ALM-4")
def test_skip():
    pytest.skip("no board")

@pytest.mark.req("ALM-4")
@pytest.mark.xfail(reason="known gap")
def test_xfail():
    assert False

@pytest.mark.req("HIS-1")
def test_error(broken):
    pass

def test_untagged():
    pass
'''


def test_plugin_writes_trace_json_under_xdist(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    req(*ids): requirement ids\n")
    out = tmp_path / "results" / "trace.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tools.req_plugin", "-n", "2", "-q",
         "-p", "no:cacheprovider", f"--req-trace={out}", "--junit-xml=junit.xml",
         "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the summary at the end of the run, and the ids in the JUnit XML for CI
    summary = proc.stdout.split("requirement trace", 1)[1].splitlines()[1]
    assert re.fullmatch(r"\d+ requirements: 4 with tests, 1 verified, 2 failing, \d+ without "
                        r"a test\. 6 tests: 2 passed, 2 failed, 2 skipped\. \(table: "
                        r"`python -m tools.trace`\)", summary), summary
    cases = {c.get("name"): [p.get("value") for p in c.iter("property")]
             for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert cases["test_pass"] == ["['THR-1', 'THR-7']"] and cases["test_untagged"] == ["[]"]
    data = json.loads(out.read_text())
    assert data["exitstatus"] == 1 and data["args"][-1] == "test_inner.py"
    got = {t["nodeid"].split("::")[1]: (t["reqs"], t["outcome"]) for t in data["tests"]}
    assert got == {
        "test_pass": (["THR-1", "THR-7"], "passed"),
        "test_fail": (["THR-1"], "failed"),
        "test_skip": (["ALM-4"], "skipped"),
        "test_xfail": (["ALM-4"], "xfailed"),
        "test_error": (["HIS-1"], "error"),
        "test_untagged": ([], "passed"),
    }
    asserts = {t["nodeid"].split("::")[1]: t["asserts"] for t in data["tests"]}
    assert asserts["test_pass"] == 0 and asserts["test_fail"] == 0
    # --req-trace none: nothing written
    out.unlink()
    subprocess.run([sys.executable, "-m", "pytest", "-p", "tools.req_plugin", "-q",
                    "-p", "no:cacheprovider", "--req-trace=none", "test_inner.py"],
                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert not out.exists()


COUNTED = '''
import pytest
from tools.req_plugin import note_runtime

def helper(x):
    assert x > 0

@pytest.mark.req("THR-1")
def test_three_asserts():
    assert 1 + 1 == 2
    helper(3)
    assert "a" in "abc"

@pytest.mark.req("THR-2")
def test_raises():
    with pytest.raises(ZeroDivisionError):
        1 / 0

@pytest.mark.req("THR-3")
def test_figures_only():
    x = sum(range(10))

@pytest.mark.req("THR-4")
def test_on_the_unix_port():
    note_runtime("unix")
    assert True
'''


def test_plugin_counts_asserts_and_runtimes(tmp_path):
    """The assert counts and runtimes come from a real run: a test that asserts nothing
    gets 0 and does not verify its requirement."""
    (tmp_path / "test_counted.py").write_text(COUNTED)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nenable_assertion_pass_hook = true\n"
        "markers =\n    req(*ids): requirement ids\n")
    out = tmp_path / "trace.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tools.req_plugin", "-n", "2", "-q",
         "-p", "no:cacheprovider", f"--req-trace={out}", "test_counted.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    got = {t["nodeid"].split("::")[1]: (t["asserts"], t["runtimes"]) for t in data["tests"]}
    assert got == {
        "test_three_asserts": (3, ["cpython"]),  # the helper's assert counts too
        "test_raises": (1, ["cpython"]),
        "test_figures_only": (0, ["cpython"]),
        "test_on_the_unix_port": (1, ["cpython", "unix"]),
    }
    rows = {r.rid: r for r in T.build(data, None).rows}
    assert {rid: r.status for rid, r in rows.items()} == {
        "THR-1": "verified", "THR-2": "verified", "THR-3": "no assert", "THR-4": "verified"}
    assert rows["THR-4"].runtimes == ["cpython", "unix"]
