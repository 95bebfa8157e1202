"""Campaign 2, link faults (LNK-2, LNK-3, LNK-5, LNK-6, SEC-2): delivery commands through
the real client (host_tools.client, its timeouts, retries and fences) against the emulator
(host_tools.launch, lockstep) while frames are dropped and corrupted inside the board in
both directions (FAULT_DROP_RX/TX, FAULT_CORRUPT_RX/TX, seeded with FAULT_SEED), and
duplicated, reordered and held past the client's whole retry window (fence included:
late frames) on the way in both directions (relay.LossyPort).

The commands: small normal boluses (0.05-0.2 U), temp basals (absolute and percent),
cancel temp basal, suspend and resume, drawn at random whatever the pump's state, so many
are refused (suspended, not suspended, no temp basal). After each one the campaign reads
the truth from the pump (status: last command id, its code and detail) and advances the
virtual clock (long enough for a bolus to finish). The pump's history is read as it grows.

Each command ends, for the client, as confirmed (OK), refused (an error code), "not carried
out" (no answer; the fence says it did not act, and no try of it can act any more) or
unknown (no answer, no fence answer). A late frame of a command the client has given up on
reaches the pump afterwards: it must never act.

Targets:
- 0 double deliveries: each command acted at most once; the history holds exactly one
  bolus start per bolus the pump accepted, one temp start, suspend or resume per accepted
  command of that kind, and no other.
- 0 commands lost without the client knowing: a confirmed command acted with OK (and the
  bolus id the client got), a refused one was refused by the pump with that code, one
  reported not carried out did not act; unknowns are counted (and resolved from status).
- final state equal to the intended one: delivered bolus insulin from history (bolus ends)
  equals the sum of the accepted boluses, exactly, and so do the pump's daily bolus totals;
  the plunger (emulator telemetry: the motor's odometer, not the pump's records) moved
  exactly the pump's basal, bolus and prime totals, and its bolus share is that sum;
  every bolus completed; delivery state and temp basal at the end as the campaign's model
  of the accepted commands says, and every accepted command's code as the model predicted.
"""

from __future__ import annotations

import contextlib
import random
import re
import tempfile
import time
from dataclasses import dataclass, field

from campaigns.common import Outcome, Progress, note_runtime
from campaigns.relay import LossyPort
from host_tools import client as C
from protocol import refusals
from protocol import spec as S

SIZES = {"full": 10_000, "short": 120}
TIMEOUT = 0.05  # client: seconds per try (the emulator answers in 1-2 ms)
RETRIES = 3  # client: extra tries
HOLD_MAX = 0.03  # relay: longest hold of a reordered frame, below the client's timeout
LATE = 0.01  # relay: frames held past the client's whole retry window, each direction
LATE_S = (2 * (RETRIES + 1) * TIMEOUT + 0.1, 1.5)  # longer than all tries and the fence
HOLD_ALL = 0.05  # commands whose every try is held late (the fence after them is not)
FAULT_PERMILLE = 15  # emulator: drop and corrupt, each direction
DUP = 0.02  # relay: duplicate, each direction
REORDER = 0.02  # relay: reorder, each direction
REFILL_EVERY = 100  # commands between two looks at the reservoir
PROFILE_RATE = 500  # mU/h, flat
MONDAY = 2511 * 86400  # 2026-11-16 00:00 UTC, a Monday
START = MONDAY + 30 * 60  # days close during the campaign (daily totals written)
REFILL_BELOW = 40000  # mU: a reservoir change when less is left
FILL = 200000  # refills (through the faulty link) happen during the full run
BOLUS_SPEED = 1500  # mU/min (the default)
MIX = (("bolus", 30), ("temp_basal", 20), ("cancel_temp_basal", 10), ("suspend", 14),
       ("resume", 26))
NEAR_EXPIRY_MS = 3000
# the history record an accepted command writes: (kind, arg or None)
EFFECT = {"bolus": (S.H_BOLUS_START, None), "temp_basal": (S.H_TEMP_START, None),
          "cancel_temp_basal": (S.H_TEMP_END, S.TEMP_END_CANCELLED),
          "suspend": (S.H_SUSPEND, S.STOP_USER), "resume": (S.H_RESUME, None)}

