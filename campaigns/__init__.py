"""Fault campaigns (issue 6): seeded, reproducible, bounded in time.

    python -m campaigns [fuzz|linkfaults|powercut|security ...] [--full|--short] [--seed N]

One module per campaign, each with ``run(mode, seed, progress) -> Outcome``:

- ``fuzz``        random and mutated frames into the firmware link on the MicroPython unix
                  port (guest code: mp_fuzz.py), in chunks of one process each;
- ``linkfaults``  delivery commands through the real client against the emulator in
                  lockstep, with drop and corruption (emulator faults) and duplicate and
                  reorder (a host-side lossy port, relay.py) in both directions;
- ``powercut``    power cuts at random instants, in-process on the simulated board (the
                  Rig of tests/test_powercut.py) for volume and on the emulator
                  (FAULT_POWER_CUT) for realism;
- ``security``    forged MACs, replays, stale counters, unauthenticated commands and
                  emulator-only messages against a board build, on the unix port (guest
                  code: mp_security.py).

This package file is kept importable by MicroPython (guest modules live here too).
"""

NAMES = ("fuzz", "linkfaults", "powercut", "security")
