"""The sensor link's readings (SNS-1), glucose alerts (SNS-2) and the start of a suspension
before low (SNS-3): what `Cgm.tick` runs when the radio reports a reading or a sensor
status. Imported by `Cgm.plug` when a board has a sensor link (never in the tick): a
board without one never loads this code (heap, issue 12: from .mpy files on a file
system, a module's bytecode lives in RAM). Each function is the Cgm method it was (see
firmware/cgm.py for the rules), `self` the pump's Cgm. Allocation-free.
"""

from firmware.cgm import LOSS_S
from firmware.compat import const
from firmware.layout import S_MONO_S, S_SBL, S_SBL_S, S_SBL_WAIT_S
from protocol import spec as S
from protocol.spec import (
    A_SIGNAL_LOSS,
    CGM_WARMUP,
    CGMF_EXPIRED,
    CGMF_WARMUP,
    NO_TREND,
)

_TREND_N = const(3)  # firmware/cgm.py's (tests/test_tick_consts.py)


def sensor_status(self, v):
    al = self.pump.alarms
    if v == CGM_WARMUP:
        flag = CGMF_WARMUP
        al.clear(S.A_SENSOR_EXPIRED, 0)
        al.raise_(S.A_SENSOR_WARMUP, 0)
    else:
        flag = CGMF_EXPIRED
        al.clear(S.A_SENSOR_WARMUP, 0)
        al.raise_(S.A_SENSOR_EXPIRED, 0)
    if self.sensor != flag:
        self.sensor = flag
        self.rn = 0  # a new sensor: the old trend does not carry over
        self.trend = NO_TREND
        self.pump.events.put(S.EV_GLUCOSE, v, self.pump.utc_seconds() // 60, NO_TREND)


def reading(self, v):
    if v < S.CGM_LOW:
        v = S.CGM_LOW
    elif v > S.CGM_HIGH:
        v = S.CGM_HIGH
    pump = self.pump
    minute = pump.utc_seconds() // 60
    now = self.st[S_MONO_S]
    self.readings += 1
    same = self._keep(minute, v)
    self.log.append(minute, 1, 0, now, v, 0)
    # the trend window: the sensor's time when known, else the monotonic clock
    t = now
    base = 0
    if self.timed and self.radio.sensor_min >= 0:
        t = self.radio.sensor_min * 60
        base = 1
    rt = self.rt
    rv = self.rv
    if self.rn and (base != self.rbase or t < rt[self.rn - 1]):
        self.rn = 0  # another clock, or another session: the old window does not fit
    self.rbase = base
    if same and self.rn and not base:  # sensor times never repeat (cgm_link drops them)
        rv[self.rn - 1] = v
        rt[self.rn - 1] = t
    else:
        if self.rn == _TREND_N:
            rt[0] = rt[1]
            rv[0] = rv[1]
            rt[1] = rt[2]
            rv[1] = rv[2]
            self.rn = _TREND_N - 1
        rt[self.rn] = t
        rv[self.rn] = v
        self.rn += 1
    self.last = v
    self.last_s = now
    self.sensor = 0
    span = rt[self.rn - 1] - rt[0]
    if self.rn == _TREND_N and 0 < span <= LOSS_S:
        dv = rv[_TREND_N - 1] - rv[0]
        # rounded, not floored: readings timed by arrival come within a second or
        # so of their 5 minutes, and a floor would turn +4.0 mg/dL/min over 601 s
        # into +3.9
        self.trend = (dv * 1200 + span) // (2 * span)
        self.pred20 = v + dv * (S.URGENT_SOON_MIN * 60) // span
        self.pred30 = v + dv * (S.SBL_AHEAD_MIN * 60) // span
    else:
        dv = 0
        self.trend = NO_TREND
        self.pred20 = v
        self.pred30 = v
    alerts(self, v)
    pump.events.put(S.EV_GLUCOSE, v, minute, self.trend)
    suspend_before_low(self, v, dv)


def alerts(self, v):
    pump = self.pump
    al = pump.alarms
    mask = pump.setting(S.SET_GLUCOSE_ALERTS)
    al.clear(S.A_SENSOR_WARMUP, v)
    al.clear(S.A_SENSOR_EXPIRED, v)
    al.clear(A_SIGNAL_LOSS, v)
    al.set(S.A_URGENT_LOW, v <= S.URGENT_LOW, v)
    al.set(S.A_GLUCOSE_LOW, mask & S.GA_LOW and v <= pump.setting(S.SET_GLUCOSE_LOW), v)
    al.set(S.A_GLUCOSE_HIGH, mask & S.GA_HIGH and v >= pump.setting(S.SET_GLUCOSE_HIGH), v)
    trend = self.trend
    known = trend != NO_TREND
    rate = pump.setting(S.SET_GLUCOSE_RATE) * 10
    al.set(S.A_GLUCOSE_RISE, mask & S.GA_RISE and known and trend >= rate, trend)
    al.set(S.A_GLUCOSE_FALL, mask & S.GA_FALL and known and trend <= -rate, trend)
    al.set(S.A_URGENT_LOW_SOON, mask & S.GA_URGENT_LOW_SOON and known and v > S.URGENT_LOW
           and self.pred20 <= S.URGENT_LOW, self.pred20)


def suspend_before_low(self, v, dv):
    pump = self.pump
    if not pump.setting(S.SET_SBL):
        return
    st = self.st
    low = pump.setting(S.SET_GLUCOSE_LOW)
    if st[S_SBL]:
        if v >= low + S.SBL_RESUME_MARGIN and self.pred30 >= low + S.SBL_RESUME_AHEAD:
            self.resume(S.SBL_RECOVERED)
        return
    danger = (self.pred30 <= low + S.SBL_MARGIN and dv <= 0) or v <= low
    if danger and not pump.stop_reason() and st[S_SBL_WAIT_S] < 0:
        st[S_SBL] = 1
        st[S_SBL_S] = st[S_MONO_S]
        pump._commit(0, 0, 0)  # a reboot keeps basal suspended
        pump.alarms.raise_(S.A_SBL, v)
        pump._log(S.H_SBL, 1, S.SBL_PREDICTED, v, self.pred30)
        pump.events.put(S.EV_SBL, 1, S.SBL_PREDICTED, v)
