"""HIS-2: power can fail at any instant. A seeded campaign cuts the supply at random
instants (a storage write lost, torn or completed; the motor stopped part-way through a
move; during boot itself) while boluses (normal, extended, dual), basal, temp basal, alarms,
history and settings writes are going on, then powers back on and checks:

(a) physical truth: the pulses the motor moved for delivery (odometer less priming) times
    the pulse size equal the basal + bolus totals the pump persisted; priming is counted as
    priming, never as insulin given. No double count, no loss.
(b) every bolus in history has exactly one H_BOLUS_START and one H_BOLUS_END; the END's
    delivered mU equals the pulses the motor moved for that bolus (counted by the test at
    the motor) times the pulse size, and its ending fits what happened (interrupted when it
    was cut off, completed only when whole, cancelled only when the test cancelled it).
(c) no bolus runs after a reboot, and the next minutes deliver basal only, at exactly the
    programmed rate (the carried fraction is visible in the state).
(d) every history record is readable (valid CRC) and sequence numbers are contiguous.
(e) settings and profiles survive: each holds the last value written, or the value a cut
    write was writing if the write had completed.

Within one motor move the pulses are attributed basal first, then the bolus (the
firmware's documented order); the sum check (a) does not depend on that convention.
"""

import os
import random

import pytest

from boards.fakes import PowerCut, Rig, Storage
from firmware.layout import S_TIME_LOST, S_TIME_SET
from firmware.pump import S_BOLUS_ID, S_STOP, S_TEMP_KIND, Pump
from protocol import spec as S
from tests.pumpkit import MONDAY_2026, basal_acc, history

# CI size: 300 cut points. A soak run: POWERCUT_SEED=7 POWERCUT_EPISODES=2000 pytest ...
SEED = int(os.environ.get("POWERCUT_SEED", "20261116"))
EPISODES = int(os.environ.get("POWERCUT_EPISODES", "60"))
CUTS_PER_EPISODE = 5
HOUR_MS = 3600000

# Smaller history ring than the board's (same code, faster scan at each of the many boots).
CAMPAIGN_REGIONS = (2048, 2048, 512, 512, 24 * 1024, 18 * 96)

TRACKED_SETTINGS = {
    S.SET_ALARM_REPEAT: (1, 30),
    S.SET_SNOOZE: (5, 120),
    S.SET_DIA: (120, 480),
    S.SET_RES_LOW: (5000, 50000),
    S.SET_SUSPEND_REMINDER: (5, 120),
    S.SET_BOLUS_SPEED: (500, 3000),
}


class Motor:
    """Counts, at the motor, what each move was for: prime, basal, or which bolus."""

    def __init__(self, rig):
        self.rig = rig
        self.pump = None
        self.priming = False
        self.prime = 0
        self.basal = 0
        self.bolus = {}
        motor = rig.motor
        move = motor.step

        def step(n):
            before = motor.odometer
            try:
                move(n)
            finally:
                self._count(motor.odometer - before)

        motor.step = step

    def _count(self, moved):
        if self.priming:
            self.prime += moved
            return
        p = self.pump
        basal = min(moved, p.plan_basal)
        self.basal += basal
        if moved > basal:
            bolus_id = p.state[S_BOLUS_ID]
            assert bolus_id, "bolus pulses with no bolus running"
            self.bolus[bolus_id] = self.bolus.get(bolus_id, 0) + moved - basal

    @property
    def delivered(self):
        return self.basal + sum(self.bolus.values())


