"""Host <-> emulator figures (`make bench`; issue 6, items 5, 6 and 8): status round trip
over the pty, 72 h of therapy in lockstep, HIL suite wall time. benchmarks/link_bench.py
does the measuring; nothing about time is asserted here."""

import link_bench as L
import pytest


def once(benchmark, fn, *args, **kwargs):
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=1, iterations=1)


@pytest.mark.req("HW-3", "LNK-1", "LNK-2")
@pytest.mark.parametrize("clock", ["realtime", "lockstep"])
def test_status_round_trip(benchmark, figures, clock):
    rec = once(benchmark, L.roundtrip, L.ROUNDTRIPS, clock == "lockstep")
    figures.setdefault("status_round_trip", {})[clock] = rec
    assert rec["construct"]["n"] == L.ROUNDTRIPS


@pytest.mark.req("HW-3")
def test_72_hours_in_lockstep(benchmark, figures):
    rec = once(benchmark, L.accel, 72)
    figures["lockstep_72h"] = rec
    assert rec["delivering"]


@pytest.mark.parametrize("workers", [None, 2], ids=["serial", "n2"])
def test_hil_suite_wall_time(benchmark, figures, workers):
    rec = once(benchmark, L.hil_wall, workers)
    figures.setdefault("hil_wall", {})["serial" if workers is None else f"n{workers}"] = rec
