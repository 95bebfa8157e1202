"""The request part of benchmarks/arm_bench.py alone (about 2 s instead of minutes), plus a
status request after every tick: instructions per Link.poll answering one frame on the
QEMU ARM test image (`JOBS=2 tools/arm/build.sh qemu-arm` first), medians.

    .venv/bin/python benchmarks/arm_requests.py [--json build/bench/req.json]

`status` in arm_bench's table repeats one request with nothing in between, so from the
second request on it is answered from the kept payload (firmware/status.py) when nothing
changed; `status_after_tick` runs one 100-ms Pump.tick (outside the measurement) before
each request, so every status is packed from the pump again: the two ends of what a host
polling the pump sees. `status_after_tick_fn` is the same loop inside a function, as
firmware/main.py's Runner calls `Link.poll` (from a method): the guest's own names are
then locals, not entries of its globals dict, and the figure moves by ~19,000
instructions with that alone (benchmarks/RESULTS.md, req4): both are printed.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import arm_bench as B  # noqa: E402

from tools.arm import qemu as Q  # noqa: E402

EMPTY_GUEST = """
import json, time
from array import array
cpu = time.ticks_cpu
diff = time.ticks_diff
empty = array("i", [0] * 200)
for i in range(200):
    t0 = cpu()
    t1 = cpu()
    empty[i] = diff(t1, t0)
print("EMPTY " + json.dumps(sorted(empty)[100]))
"""

AFTER_TICK_GUEST = """
import json, time
from tests import mp_link as L
cpu = time.ticks_cpu
diff = time.ticks_diff
rig, pump, link = L.bench()
serial = rig.serial
data = L.request_frames()[0][1]
L.xfer(rig, link, data)
serial.take()
samples = []
for i in range({n}):
    rig.clock.advance(100)
    pump.tick()
    serial.out_count = 0
    serial.send(data)
    t0 = cpu()
    link.poll()
    t1 = cpu()
    samples.append(diff(t1, t0))
print("REQ " + json.dumps({{"label": "status_after_tick", "samples": samples,
                           "reply_bytes": serial.out_count}}))
"""

# the same steps inside a function (the guest's names are locals, as in firmware/main.py)
AFTER_TICK_FN_GUEST = """
import json, time
from tests import mp_link as L
cpu = time.ticks_cpu
diff = time.ticks_diff
rig, pump, link = L.bench()
serial = rig.serial
data = L.request_frames()[0][1]
L.xfer(rig, link, data)
serial.take()
def run(n):
    samples = []
    for i in range(n):
        rig.clock.advance(100)
        pump.tick()
        serial.out_count = 0
        serial.send(data)
        t0 = cpu()
        link.poll()
        t1 = cpu()
        samples.append(diff(t1, t0))
    print("REQ " + json.dumps({{"label": "status_after_tick_fn", "samples": samples,
                               "reply_bytes": serial.out_count}}))
run({n})
"""


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arm-req-") as tmp:
        t = Path(tmp)
        empty = B.lines(Q.run_script(EMPTY_GUEST, state_dir=t / "empty"), "EMPTY")[0]
        figs = B.request_figures(t, empty)
        figs.update(B.auth_request_figures(t, empty))
        out = Q.run_script(AFTER_TICK_GUEST.format(n=B.REQUESTS), state_dir=t / "tick")
        out += Q.run_script(AFTER_TICK_FN_GUEST.format(n=B.REQUESTS), state_dir=t / "fn")
        for rec in B.lines(out, "REQ"):
            figs[rec["label"]] = dict(B.stats(rec["samples"], empty),
                                      reply_bytes=rec["reply_bytes"])
    print(f"{'request':20} {'median':>8} {'mean':>8}  (instructions, Link.poll)")
    for label, rec in figs.items():
        print(f"{label:20} {rec['median']:8} {rec['mean']:8}  (reply {rec['reply_bytes']} B)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"overhead_counts": empty, "request": figs},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