class Episode:
    def __init__(self, rng):
        self.rng = rng
        self.pulse = rng.choice((10, 25, 50))
        self.rate = rng.choice((0, 600, 1000, 2500))
        rig = Rig(self.pulse)
        rig.storage = Storage(CAMPAIGN_REGIONS)
        self.rig = rig
        pump = Pump(rig.hardware())
        assert pump.boot() == 0
        assert pump.settings.set_profile(0, b"flat", [0], [self.rate]) == S.OK
        # Monday 01:00, or 23:40 so that days close (daily totals written) mid-campaign
        start = rng.choice((3600, 3600, 23 * 3600 + 40 * 60))
        assert pump.set_time(MONDAY_2026 + start, 0) == S.OK
        self.start = MONDAY_2026 + start
        self.offset = 0
        self.clock_changes = 0
        self.outages = 0
        for sid, value in ((S.SET_MAX_BOLUS_1H, 50000), (S.SET_MAX_TDD, 250000)):
            assert pump.settings.set(sid, value) == S.OK
        assert pump.rewind() == S.OK
        assert pump.fill(400000) == S.OK
        self.motor = Motor(rig)
        self.motor.pump = pump
        self.odometer0 = rig.motor.odometer
        self.prime_mu0 = 0
        self.pump = pump
        self.prime(S.PRIME_TUBING, 20 * self.pulse)
        self.prime(S.PRIME_CANNULA, 4 * self.pulse)
        assert pump.resume() == S.OK
        self.day0 = pump.status()["day"]
        self.settings = {sid: pump.setting(sid) for sid in range(S.SETTINGS_COUNT)}
        self.pending_setting = None  # (sid, new value) of a write a cut may have completed
        self.profile1 = pump.settings.get_profile(1)
        self.pending_profile = None
        self.cancelled = set()  # bolus ids the test tried to cancel
        self.interrupted = set()  # bolus ids running when the test suspended or was cut
        self.cuts = 0
        self.boot_cuts = 0

    # ------------------------------------------------------------------ actions
    def prime(self, kind, mu):
        self.motor.priming = True
        try:
            return self.pump.prime(kind, mu)
        finally:
            self.motor.priming = False

    def run(self, ms, step_ms):
        rig, pump = self.rig, self.pump
        while ms > 0:
            step = step_ms if step_ms < ms else ms
            rig.clock.advance(step)
            pump.tick()
            ms -= step

    def amount(self, lo, hi):
        return self.rng.randint(lo // self.pulse, hi // self.pulse) * self.pulse

    def days(self):
        """Every local day the episode can have visited: clock changes stay within 5 days
        of its start (THR-10 totals are checked over all of them)."""
        return range(self.day0 - 6, self.pump.status()["day"] + 7)

    def change_clock(self):
        """The user sets the clock or travels (THR-11): within 5 days of the start."""
        rng, pump = self.rng, self.pump
        now = pump.utc_seconds()
        target = now + rng.randint(-36, 36) * 1800
        lo, hi = self.start - 4 * 86400, self.start + 5 * 86400
        target = min(max(target, lo), hi)
        offset = rng.choice((-300, 0, 0, 60, 330))
        self.pending_setting = (S.SET_UTC_OFFSET, offset)  # a cut may land in its save
        if pump.set_time(target, offset) == S.OK:
            self.offset = offset
            self.settings[S.SET_UTC_OFFSET] = offset
            self.clock_changes += 1
        self.pending_setting = None

    def action(self):
        rng, pump = self.rng, self.pump
        running = pump.state[S_BOLUS_ID]
        if rng.random() < 0.04:
            self.change_clock()
            return
        r = rng.random()
        if r < 0.40:
            self.run(rng.randint(1, 180) * 1000, rng.choice((100, 1000, 1000, 5000)))
        elif r < 0.58:
            kind = rng.choice((S.BOLUS_NORMAL, S.BOLUS_EXTENDED, S.BOLUS_DUAL))
            now = self.amount(50, 4000) if kind != S.BOLUS_EXTENDED else 0
            ext = self.amount(50, 3000) if kind != S.BOLUS_NORMAL else 0
            minutes = rng.choice((30, 45, 60)) if kind != S.BOLUS_NORMAL else 0
            pump.bolus(kind, now, ext, minutes)
        elif r < 0.63:
            if running:
                self.cancelled.add(running)
            pump.cancel_bolus()
        elif r < 0.70:
            if rng.random() < 0.5:
                pump.set_temp_basal(S.TEMP_PERCENT, rng.choice((0, 50, 150, 200)),
                                    rng.choice((15, 30, 60)))
            else:
                pump.set_temp_basal(S.TEMP_ABSOLUTE, self.amount(0, 3000), 30)
        elif r < 0.73:
            pump.cancel_temp_basal()
        elif r < 0.81:
            sid = rng.choice(sorted(TRACKED_SETTINGS))
            lo, hi = TRACKED_SETTINGS[sid]
            value = rng.randint(lo, hi)
            self.pending_setting = (sid, value)
            if pump.settings.set(sid, value) == S.OK:
                self.settings[sid] = value
            self.pending_setting = None
        elif r < 0.84:
            new = (b"alt", [0, rng.randint(1, 47)], [self.amount(0, 3000), self.amount(0, 3000)])
            self.pending_profile = new
            if pump.settings.set_profile(1, *new) == S.OK:
                self.profile1 = pump.settings.get_profile(1)
            self.pending_profile = None
        elif r < 0.88:
            self.rig.battery.level = rng.choice((3, 15, 50, 100))  # alarms: history writes
            self.run(1000, 1000)
        elif r < 0.91:
            self.rig.buttons.press(1)
            self.run(1000, 1000)
        elif r < 0.94:
            if running:
                self.interrupted.add(running)
            pump.suspend()
            self.run(rng.randint(1, 60) * 1000, 1000)
            pump.resume()
        else:
            if running:
                self.interrupted.add(running)
            pump.suspend()
            pump.rewind()
            pump.fill(400000)
            self.prime(S.PRIME_TUBING, self.amount(self.pulse, 2000))
            self.prime(S.PRIME_CANNULA, self.amount(self.pulse, 500))
            pump.resume()

    # ------------------------------------------------------------------ cuts
    def arm(self):
        rng = self.rng
        if rng.random() < 0.6:
            s = self.rig.storage
            s.cut_at = s.writes + rng.randint(1, 15)
            s.cut_mode = rng.randint(0, 2)
        else:
            self.rig.motor.cut_after = rng.randint(0, 30)

    def disarm(self):
        self.rig.storage.cut_at = -1
        self.rig.motor.cut_after = -1

    def cut_in_prime(self):
        """Reservoir change with the motor stopping part-way through a prime."""
        pump = self.pump
        running = pump.state[S_BOLUS_ID]
        if running:
            self.interrupted.add(running)
        pump.suspend()
        pump.rewind()
        pump.fill(400000)
        n = self.rng.randint(1, 40)
        self.rig.motor.cut_after = self.rng.randint(0, n - 1)
        self.prime(self.rng.choice((S.PRIME_TUBING, S.PRIME_CANNULA)), n * self.pulse)

    def cut_at_midnight(self):
        """Run to just before local midnight, then lose one of the next few writes
        (the day's totals among them)."""
        pump = self.pump
        day = pump.status()["day"]
        while pump.status()["day"] == day and pump.status()["local_ms"] < 86400000 - 90000:
            self.run(60000, 60000)
        s = self.rig.storage
        s.cut_at = s.writes + self.rng.randint(1, 6)
        s.cut_mode = self.rng.randint(0, 2)
        self.run(180000, 1000)

    def cut_once(self):
        """Actions until the armed cut fires (or give up), then power back on."""
        r = self.rng.random()
        try:
            if r < 0.06:
                self.cut_in_prime()
            elif r < 0.12:
                self.cut_at_midnight()
            self.arm()
            for _ in range(300):
                self.action()
            self.disarm()
            return False
        except PowerCut:
            pass
        self.disarm()
        self.cuts += 1
        dead = self.pump
        if dead.state[S_BOLUS_ID]:
            self.interrupted.add(dead.state[S_BOLUS_ID])
        self.reboot()
        return True

    def reboot(self):
        rng, rig = self.rng, self.rig
        if rng.random() < 0.3:  # the supply stays off a while, sometimes the RTC with it
            rig.rtc.backup = rng.random() < 0.7
            rig.outage(rng.randint(1, 6 * 3600))
            rig.rtc.backup = True
            self.outages += 1
        while True:
            pump = Pump(self.rig.hardware())
            self.motor.pump = pump
            if self.rng.random() < 0.15:  # the supply fails again while booting
                s = self.rig.storage
                s.cut_at = s.writes + self.rng.randint(1, 4)
                s.cut_mode = self.rng.randint(0, 2)
            try:
                pump.boot()
            except PowerCut:
                self.boot_cuts += 1
                continue
            finally:
                self.disarm()
            self.pump = pump
            if not pump.state[S_TIME_SET] and pump.state[S_TIME_LOST]:
                # the time was lost: the user sets it again, from the pump's own estimate
                assert pump.set_time(pump.utc_seconds(), pump.setting(S.SET_UTC_OFFSET)) == S.OK
            return

    # ------------------------------------------------------------------ invariants
    def check(self):
        pump, p, motor = self.pump, self.pulse, self.motor
        # (c) nothing of a bolus survives the cut
        assert pump.state[S_BOLUS_ID] == 0
        assert pump.bolus_progress() == (0, 0, 0)
        # (a) the motor against the persisted totals
        days = [pump.day_totals(d) for d in self.days()]
        basal = sum(t[0] for t in days if t)
        bolus = sum(t[1] for t in days if t)
        prime = sum(t[2] for t in days if t)
        moved = self.rig.motor.odometer - self.odometer0
        assert moved == motor.delivered + motor.prime
        assert basal + bolus == motor.delivered * p, "insulin counted twice or lost"
        assert (basal, bolus) == (motor.basal * p, sum(motor.bolus.values()) * p)
        assert prime == motor.prime * p
        # (d) history readable, contiguous
        recs = history(pump)
        assert pump.history.first_seq == 1
        assert [r[0] for r in recs] == list(range(1, pump.history.next_seq))
        # (b) one start and one end per bolus, with what the motor moved for it
        starts = [r for r in recs if r[2] == S.H_BOLUS_START]
        ends = [r for r in recs if r[2] == S.H_BOLUS_END]
        start_ids = [r[4] for r in starts]
        end_ids = [r[4] for r in ends]
        assert len(set(start_ids)) == len(start_ids), "bolus id used twice"
        assert sorted(end_ids) == sorted(start_ids), "a bolus without exactly one end"
        requested = {r[4]: r[5] + r[6] for r in starts}
        seq_of_start = {r[4]: r[0] for r in starts}
        for r in ends:
            _, _, _, ending, bid, delivered, req = r
            assert r[0] > seq_of_start[bid]
            assert req == requested[bid]
            assert delivered == motor.bolus.get(bid, 0) * p, (bid, delivered, motor.bolus)
            assert 0 <= delivered <= req
            if ending == S.BOLUS_COMPLETED:
                assert delivered == req
            elif ending == S.BOLUS_CANCELLED:
                assert bid in self.cancelled
            else:
                assert ending == S.BOLUS_INTERRUPTED
                assert bid in self.interrupted
        # (e) settings and profiles
        for sid in range(S.SETTINGS_COUNT):
            value = pump.setting(sid)
            if self.pending_setting and self.pending_setting[0] == sid:
                assert value in (self.settings[sid], self.pending_setting[1])
                self.settings[sid] = value
            assert value == self.settings[sid], S.SETTINGS[sid][0]
        self.pending_setting = None
        got = pump.settings.get_profile(1)
        if self.pending_profile is not None and got != self.profile1:
            name, starts, rates = self.pending_profile  # the cut write had completed
            if rates[0] == rates[1]:
                starts, rates = [0], rates[:1]
            assert got == (name, starts, rates)
            self.profile1 = got
        assert got == self.profile1
        self.pending_profile = None
        assert pump.settings.get_profile(0) == (b"flat", [0], [self.rate])
        assert pump.settings.schedule() == [0] * 7

    def check_basal_only(self):
        """(c) ten minutes after the reboot: basal only, exactly as programmed."""
        pump, rig = self.pump, self.rig
        bolus = dict(self.motor.bolus)
        pos = rig.motor.odometer
        acc = basal_acc(pump)
        rate = pump.basal_rate()
        steady = not pump.state[S_TEMP_KIND]  # (a temp basal may end within the window)
        self.run(600000, 1000)
        moved = rig.motor.odometer - pos
        assert self.motor.bolus == bolus and pump.state[S_BOLUS_ID] == 0
        if pump.state[S_STOP]:
            assert moved == 0
        elif steady:
            assert moved == (acc + 600000 * rate) // (self.pulse * HOUR_MS)
            assert rate == self.rate


def campaign(seed, episodes, cuts_per_episode):
    rng = random.Random(seed)
    total = boot_cuts = 0
    for _ in range(episodes):
        ep = Episode(rng)
        for _ in range(cuts_per_episode):
            if ep.cut_once():
                ep.check()
                ep.check_basal_only()
                ep.check()
        total += ep.cuts
        boot_cuts += ep.boot_cuts
    return total, boot_cuts


@pytest.mark.req("HIS-2", "HIS-1", "THR-3", "THR-4", "THR-12")
def test_power_cut_campaign():
    cuts, boot_cuts = campaign(SEED, EPISODES, CUTS_PER_EPISODE)
    assert cuts >= 0.95 * EPISODES * CUTS_PER_EPISODE
    assert boot_cuts > 10
