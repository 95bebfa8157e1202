"""The 60-min bolus window's kept sum (firmware/doses.py Doses.sum_hour, issue 12): a bolus
command adds the current bucket to it instead of walking 12 closed buckets. It must equal
that walk at every instant: after each dose, each roll of the 5-min bucket (one bucket or a
gap of many), each reboot (with the state saved after the rings or before them) and each
clock change, and the limit it feeds must refuse exactly as before (THR-6)."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from boards.fakes import Storage
from firmware.doses import BOLUS_N, BUCKET_S, D_BOLUS, Doses
from firmware.hal import R_DOSES_A, R_DOSES_B
from firmware.layout import S_BUCKET, S_MONO_S
from protocol import spec as S
from tests.pumpkit import make_pump, reboot, run

HOUR = 12  # closed buckets in the 60-min window besides the current one
AT = 0  # the bucket triple's index in the test's state array


def walk_hour(d):
    """The window as the firmware computed it before the kept sum: the current bucket
    plus the 12 closed ones before it, read from the bolus ring."""
    b = d.st[d.at]
    return d.st[d.at + 1] + sum(d.v[D_BOLUS + (b - k) % BOLUS_N] for k in range(1, HOUR + 1))


def boot(storage, state):
    d = Doses(storage, R_DOSES_A, R_DOSES_B, state, AT)
    d.load()
    d.adopt()
    return d


OPS = hs.lists(hs.one_of(
    hs.tuples(hs.just("dose"), hs.integers(0, 3000), hs.integers(0, 500)),
    hs.tuples(hs.just("advance"), hs.sampled_from([1, 60, 299, 300, 301, 900, 3600, 3900,
                                                   8 * 3600, 30 * 3600])),
    hs.tuples(hs.just("save_state")),
    hs.tuples(hs.just("reboot"), hs.booleans()),
), max_size=60)


@pytest.mark.req("THR-6", "HIS-3")
@settings(max_examples=150, deadline=None)
@given(OPS)
def test_the_kept_hour_sum_equals_the_12_bucket_walk_at_every_step(ops):
    """Doses, rolls (one bucket and long gaps), state saves and reboots in any order:
    bolus_hour() equals the walk over the ring after every step, and (without reboots
    that lose an unsaved state) the bolus delivered in the buckets of the window."""
    storage = Storage()
    state = array("i", [0, 0, 0])
    saved = array("i", state)  # the pump state as last saved
    d = boot(storage, state)
    now = 0
    delivered = {}  # bucket number -> bolus mU booked into it (the model)
    lossless = True  # no reboot has dropped an unsaved current bucket yet
    for op in ops:
        if op[0] == "dose":
            d.st[AT + 1] += op[1]
            d.st[AT + 2] += op[1] + op[2]
            bucket = d.st[AT]
            delivered[bucket] = delivered.get(bucket, 0) + op[1]
        elif op[0] == "advance":
            now += op[1]
            d.roll(now)
        elif op[0] == "save_state":
            saved = array("i", d.st)
        else:
            state_saved_after = op[1]
            if state_saved_after:
                saved = array("i", d.st)
            elif d.st[AT + 1] and list(saved) != list(d.st):
                lossless = False  # the unsaved current bucket's bolus is gone (as on a pump)
            d = boot(storage, array("i", saved))
            d.roll(now)
        assert d.bolus_hour() == walk_hour(d), op
        if lossless:
            b = d.st[AT]
            assert d.bolus_hour() == sum(v for k, v in delivered.items() if b - HOUR <= k <= b)


@pytest.mark.req("THR-6", "HIS-3")
def test_a_state_older_than_the_rings_adopts_their_bucket_and_its_sum():
    """A cut after the rings closed a bucket but before the state was saved again: the
    state's bucket is behind the rings; adopt() moves it on, and the sum follows."""
    storage = Storage()
    d = boot(storage, array("i", [0, 0, 0]))
    d.st[AT + 1] = d.st[AT + 2] = 700
    saved = array("i", d.st)  # bucket 0 with 700 mU, saved
    d.roll(BUCKET_S)  # bucket 0 closes into the rings (saved); the state is not
    assert d.bolus_hour() == 700
    d = boot(storage, saved)
    assert d.st[AT] == 1 and d.st[AT + 1] == 0  # not closed twice
    assert d.sum_hour == 700 and d.bolus_hour() == 700 == walk_hour(d)


@pytest.mark.req("THR-6", "THR-11", "THR-13")
def test_the_hour_limit_refuses_exactly_at_the_edge_through_a_clock_change_and_reboots():
    """A 3 U bolus, then reboots and a clock change a day back: its insulin counts for
    the 12 closed buckets after its own (60-65 min, monotonic) and then not at all; the
    60-min limit refuses 50 mU over it until then and accepts it after."""
    rig, pump = make_pump(50, rates=(0,))
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 5000) == S.OK
    run(rig, pump, BUCKET_S - pump.state[S_MONO_S] % BUCKET_S)  # at a bucket's start
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK
    run(rig, pump, 150)  # 3 U at 1.5 U/min: delivered within this bucket
    assert pump.bolus_progress() == (0, 0, 0)
    first = pump.state[S_BUCKET]
    pump = reboot(rig)
    assert pump.set_time(pump.utc_seconds() - 86400, 0) == S.OK  # the clock a day back
    seen = []
    while pump.state[S_BUCKET] <= first + HOUR + 1:
        b = pump.state[S_BUCKET] - first
        assert pump.bolus_last_hour() == (3000 if b <= HOUR else 0), b
        assert pump.bolus_last_hour() == walk_hour(pump.doses)
        code = pump.bolus(S.BOLUS_NORMAL, 2050, 0, 0)
        seen.append((b, code))
        if code == S.OK:
            assert pump.cancel_bolus() == S.OK  # nothing delivered: cancelled at once
        if b == 6:
            pump = reboot(rig)  # a reboot inside the window keeps it
        run(rig, pump, BUCKET_S, step_ms=5000)
    assert all(code == S.E_OVER_LIMIT for b, code in seen if b <= HOUR)
    assert all(code == S.OK for b, code in seen if b > HOUR)
    assert [b for b, _ in seen][-1] == HOUR + 1
