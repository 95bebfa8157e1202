"""Flash writes of a typical day, per storage region (issue 9: what persisting the safety
state costs in flash wear).

    .venv/bin/python benchmarks/flash_writes.py [--days N]

A pump on the simulated parts (boards/fakes.py, 50-mU pulses) runs a typical day, measured
after one day of warm-up: a basal profile of 0.6-1.2 U/h (about 21 U), three meal boluses
(4, 6 and 5 U), a 1-h temp basal of 50 %, a CGM reading every 5 min, one suspension of
30 min, 100-ms ticks. It counts storage writes and bytes per region and prints a table
(and JSON with --json). The figures are the same on every runtime (the firmware decides
when to write); they are quoted in benchmarks/RESULTS.md.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boards.fakes import Radio, Rig  # noqa: E402
from firmware import hal  # noqa: E402
from firmware.pump import Pump  # noqa: E402
from protocol import spec as S  # noqa: E402

REGION_NAMES = ("settings A", "settings B", "state A", "state B", "history", "day totals",
                "link A", "link B", "doses A", "doses B", "CGM log")
MONDAY = 2511 * 86400
MEALS = ((7 * 60 + 30, 4000), (12 * 60 + 30, 6000), (19 * 60, 5000))  # minute, mU


class Counting:
    """Counts the writes of a storage driver, per region."""

    def __init__(self, storage):
        self.storage = storage
        self.writes = [0] * hal.REGIONS
        self.bytes = [0] * hal.REGIONS
        self._write = storage.write
        storage.write = self.write

    def write(self, region, offset, buf):
        self.writes[region] += 1
        self.bytes[region] += len(buf)
        self._write(region, offset, buf)

    def reset(self):
        self.writes = [0] * hal.REGIONS
        self.bytes = [0] * hal.REGIONS


def typical_day(rig, pump):
    """One day from 00:00 local, ticking every 100 ms."""
    for minute in range(24 * 60):
        for meal, mu in MEALS:
            if minute == meal:
                pump.bolus(S.BOLUS_NORMAL, mu, 0, 0)
        if minute == 16 * 60:
            pump.set_temp_basal(S.TEMP_PERCENT, 50, 60)
        if minute == 21 * 60:
            pump.suspend()
        if minute == 21 * 60 + 30:
            pump.resume()
        for _ in range(600):
            rig.clock.advance(100)
            pump.tick()


def measure(days=1):
    rig = Rig(50)
    rig.radio = Radio(rig.clock, lambda minute: 110 + (minute // 5) % 40 if minute % 5 == 0
                      else 0)
    counter = Counting(rig.storage)
    pump = Pump(rig.hardware())
    pump.boot()
    assert pump.settings.set_profile(0, b"typical", [0, 12, 20, 44], [600, 1200, 900, 700]) == S.OK
    assert pump.set_time(MONDAY, 0) == S.OK
    assert pump.rewind() == S.OK and pump.fill(300000) == S.OK
    assert pump.prime(S.PRIME_TUBING, 10000) == S.OK and pump.resume() == S.OK
    typical_day(rig, pump)  # warm-up
    counter.reset()
    pos = rig.motor.pos
    for _ in range(days):
        typical_day(rig, pump)
    rows = []
    for r in range(hal.REGIONS):
        rows.append({"region": REGION_NAMES[r], "writes": counter.writes[r] // days,
                     "bytes": counter.bytes[r] // days})
    return {"days": days, "pulses_per_day": (rig.motor.pos - pos) // days, "regions": rows,
            "writes_per_day": sum(x["writes"] for x in rows),
            "bytes_per_day": sum(x["bytes"] for x in rows)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    got = measure(args.days)
    if args.json:
        print(json.dumps(got, indent=1))
        return
    print(f"typical day: {got['pulses_per_day']} motor pulses")
    print(f"{'region':<12} {'writes/day':>10} {'bytes/day':>10}")
    for row in got["regions"]:
        print(f"{row['region']:<12} {row['writes']:>10} {row['bytes']:>10}")
    print(f"{'total':<12} {got['writes_per_day']:>10} {got['bytes_per_day']:>10}")


if __name__ == "__main__":
    main()
