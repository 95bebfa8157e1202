"""Sensor link (SNS-1), glucose alerts (SNS-2) and suspend before low (SNS-3).

`Cgm.tick(dt)` runs in the pump's 1-Hz housekeeping: it polls `hw.radio.read()` (see
firmware/hal.py) and keeps the last CGM_READINGS readings (24 h of 5-min readings) in a
preallocated ring of (UTC minute, mg/dL). Allocation-free, like the rest of the tick.

Readings: a value outside 39..401 is taken as LOW (39) or HIGH (401). A reading in the
same UTC minute as the newest one replaces it (one reading per minute; pages of get_cgm
are by minute). Each reading is also appended to a log on flash (a History on region
R_CGM: time = UTC minute, v1 = the pump's monotonic second, v2 = mg/dL), from which boot
rebuilds the ring and the time of the newest reading, so signal loss is timed across
reboots and outages (HIS-3).

Trend: over the last 3 readings, if they span at most SIGNAL_LOSS_MIN minutes: (newest -
oldest) / time, in mg/dL/min x 10, NO_TREND otherwise. The time is when the sensor measured:
the records' time offsets when the radio reports them (`sensor_min`, firmware/cgm_link.py:
SNS-2's rates and predictions are of glucose over time, and records that arrive late or
in a burst, a backlog after a dropout, must not make a steep trend), else the arrival on
the monotonic clock (never the wall clock). The window starts over when that time base
changes or the sensor's time goes back (another session or transmitter). The window is RAM
only: after a reboot the trend is unknown until 3 new readings came. Predictions
extrapolate the same straight line from the newest reading; without a trend the
prediction is the newest reading itself.

Alerts, evaluated at each reading (condition alarms: raised when the condition holds at a
reading, cleared at the first reading where it does not):
  urgent low         reading <= 55 (always on, high priority)
  low / high         reading <= glucose_low / >= glucose_high
  rise / fall        trend >= +glucose_rate / <= -glucose_rate
  urgent low soon    reading > 55 and predicted <= 55 within 20 min
The optional ones are switched by the glucose_alerts bit mask (GA_*).
Sensor status: CGM_WARMUP raises sensor_warmup, CGM_EXPIRED raises sensor_expired; the next
reading clears both. Signal loss: once a reading came since boot, no reading for 20 min
(not while the sensor is warming up or expired); cleared by the next reading. Glucose
alarms keep their state while no readings come.

Suspend before low (setting suspend_before_low, off by default). Design: a basal-only
suspension flag, not a stop reason. While it is set the basal rate is 0 (profile or temp
basal; a temp basal keeps counting down); boluses are not affected: a running bolus goes
on and the user may start one (a bolus is a decision the user confirmed). At a reading,
with line = glucose_low + 20 and predicted = the prediction 30 min ahead:
  danger  = (predicted <= line and the trend is not rising) or reading <= glucose_low
  suspend when danger, delivery is running (no stop), and no wait is pending;
  resume by itself only with hysteresis (SNS-3), so sensor noise around the line cannot
  make it chatter: reading >= glucose_low + SBL_RESUME_MARGIN and predicted >=
  glucose_low + SBL_RESUME_AHEAD (rising, or already well above the low limit);
  a manual resume (the resume command) ends it and starts a 30-min wait without new
  suspensions; so does the SBL_MAX_MIN (2 h) limit; switching the setting off resumes.
Each suspension and resumption is logged (H_SBL) and sent as an event (EV_SBL); the
suspend_before_low alarm (low priority) is active while basal is suspended. The flag, its
start and the wait live in the pump's persistent state (S_SBL, S_SBL_S, S_SBL_WAIT_S, on
the monotonic clock) and are saved when they change: a reboot keeps basal suspended.
"""

from array import array

from firmware.compat import const
from firmware.layout import S_CGM_OFFSET, S_CGM_TX, S_MONO_S, S_SBL, S_SBL_S, S_SBL_WAIT_S
from protocol import spec as S  # per reading and cold paths: fewer globals (heap, issue 12)
from protocol.spec import (
    A_PAIRING_LOST,
    A_SIGNAL_LOSS,
    CGM_EXPIRED,
    CGM_READINGS,
    CGM_WARMUP,
    CGMF_LOST,
    CGMF_SBL,
    CGMF_SBL_WAIT,
    NO_TREND,
    SBL_MAX,
    SET_SENSOR_ID,
)

LOSS_S = S.SIGNAL_LOSS_MIN * 60
_TREND_N = const(3)  # readings the trend and the predictions use


