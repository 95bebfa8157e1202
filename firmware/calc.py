"""The bolus calculator (THR-8): its three schedules and the suggestion.

Outside the tick: it delivers nothing, it only reads the pump (settings, local time, IOB,
the pulse size, max bolus) and programs its schedules in the settings array
(firmware/settings.py `values`, layout V_CALC in firmware/layout.py). Refusals go through
the pump (code returned, pump.detail).
"""

from array import array

from firmware.layout import CALC_STRIDE, S_LOCAL_MS, V_CALC
from protocol import spec as S  # all cold: one globals entry, not 22 (heap, issue 12)


class Calculator:
    """pump.calc: set_schedule, get_schedule, calculate (result in `out`)."""

    def __init__(self, pump):
        self.pump = pump
        # the last calculate(): see calculate(); made by the first (heap, issue 12)
        self.out = None

    def set_schedule(self, kind, starts, values, highs):
        """Program a bolus calculator schedule: segments start at 30-min slots `starts`
        (first 0, increasing) with `values` (CALC_CARB_RATIO: g/U x 10; CALC_SENSITIVITY:
        mg/dL per U; CALC_TARGET: low mg/dL, with `highs` the high ends). Refused whole if
        anything is wrong (detail: argument index 0 kind, 1 starts, 2 values, 3 highs)."""
        pump = self.pump
        pump.interaction()
        if kind < 0 or kind >= len(S.CALC_KINDS):
            return pump._refuse(S.E_BAD_ARG, 0)
        n = len(starts)
        if n < 1 or n > S.CALC_SEGMENTS or len(values) != n or starts[0] != 0:
            return pump._refuse(S.E_BAD_ARG, 1)
        if kind == S.CALC_TARGET and len(highs) != n:
            return pump._refuse(S.E_BAD_ARG, 3)
        lo, hi = S.CALC_RANGES[kind]
        for i in range(n):
            if starts[i] < 0 or starts[i] >= S.SLOTS or (i and starts[i] <= starts[i - 1]):
                return pump._refuse(S.E_BAD_ARG, 1)
            if values[i] < lo or values[i] > hi:
                return pump._refuse(S.E_OUT_OF_RANGE, 2)
            if kind == S.CALC_TARGET and (highs[i] < values[i] or highs[i] > hi):
                return pump._refuse(S.E_OUT_OF_RANGE, 3)
        settings = pump.settings
        v = settings.values
        old = array("i", v)
        base = V_CALC + kind * CALC_STRIDE
        v[base] = n
        for i in range(S.CALC_SEGMENTS):
            inside = i < n
            v[base + 1 + i] = starts[i] if inside else 0
            v[base + 1 + S.CALC_SEGMENTS + i] = values[i] if inside else 0
            high = highs[i] if inside and kind == S.CALC_TARGET else 0
            v[base + 1 + 2 * S.CALC_SEGMENTS + i] = high
        if not settings.save(old):
            return pump._refuse(S.E_STORAGE, 0)
        pump._log(S.H_CALC_SCHEDULE, kind, n, v[base + 1 + S.CALC_SEGMENTS], 0)
        return S.OK

    def get_schedule(self, kind):
        """(starts, values, highs) of a calculator schedule; None if not programmed."""
        pump = self.pump
        if kind < 0 or kind >= len(S.CALC_KINDS):
            return None
        v = pump.settings.values
        base = V_CALC + kind * CALC_STRIDE
        n = v[base]
        if not 1 <= n <= S.CALC_SEGMENTS:
            return None
        return ([v[base + 1 + i] for i in range(n)],
                [v[base + 1 + S.CALC_SEGMENTS + i] for i in range(n)],
                [v[base + 1 + 2 * S.CALC_SEGMENTS + i] for i in range(n)])

    def _segment(self, kind, slot):
        """Index into the settings of the segment of `kind` covering `slot`; -1 if unset."""
        pump = self.pump
        v = pump.settings.values
        base = V_CALC + kind * CALC_STRIDE
        n = v[base]
        if not 1 <= n <= S.CALC_SEGMENTS:
            return -1
        seg = 0
        while seg + 1 < n and v[base + 2 + seg] <= slot:
            seg += 1
        return base + 1 + S.CALC_SEGMENTS + seg

    def calculate(self, carbs_g, bg):
        """Bolus suggestion (THR-8) for `carbs_g` grams and blood glucose `bg` mg/dL (0: not
        given), at the current local time. Delivers nothing: the user confirms it with a
        separate bolus command. On OK, self.out holds, in mU unless noted:
          0 food        carbs * 10000 // carb ratio (g/U x 10), rounded down to 1 mU
          1 correction  toward the nearer edge of the target range: (bg - high) * 1000 //
                        sensitivity above it; minus ceil((low - bg) * 1000 / sensitivity)
                        below it (errs toward less insulin); 0 inside or without bg
          2 iob         insulin on board (iob(), THR-9), subtracted
          3 unrounded   food + correction - iob (may be negative)
          4 total       the suggestion: unrounded, at least 0, rounded DOWN to whole pulses
          5 flags       CALC_ROUNDED, CALC_NO_BG, CALC_FLOORED, CALC_OVER_MAX
          6..9          carb ratio, sensitivity, target low, target high used
        Refusals: E_OUT_OF_RANGE detail 0 (carbs) or 1 (bg); E_NOT_CONFIGURED detail =
        the CALC_* kind whose schedule is not programmed."""
        pump = self.pump
        if carbs_g < 0 or carbs_g > S.CALC_MAX_CARBS:
            return pump._refuse(S.E_OUT_OF_RANGE, 0)
        if bg != 0 and (bg < S.CALC_BG_MIN or bg > S.CALC_BG_MAX):
            return pump._refuse(S.E_OUT_OF_RANGE, 1)
        slot = pump.state[S_LOCAL_MS] // S.SLOT_MS
        at = array("i", [0, 0, 0])
        for kind in range(3):
            at[kind] = self._segment(kind, slot)
            if at[kind] < 0:
                return pump._refuse(S.E_NOT_CONFIGURED, kind)
        v = pump.settings.values
        ratio = v[at[S.CALC_CARB_RATIO]]
        isf = v[at[S.CALC_SENSITIVITY]]
        t_low = v[at[S.CALC_TARGET]]
        t_high = v[at[S.CALC_TARGET] + S.CALC_SEGMENTS]
        flags = 0
        food = carbs_g * 10000 // ratio
        if bg == 0:
            corr = 0
            flags |= S.CALC_NO_BG
        elif bg > t_high:
            corr = (bg - t_high) * 1000 // isf
        elif bg < t_low:
            corr = -(((t_low - bg) * 1000 + isf - 1) // isf)
        else:
            corr = 0
        iob = pump.iob()
        raw = food + corr - iob
        total = raw
        if total < 0:
            total = 0
            flags |= S.CALC_FLOORED
        if total % pump.pulse:
            flags |= S.CALC_ROUNDED
            total -= total % pump.pulse
        if total > pump.setting(S.SET_MAX_BOLUS):
            flags |= S.CALC_OVER_MAX
        out = self.out
        if out is None:
            out = self.out = array("i", [0] * 10)
        out[0] = food
        out[1] = corr
        out[2] = iob
        out[3] = raw
        out[4] = total
        out[5] = flags
        out[6] = ratio
        out[7] = isf
        out[8] = t_low
        out[9] = t_high
        pump.detail = total
        return S.OK
