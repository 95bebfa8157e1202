"""The mutation check of the safety core (issue 19) in `make test`: the mutant list still
matches the code, the runner fails loudly on a line that changed, and a short seeded
sample of mutants is killed by its tests. `make mutants` runs the whole list.

The sample is chosen by a FIXED seed (SAMPLE_SEED), so a failure here reproduces on every
machine and every day; MUTANTS_SEED=N picks another sample for a local run. The full list
runs in `make mutants` (about 140 mutants, several minutes on 2 cores).
"""

from __future__ import annotations

import os

import pytest

from tools import mutants as M

SAMPLE_SEED = 19
SAMPLE_N = 6


@pytest.mark.req("HIS-2", "HIS-3", "THR-6", "ALM-3")
def test_every_mutant_still_applies_and_names_real_killer_tests():
    version, listed = M.load()
    assert version >= 1
    assert len(listed) >= 50
    assert M.check_all(listed) == []
    files = {m.file for m in listed}
    assert {"firmware/pump.py", "firmware/doses.py", "firmware/alarms.py", "firmware/cgm.py",
            "firmware/store.py", "firmware/link.py", "firmware/wire.py"} <= files
    for m in listed:
        if m.reason:
            assert len(m.reason) > 40, f"{m.id}: a survivor needs a real reason"


SOURCE = """class Pump:
    def bolus(self, total):
        if total > LIMIT:
            return E_OVER
        return OK

    def calculate(self, total):
        if total > LIMIT:
            flags |= OVER
"""


def mutant(**kw):
    base = dict(id="m", file="firmware/x.py", line="if total > LIMIT:", to="if False:",
                kill=("tests/test_x.py",))
    base.update(kw)
    return M.Mutant(**base)


@pytest.mark.req("HIS-2")
def test_a_line_that_is_gone_or_not_unique_fails_loudly_naming_it():
    with pytest.raises(M.Stale, match=r"occurs 2 times \(lines \[3, 8\]\).*if total > LIMIT"):
        M.apply(SOURCE, mutant())
    with pytest.raises(M.Stale, match=r"is gone: firmware/x.py: 'if total >= LIMIT:'"):
        M.apply(SOURCE, mutant(line="if total >= LIMIT:"))
    with pytest.raises(M.Stale, match="is gone"):
        M.apply(SOURCE, mutant(inside="status"))
    out = M.apply(SOURCE, mutant(inside="calculate"))
    assert out.splitlines()[7] == "        if False:"  # the original's indentation
    assert out.splitlines()[2] == "        if total > LIMIT:"  # the other one untouched
    out = M.apply(SOURCE, mutant(line="return OK", to="return E_OVER", before="return E_OVER"))
    assert out.splitlines()[4] == "        return E_OVER"


@pytest.mark.req("HIS-2")
def test_a_malformed_list_is_refused_with_what_is_wrong(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[[mutant]]\nid = "a"\nfile = "f"\nline = "x"\nto = "y"\nkill = ["t"]\n')
    with pytest.raises(M.ListError, match="version"):
        M.load(p)
    p.write_text('version = 1\n[[mutant]]\nid = "a"\nfile = "f"\nline = "x"\nto = "y"\n')
    with pytest.raises(M.ListError, match="a: field 'kill' is missing"):
        M.load(p)
    p.write_text('version = 1\n[[mutant]]\nid = "a"\nfile = "f"\nline = "x"\nto = " x "\n'
                 'kill = ["t"]\n')
    with pytest.raises(M.ListError, match="a: the replacement equals the original"):
        M.load(p)


@pytest.mark.req("HIS-2", "HIS-3", "THR-6", "THR-5", "ALM-3", "THR-13")
def test_a_seeded_sample_of_mutants_is_killed():
    """SAMPLE_N mutants (fixed seed; MUTANTS_SEED overrides) applied to a copy of the tree,
    each killed by its listed tests. One worker: `make test` already runs two."""
    _, listed = M.load()
    seed = int(os.environ.get("MUTANTS_SEED", SAMPLE_SEED))
    chosen = M.sample(listed, SAMPLE_N, seed)
    assert len(chosen) == SAMPLE_N and all(not m.reason for m in chosen)
    results = M.run_all(chosen, jobs=1)
    bad = [f"{r.mutant.id}: {r.status} ({r.detail})" for r in results if r.status != "killed"]
    assert bad == [], f"seed {seed}: " + "; ".join(bad)


@pytest.mark.req("HIS-2")
def test_the_runner_tells_a_survivor_an_accepted_one_and_a_bad_killer_apart():
    """Against a copy of the tree: a harmless change survives (and fails the run), the same
    change with a reason is accepted, a killer that does not exist is an error; the
    working tree is never touched."""
    src = M.ROOT / "firmware" / "pump.py"
    before = src.read_text()
    harmless = mutant(file="firmware/pump.py", line="MIN_MS = const(60000)",
                      to="MIN_MS = const(60000)  # unchanged value",
                      kill=("tests/test_calc.py::test_calculator_input_ranges",))
    box = M.Sandbox()
    try:
        survived = box.run(harmless)
        accepted = box.run(M.Mutant(**{**harmless.__dict__, "reason": "the same value"}))
        bad = box.run(M.Mutant(**{**harmless.__dict__, "kill": ("tests/test_calc.py::nope",)}))
    finally:
        box.close()
    assert (survived.status, survived.ok) == ("survived", False)
    assert (accepted.status, accepted.ok) == ("accepted", True)
    assert bad.status == "error" and "exit 4" in bad.detail
    assert src.read_text() == before
