"""Heap after the first use of each rarely used handler, QEMU ARM board (issue 12, mpy5).

Usage, from the repo root (after `tools/arm/build.sh qemu-arm`):
    .venv/bin/python benchmarks/heap_first_use.py [--json build/bench/first-use.json]

The rarely used messages' handlers (firmware/link_cold.py, with pump_cold.py,
settings_cold.py and calc.py) are imported at the first such message, not at boot: the
heap moves from boot to first use. This boots as benchmarks/arm_bench.py's
heap_firmware_only (boards/fakes.py drivers, storage in the PSRAM), frozen and from .mpy
files on a file system (arm_bench.mpy_flash, pumpctl flash's mpy-cross options), then
sends each of those messages in turn (commands signed with the board's key) and prints,
after a collection, the bytes in use and the largest free block, with the answer (message
id and, for RESULT, the code). The last row imports firmware/cgm_sensor.py, which only a
board with a sensor link loads (at boot).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import arm_bench as A  # noqa: E402
from firmware import wire  # noqa: E402
from protocol import spec as S  # noqa: E402
from tools.arm import qemu as Q  # noqa: E402

KEY = bytes(32)  # arm_bench's HEAP_MIN_BOOT board key
ID = {name: mid for mid, (name, _) in S.MESSAGES.items()}
UTC = 2511 * 86400 + 13 * 3600  # 2026-11-16 13:00 UTC
STARTS = bytes([0, 12, 24]) + bytes(45)
RATES = b"".join(r.to_bytes(2, "little") for r in (800, 1500, 1200)) + bytes(90)

# (label, message, values): queries first, then commands (cmd_id first)
REQUESTS = [
    ("get_settings", "get_settings", []),
    ("get_schedule", "get_schedule", []),
    ("get_profile", "get_profile", [0]),
    ("get_history", "get_history", [1, 8]),
    ("get_totals", "get_totals", [2511]),
    ("get_alarms", "get_alarms", []),
    ("get_link_stats", "get_link_stats", []),
    ("get_cgm", "get_cgm", [0, 24]),
    ("get_calc_schedule", "get_calc_schedule", [0]),
    ("calc", "calc", [45, 180]),
    ("get_sensor_stats", "get_sensor_stats", []),
    ("set_setting", "set_setting", [11, S.SET_MAX_BOLUS, 8000]),
    ("set_profile", "set_profile", [12, 0, b"test", 3, STARTS, RATES]),
    ("set_schedule", "set_schedule", [13, bytes(7)]),
    ("set_time", "set_time", [14, UTC, 60]),
    ("rewind", "rewind", [15]),
    ("fill", "fill", [16, 100000]),
    ("prime", "prime", [17, S.PRIME_TUBING, 500]),
    ("temp_basal", "temp_basal", [18, S.TEMP_PERCENT, 150, 60]),
    ("cancel_temp_basal", "cancel_temp_basal", [19]),
    ("set_calc_schedule", "set_calc_schedule",
     [20, S.CALC_CARB_RATIO, 1, bytes(8), (100).to_bytes(2, "little") + bytes(14), bytes(16)]),
]


def frames() -> list[tuple[str, bytes]]:
    out = []
    counter = 100
    for seq, (label, name, values) in enumerate(REQUESTS, 1):
        mid = ID[name]
        if mid < S.CMD_FIRST:
            data = wire.encode_frame(mid, seq, 0, values)
        else:
            counter += 1
            data = wire.encode_frame(mid, seq, 0, values, key=KEY, counter=counter)
        out.append((label, data))
    return out


STEPS = """
from firmware import wire as _w
def _answer(data):
    got = []
    for part in data.split(b"\\x00"):
        if part:
            f = _w.decode_frame(part)
            if f[2] & 2:
                got.append([f[0], f[3][1] if f[0] == 0x80 else 0])
    return got
gc.collect()
print("FIRST boot " + json.dumps([gc.mem_alloc(), 0, []]))
for label, data in {frames!r}:
    hw.serial.send(data)
    runner.service()
    gc.collect()
    used = gc.mem_alloc()
    print("FIRST " + label + " " + json.dumps([used, 0, _answer(hw.serial.take())]))
import firmware.cgm_sensor
gc.collect()
print("FIRST cgm_sensor " + json.dumps([gc.mem_alloc(), 0, []]))
"""


def parse(out: str) -> list[dict]:
    rows = []
    for ln in out.splitlines():
        if ln.startswith("FIRST "):
            _, label, rest = ln.split(" ", 2)
            used, _, answer = json.loads(rest)
            rows.append({"label": label, "in_use": used, "answer": answer})
    return rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    steps = STEPS.format(frames=frames())
    figs = {}
    with tempfile.TemporaryDirectory(prefix="heap-first-use-") as tmp:
        t = Path(tmp)
        figs["frozen"] = parse(Q.run_script(A.HEAP_MIN_GUEST + steps, state_dir=t / "frozen",
                                            image=Q.IMAGE))
        guest, state, _ = A.mpy_flash(t, "first-use-mpy", A.HEAP_MIN_BOOT + steps)
        figs["mpy"] = parse(Q.run_script(guest, state_dir=state, image=Q.IMAGE))
    if [r["label"] for r in figs["frozen"]] != [r["label"] for r in figs["mpy"]]:
        raise SystemExit("the two boots did not run the same requests: " + json.dumps(figs))
    print(f"{'after':22}{'frozen in use':>15}{'.mpy in use':>13}  answer (id, code)")
    for fr, mp in zip(figs["frozen"], figs["mpy"], strict=True):
        ans = ", ".join(f"0x{a[0]:02X}" + (f" code {a[1]}" if a[0] == 0x80 else "")
                        for a in mp["answer"])
        print(f"{fr['label']:22}{fr['in_use']:>15,}{mp['in_use']:>13,}  {ans}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
