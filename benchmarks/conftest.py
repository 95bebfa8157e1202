"""pytest-benchmark suite (`make bench`): the figures of benchmarks/RESULTS.md.

Each benchmark puts its figures in the session's registry through the ``figures`` fixture
(one section per test module); at the end the registry is printed (the codec section as a
table of medians and ratios against pymavlink) and written to build/bench/figures.json
with the machine and the date. No timing is asserted anywhere: figures are reported.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
FIGURES: dict = {}


@pytest.fixture
def figures(request) -> dict:
    """This test module's section of the session's figures (a dict to fill in)."""
    name = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return FIGURES.setdefault(name, {})


def machine() -> dict:
    model, cores = platform.processor() or "?", "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "CPU(s)":
                cores = value.strip()
    except OSError:
        pass
    return {"cpu": model, "cores": cores, "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("micropump figures (benchmarks/RESULTS.md)")
    info = machine()
    tr.write_line(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
                  f"{info['date']}")
    from report import render

    tr.write_line("")
    for line in render(FIGURES):
        tr.write_line(line)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "figures.json"
    path.write_text(json.dumps({"machine": info, "argv": sys.argv, "figures": FIGURES},
                               indent=1, default=str))
    tr.write_line(f"written: {path.relative_to(ROOT)} (print again: "
                  "python benchmarks/report.py)")
