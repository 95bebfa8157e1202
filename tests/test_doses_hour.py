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


PUMP_OPS = hs.lists(hs.one_of(
    hs.tuples(hs.just("bolus"), hs.sampled_from([50, 500, 1000, 1500, 2950, 3000, 3050])),
    hs.tuples(hs.just("run"), hs.sampled_from([5, 40, 300, 900, 1800, 3600])),
    hs.tuples(hs.just("cancel")),
    hs.tuples(hs.just("reboot")),
    hs.tuples(hs.just("clock"), hs.sampled_from([-86400, -3600, 3600, 7 * 3600])),
), min_size=1, max_size=14)


@pytest.mark.req("THR-6", "THR-11", "THR-13")
@settings(max_examples=25, deadline=None)
@given(PUMP_OPS)
def test_the_bolus_limits_decide_as_the_public_windows_say(ops):
    """Pump.bolus reads the windows inline (issue 12): through boluses (some running
    while the next is asked for), basal, cancels, reboots and clock changes, a request
    is refused over the 60-min or 24-h limit exactly when bolus_last_hour() or
    dose_last_day() plus the request is over it, naming that limit."""
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 3000) == S.OK
    assert pump.settings.set(S.SET_MAX_TDD, 6000) == S.OK
    for op in ops:
        if op[0] == "bolus":
            hour, day = pump.bolus_last_hour(), pump.dose_last_day()
            code = pump.bolus(S.BOLUS_NORMAL, op[1], 0, 0)
            if hour + op[1] > 3000:
                assert (code, pump.detail) == (S.E_OVER_LIMIT, S.SET_MAX_BOLUS_1H), op
            elif day + op[1] > 6000:
                assert (code, pump.detail) == (S.E_OVER_LIMIT, S.SET_MAX_TDD), op
            else:
                assert code != S.E_OVER_LIMIT, op
        elif op[0] == "run":
            run(rig, pump, op[1], step_ms=5000)
        elif op[0] == "cancel":
            pump.cancel_bolus()
        elif op[0] == "reboot":
            pump = reboot(rig)
        else:
            assert pump.set_time(pump.utc_seconds() + op[1], 0) == S.OK
        assert pump.doses.bolus_hour() == walk_hour(pump.doses), op


@pytest.mark.req("THR-6")
def test_both_limits_count_the_bucket_being_filled():
    """Insulin delivered minutes ago is still in the open 5-min bucket (the state, not
    the rings): both limits count it (mutants bolus-*-limit-without-current-bucket)."""
    for limit, other in ((S.SET_MAX_TDD, S.SET_MAX_BOLUS_1H), (S.SET_MAX_BOLUS_1H, S.SET_MAX_TDD)):
        rig, pump = make_pump(50, rates=(0,))
        assert pump.settings.set(other, 50000) == S.OK
        assert pump.settings.set(limit, 2000) == S.OK
        run(rig, pump, BUCKET_S - pump.state[S_MONO_S] % BUCKET_S)  # at a bucket's start
        assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
        run(rig, pump, 60)  # delivered (1.5 U/min), the bucket still open
        assert pump.bolus_progress() == (0, 0, 0) and pump.doses.bolus_at(0) == 1000
        assert pump.bolus(S.BOLUS_NORMAL, 1050, 0, 0) == S.E_OVER_LIMIT
        assert pump.detail == limit
        assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK


@pytest.mark.req("THR-6")
def test_both_limits_count_what_the_running_bolus_still_owes():
    """A bolus in progress counts whole: a request over either limit with it is refused
    naming that limit, not as 'a bolus is running' (mutants bolus-*-limit-without-running-
    bolus)."""
    for limit, other in ((S.SET_MAX_TDD, S.SET_MAX_BOLUS_1H), (S.SET_MAX_BOLUS_1H, S.SET_MAX_TDD)):
        rig, pump = make_pump(50, rates=(0,))
        assert pump.settings.set(other, 50000) == S.OK
        assert pump.settings.set(limit, 5000) == S.OK
        assert pump.bolus(S.BOLUS_NORMAL, 4000, 0, 0) == S.OK
        run(rig, pump, 20)  # 0.5 U delivered, 3.5 U owed
        assert pump.bolus_progress()[1] == 500
        assert pump.bolus(S.BOLUS_NORMAL, 1050, 0, 0) == S.E_OVER_LIMIT
        assert pump.detail == limit
        assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.E_BOLUS_RUNNING