class Cgm:
    def __init__(self, pump, radio, log):
        self.pump = pump
        self.st = pump.state
        # the ring of the last 24 h of readings: UTC minute and mg/dL of each, and the
        # trend window, built by _ring() (None: no sensor link and no reading on flash)
        self.minutes = self.values = self.rt = self.rv = None
        self.rx = None  # firmware/cgm_sensor.py, imported by plug() with a radio
        self.plug(radio)
        self.log = log  # History of readings on flash
        self.head = 0  # next write
        self.count = 0  # readings held (<= CGM_READINGS)
        self.rn = 0  # readings in the trend window (rt, rv: see _ring)
        self.rbase = 0  # rt's time: 0 monotonic seconds, 1 the sensor's (time offsets)
        self.last_s = 0  # monotonic second of the newest reading
        self.last = 0  # newest reading, mg/dL (0: none)
        self.sensor = 0  # CGMF_WARMUP or CGMF_EXPIRED while the sensor says so
        self.trend = NO_TREND  # mg/dL/min x 10
        self.pred20 = 0
        self.pred30 = 0
        self.readings = 0  # readings held: since boot plus those restored from flash

    def plug(self, radio):
        """Use `radio` as the sensor link. One that pairs (firmware/cgm_link.py) gets the
        sensor_id setting at each poll and reports pairing lost (SNS-4); other radios pair
        by themselves."""
        self.radio = radio
        self.pairs = radio is not None and hasattr(radio, "pairing_lost")
        self.timed = radio is not None and hasattr(radio, "sensor_min")
        if radio is not None:
            self._ring()
            # what the tick runs for a reading (firmware/cgm_sensor.py): imported here,
            # with the radio, never in the tick; a board without one never loads it
            import firmware.cgm_sensor

            self.rx = firmware.cgm_sensor

    def _ring(self):
        """The readings' ring (SNS-1), allocated once, before any tick: with a sensor link
        (plug) or readings on flash (restore). Readings come only through a sensor link,
        so a board with neither keeps none and saves its 1.7 kB of RAM (heap, issue 12:
        the Pico and ESP32 without a sensor UART); the trend window too."""
        if self.minutes is None:
            self.minutes = array("i", [0] * CGM_READINGS)  # UTC minute of each reading
            self.values = array("h", [0] * CGM_READINGS)  # mg/dL
            self.rt = array("i", [0] * _TREND_N)  # second of the last readings (see rbase)
            self.rv = array("i", [0] * _TREND_N)  # and their values, oldest first

    @property
    def sbl(self):
        """1 while basal is suspended before a low."""
        return self.st[S_SBL]

    # (the boot's restore of the readings: firmware/pump_boot.py restore_cgm)

    # ---------------------------------------------------------------- the 1-Hz poll
    def tick(self, dt):
        st = self.st
        now = st[S_MONO_S]
        if st[S_SBL_WAIT_S] >= 0 and now >= st[S_SBL_WAIT_S]:
            st[S_SBL_WAIT_S] = -1
        radio = self.radio
        al = self.pump.alarms
        if radio is not None:
            if self.pairs:
                radio.paired = self.pump.setting(SET_SENSOR_ID)
            v = radio.read()
            if v > 0:
                self.rx.reading(self, v)
            elif v == CGM_WARMUP or v == CGM_EXPIRED:
                self.rx.sensor_status(self, v)
            if self.pairs:
                al.set(A_PAIRING_LOST, radio.pairing_lost, radio.foreign_id)
                if radio.order_for != st[S_CGM_TX] or radio.last_offset + 1 != st[S_CGM_OFFSET]:
                    st[S_CGM_TX] = radio.order_for  # a reboot keeps the order (SNS-4)
                    st[S_CGM_OFFSET] = radio.last_offset + 1
                    self.pump._commit(0, 0, 0)
        age = now - self.last_s
        # compared with the alarm's state first: set() is a call (issue 12, Pump._check_battery)
        cond = self.readings > 0 and not self.sensor and age >= LOSS_S
        if cond != al.active[A_SIGNAL_LOSS]:
            al.set(A_SIGNAL_LOSS, cond, age // 60)
        if st[S_SBL] and now - st[S_SBL_S] >= S.SBL_MAX_MIN * 60:
            self.resume(SBL_MAX)

    def _keep(self, minute, v):
        """Put a reading in the ring (SNS-1): one per minute. True if it replaced the
        newest (same minute)."""
        newest = (self.head - 1) % CGM_READINGS
        if self.count and self.minutes[newest] == minute:
            self.values[newest] = v
            return True
        self.minutes[self.head] = minute
        self.values[self.head] = v
        self.head = (self.head + 1) % CGM_READINGS
        if self.count < CGM_READINGS:
            self.count += 1
        return False

    # ---------------------------------------------------------------- suspend before low
    def resume(self, reason):
        """End a suspension before low (SBL_* reason); manual and time-limit resumptions
        start the wait."""
        st = self.st
        if not st[S_SBL]:
            return
        st[S_SBL] = 0
        if reason == S.SBL_MANUAL or reason == SBL_MAX:
            st[S_SBL_WAIT_S] = st[S_MONO_S] + S.SBL_WAIT_MIN * 60
        pump = self.pump
        pump._commit(0, 0, 0)
        pump.alarms.clear(S.A_SBL, self.last)
        pump._log(S.H_SBL, 0, reason, self.last, self.pred30)
        pump.events.put(S.EV_SBL, 0, reason, self.last)

    # ---------------------------------------------------------------- readers
    def flags(self):
        f = self.sensor
        if self.pump.alarms.active[A_SIGNAL_LOSS]:
            f |= CGMF_LOST
        if self.st[S_SBL]:
            f |= CGMF_SBL
        if self.st[S_SBL_WAIT_S] >= 0:
            f |= CGMF_SBL_WAIT
        return f

    def age_min(self):
        """Minutes since the newest reading (0 if none)."""
        if not self.readings:
            return 0
        m = (self.st[S_MONO_S] - self.last_s) // 60
        return m if m < 65535 else 65535

    def reading(self, i):
        """(UTC minute, mg/dL) of the i-th reading held, oldest first (allocates: tests and
        host-side readers; the link reads the arrays)."""
        at = (self.head - self.count + i) % CGM_READINGS
        return self.minutes[at], self.values[at]

