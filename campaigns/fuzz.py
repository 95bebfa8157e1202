"""Campaign 1, fuzz (LNK-1, LNK-5, SEC-2): random and mutated frames into the firmware link
on the MicroPython unix port, in chunks (one guest process each, two at a time), so memory
stays bounded and progress shows. Guest code and the kinds of bad input: mp_fuzz.py.

The pump delivers meanwhile: it is ticked between inputs, beside a twin pump ticked alike
that gets no bad input.

Targets: 0 escapes (no exception out of the link, none caught inside it, the guest never
dies, every byte out decodes), 0 state changes from bad frames (the pump snapshot equal to
its twin's after each chunk, no bad command answered OK), resync on the next good frame
(the good query after every sampled bad input answered; a genuine command accepted after
each chunk), and the pump ticked between inputs (it delivered insulin meanwhile).

A failing chunk is reproduced alone with its seed: ``main_chunk(<chunk seed>, n, sample)``
in campaigns/mp_fuzz.py (the table prints the seeds of failing chunks).
"""

from __future__ import annotations

from campaigns.common import Outcome, Progress, run_chunks

SIZES = {"full": (1_000_000, 50_000), "short": (6_000, 3_000)}  # inputs, per chunk
SAMPLE = 50  # per cent of bad inputs followed by a good query
KIND_NAMES = ("random", "random-long", "truncated", "stuffed-changed", "content-crc-ok",
              "header-crc-ok", "length-crc-ok", "replay", "auth-trailer", "oversized",
              "spliced", "bit-flips", "open-frame", "burst", "delimiters")
STAT_NAMES = ("frames_in", "bad_crc", "bad_frame", "unknown", "bad_auth", "replayed",
              "duplicates", "frames_out")


def chunk_seed(seed: int, i: int) -> int:
    return (seed * 7919 + i * 104729 + 1) & 0x7FFFFFFF


def run(mode: str = "full", seed: int = 1, quiet: bool = False) -> Outcome:
    total, per = SIZES[mode]
    n_chunks = (total + per - 1) // per
    sizes = [min(per, total - i * per) for i in range(n_chunks)]
    seeds = [chunk_seed(seed, i) for i in range(n_chunks)]
    calls = [f"from campaigns.mp_fuzz import main_chunk\nmain_chunk({s}, {n}, {SAMPLE})\n"
             for s, n in zip(seeds, sizes, strict=True)]
    out = Outcome("fuzz", mode, seed)
    prog = Progress("fuzz", total, "inputs", quiet=quiet, every=0)
    done = [0, 0]  # inputs, problems

    def on_done(i: int, r: dict) -> None:
        done[0] += r["inputs"]
        bad = _problems(r)
        done[1] += bad
        prog(done[0], f"chunk {i + 1}/{n_chunks} seed {r['seed']}: "
                      + ("ok" if not bad else f"{bad} PROBLEMS"))

    results = run_chunks(calls, on_done)
    agg = {k: sum(r[k] for r in results) for k in
           ("inputs", "sampled", "answered", "responses", "escapes", "faults", "undecodable",
            "accepted", "overflow", "ticks", "delivered")}
    changed = [r["seed"] for r in results if not r["unchanged"]]
    lost_link = [r["seed"] for r in results if not r["genuine_ok"]]
    kinds = [sum(r["kinds"][k] for r in results) for k in range(len(KIND_NAMES))]
    stats = [sum(r["stats"][k] for r in results) for k in range(len(STAT_NAMES))]
    out.counts = {"inputs": agg["inputs"], "chunks": n_chunks,
                  "pump ticks between inputs": agg["ticks"],
                  "insulin delivered meanwhile mU": agg["delivered"],
                  "good queries after a bad input": agg["sampled"],
                  "answered": agg["answered"], "pump frames out": agg["responses"]}
    out.counts.update({f"link {n}": v for n, v in zip(STAT_NAMES, stats, strict=True)})
    out.counts["kinds"] = " ".join(f"{n}={k}" for n, k in zip(KIND_NAMES, kinds, strict=True))
    escapes = agg["escapes"] + agg["faults"] + agg["undecodable"] + agg["overflow"]
    out.target("escapes (exceptions, faults, bad output)", escapes, "0", escapes == 0)
    out.target("state changes (chunks changed, bad cmds OK)",
               len(changed) + agg["accepted"], "0", not changed and agg["accepted"] == 0)
    unanswered = agg["sampled"] - agg["answered"] + len(lost_link)
    out.target("no resync: good frame after bad unanswered", unanswered, "0",
               unanswered == 0)
    out.target("inputs fed", agg["inputs"], f"{total:,}", agg["inputs"] == total)
    out.target("pump ticked between inputs", agg["ticks"], f"{total:,}",
               agg["ticks"] == total and agg["delivered"] > 0)
    for r in results:
        if _problems(r):
            out.notes.append(f"chunk seed {r['seed']} ({r['inputs']} inputs): {_describe(r)}"
                             f"; reproduce: main_chunk({r['seed']}, {r['inputs']}, {SAMPLE})")
    return out


def _problems(r: dict) -> int:
    return (r["escapes"] + r["faults"] + r["undecodable"] + r["accepted"] + r["overflow"]
            + (r["sampled"] - r["answered"]) + (not r["unchanged"]) + (not r["genuine_ok"]))


def _describe(r: dict) -> str:
    parts = [f"{k} {r[k]}" for k in ("escapes", "faults", "undecodable", "accepted", "overflow")
             if r[k]]
    if r["sampled"] != r["answered"]:
        parts.append(f"unanswered {r['sampled'] - r['answered']}")
    if not r["unchanged"]:
        parts.append(f"state changed (snapshot fields {r['diff']})")
    if not r["genuine_ok"]:
        parts.append("a genuine command was not accepted afterwards")
    return ", ".join(parts)
