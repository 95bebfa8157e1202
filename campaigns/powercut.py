"""Campaign 3, power cuts (HIS-2, HIS-1, LNK-3, HIS-3, THR-13): the supply dies at random
instants during boluses (normal, extended, dual), basal and temp basal, history writes and
settings writes; the clock is changed now and then (time and zone, within 5 days), and 30 %
of the cuts are outages of 1 s to 6 h, 30 % of those with the RTC's backup cell out (the
time is then lost and set again).

Two parts:

1. In-process, for volume: the firmware on the simulated board (boards.fakes Rig), driven
   by the episodes of tests/test_powercut.py (random therapy, reservoir changes, alarms,
   settings and profile writes; the cut lands before, in the middle of (torn) or after a
   chosen flash write, or part-way through a motor move, and sometimes again during the
   boot that follows). After each cut the pump boots from what was stored and is checked
   here, each check in its own category:
     double count / lost insulin  the pulses the motor moved (counted at the motor, prime
                                  apart) equal the persisted basal + bolus totals
                                  (and the split, and prime);
     lost or corrupt records      every history record readable (CRC), sequence numbers
                                  contiguous, one start and one end per bolus, each end's
                                  delivered mU what the motor moved for that bolus, ending
                                  as happened (interrupted when cut off);
     resumed bolus                no bolus runs after the boot, and the next ten minutes
                                  move no bolus pulse;
     basal after the boot         exactly the programmed rate (carried fraction included);
     settings / profiles          each holds the last value written, or the one a cut
                                  write was writing if that write completed.
2. On the emulator, for realism: FAULT_POWER_CUT after a random delay while a bolus runs,
   during basal or temp basal, or just after a settings write (the emulator cuts between
   two lockstep ticks); the launcher restarts the firmware from its flash file and the
   checks run over the protocol: no bolus after the reboot, the cut bolus recorded
   interrupted once with what was delivered, no bolus insulin in the minutes after the
   boot, the plunger's travel equal to the recorded totals (basal + bolus + prime), history
   contiguous with valid CRCs and one end per bolus start, the acknowledged setting kept.

Reproduce an in-process failure with its seed (printed): the episode seed drives
tests.test_powercut.Episode through random.Random(seed).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter

from boards.fakes import PowerCut
from campaigns.common import Outcome, Progress, note_runtime
from campaigns.linkfaults import boot
from firmware.pump import S_BOLUS_ID, S_STOP, S_TEMP_KIND
from protocol import spec as S

SIZES = {"full": (200, 5, 60), "short": (6, 5, 3)}  # episodes, cuts per episode, emulator cuts
REGION_NAMES = ("settings", "settings", "state", "state", "history", "totals", "link", "link",
                "doses", "doses", "CGM log")
CATEGORIES = ("double count / lost insulin", "lost or corrupt records", "resumed bolus",
              "basal after the boot", "settings / profiles")
HOUR_MS = 3600000


# ============================================================================ in-process
class Watch:
    """Records what was going on when the power died: the flash region being written (and
    how the cut hit it) or a motor move, and the therapy state."""

    def __init__(self, ep):
        self.ep = ep
        self.where = None
        storage = ep.rig.storage
        write = storage.write

        def watched_write(region, offset, buf):
            if storage.writes + 1 == storage.cut_at:
                self.where = ("write", region, storage.cut_mode)
            return write(region, offset, buf)

        storage.write = watched_write
        motor = ep.rig.motor
        step = motor.step  # tests/test_powercut.Motor's counting wrapper

        def watched_step(n):
            if motor.cut_after >= 0 and n > motor.cut_after:
                self.where = ("motor", None, None)
            return step(n)

        motor.step = watched_step

    def context(self) -> list[str]:
        pump = self.ep.pump
        tags = []
        where = self.where
        if where is None:
            tags.append("unknown")
        elif where[0] == "motor":
            tags.append("motor move")
        else:
            tags.append(REGION_NAMES[where[1]] + " write "
                        + ("before", "torn", "after")[where[2]])
        st = pump.state
        if st[S_BOLUS_ID]:
            tags.append("bolus running")
        elif st[S_STOP]:
            tags.append("suspended")
        elif st[S_TEMP_KIND]:
            tags.append("temp basal")
        else:
            tags.append("basal")
        return tags


def check(ep, problems: Counter, log: list, label: str) -> None:
    """tests/test_powercut.Episode.check, one category per problem instead of asserts."""
    from tests.pumpkit import history

    pump, p, motor = ep.pump, ep.pulse, ep.motor

    def bad(cat: str, what: str) -> None:
        problems[cat] += 1
        if len(log) < 20:
            log.append(f"{label}: {cat}: {what}")

    if pump.state[S_BOLUS_ID] != 0 or pump.bolus_progress() != (0, 0, 0):
        bad("resumed bolus", f"bolus {pump.state[S_BOLUS_ID]} running after the boot")
    days = [pump.day_totals(d) for d in ep.days()]
    basal = sum(t[0] for t in days if t)
    bolus = sum(t[1] for t in days if t)
    prime = sum(t[2] for t in days if t)
    if basal + bolus != motor.delivered * p:
        bad("double count / lost insulin", f"totals {basal + bolus} mU, motor "
            f"{motor.delivered * p} mU")
    elif (basal, bolus) != (motor.basal * p, sum(motor.bolus.values()) * p):
        bad("double count / lost insulin", "basal / bolus split differs from the motor's")
    if prime != motor.prime * p:
        bad("double count / lost insulin", f"prime {prime} mU, motor {motor.prime * p} mU")
    try:
        recs = history(pump)
    except AssertionError as e:
        bad("lost or corrupt records", str(e))
        recs = []
    if recs and (pump.history.first_seq != 1
                 or [r[0] for r in recs] != list(range(1, pump.history.next_seq))):
        bad("lost or corrupt records", "history sequence numbers not contiguous")
    last = 0
    for r in recs:  # times go back only at a record that says why (THR-13)
        if r[2] in (S.H_TIME_CHANGE, S.H_TIME_LOST):
            last = 0
        elif r[1] < last:
            bad("lost or corrupt records", f"record {r[0]} is earlier than the one before")
            break
        last = r[1]
    starts = [r for r in recs if r[2] == S.H_BOLUS_START]
    ends = [r for r in recs if r[2] == S.H_BOLUS_END]
    start_ids = [r[4] for r in starts]
    if len(set(start_ids)) != len(start_ids):
        bad("lost or corrupt records", "a bolus id started twice")
    if sorted(r[4] for r in ends) != sorted(start_ids):
        bad("lost or corrupt records", "a bolus without exactly one end")
    requested = {r[4]: r[5] + r[6] for r in starts}
    seq_of_start = {r[4]: r[0] for r in starts}
    for r in ends:
        _, _, _, ending, bid, delivered, req = r
        if bid not in requested or r[0] <= seq_of_start[bid] or req != requested[bid]:
            bad("lost or corrupt records", f"bolus {bid}: end does not match its start")
            continue
        if delivered != motor.bolus.get(bid, 0) * p:
            bad("double count / lost insulin", f"bolus {bid}: end says {delivered} mU, "
                f"motor moved {motor.bolus.get(bid, 0) * p} mU")
        if not 0 <= delivered <= req:
            bad("lost or corrupt records", f"bolus {bid}: delivered {delivered} of {req}")
        if ending == S.BOLUS_COMPLETED and delivered != req:
            bad("lost or corrupt records", f"bolus {bid}: completed with {delivered}/{req}")
        elif ending == S.BOLUS_CANCELLED and bid not in ep.cancelled:
            bad("lost or corrupt records", f"bolus {bid}: cancelled, but nobody cancelled it")
        elif ending == S.BOLUS_INTERRUPTED and bid not in ep.interrupted:
            bad("lost or corrupt records", f"bolus {bid}: interrupted, but it was not")
    for sid in range(S.SETTINGS_COUNT):
        value = pump.setting(sid)
        if ep.pending_setting and ep.pending_setting[0] == sid and value in (
                ep.settings[sid], ep.pending_setting[1]):
            ep.settings[sid] = value
        if value != ep.settings[sid]:
            bad("settings / profiles", f"setting {S.SETTINGS[sid][0]} = {value}, "
                f"last written {ep.settings[sid]}")
            ep.settings[sid] = value
    ep.pending_setting = None
    got = pump.settings.get_profile(1)
    if ep.pending_profile is not None and got != ep.profile1:
        name, starts_, rates = ep.pending_profile
        if rates[0] == rates[1]:
            starts_, rates = [0], rates[:1]
        if got == (name, starts_, rates):
            ep.profile1 = got
    if got != ep.profile1:
        bad("settings / profiles", f"profile 1 is {got}, last written {ep.profile1}")
        ep.profile1 = got
    ep.pending_profile = None
    settings = pump.settings
    if settings.get_profile(0) != (b"flat", [0], [ep.rate]) or settings.schedule() != [0] * 7:
        bad("settings / profiles", "profile 0 or the schedule changed")


def check_basal_only(ep, problems: Counter, log: list, label: str) -> None:
    """Ten minutes after the boot: no bolus pulse, basal exactly as programmed."""
    from tests.pumpkit import basal_acc

    pump, rig = ep.pump, ep.rig
    bolus = dict(ep.motor.bolus)
    pos = rig.motor.odometer
    acc = basal_acc(pump)
    rate = pump.basal_rate()
    steady = not pump.state[S_TEMP_KIND]
    ep.run(600000, 1000)
    moved = rig.motor.odometer - pos
    if ep.motor.bolus != bolus or pump.state[S_BOLUS_ID] != 0:
        problems["resumed bolus"] += 1
        log.append(f"{label}: resumed bolus: bolus pulses in the 10 min after the boot")
    if pump.state[S_STOP]:
        if moved:
            problems["basal after the boot"] += 1
            log.append(f"{label}: stopped, but the motor moved {moved} pulses")
    elif steady and (moved != (acc + 600000 * rate) // (ep.pulse * HOUR_MS)
                     or rate != ep.rate):
        problems["basal after the boot"] += 1
        log.append(f"{label}: basal after the boot: {moved} pulses at {rate} mU/h")


def in_process(episodes: int, cuts_per: int, seed: int, prog) -> dict:
    from tests.test_powercut import Episode

    problems: Counter = Counter()
    where: Counter = Counter()  # the write or move cut
    during: Counter = Counter()  # the therapy going on
    log: list[str] = []
    cuts = boot_cuts = attempts = clock_changes = outages = 0
    for e in range(episodes):
        ep_seed = seed * 100003 + e
        ep = Episode(random.Random(ep_seed))
        watch = Watch(ep)
        for c in range(cuts_per):
            attempts += 1
            watch.where = None
            reboot = ep.reboot
            seen = []

            def reboot_watched(reboot=reboot, seen=seen, watch=watch):
                seen.extend(watch.context())
                reboot()

            ep.reboot = reboot_watched
            try:
                cut = ep.cut_once()
            except PowerCut:  # pragma: no cover - cut_once catches its own
                cut = False
            finally:
                ep.reboot = reboot
            if not cut:
                continue
            where[seen[0]] += 1
            during[seen[1]] += 1
            label = f"episode seed {ep_seed} cut {c + 1}"
            before = sum(problems.values())
            check(ep, problems, log, label)
            check_basal_only(ep, problems, log, label)
            check(ep, problems, log, label)
            if sum(problems.values()) > before:
                log.append(f"{label}: cut during {', '.join(seen)}")
        cuts += ep.cuts
        boot_cuts += ep.boot_cuts
        clock_changes += ep.clock_changes
        outages += ep.outages
        prog(e + 1, f"{cuts} cuts, {boot_cuts} during boot, problems "
                    f"{sum(problems.values())}")
    return {"cuts": cuts, "boot_cuts": boot_cuts, "attempts": attempts,
            "clock_changes": clock_changes, "outages": outages,
            "problems": problems, "where": where, "during": during, "log": log}


# ============================================================================ emulator
class EmuPart:
    """Power cuts on the emulator through the protocol (hil_tests.kit.Sim.power_cut)."""

    def __init__(self, seed: int, cuts: int, prog):
        self.rng = random.Random(seed)
        self.seed = seed
        self.n = cuts
        self.prog = prog
        self.problems: Counter = Counter()
        self.where: Counter = Counter()
        self.log: list[str] = []
        self.settings: dict[str, int] = {}
        self.boluses: dict[int, int] = {}  # bolus id -> requested mU
        self.cut_boluses: set[int] = set()

    def bad(self, cat: str, what: str) -> None:
        self.problems[cat] += 1
        if len(self.log) < 20:
            self.log.append(f"emulator: {cat}: {what}")

    def run(self) -> dict:
        from hil_tests import kit
        from host_tools import client as C
        from host_tools.launch import launch

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="campaign-emu-") as tmp, \
                launch(tmp, lockstep=True, seed=self.seed, console=False, fresh=True) as emu:
            note_runtime("unix")  # the emulator: the firmware on the unix port
            p = C.connect(emu.port, key=C.load_key(emu.key_path), timeout=0.5, retries=3,
                          hello=False)
            boot(p)
            self.pump = p
            self.sim = kit.Sim(p)
            try:
                self.setup()
                for i in range(self.n):
                    self.one(i)
                    self.prog(i + 1, f"{emu.restarts} reboots, problems "
                                     f"{sum(self.problems.values())}")
                restarts = emu.restarts
            finally:
                p.close()
        return {"cuts": self.n, "restarts": restarts, "problems": self.problems,
                "where": self.where, "log": self.log, "wall": time.perf_counter() - t0}

    def setup(self) -> None:
        p = self.pump
        self.sim.lockstep()
        p.set_profile(0, "flat", [0], [1000])
        p.set_time(2511 * 86400 + 22 * 3600, 0)  # Monday 22:00: days close on the way
        p.set_setting("max_bolus_1h", S.SETTINGS[S.SET_MAX_BOLUS_1H][3])
        p.set_setting("max_tdd", S.SETTINGS[S.SET_MAX_TDD][3])
        p.rewind()
        st = p.status()
        self.day0 = st.local_day
        self.seq0 = st.history_next
        p.fill(400000)
        st = p.status()
        self.r0 = st.reservoir
        self.t0 = self.totals(st)
        p.prime(S.PRIME_TUBING, 500)
        p.prime(S.PRIME_CANNULA, 100)
        p.resume()
        for sid in (S.SET_SNOOZE, S.SET_ALARM_REPEAT, S.SET_DIA):
            self.settings[S.SETTINGS[sid][0]] = p.get_settings()[S.SETTINGS[sid][0]]

    def bolus_total(self, st) -> int:
        return sum(self.pump.get_totals(d).bolus for d in range(self.day0, st.local_day + 1))

    def totals(self, st) -> int:
        days = [self.pump.get_totals(d) for d in range(self.day0, st.local_day + 1)]
        return sum(d.basal + d.bolus + d.prime for d in days)

    def one(self, i: int) -> None:
        p, rng, sim = self.pump, self.rng, self.sim
        st = p.status()
        if st.stop != S.STOP_NONE:
            p.resume()
        kind = rng.choice(("bolus", "bolus", "extended", "basal", "temp", "setting"))
        boots = p.hello().boots
        if kind in ("bolus", "extended"):
            if kind == "bolus":
                mu = 50 * rng.randint(10, 80)
                r = p.bolus(mu)
                run_ms = mu * 60000 // 1500
            else:
                now, ext = 50 * rng.randint(0, 20), 50 * rng.randint(10, 60)
                r = p.bolus(now, ext, 30)
                run_ms = 30 * 60000
            self.boluses[r.detail] = (mu if kind == "bolus" else now + ext)
            self.cut_boluses.add(r.detail)
            after = rng.randint(0, run_ms)
        elif kind == "temp":
            p.temp_basal(S.TEMP_PERCENT, rng.choice((0, 50, 150, 200)), 60)
            after = rng.randint(0, 120000)
        elif kind == "setting":
            sid = rng.choice((S.SET_SNOOZE, S.SET_ALARM_REPEAT, S.SET_DIA))
            name, _, lo, hi, _ = S.SETTINGS[sid]
            value = rng.randint(lo, hi)
            p.set_setting(name, value)  # acknowledged: it must survive the cut
            self.settings[name] = value
            after = rng.choice((0, 0, rng.randint(0, 5000)))
        else:
            after = rng.randint(0, 120000)
        self.where[kind] += 1
        info = sim.power_cut(after_ms=after)
        if info.boots != boots + 1:
            self.bad("lost or corrupt records", f"cut {i}: boots {boots} -> {info.boots}")
        self.check(i)

    def check(self, i: int) -> None:
        from hil_tests import kit

        p, sim = self.pump, self.sim
        st = p.status()
        if st.bolus_id != 0:
            self.bad("resumed bolus", f"cut {i}: bolus {st.bolus_id} running after the boot")
        if st.stop == S.STOP_NONE:
            before = self.bolus_total(st)  # over days: midnight may pass meanwhile
            sim.advance(minutes=3)
            st = p.status()
            after = self.bolus_total(st)
            if after != before or st.bolus_id:
                self.bad("resumed bolus", f"cut {i}: {after - before} mU of bolus insulin "
                         f"in the 3 min after the boot (bolus {st.bolus_id} running)")
        moved = self.r0 - st.reservoir
        recorded = self.totals(st) - self.t0
        if moved != recorded:
            self.bad("double count / lost insulin", f"cut {i}: plunger moved {moved} mU, "
                     f"totals say {recorded} mU")
        recs = kit.history(p, self.seq0)
        if [r.seq for r in recs] != list(range(self.seq0, st.history_next)):
            self.bad("lost or corrupt records", f"cut {i}: history not contiguous")
        for first in range(self.seq0, st.history_next, S.HISTORY_PAGE):
            for raw in kit.raw_history_page(p, first, S.HISTORY_PAGE):
                if not kit.record_crc_ok(raw):
                    self.bad("lost or corrupt records", f"cut {i}: a record with a bad CRC")
        starts = [r for r in recs if r.kind == S.H_BOLUS_START]
        ends = [r for r in recs if r.kind == S.H_BOLUS_END]
        if sorted(r.v1 for r in starts) != sorted(self.boluses):
            self.bad("lost or corrupt records", f"cut {i}: bolus starts differ from the "
                     "boluses sent")
        if sorted(r.v1 for r in ends) != sorted(r.v1 for r in starts):
            self.bad("lost or corrupt records", f"cut {i}: a bolus without exactly one end")
        for r in ends:
            if r.v3 != self.boluses.get(r.v1) or not 0 <= r.v2 <= r.v3:
                self.bad("lost or corrupt records", f"cut {i}: bolus {r.v1} end {r}")
            elif r.arg == S.BOLUS_COMPLETED and r.v2 != r.v3:
                self.bad("lost or corrupt records", f"cut {i}: bolus {r.v1} completed short")
            elif r.arg != S.BOLUS_COMPLETED and r.v1 not in self.cut_boluses:
                self.bad("lost or corrupt records", f"cut {i}: bolus {r.v1} not completed")
        days = [p.get_totals(d) for d in range(self.day0, st.local_day + 1)]
        if sum(r.v2 for r in ends) != sum(d.bolus for d in days):
            self.bad("double count / lost insulin", f"cut {i}: bolus ends and totals differ")
        got = p.get_settings()
        for name, value in self.settings.items():
            if got[name] != value:
                self.bad("settings / profiles", f"cut {i}: {name} = {got[name]}, "
                         f"acknowledged {value}")


# ============================================================================ run
def run(mode: str = "full", seed: int = 1, quiet: bool = False) -> Outcome:
    episodes, cuts_per, emu_cuts = SIZES[mode]
    out = Outcome("powercut", mode, seed)
    t0 = time.perf_counter()
    a = in_process(episodes, cuts_per, seed, Progress("powercut in-process", episodes,
                                                       "episodes", quiet=quiet))
    t_in = time.perf_counter() - t0
    b = EmuPart(seed, emu_cuts, Progress("powercut emulator", emu_cuts, "cuts",
                                         quiet=quiet)).run()
    total = a["problems"] + b["problems"]
    out.counts = {"in-process cuts": a["cuts"], "more cuts during the boot after": a["boot_cuts"],
                  "cut points armed": a["attempts"], "in-process wall s": round(t_in, 1),
                  "clock changes (THR-11)": a["clock_changes"],
                  "outages of 1 s..6 h, 30 % without RTC backup": a["outages"],
                  "emulator cuts": b["cuts"], "emulator reboots": b["restarts"],
                  "emulator wall s": round(b["wall"], 1)}
    out.counts["in-process cut at"] = ", ".join(
        f"{k} {v}" for k, v in sorted(a["where"].items()))
    out.counts["in-process cut during"] = ", ".join(
        f"{k} {v}" for k, v in sorted(a["during"].items()))
    out.counts["emulator cut during"] = ", ".join(f"{k} {v}" for k, v in
                                                  sorted(b["where"].items()))
    out.target("double counts or lost insulin", total["double count / lost insulin"], "0",
               total["double count / lost insulin"] == 0)
    out.target("lost or corrupt records", total["lost or corrupt records"], "0",
               total["lost or corrupt records"] == 0)
    resumed = total["resumed bolus"] + total["basal after the boot"]
    out.target("resumed bolus (or basal off after boot)", resumed, "0", resumed == 0)
    out.target("settings / profiles not as written", total["settings / profiles"], "0",
               total["settings / profiles"] == 0)
    want = episodes * cuts_per
    out.target("in-process cuts", a["cuts"], f">= {int(0.95 * want):,}",
               a["cuts"] >= 0.95 * want)
    out.target("emulator reboots", b["restarts"], f"{emu_cuts}", b["restarts"] == emu_cuts)
    out.notes += a["log"][:10] + b["log"][:10]
    return out