_CMD_ID = re.compile(r"command id (\d+)")


def boot(pump: C.Client, wait: float = 30.0) -> C.Hello:
    """HELLO, patiently: the emulator process may still be starting (a loaded machine)."""
    old = pump.timeout, pump.retries
    pump.timeout, pump.retries = 0.5, 0
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                return pump.hello()
            except C.PumpTimeout:
                if time.monotonic() > deadline:
                    raise
    finally:
        pump.timeout, pump.retries = old


@dataclass
class Model:
    """What the pump should be doing, from the commands it accepted (truth from status)."""

    t: int = 0  # virtual ms since the campaign started
    suspended: bool = False
    temp: tuple[int, int, int] | None = None  # kind, value, end (virtual ms)

    def temp_now(self) -> tuple[int, int, int] | None:
        if self.temp is not None and self.t >= self.temp[2]:
            self.temp = None
        return self.temp

    def near_expiry(self) -> bool:
        return self.temp is not None and abs(self.t - self.temp[2]) < NEAR_EXPIRY_MS

    def predict(self, name: str) -> int | None:
        if name in ("bolus", "temp_basal"):
            return S.E_SUSPENDED if self.suspended else S.OK
        if name == "cancel_temp_basal":
            return S.OK if self.temp_now() else S.E_NO_TEMP_BASAL
        if name == "suspend":
            return S.E_SUSPENDED if self.suspended else S.OK
        if name == "resume":
            return S.OK if self.suspended else S.E_NOT_SUSPENDED
        return None  # maintenance commands: not predicted

    def apply(self, name: str, args: dict) -> None:
        if name == "temp_basal":
            self.temp = (args["kind"], args["value"], self.t + args["minutes"] * 60000)
        elif name == "cancel_temp_basal":
            self.temp = None
        elif name == "suspend":
            self.suspended = True
            self.temp = None
        elif name == "resume":
            self.suspended = False


@dataclass
class Tally:
    sent: dict = field(default_factory=dict)  # per command name
    client: dict = field(default_factory=dict)  # confirmed / refused / not carried out / ...
    acted_ok: dict = field(default_factory=dict)  # per name: accepted by the pump (truth)
    refused_by_pump: int = 0
    reconciled: int = 0  # confirmed by the client from a fence after lost replies
    false_ok: list = field(default_factory=list)
    false_refusal: list = field(default_factory=list)
    lost: list = field(default_factory=list)  # acted while the client said it did not
    unknown_acted: int = 0
    unknown_not_acted: int = 0
    mispredicted: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    bolus_ids: dict = field(default_factory=dict)  # bolus id -> mU, accepted boluses
    maintenance: dict = field(default_factory=dict)  # per name: accepted (truth)
    doubles: list = field(default_factory=list)  # commands that left two records
    missing: list = field(default_factory=list)  # accepted commands that left none
    fresh_ids: int = 0
    events: int = 0

    def inc(self, d: dict, k: str, n: int = 1) -> None:
        d[k] = d.get(k, 0) + n


