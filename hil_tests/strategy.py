"""Bring a pump to the known state every HIL test starts from, step by step.

Like a labgrid strategy: an ordered list of steps, each one a small transition whose result
is checked before the next runs, so a pump left in any state by the previous test (alarms,
bolus running, faults injected, limits changed, reservoir empty, clock moved) is brought
back, and a step that cannot be done fails with its name:

    link       HELLO (protocol version, schema, auth counter in sync)
    faults     every emulator fault neutral, clock in lockstep        (emulator only)
    stopped    bolus cancelled, temp basal cancelled, delivery suspended
    profiles   baseline profiles and weekly schedule loaded
    settings   baseline settings (defaults, see kit.SETTINGS)
    reservoir  rewound, filled, tubing primed, cannula filled
    alarms     every active alarm acknowledged (latched ones clear)
    resumed    delivery resumed
    settled    first basal pulse delivered, condition alarms re-evaluated  (emulator only)
    clock      08:00 local on a day of its own (fresh daily totals)
    quiet      no alarm active, no event pending

`PumpStrategy(pump, sim).to_ready()` returns the final status.
"""

from __future__ import annotations

import time

from host_tools import client as C
from protocol import spec as S

from . import kit


class StrategyError(AssertionError):
    """A step of the strategy did not reach its state."""


