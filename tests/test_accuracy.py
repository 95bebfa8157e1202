"""THR-7: basal is delivered in whole pulses with fractions carried, so what the motor pushed
equals the programmed integral (computed here from the profile) to within one pulse.

The carried fraction is visible (basal_acc), which gives an exact identity as well:
    pulses * pulse * HOUR_MS + carry_after - carry_before == integral (mU*ms/h).
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import spec as S
from tests.pumpkit import (
    DAY_S,
    HOUR_MS,
    MONDAY_2026,
    basal_acc,
    basal_integral,
    local_time,
    make_pump,
    run,
    run_jittered,
    slot_rates,
)

H72_MS = 72 * HOUR_MS
MAX_TICKS = 12000

PROFILES = {
    "flat": ((0,), (1000,)),
    # 48 segments, every one a different rate
    "many": (tuple(range(48)), tuple(150 + (i * 97) % 3900 for i in range(48))),
    "zero_segments": ((0, 8, 16, 30, 40), (0, 1550, 0, 825, 0)),
    # the hard ceiling of 35 U/h, twice a day (a whole day of it would empty any reservoir)
    "max_rate": ((0, 14, 15, 36, 37), (730, S.MAX_RATE, 730, S.MAX_RATE, 730)),
}


def programmed_pump(pulse_mu, starts, rates, utc, offset_min, max_basal=S.MAX_RATE):
    """A primed pump running (starts, rates) as profile 0, max basal raised to allow it."""
    rig, pump = make_pump(pulse_mu, rates=(0,), utc=utc, offset_min=offset_min,
                          fill_mu=400000, resume=False)
    assert pump.settings.set(S.SET_MAX_BASAL, max_basal) == S.OK
    assert pump.settings.set_profile(0, b"acc", list(starts), list(rates)) == S.OK, pump.detail
    assert pump.resume() == S.OK
    return rig, pump


def check_exact(rig, pump, slots, run_ms, runner):
    """Run `runner` for run_ms and compare the motor with the programmed integral."""
    pulse = pump.pulse
    unit = pulse * HOUR_MS
    day, local_ms = local_time(pump)
    pos0 = rig.motor.odometer
    acc0 = basal_acc(pump)
    basal_days0 = pump.day_totals(day)[0]
    runner()
    pulses = rig.motor.odometer - pos0
    acc1 = basal_acc(pump)
    integral = basal_integral(lambda d, s: slots[s], day, local_ms, run_ms)
    # within one pulse of the programmed integral (THR-7) ...
    assert abs(pulses * unit - integral) < unit
    # ... and exactly the integral once the carried fraction is counted
    assert pulses * unit + acc1 - acc0 == integral
    # the daily totals add up to the same basal (no bolus, no prime in the window)
    end_day, _ = local_time(pump)
    total = sum(pump.day_totals(d)[0] for d in range(day, end_day + 1)) - basal_days0
    assert total == pulses * pulse
    assert pump.status()["bolus_today"] == 0
    return pulses


@pytest.mark.req("THR-7", "THR-1")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_basal_72h_equals_programmed_integral(name, pulse_mu):
    starts, rates = PROFILES[name]
    # 07:13:20 local at UTC+5:30: nothing lines up with a 30-min slot or a tick
    utc = MONDAY_2026 + 7 * 3600 + 13 * 60 + 20 - 330 * 60
    rig, pump = programmed_pump(pulse_mu, starts, rates, utc, 330)
    slots = slot_rates(starts, rates)
    pulses = check_exact(rig, pump, slots, H72_MS,
                         lambda: run(rig, pump, H72_MS // 1000, step_ms=60000))
    assert pulses > 0
    assert pump.status()["stop"] == S.STOP_NONE


@st.composite
def profiles(draw):
    n = draw(st.integers(1, 48))
    starts = [0] + sorted(draw(st.lists(st.integers(1, 47), min_size=n - 1, max_size=n - 1,
                                        unique=True)))
    rates = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
    return starts, rates


@pytest.mark.req("THR-7")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles(), pulse_mu=st.sampled_from([10, 25, 50]),
       start_s=st.integers(0, 7 * DAY_S - 1), offset_min=st.integers(-720, 840),
       base_ms=st.integers(1000, 60000), jitter_ms=st.integers(0, 999),
       seed=st.integers(0, 2**32 - 1))
def test_random_profiles_72h_within_one_pulse(profile, pulse_mu, start_s, offset_min, base_ms,
                                              jitter_ms, seed):
    starts, rates = profile
    rig, pump = programmed_pump(pulse_mu, starts, rates, MONDAY_2026 + start_s, offset_min,
                                max_basal=5000)
    slots = slot_rates(starts, rates)
    rnd = random.Random(seed)
    # 72 h, or at most MAX_TICKS ticks (about 3.3 h of 1-s ticks) to keep the run short
    run_ms = min(H72_MS, base_ms * MAX_TICKS)
    check_exact(rig, pump, slots, run_ms,
                lambda: run_jittered(rig, pump, run_ms, base_ms, jitter_ms, rnd))


@pytest.mark.req("THR-7")
@pytest.mark.slow
def test_30_days_across_tick_wraps_delivers_exactly():
    """The board clock wraps every 2**30 ms (about 12.4 days); 30 days from just before a
    wrap cross it three times, and basal still equals the integral exactly."""
    starts, rates = (0, 12, 24, 36), (400, 800, 0, 600)
    rig, pump = programmed_pump(10, starts, rates, MONDAY_2026, 0)
    assert rig.clock.ticks_ms() > (1 << 30) - 10000  # just before the wrap
    slots = slot_rates(starts, rates)
    run_ms = 30 * 24 * HOUR_MS
    wraps = [0]

    def runner():
        left = run_ms
        while left:
            before = rig.clock.ticks_ms()
            rig.clock.advance(60000)
            if rig.clock.ticks_ms() < before:
                wraps[0] += 1
            pump.tick()
            left -= 60000

    pulses = check_exact(rig, pump, slots, run_ms, runner)
    assert wraps[0] == 3
    # 10.8 U a day for 30 days, in 10-mU pulses, the integral over whole days being exact
    assert pulses == 30 * 1080
    # every whole local day in between recorded the same basal
    day, _ = local_time(pump)
    for d in range(day - 29, day):
        assert pump.day_totals(d)[0] == 10800, d