class Campaign:
    def __init__(self, mode: str, seed: int, quiet: bool):
        self.n = SIZES[mode]
        self.seed = seed
        self.rng = random.Random(seed)
        self.quiet = quiet
        self.tally = Tally()
        self.model = Model()
        self.records: list[C.HistoryRecord] = []
        self.next_seq = 0  # next history record to read
        self.history_gaps = 0

    # ------------------------------------------------------------------ plumbing
    def _event(self, ev: C.Event) -> None:
        self.tally.events += 1

    @contextlib.contextmanager
    def patient(self):
        with contextlib.ExitStack() as stack:
            old = self.pump.retries
            self.pump.retries = 30
            stack.callback(setattr, self.pump, "retries", old)
            yield

    def status(self) -> C.Status:
        with self.patient():
            return self.pump.status()

    def control(self, call) -> C.Result:
        """An emulator control command (clock, faults) through the faulty link: when the
        client cannot tell whether it acted, status tells (its last command)."""
        for _ in range(10):
            guess = self.pump.counter + 1
            try:
                return call()
            except C.PumpTimeout as e:
                m = _CMD_ID.search(str(e))
                cid = int(m.group(1)) if m else guess
                st = self.status()
                if st.last_cmd_id == cid:
                    return C.Result(cid, st.last_code, st.last_detail, reconciled=True)
        raise RuntimeError("an emulator control command did not go through")

    def advance(self, ms: int) -> None:
        ran = self.control(lambda: self.pump.emu_clock(S.CLK_ADVANCE, ms)).detail
        self.model.t += ran

    def read_history(self, history_next: int | None = None) -> list[C.HistoryRecord]:
        """The records added since the last read (all kept in self.records)."""
        got_all: list[C.HistoryRecord] = []
        with self.patient():
            if history_next is None:
                history_next = self.pump.status().history_next
            last = history_next - 1
            while self.next_seq <= last:
                got = self.pump.get_history(self.next_seq, min(64, last - self.next_seq + 1))
                if not got or got[0].seq != self.next_seq:
                    self.history_gaps += 1  # records lost (the ring wrapped past them)
                    if not got:
                        return got_all
                for r in got:
                    if r.seq != self.next_seq:
                        self.history_gaps += 1
                    self.records.append(r)
                    got_all.append(r)
                    self.next_seq = r.seq + 1
        return got_all

    def faults(self, on: bool) -> None:
        pm = FAULT_PERMILLE if on else 0
        if on:
            self.pump.emu_fault(S.FAULT_SEED, self.seed & 0x7FFFFFFF)
            self.port.set_faults(DUP, REORDER, HOLD_MAX, LATE, LATE_S)
        else:
            self.port.set_faults(0, 0)  # the late frames go out now: they must not act
        with self.patient():
            for f in (S.FAULT_DROP_RX, S.FAULT_CORRUPT_RX, S.FAULT_DROP_TX, S.FAULT_CORRUPT_TX):
                self.control(lambda f=f: self.pump.emu_fault(f, pm))

    # ------------------------------------------------------------------ commands
    def draw(self) -> tuple[str, dict]:
        rng = self.rng
        name = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
        if name == "bolus":
            return name, {"now_mu": 50 * rng.randint(1, 4)}
        if name == "temp_basal":
            if rng.random() < 0.5:
                return name, {"kind": S.TEMP_ABSOLUTE, "value": 50 * rng.randint(0, 40),
                              "minutes": 15 * rng.randint(1, 4)}
            return name, {"kind": S.TEMP_PERCENT, "value": 10 * rng.randint(0, 20),
                          "minutes": 15 * rng.randint(1, 4)}
        return name, {}

    def send(self, name: str, args: dict):
        """The client's view: (outcome, cmd_id, code, detail)."""
        guess = self.pump.counter + 1
        try:
            r = getattr(self.pump, name)(**args)
            if r.reconciled:
                self.tally.reconciled += 1
            return "confirmed", r.cmd_id, r.code, r.detail
        except C.PumpRefused as e:
            return "refused", e.cmd_id or guess, e.code, e.detail
        except C.PumpTimeout as e:
            m = _CMD_ID.search(str(e))
            cid = int(m.group(1)) if m else guess
            if "may or may not" in str(e):
                return "unknown", cid, None, None
            return "not carried out", cid, None, None
        except C.PumpError as e:
            self.tally.errors.append(f"{name}: {e}")
            return "error", guess, None, None

    def one(self, i: int, name: str, args: dict, counted: bool = True) -> tuple[bool, int]:
        """Send one command and check the client's view against the pump's truth.
        Returns (accepted by the pump, code)."""
        t = self.tally
        model = self.model
        model.temp_now()
        predicted = model.predict(name)
        uncertain = name in ("cancel_temp_basal",) and model.near_expiry()
        guess = self.pump.counter + 1
        hold_all = counted and self.rng.random() < HOLD_ALL
        if hold_all:
            self.port.tx.hold_next = RETRIES + 1  # every try arrives after the client ends
        outcome, cid, code, detail = self.send(name, args)
        self.port.tx.hold_next = 0
        if hold_all:  # ... at once: before any later command could raise the counter
            self.port.tx.release_late()
        st = self.status()
        # what this command wrote (and the ticks of the last advance: bolus ends, temp basal
        # expiries, alarms; none of them of a kind a command writes, see EFFECT)
        made = self.read_history(st.history_next)
        acted = st.last_cmd_id == cid
        truth = st.last_code if acted else None
        tag = f"#{i} {name} {args} cmd_id {cid}"
        if counted:
            t.inc(t.sent, name)
            t.inc(t.client, outcome)
        if outcome == "confirmed":
            if not acted or truth != S.OK or (name == "bolus" and st.last_detail != detail):
                t.false_ok.append(f"{tag}: client OK, pump last {st.last_cmd_id} "
                                  f"code {st.last_code}")
        elif outcome == "refused":
            if code == S.E_BAD_AUTH:
                if acted:
                    t.lost.append(f"{tag}: client refused (bad auth), pump acted")
            elif not acted or truth != code:
                t.false_refusal.append(f"{tag}: client refused {code}, pump last "
                                       f"{st.last_cmd_id} code {st.last_code}")
        elif outcome == "not carried out" or outcome == "error":
            if acted:
                t.lost.append(f"{tag}: client '{outcome}', pump acted (code {truth})")
        elif outcome == "unknown":
            if acted:
                t.unknown_acted += 1
            else:
                t.unknown_not_acted += 1
        if acted and predicted is not None and truth != predicted and not uncertain:
            t.mispredicted.append(f"{tag}: pump code {truth}, model predicted {predicted}")
        if cid != guess:
            t.fresh_ids += 1  # the client retried under a new command id
        # the records this command left: one of its kind if the pump accepted it, else none
        kind = EFFECT.get(name)
        if kind is not None:
            n = len([r for r in made if r.kind == kind[0] and (kind[1] is None
                                                               or r.arg == kind[1])])
            want = 1 if acted and truth == S.OK else 0
            if n > want:
                t.doubles.append(f"{tag}: {n} {refusals.HISTORY_KINDS[kind[0]]} records, client "
                                 f"'{outcome}' (code {code}), pump code {truth}")
                if outcome in ("refused", "not carried out", "error"):
                    t.lost.append(f"{tag}: acted, client '{outcome}' (code {code})")
            elif n < want:
                t.missing.append(f"{tag}: accepted, no {refusals.HISTORY_KINDS[kind[0]]} record")
        if acted and truth == S.OK:
            if counted:
                t.inc(t.acted_ok, name)
            else:
                t.inc(t.maintenance, name)
            if name == "bolus":
                t.bolus_ids[st.last_detail] = args["now_mu"]
            model.apply(name, args)
        elif acted and counted:
            t.refused_by_pump += 1
        return acted and truth == S.OK, truth if acted else -1

    def must(self, name: str, args: dict) -> None:
        """A maintenance command that has to be carried out (sent again until it acts)."""
        for _ in range(20):
            ok, code = self.one(-1, name, args, counted=False)
            if ok or code not in (-1,):
                return
        raise RuntimeError(f"maintenance {name} did not go through")

    def refill(self) -> None:
        """A reservoir change through the faulty link (not counted in the campaign)."""
        was = self.model.suspended
        if not was:
            self.must("suspend", {})
        self.must("rewind", {})
        self.must("fill", {"volume_mu": FILL})
        self.must("prime", {"kind": S.PRIME_TUBING, "amount_mu": 500})
        self.must("prime", {"kind": S.PRIME_CANNULA, "amount_mu": 100})
        if not was:
            self.must("resume", {})

    # ------------------------------------------------------------------ run
    def run(self) -> Outcome:
        out = Outcome("linkfaults", "full" if self.n == SIZES["full"] else "short", self.seed)
        with tempfile.TemporaryDirectory(prefix="campaign-emu-") as tmp:
            from host_tools.launch import launch

            t0 = time.perf_counter()
            with launch(tmp, lockstep=True, seed=self.seed, console=False, fresh=True) as emu:
                self.emu = emu
                note_runtime("unix")  # the emulator: the firmware on the unix port
                inner = C.open_port(emu.port)
                self.port = LossyPort(inner, self.seed)
                self.pump = C.Client(self.port, key=C.load_key(emu.key_path), timeout=TIMEOUT,
                                     retries=RETRIES, on_event=self._event, hello=False)
                boot(self.pump)
                try:
                    self.setup()
                    self.campaign(out)
                    self.finish(out, emu)
                finally:
                    self.pump.close()
            out.wall = time.perf_counter() - t0
        return out

    def setup(self) -> None:
        p = self.pump
        with self.patient():
            p.emu_clock(S.CLK_LOCKSTEP)
            p.set_profile(0, "flat", [0], [PROFILE_RATE])
            p.set_time(START, 0)
            p.set_setting("max_bolus_1h", S.SETTINGS[S.SET_MAX_BOLUS_1H][3])
            p.set_setting("max_tdd", S.SETTINGS[S.SET_MAX_TDD][3])
            p.rewind()
            p.fill(FILL)
            p.prime(S.PRIME_TUBING, 500)
            p.prime(S.PRIME_CANNULA, 100)
            p.resume()
        st = self.status()
        self.st0 = st
        self.next_seq = st.history_next
        self.day0 = st.local_day
        with self.patient():  # the clock stands still (lockstep): same instant as odo0
            self.tot0 = self.pump.get_totals(self.day0)
        self.odo0 = self.plunger()

    def plunger(self) -> int:
        """The plunger's travel so far (pulses) from the emulator's telemetry: the
        simulated motor's odometer, not the pump's records. Two fresh lines, so the second
        was written after the last command was answered (the board idle, once a second)."""
        self.emu.next_telemetry(5.0)
        tel = self.emu.next_telemetry(5.0)
        self.pulse_mu = tel["emu"]["pulse_mu"]
        return tel["emu"]["odometer"]

    def campaign(self, out: Outcome) -> None:
        prog = Progress("linkfaults", self.n, "commands", quiet=self.quiet)
        self.faults(True)
        for i in range(self.n):
            name, args = self.draw()
            self.one(i, name, args)
            gap = 1000 * self.rng.randint(5, 30)
            if name == "bolus":  # long enough for it to finish, whatever the client saw
                gap = max(gap, args["now_mu"] * 60000 // BOLUS_SPEED + 3000)
            self.advance(gap)
            if i % REFILL_EVERY == REFILL_EVERY - 1 and self.status().reservoir < REFILL_BELOW:
                self.refill()
            t = self.tally
            prog(i + 1, f"unknown {t.client.get('unknown', 0)}, doubles {len(t.doubles)}, "
                        f"lost {len(t.false_ok) + len(t.false_refusal) + len(t.lost)}")

    def finish(self, out: Outcome, emu) -> None:
        t = self.tally
        self.faults(False)
        self.read_history()
        st = self.status()
        recs = self.records
        kinds = {k: [r for r in recs if r.kind == k] for k in
                 (S.H_BOLUS_START, S.H_BOLUS_END, S.H_TEMP_START, S.H_SUSPEND, S.H_RESUME)}
        starts = kinds[S.H_BOLUS_START]
        ends = kinds[S.H_BOLUS_END]
        start_ids = [r.v1 for r in starts]
        accepted = t.acted_ok.get("bolus", 0)
        # double deliveries: history against the accepted commands
        extra = {
            "bolus starts": len(starts) - accepted,
            "temp basal starts": len(kinds[S.H_TEMP_START]) - t.acted_ok.get("temp_basal", 0),
            "suspends": len([r for r in kinds[S.H_SUSPEND] if r.arg == S.STOP_USER])
            - t.acted_ok.get("suspend", 0) - t.maintenance.get("suspend", 0),
            "resumes": len(kinds[S.H_RESUME]) - t.acted_ok.get("resume", 0)
            - t.maintenance.get("resume", 0),
        }
        unknown_ids = sorted(set(start_ids) - set(t.bolus_ids))
        mismatch = (sum(abs(v) for v in extra.values()) + len(start_ids) - len(set(start_ids))
                    + len(unknown_ids) + len(t.missing))
        doubles = len(t.doubles)
        # final state
        amounts_ok = all(t.bolus_ids.get(r.v1) == r.v2 for r in starts)
        delivered = sum(r.v2 for r in ends)
        incomplete = [r.v1 for r in ends if r.arg != S.BOLUS_COMPLETED or r.v2 != r.v3]
        intended = sum(t.bolus_ids.values())
        with self.patient():
            days = [self.pump.get_totals(d) for d in range(self.day0, st.local_day + 1)]
        totals_bolus = sum(d.bolus for d in days) - self.st0.bolus_today
        totals_basal = sum(d.basal for d in days) - self.tot0.basal
        totals_prime = sum(d.prime for d in days) - self.tot0.prime
        plunger_mu = (self.plunger() - self.odo0) * self.pulse_mu
        plunger_bolus = plunger_mu - totals_basal - totals_prime
        self.model.temp_now()
        final_ok = (st.stop != S.STOP_NONE) == self.model.suspended
        temp = self.model.temp
        if not self.model.near_expiry():
            want = (temp[0], temp[1]) if temp else (S.TEMP_NONE, 0)
            final_ok = final_ok and (st.temp_kind, st.temp_value) == want
        lost = len(t.false_ok) + len(t.false_refusal) + len(t.lost) + len(t.errors)
        n_sent = sum(t.sent.values())
        out.counts = {
            "commands": n_sent,
            **{f"sent {k}": v for k, v in sorted(t.sent.items())},
            **{f"client {k}": v for k, v in t.client.items()},
            "confirmed after lost replies (fence)": t.reconciled,
            "retried under a new command id": t.fresh_ids,
            "unknown that had acted": t.unknown_acted,
            "unknown that had not": t.unknown_not_acted,
            "accepted by the pump": sum(t.acted_ok.values()),
            "refused by the pump": t.refused_by_pump,
            "accepted boluses": accepted, "bolus insulin mU": intended,
            "history records read": len(recs), "events": t.events,
            "maintenance commands": sum(t.maintenance.values()),
            "virtual hours": round(self.model.t / 3_600_000, 1),
            "client retries": self.pump.stats["retries"],
            "client stale answers": self.pump.stats["stale"],
            "client bad frames": self.pump.stats["bad_frames"],
            "emulator restarts": emu.restarts,
            "plunger mU (telemetry)": plunger_mu,
            "fences": self.pump.stats["fenced"],
        }
        with self.patient():
            ls = self.pump.get_link_stats()
        out.counts.update({"pump bad_crc": ls.bad_crc, "pump bad_frame": ls.bad_frame,
                           "pump replayed": ls.replayed, "pump duplicates": ls.duplicates})
        out.counts.update(self.port.stats())
        out.target("double deliveries (commands that acted twice)", doubles, "0",
                   doubles == 0)
        out.target("commands lost without the client knowing", lost, "0", lost == 0)
        out.target("commands reported unknown", t.client.get("unknown", 0), "counted", True)
        out.target("bolus mU delivered (history) - confirmed sum", delivered - intended, "0",
                   delivered == intended and amounts_ok and not incomplete)
        out.target("bolus mU in daily totals - confirmed sum", totals_bolus - intended, "0",
                   totals_bolus == intended)
        out.target("plunger mU (telemetry) - basal, prime - confirmed bolus sum",
                   plunger_bolus - intended, "0", plunger_bolus == intended)
        out.target("final state and codes as the model says", len(t.mispredicted)
                   + (not final_ok) + self.history_gaps, "0",
                   final_ok and not t.mispredicted and not self.history_gaps)
        out.target("history records - accepted commands", mismatch, "0", mismatch == 0)
        out.target("commands sent", n_sent, f"{self.n:,}", n_sent == self.n)
        for label, items in (("acted twice", t.doubles), ("no record", t.missing),
                             ("false OK", t.false_ok), ("false refusal", t.false_refusal),
                             ("lost", t.lost), ("client error", t.errors),
                             ("mispredicted", t.mispredicted)):
            for item in items[:5]:
                out.notes.append(f"{label}: {item}")
        if mismatch:
            out.notes.append(f"history minus accepted commands: {extra}; bolus ids started "
                             f"but not accepted: {unknown_ids[:10]}")
        if incomplete:
            out.notes.append(f"boluses not completed in full: {incomplete[:10]}")
        if not final_ok:
            out.notes.append(f"final state: stop {st.stop}, temp {st.temp_kind}/"
                             f"{st.temp_value}; model {self.model}")


def run(mode: str = "full", seed: int = 1, quiet: bool = False) -> Outcome:
    return Campaign(mode, seed, quiet).run()
