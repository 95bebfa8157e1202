"""Host <-> emulator figures (issue 6, items 5, 6 and 8).

- Status round trip host -> emulator -> host over the pty (item 5; target median <= 1 ms,
  >= 1000 requests/s): ``host_tools.launch`` starts the emulator board (the firmware on
  the MicroPython unix port behind a pty), ``host_tools.client`` asks for status N times
  in a row; latency per request (perf_counter around ``Client.status()``), median and
  percentiles, and requests/s = N / wall time of the N. Three host sides on the same pty:
  the client as shipped (protocol/fastcodec.py since issue 12), the same client with
  protocol/codec.py (construct) in place of it (``client.codec`` swapped for the run: the
  client before), and a bare pyserial loop (one precomputed frame out, bytes in until
  the 0x00: the floor set by the pty, the launcher's relay and the firmware). The three
  run interleaved, in blocks of 200 requests, so that all see the same load (the machine
  is shared); the 1-minute load average is recorded. ``client_cpu_us``: the host side
  alone, Client.status() on an in-memory port that answers at once from a table (no pty,
  no firmware): median microseconds per call, the client as shipped and with construct.
- Emulator acceleration (item 6; target 72 h of therapy in lockstep in <= 10 s): a basal
  profile, a normal, an extended and a dual bolus, then one CLK_ADVANCE of 72 h, timed.
- HIL suite wall time (item 8): ``pytest hil_tests`` serially (-p no:xdist) and with -n 2.

Usage, from the repo root:
    .venv/bin/python benchmarks/link_bench.py roundtrip [--n 2000] [--lockstep]
    .venv/bin/python benchmarks/link_bench.py accel [--hours 72]
    .venv/bin/python benchmarks/link_bench.py hil
"""

from __future__ import annotations

import datetime as dt
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

from host_tools import client as C  # noqa: E402
from host_tools.launch import launch  # noqa: E402
from protocol import codec, fastcodec  # noqa: E402
from protocol import spec as S  # noqa: E402

ROUNDTRIPS = 2000
WARMUP = 100
BLOCK = 200  # requests per interleaved block


