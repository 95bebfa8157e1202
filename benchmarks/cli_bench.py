"""`pumpctl status` as a whole process against `mpremote version` (issue 12, host part).

Target: `pumpctl status` (start the interpreter, import, open the port, HELLO, status, print
the table, exit) within 1.5x of `mpremote version` (start, import, print its version), both
whole processes, median of N runs each. The script starts the emulator board behind a pty
(``host_tools.launch``, as the tests do) and runs the commands alternately, so that both see
the same load; also `pumpctl --json status` (no table: no rich) and `pumpctl --help`.

The children run with bytecode caches (PYTHONDONTWRITEBYTECODE is dropped from their
environment, and each command runs once before timing) as an installed pumpctl would: without
them every run would compile the project's sources again and time that.

``--tree DIR`` adds the `pumpctl status` of another checkout, run as `python -m
host_tools.pumpctl` from DIR (its own sources come first on sys.path), beside this one's run
the same way: a before/after in one interleaved run, e.g. with DIR from
`git archive 1962a04 | tar -x -C DIR`.

Usage, from the repo root:
    .venv/bin/python benchmarks/cli_bench.py [--n 30] [--json FILE] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools.launch import launch  # noqa: E402

BIN = Path(sys.executable).parent
RUNS = 30
TARGET_RATIO = 1.5


def commands(port: str, key: str, tree: Path | None = None) -> dict[str, tuple[list, Path]]:
    """{name: (argv, working directory)}"""
    link = ["--port", port, "--key", key]
    pumpctl = [str(BIN / "pumpctl"), *link]
    cmds = {
        "mpremote version": ([str(BIN / "mpremote"), "version"], ROOT),
        "pumpctl status": (pumpctl + ["status"], ROOT),
        "pumpctl --json status": (pumpctl + ["--json", "status"], ROOT),
        "pumpctl --help": ([str(BIN / "pumpctl"), "--help"], ROOT),
        "python -c pass": ([sys.executable, "-c", "pass"], ROOT),
    }
    if tree is not None:
        module = [sys.executable, "-m", "host_tools.pumpctl", *link, "status"]
        cmds["python -m host_tools.pumpctl status"] = (module, ROOT)
        cmds[f"python -m host_tools.pumpctl status ({tree})"] = (module, tree)
    return cmds


def run_once(cmd: list[str], env: dict, cwd: Path = ROOT) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall


def measure(n: int = RUNS, tree: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["COLUMNS"] = "100"  # the same table width whatever the terminal
    with tempfile.TemporaryDirectory(prefix="cli-") as tmp, \
            launch(tmp, seed=1, console=False) as emu:
        cmds = commands(emu.port, str(emu.key_path), tree)
        for cmd, cwd in cmds.values():  # warm-up: bytecode caches, the page cache
            run_once(cmd, env, cwd)
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        load_before = os.getloadavg()[0]
        for _ in range(n):  # interleaved: every command sees the same load
            for name, (cmd, cwd) in cmds.items():
                samples[name].append(run_once(cmd, env, cwd))
        load_after = os.getloadavg()[0]
    out: dict = {"n": n, "load_average_1min": [round(load_before, 2), round(load_after, 2)],
                 "median_ms": {}, "min_ms": {}}
    for name, xs in samples.items():
        out["median_ms"][name] = round(statistics.median(xs) * 1e3, 1)
        out["min_ms"][name] = round(min(xs) * 1e3, 1)
    base = out["median_ms"]["mpremote version"]
    out["ratio_to_mpremote_version"] = {name: round(ms / base, 2)
                                        for name, ms in out["median_ms"].items()}
    ratio = out["ratio_to_mpremote_version"]["pumpctl status"]
    out["target"] = f"pumpctl status <= {TARGET_RATIO}x mpremote version"
    out["met"] = ratio <= TARGET_RATIO
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=RUNS, help="runs of each command")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--tree", type=Path, metavar="DIR",
                        help="another checkout whose pumpctl status to time beside this one")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.tree is not None and not (args.tree / "host_tools" / "pumpctl.py").is_file():
        parser.error(f"--tree {args.tree}: no host_tools/pumpctl.py there")
    out = measure(args.n, args.tree.resolve() if args.tree else None)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
