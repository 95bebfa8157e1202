"""Power cuts at the two instants of the recovery code that the power-cut campaign does not
reach on purpose (issue 19): a plunger found beyond the saved plan, and a cut between the
save of the dose rings and the next state save. Each kills a mutant of tools/mutants.toml."""

import pytest

from firmware.doses import BUCKET_S
from firmware.layout import S_BASAL_TODAY, S_BOLUS_TODAY, S_MONO_S, S_PRIME_TODAY, S_TIME_SET
from protocol import spec as S
from tests.pumpkit import make_pump, reboot, run, run_until


@pytest.mark.req("HIS-2", "THR-12", "ALM-7")
def test_recovery_books_at_most_the_saved_plan():
    """The plan saved before a move bounds what boot attributes to it. A plunger found
    further on (a drive that overran, then the supply died before the next save) adds
    nothing: not to basal, and not to priming, which would hide it in a total that is
    never counted as insulin (mutant recover-clamp)."""
    rig, pump = make_pump(50, rates=(1000,))  # a basal pulse every 180 s
    base = rig.motor.pos
    assert run_until(rig, pump, lambda: rig.motor.pos == base + 1, 200) is not None
    before = pump.day_totals(pump.status()["day"])
    rig.motor.pos += 3  # overran by 3 pulses; then power dies before any state save
    pump = reboot(rig)
    st = pump.state
    # the state saved before the move plus the one planned pulse, booked as basal
    assert st[S_BASAL_TODAY] == before[0]
    assert st[S_PRIME_TODAY] == before[2] == 600
    assert st[S_BOLUS_TODAY] == 0


@pytest.mark.req("HIS-2", "HIS-3", "THR-6", "THR-9")
def test_a_cut_after_the_dose_rings_closed_a_bucket_counts_it_once():
    """The 5-min bucket closes into the rings (saved), then the supply dies before the
    state, which still holds the bucket as open, is saved again: boot must not close it a
    second time (mutants boot-dose-rings-not-adopted, doses-adopt-double-counts)."""
    rig, pump = make_pump(50, rates=(0,))
    assert pump.state[S_MONO_S] % BUCKET_S == 0
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    run(rig, pump, BUCKET_S - 10)  # delivered within the first bucket
    assert pump.bolus_progress()[0] == 0
    assert pump.doses.bolus_at(0) == 1000
    assert pump._commit(0, 0, 0)  # the last state save before the cut
    run(rig, pump, 20)  # the bucket closes into the rings; no state save yet
    assert pump.doses.bolus_at(1) == 1000 and pump.doses.bolus_at(0) == 0
    assert pump.state[S_MONO_S] - pump.saved_s == 20
    hour, day, iob = pump.bolus_last_hour(), pump.dose_last_day(), pump.iob()
    assert (hour, day) == (1000, 1000)
    pump = reboot(rig)
    assert pump.bolus_last_hour() == hour
    assert pump.dose_last_day() == day
    assert pump.iob() == iob
    run(rig, pump, BUCKET_S)  # and the next bucket closes without it
    assert pump.bolus_last_hour() == 1000
    assert pump.dose_last_day() == 1000


@pytest.mark.req("THR-13", "HIS-3")
@pytest.mark.parametrize("drift_s,trusted", [(-60, True), (-3600, False),
                                             (401 * 86400, False)])
def test_an_rtc_reading_far_from_the_last_known_time_is_not_trusted(drift_s, trusted):
    """At boot the RTC is believed only within [last known time - 120 s, + 400 days]: an
    RTC an hour behind would move history back, one 401 days ahead would age IOB and empty
    the dose windows; both count as a lost time (mutant time-rtc-always-trusted)."""
    rig, pump = make_pump(50, rates=(1000,))
    run(rig, pump, 600)
    last = pump.utc_seconds()
    mono = pump.state[S_MONO_S]
    rig.rtc.drift_s = drift_s
    rig.outage(0)
    pump = reboot(rig)
    assert pump.state[S_TIME_SET] == (1 if trusted else 0)
    assert pump.alarms.active[S.A_TIME_UNSET] == (0 if trusted else 1)
    assert pump.state[S_MONO_S] == mono  # no outage taken from a reading behind or bad
    assert pump.utc_seconds() == last
