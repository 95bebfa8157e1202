"""The tick's copies of basal_rate() and of the settings it reads (Pump._refresh, issue 12)
are never stale: after every command of a random sequence (temp basals, suspend/resume,
settings, profiles, clock changes, failing saves) and every tick across slot boundaries,
midnight and temp-basal ends, the copies equal what basal_rate() and setting() say now."""

import random

import pytest

from firmware import pump as P
from protocol import spec as S
from tests.pumpkit import make_pump

STARTS = (0, 12, 18, 24, 36, 44)  # half-hour slots: 00:00, 06:00, 09:00, 12:00, ...
RATES = (800, 1500, 2400, 1200, 1800, 900)


def _check(pump):
    assert pump.basal_rate_now == pump.basal_rate()
    lim = pump.limits
    assert lim[P._L_BOLUS_SPEED] == pump.setting(S.SET_BOLUS_SPEED)
    assert lim[P._L_RES_LOW] == pump.setting(S.SET_RES_LOW)
    assert lim[P._L_NO_DELIVERY_S] == pump.setting(S.SET_NO_DELIVERY) * 60
    assert lim[P._L_REMINDER_S] == pump.setting(S.SET_SUSPEND_REMINDER) * 60
    assert lim[P._L_AUTO_OFF_H] == pump.setting(S.SET_AUTO_OFF)
    assert lim[P._L_MAX_TDD] == pump.setting(S.SET_MAX_TDD)


def _command(pump, rig, rng):
    op = rng.randrange(9)
    if op == 0:
        pump.set_temp_basal(S.TEMP_ABSOLUTE, rng.choice((0, 500, 2000)), 30)
    elif op == 1:
        pump.set_temp_basal(S.TEMP_PERCENT, rng.choice((0, 50, 150)), 30)
    elif op == 2:
        pump.cancel_temp_basal()
    elif op == 3:
        pump.suspend()
    elif op == 4:
        pump.resume()
    elif op == 5:
        sid = rng.choice((S.SET_BOLUS_SPEED, S.SET_RES_LOW, S.SET_NO_DELIVERY,
                          S.SET_SUSPEND_REMINDER, S.SET_MAX_TDD, S.SET_MAX_BASAL))
        lo, hi = S.SETTINGS[sid][2], S.SETTINGS[sid][3]
        pump.settings.set(sid, rng.randint(lo, hi))
    elif op == 6:
        rates = [rng.choice((0, 300, 1000, 2500)) for _ in STARTS]
        pump.settings.set_profile(rng.randrange(2), b"p", list(STARTS), rates)
    elif op == 7:
        pump.settings.set_schedule([rng.randrange(2) for _ in range(7)])
    else:
        pump.set_time(pump.utc_seconds() + rng.choice((-7200, 1800, 3 * 3600)),
                      rng.choice((0, 60, -120)))


@pytest.mark.req("THR-1", "THR-2", "THR-13")
@pytest.mark.parametrize("seed", range(4))
def test_the_tick_copies_follow_every_command_and_boundary(seed):
    rng = random.Random(seed)
    rig, pump = make_pump(starts=STARTS, rates=RATES)
    for _ in range(250):
        rig.storage.fail = rng.random() < 0.1  # a failed save reverts settings, keeps state
        if rng.random() < 0.3:
            _command(pump, rig, rng)
        rig.storage.fail = False
        for _ in range(rng.randrange(1, 6)):
            rig.clock.advance(rng.choice((100, 1000, 7000, 600000)))
            pump.tick()
            _check(pump)