def _stats(samples: list[float], wall: float) -> dict:
    s = sorted(samples)
    n = len(s)
    return {"n": n, "median_ms": statistics.median(s) * 1e3, "p90_ms": s[n * 9 // 10] * 1e3,
            "p99_ms": s[n * 99 // 100] * 1e3, "max_ms": s[-1] * 1e3,
            "requests_per_s": n / wall}


def _timed(fn, n: int) -> dict:
    for _ in range(WARMUP):
        fn()
    samples = []
    perf = time.perf_counter
    start = perf()
    for _ in range(n):
        t = perf()
        fn()
        samples.append(perf() - t)
    return _stats(samples, perf() - start)


def _interleaved(fns: dict, n: int) -> dict:
    """{name: stats} of n calls of each fn, run in turns of BLOCK calls (same load)."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    walls = dict.fromkeys(fns, 0.0)
    perf = time.perf_counter
    for fn in fns.values():
        for _ in range(WARMUP):
            fn()
    while len(samples[next(iter(fns))]) < n:
        for name, fn in fns.items():
            got = samples[name]
            start = perf()
            for _ in range(min(BLOCK, n - len(got))):
                t = perf()
                fn()
                got.append(perf() - t)
            walls[name] += perf() - start
    return {name: _stats(samples[name], walls[name]) for name in fns}


class _AnsweringPort:
    """An in-memory port that answers each status request at once, from a table: the
    client's own cost per round trip, without the pty and the firmware."""

    timeout = C.READ_SLICE

    def __init__(self):
        self.waiting = b""
        d = fastcodec._BY_NAME["status_info"]
        fields = {n: b"" if t is bytes else 0 for n, t in zip(d.names, d.types, strict=True)}
        # request -> answer for every seq, made beforehand: write() only looks it up
        self.answers = {fastcodec.encode("status", seq): fastcodec.encode(
            "status_info", seq, fields, flags=S.F_RESPONSE) for seq in range(1, 0x10000)}

    def write(self, data: bytes):
        self.waiting += self.answers[data]

    def flush(self):
        pass

    @property
    def in_waiting(self) -> int:
        return len(self.waiting)

    def read(self, n: int = 1) -> bytes:
        out, self.waiting = self.waiting[:n], self.waiting[n:]
        return out


def client_cpu(n: int = 20_000) -> dict:
    """Median us per Client.status() on the answering port: fast codec and construct."""
    out = {}
    port = _AnsweringPort()
    for name, codec_module, runs in (("fast", fastcodec, n), ("construct", codec, n // 10)):
        C.codec = codec_module
        try:
            out[name] = _timed(C.Client(port, hello=False).status, runs)["median_ms"] * 1e3
        finally:
            C.codec = fastcodec
    return out


def roundtrip(n: int = ROUNDTRIPS, lockstep: bool = False) -> dict:
    """{"construct": stats, "fast": stats, "raw": stats, ...} of n status requests each."""
    out: dict = {"lockstep": lockstep, "load_average_1min": [round(os.getloadavg()[0], 2)]}
    with tempfile.TemporaryDirectory(prefix="rt-") as tmp, \
            launch(tmp, lockstep=lockstep, seed=1, console=False) as emu:
        pump = C.connect(emu.port, key=C.load_key(emu.key_path))
        try:
            st = pump.status()
            assert st.last_code == S.OK
            assert C.codec is fastcodec  # the client's default since issue 12
            port = pump.port  # the same pyserial port, bare
            request = codec.encode("status", 7)

            def raw():
                port.write(request)
                got = port.read(1)  # blocks until the answer starts
                while not got.endswith(b"\0"):
                    more = port.read(port.in_waiting or 1)
                    if not more:
                        raise RuntimeError("no answer to a raw status request")
                    got += more
                return got

            def construct():
                C.codec = codec  # construct's codec, as the client shipped before
                try:
                    return pump.status()
                finally:
                    C.codec = fastcodec

            assert type(construct()) is type(st)
            answer = raw()
            assert codec.decode(answer).name == "status_info"
            out["wire_bytes"] = {"request": len(request), "answer": len(answer)}
            out.update(_interleaved({"fast": pump.status, "construct": construct,
                                     "raw": raw}, n))
        finally:
            pump.close()
    out["load_average_1min"].append(round(os.getloadavg()[0], 2))
    out["client_cpu_us"] = client_cpu()
    return out


def accel(hours: int = 72) -> dict:
    """Wall time of `hours` of therapy in lockstep with basal, boluses of every kind."""
    with tempfile.TemporaryDirectory(prefix="accel-") as tmp, \
            launch(tmp, lockstep=True, seed=1, console=False) as emu:
        p = C.connect(emu.port, key=C.load_key(emu.key_path))
        try:
            p.set_profile(0, "day", [0, 12, 24, 44], [800, 1200, 1000, 700])
            p.set_time(C.pump_seconds(dt.datetime(2026, 11, 16)), 0)
            p.rewind()
            p.fill(300_000)
            p.prime(S.PRIME_TUBING, 1000)
            p.prime(S.PRIME_CANNULA, 100)
            p.resume()
            p.bolus(2000)  # normal: a meal
            p.emu_clock(S.CLK_ADVANCE, 10 * 60_000)
            p.bolus(0, 1500, 120)  # extended
            p.emu_clock(S.CLK_ADVANCE, 3 * 3_600_000)
            p.bolus(1000, 1000, 60)  # dual
            before = p.status()
            t = time.perf_counter()
            p.emu_clock(S.CLK_ADVANCE, hours * 3_600_000)
            wall = time.perf_counter() - t
            after = p.status()
            p.poll_events(0.2)
        finally:
            p.close()
    return {"hours": hours, "wall_s": wall, "x_real_time": hours * 3600 / wall,
            "insulin_mu_in_the_72_h": before.reservoir - after.reservoir,
            "delivering": after.delivering, "stop": after.stop_reason}


def hil_wall(workers: int | None) -> dict:
    """Wall time of `pytest hil_tests`: serial (workers None: -p no:xdist) or -n workers."""
    args = [sys.executable, "-m", "pytest", "hil_tests", "-q", "-p", "no:randomly"]
    args += ["-p", "no:xdist"] if workers is None else ["-n", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return {"workers": workers or 0, "wall_s": wall, "exit": proc.returncode,
            "summary": tail, "command": " ".join(["pytest"] + args[3:])}


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["roundtrip", "accel", "hil"])
    parser.add_argument("--n", type=int, default=ROUNDTRIPS)
    parser.add_argument("--lockstep", action="store_true")
    parser.add_argument("--hours", type=int, default=72)
    args = parser.parse_args(argv)
    if args.what == "roundtrip":
        out = roundtrip(args.n, args.lockstep)
    elif args.what == "accel":
        out = accel(args.hours)
    else:
        out = {"serial": hil_wall(None), "n2": hil_wall(2)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