class PumpStrategy:
    STEPS = ("link", "faults", "stopped", "profiles", "settings", "reservoir", "alarms",
             "resumed", "settled", "clock", "quiet")

    def __init__(self, pump: C.Client, sim: kit.Sim | None):
        self.pump = pump
        self.sim = sim
        self.done: list[str] = []

    def to_ready(self) -> C.Status:
        for step in self.STEPS:
            try:
                getattr(self, "step_" + step)()
            except StrategyError:
                raise
            except C.PumpError as exc:
                raise StrategyError(f"strategy step {step!r} failed: {exc}") from exc
            self.done.append(step)
        return self.pump.status()

    def check(self, cond: bool, step: str, what: str) -> None:
        if not cond:
            raise StrategyError(f"strategy step {step!r}: {what}")

    # ------------------------------------------------------------------ steps
    def step_link(self):
        info = self.pump.hello()
        self.check(info.schema == S.schema_hash(), "link", "schema differs")
        self.pump.pending.clear()

    def step_faults(self):
        if self.sim is None:
            return
        self.sim.lockstep()
        self.sim.neutral()
        st = self.pump.status()
        if st.stop == S.STOP_SELFTEST:
            # Only a reboot re-runs the self-tests (ALM-5): power-cycle the emulator.
            self.sim.power_cut(0)
            st = self.pump.status()
            self.check(st.stop != S.STOP_SELFTEST, "faults",
                       f"still in the safe state after a reboot (self-test {st.selftest})")

    def step_stopped(self):
        pump = self.pump
        st = pump.status()
        self.check(st.stop != S.STOP_SELFTEST, "stopped",
                   f"pump in the safe state (self-test bits {st.selftest}): reboot it")
        if st.bolus_id:
            pump.cancel_bolus()
        if st.temp_kind:
            pump.cancel_temp_basal()
        if st.stop == S.STOP_NONE:
            pump.suspend()
        st = pump.status()
        self.check(st.stop != S.STOP_NONE and st.bolus_id == 0 and st.temp_kind == 0,
                   "stopped", f"delivery not stopped: {st}")

    def step_profiles(self):
        pump = self.pump
        peak = max(max(r) for _n, _s, r in kit.PROFILES.values())
        if pump.get_settings()["max_basal"] < peak:
            pump.set_setting("max_basal", kit.SETTINGS["max_basal"])
        for index, (name, starts, rates) in kit.PROFILES.items():
            got = pump.get_profile(index)
            if (got.name, got.starts, got.rates) != (name, starts, rates):
                pump.set_profile(index, name, starts, rates)
                got = pump.get_profile(index)
                self.check((got.name, got.starts, got.rates) == (name, starts, rates),
                           "profiles", f"profile {index} reads back as {got}")
        # Spare profiles may hold rates a test left: keep them within the baseline limit.
        for index in range(len(kit.PROFILES), S.PROFILES):
            got = pump.get_profile(index)
            if got.rates and max(got.rates) > kit.SETTINGS["max_basal"]:
                pump.set_profile(index, f"spare{index}", [0], [0])
        if tuple(pump.get_schedule()) != kit.SCHEDULE:
            pump.set_schedule(kit.SCHEDULE)
            self.check(tuple(pump.get_schedule()) == kit.SCHEDULE, "profiles",
                       "schedule does not read back")

    def step_settings(self):
        pump = self.pump
        have = pump.get_settings()
        for name in kit.SETTINGS_ORDER:
            if have[name] != kit.SETTINGS[name]:
                pump.set_setting(name, kit.SETTINGS[name])
        have = pump.get_settings()
        wrong = {n: have[n] for n in kit.SETTINGS_ORDER if have[n] != kit.SETTINGS[n]}
        self.check(not wrong, "settings", f"settings not at baseline: {wrong}")

    def step_reservoir(self):
        pump = self.pump
        pump.rewind()
        self.check(pump.status().reservoir == 0, "reservoir", "rewind left insulin counted")
        pump.fill(kit.FILL_MU)
        pump.prime(S.PRIME_TUBING, kit.PRIME_TUBING_MU)
        pump.prime(S.PRIME_CANNULA, kit.PRIME_CANNULA_MU)
        st = pump.status()
        self.check(st.reservoir == kit.RESERVOIR_MU, "reservoir",
                   f"reservoir {st.reservoir} mU after fill and prime, want {kit.RESERVOIR_MU}")

    def _ack_all(self):
        for a in self.pump.get_alarms():
            if a.active and not a.acked:
                self.pump.ack_alarm(a.alarm)

    def step_alarms(self):
        self._ack_all()
        left = [a.name for a in self.pump.get_alarms() if a.active and not a.acked]
        self.check(not left, "alarms", f"unacknowledged alarms remain: {left}")

    def step_resumed(self):
        self.pump.resume()
        st = self.pump.status()
        self.check(st.stop == S.STOP_NONE, "resumed", f"not delivering: {st.stop_reason}")

    def step_settled(self):
        """Condition alarms (reservoir, battery) are re-evaluated once a second of pump
        time; no-delivery clears with the next pulse."""
        pump = self.pump
        if self.sim is None:
            deadline = time.monotonic() + 3
            while pump.status().alarms and time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            # Run to the first basal pulse: every test starts with the no-delivery timer
            # (THR-5) at most half a minute old, whatever the previous test left.
            before = pump.status().reservoir
            for _ in range(20):
                self.sim.advance(seconds=30)
                if pump.status().reservoir < before:
                    break
            else:
                raise StrategyError("strategy step 'settled': no basal pulse within 10 min")
            self.sim.advance(seconds=2)  # 1-Hz housekeeping re-evaluates condition alarms
        self._ack_all()

    def step_clock(self):
        pump = self.pump
        st = pump.status()
        # a pump reused by earlier runs (a farm place) may hold totals of the next days
        # already (a run that set its clock back): the first day after them that has none
        for days in range(1, 100):
            target = kit.next_day_at(st, days=days)
            pump.set_time(target, 0)
            now = pump.status()
            self.check(now.utc == target and now.offset == 0 and now.time_set, "clock",
                       f"clock reads {now.utc} (offset {now.offset}), want {target}")
            if now.basal_today == 0 and now.bolus_today == 0:
                return
        self.check(False, "clock", "no day in the next 99 starts without totals")

    def step_quiet(self):
        pump = self.pump
        st = pump.status()
        if self.sim is not None:
            self.check(st.alarms == 0, "quiet", f"alarms still active: {st.alarm_names}")
            self.check(st.battery == 100, "quiet", f"battery at {st.battery} %")
        else:
            high = [n for n in st.alarm_names if S.ALARMS[C.alarm_id(n)][1] == S.PRIO_HIGH]
            self.check(not high, "quiet", f"high-priority alarms active: {high}")
        self.check(st.stop == S.STOP_NONE and st.bolus_id == 0 and st.temp_kind == 0,
                   "quiet", "not delivering plain basal")
        kit.drain_events(pump)
        pump.stats.clear()
