"""Campaign 4, security (SEC-2, SEC-3, SEC-4, LNK-3, LNK-4): forged MACs, replayed frames
(also after a reboot), stale counters, unauthenticated delivery commands, commands to a
board flashed without a key, emulator-only messages sent to a board build (boards.fakes Rig
without an emulator), frames after the link state was corrupted in storage, and REPL
control bytes and a Ctrl-C on the bench console of the main loop, on the MicroPython unix
port, between genuine commands of the paired host. Guest code and the kinds of attack:
mp_security.py.

Targets: 100 % refused (no OK, no state change) in every kind; every genuine command from
the paired host still accepted; no exception inside the link. Refusals with the expected
code and detail are counted too (forged content may be dropped instead, as a bad frame).
"""

from __future__ import annotations

from campaigns.common import Outcome, Progress, run_chunks
from campaigns.mp_security import KINDS

SIZES = {"full": (100_000, 10_000), "short": (3_000, 1_500)}  # attacks, per chunk


def chunk_seed(seed: int, i: int) -> int:
    return (seed * 6007 + i * 7877 + 3) & 0x7FFFFFFF


def run(mode: str = "full", seed: int = 1, quiet: bool = False) -> Outcome:
    total, per = SIZES[mode]
    n_chunks = (total + per - 1) // per
    sizes = [min(per, total - i * per) for i in range(n_chunks)]
    seeds = [chunk_seed(seed, i) for i in range(n_chunks)]
    calls = [f"from campaigns.mp_security import main_chunk\nmain_chunk({s}, {n})\n"
             for s, n in zip(seeds, sizes, strict=True)]
    prog = Progress("security", total, "attacks", quiet=quiet, every=0)
    done = [0]

    def on_done(i: int, r: dict) -> None:
        done[0] += r["attacks"]
        prog(done[0], f"chunk {i + 1}/{n_chunks} seed {r['seed']}")

    results = run_chunks(calls, on_done)
    counts = {k: [sum(r["counts"][k][j] for r in results) for j in range(4)] for k in KINDS}
    out = Outcome("security", mode, seed)
    sent = sum(c[0] for c in counts.values())
    refused = sum(c[1] for c in counts.values())
    changed = sum(c[3] for c in counts.values())
    genuine = sum(r["genuine"] for r in results)
    genuine_ok = sum(r["genuine_ok"] for r in results)
    faults = sum(r["faults"] for r in results)
    escapes = sum(r["console_escapes"] for r in results)
    out.counts = {"attacks": sent, "refused": refused,
                  "refused with the expected code": sum(c[2] for c in counts.values()),
                  "genuine commands": genuine, "genuine accepted": genuine_ok,
                  "reboots (replay after reboot)": sum(r["reboots"] for r in results)}
    pct = 100.0 * refused / sent if sent else 0.0
    out.target("attacks refused, %", round(pct, 3), "100", refused == sent and sent > 0)
    out.target("state changes from attacks", changed, "0", changed == 0)
    for k, c in counts.items():
        out.target(f"  {k}: refused (as expected {c[2]:,})", f"{c[1]}/{c[0]}", "all",
                   c[0] > 0 and c[1] == c[0])
    out.target("genuine commands accepted", f"{genuine_ok}/{genuine}", "all",
               genuine_ok == genuine)
    out.target("link faults (exceptions)", faults, "0", faults == 0)
    out.target("exceptions out of the console or the loop", escapes, "0", escapes == 0)
    for r in results:
        for ex in r["examples"]:
            out.notes.append(f"accepted attack {ex}: reproduce main_chunk({r['seed']}, "
                             f"{r['attacks']}) in campaigns/mp_security.py")
    return out
