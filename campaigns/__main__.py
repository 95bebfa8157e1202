"""python -m campaigns [NAME ...] [--full | --short] [--seed N] [--json FILE]

Runs the fault campaigns (all by default, in the order fuzz, linkfaults, powercut,
security), printing progress, then a result table: every target with what was measured,
the wall time of each campaign and its seed. Exit status 1 if any target was missed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

from campaigns import NAMES
from campaigns.common import table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m campaigns", description=__doc__.split("\n")[2])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"campaigns: {', '.join(NAMES)}")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the full campaigns (default)")
    size.add_argument("--short", dest="mode", action="store_const", const="short",
                      help="the short seeded versions that `make test` runs")
    ap.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also write the outcomes as JSON")
    args = ap.parse_args(argv)
    mode = args.mode or "full"
    names = args.names or list(NAMES)
    for n in names:
        if n not in NAMES:
            ap.error(f"unknown campaign {n!r}; campaigns: {', '.join(NAMES)}")
    outcomes = []
    t_all = time.perf_counter()
    for n in names:
        print(f"== {n} ({mode}, seed {args.seed}) ==", flush=True)
        mod = importlib.import_module(f"campaigns.{n}")
        t0 = time.perf_counter()
        out = mod.run(mode, args.seed)
        out.wall = time.perf_counter() - t0
        outcomes.append(out)
        print(f"== {n}: {'all targets met' if out.ok else 'TARGET MISSED'}, "
              f"{out.wall:.1f} s ==", flush=True)
    wall = time.perf_counter() - t_all
    print()
    print(table(outcomes))
    print(f"\ntotal wall time {wall:.1f} s; {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}; command: python -m campaigns "
          + " ".join(names) + f" --{mode} --seed {args.seed}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"wall_s": round(wall, 1), "outcomes": [o.as_dict() for o in outcomes]},
                      f, indent=1)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
