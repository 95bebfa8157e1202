"""The lazy alarm tick (issue 12) against the scan-every-tick manager it replaced: the same
random sequence of raises, clears, acknowledgements and ticks of random lengths gives the
same log, the same sounds and LED, and the same per-alarm state after every operation."""

import random
import subprocess

import pytest

from firmware import alarms as lazy
from protocol import spec as S

BEFORE = "1962a04"  # the last commit with the scan-every-tick Alarms.tick


class Ann:
    def __init__(self):
        self.calls = []

    def sound(self, priority, level):
        self.calls.append(("sound", priority, level))

    def silence(self):
        self.calls.append(("silence",))

    def led(self, top):
        self.calls.append(("led", top))


def _eager_module():
    src = subprocess.run(["git", "show", f"{BEFORE}:firmware/alarms.py"], capture_output=True,
                         text=True, check=True).stdout
    mod = {"__name__": "alarms_eager"}
    exec(compile(src, "alarms_eager.py", "exec"), mod)  # noqa: S102 - our own file
    return mod


def _snapshot(al, ann, log):
    # timers and windows are compared as counted down: the lazy one's pending ms applied
    pending = getattr(al, "pending", 0)
    timers = [al.timer[i] - pending if al.active[i] else None for i in range(S.ALARM_COUNT)]
    windows = [max(al.window[i] - pending, 0) if al.window[i] > 0 else 0
               for i in range(S.ALARM_COUNT)]
    return (list(al.active), list(al.acked), list(al.level), list(al.missed),
            list(al.cycles), al.count, al.windows, al.sounding, al.led, timers, windows,
            list(ann.calls), list(log))


@pytest.mark.parametrize("seed", range(6))
def test_lazy_tick_matches_scan_every_tick(seed):
    try:
        eager_mod = _eager_module()
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("no git history to compare with")
    rng = random.Random(seed)
    pair = []
    for make in (eager_mod["Alarms"], lazy.Alarms):
        ann, log = Ann(), []
        al = make(ann, lambda a, act, v, log=log: log.append((a, act, v)))
        al.repeat_ms = rng.choice((60000, 120000, 300000)) if not pair else pair[0][0].repeat_ms
        al.snooze_ms = 300000
        pair.append((al, ann, log))
    ids = [rng.randrange(S.ALARM_COUNT) for _ in range(6)]  # a few alarms, often repeated
    for _ in range(1500):
        op = rng.random()
        a = rng.choice(ids)
        dt = rng.choice((100, 100, 100, 1000, 7000, 45000))
        for al, _ann, _log in pair:
            if op < 0.04:
                al.raise_(a, 7)
            elif op < 0.07:
                al.clear(a, 3)
            elif op < 0.09:
                al.ack(a)
            elif op < 0.10:
                al.ack_top()
            else:
                al.tick(dt)
        assert _snapshot(*pair[0]) == _snapshot(*pair[1])
