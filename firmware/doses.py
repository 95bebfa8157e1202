"""Insulin delivered per 5 min of monotonic time, persisted (THR-6, THR-9, HIS-3).

Insulin on board, the 60-min bolus limit and the rolling 24-h total run on these rings, on
the pump's monotonic seconds (Pump.mono_s(): boot-independent, never moved by a clock
change, see docs/time-model.md). Two rings of 5-min buckets, indexed by bucket number
(mono_s // BUCKET_S) modulo their length:
  bolus  96 buckets (8 h, the longest insulin action): IOB and the 60-min window;
  total  289 buckets (basal + bolus; 24 h plus the bucket partly older): the 24-h window.
The bucket being filled lives in the pump's state array (S_BUCKET, S_BUCKET_BOLUS,
S_BUCKET_TOTAL), saved before every motor move; the rings hold closed buckets and are
saved (A/B slots) when a bucket with insulin closes or when a bucket with insulin leaves
a ring. A bucket is never counted twice nor lost at a power cut: the rings remember up
to which bucket they are complete (_D_UPTO); a state whose current bucket is older than
that was already closed into them.

Windows err toward more insulin (the patient's side): the 60-min window is the current
bucket plus 12 closed ones (60 to 65 min), the 24-h window the current plus 288 closed.
"""

from array import array

from firmware.compat import const
from firmware.store import Slots

# names other modules import, then private constants (no globals entry: heap, issue 12)
BUCKET_S = const(300)
BOLUS_N = const(96)
_TOTAL_N = const(289)
_HOUR_BUCKETS = const(12)
_D_UPTO = const(1)  # buckets below this number are closed into the rings
D_BOLUS = const(2)
_D_TOTAL = const(D_BOLUS + BOLUS_N)
DOSES_LEN = const(_D_TOTAL + _TOTAL_N)


class Doses:
    """`state`, `at`: the pump's state array; state[at], state[at + 1], state[at + 2] are
    the current bucket's number, bolus mU and total mU."""

    def __init__(self, storage, region_a, region_b, state, at, scratch=None):
        self.st = state
        self.at = at
        self.v = array("i", [0] * DOSES_LEN)
        self.slots = Slots(storage, region_a, region_b, self.v, (), scratch)
        self.sum_total = 0  # total of the closed buckets in the total ring
        # bolus of the _HOUR_BUCKETS closed buckets before the current one (the 60-min
        # window without the current bucket): kept wherever the rings or the current
        # bucket's number change (adopt, which follows every load, recomputes it; roll
        # moves it by one bucket or recomputes it after a gap), so a bolus command adds one
        # value instead of walking 12 buckets (issue 12). RAM only: every boot recomputes it.
        self.sum_hour = 0
        self.dirty = False  # the rings changed and a save failed: retry at the next roll
        # iob() of the last call and what it depended on: the rings' generation (counts
        # every change of the rings), the current bucket and its bolus, minute, DIA
        self.gen = 0
        self.iob_key = array("i", [-1] * 5)
        self.iob_mu = 0

    def load(self):
        """Load the rings. Returns (copies valid, blank) as Slots.load."""
        self.gen += 1
        valid, blank = self.slots.load()
        if not valid:
            v = self.v
            for i in range(DOSES_LEN):
                v[i] = 0
        self._sum()
        return valid, blank

    def _sum(self):
        v = self.v
        t = 0
        for i in range(_TOTAL_N):
            t += v[_D_TOTAL + i]
        self.sum_total = t

    def _sum_hour(self):
        """sum_hour from the bolus ring: the _HOUR_BUCKETS closed buckets before the
        current one. Allocation-free (roll calls it in the tick after a gap)."""
        v = self.v
        b = self.st[self.at]
        t = 0
        k = 1
        while k <= _HOUR_BUCKETS:
            t += v[D_BOLUS + (b - k) % BOLUS_N]
            k += 1
        self.sum_hour = t

    def adopt(self):
        """At boot: reconcile the saved current bucket with the rings."""
        self.gen += 1
        v = self.v
        st = self.st
        at = self.at
        if st[at] < v[_D_UPTO]:
            # the rings were saved with this bucket closed, the state was not saved after
            st[at] = v[_D_UPTO]
            st[at + 1] = 0
            st[at + 2] = 0
        else:
            self._clear(v[_D_UPTO], st[at])
        self._sum_hour()

    def _clear(self, first, last):
        """Empty the slots of buckets first..last (inclusive): they are not closed yet.
        Returns True if one held insulin."""
        v = self.v
        had = False
        n = last - first + 1
        if n > _TOTAL_N:
            n = _TOTAL_N
        b = last - n + 1
        while b <= last:
            i = D_BOLUS + b % BOLUS_N
            if v[i]:
                v[i] = 0
                had = True
            i = _D_TOTAL + b % _TOTAL_N
            if v[i]:
                self.sum_total -= v[i]
                v[i] = 0
                had = True
            b += 1
        return had

    def roll(self, now_s):
        """Close the current bucket if `now_s` is past it. Allocation-free (tick)."""
        st = self.st
        at = self.at
        bucket = now_s // BUCKET_S
        closed = st[at]
        if bucket <= closed:
            return
        v = self.v
        self.gen += 1
        changed = self.dirty
        if st[at + 1] or st[at + 2]:
            v[D_BOLUS + closed % BOLUS_N] += st[at + 1]
            v[_D_TOTAL + closed % _TOTAL_N] += st[at + 2]
            self.sum_total += st[at + 2]
            changed = True
        if self._clear(closed + 1, bucket):
            changed = True
        v[_D_UPTO] = bucket
        st[at] = bucket
        st[at + 1] = 0
        st[at + 2] = 0
        if bucket == closed + 1:
            # the window moves by one bucket: `closed` enters it, closed - 12 leaves (its
            # slot is intact: _clear emptied only the slot of `bucket`, 96 buckets on)
            self.sum_hour += (v[D_BOLUS + closed % BOLUS_N]
                              - v[D_BOLUS + (closed - _HOUR_BUCKETS) % BOLUS_N])
        else:
            self._sum_hour()  # a gap: buckets that never were current
        if changed:
            self.dirty = not self.slots.save()

    def bolus_hour(self):
        """Bolus mU of the current bucket and the 12 closed before it (>= 60 min)."""
        return self.sum_hour + self.st[self.at + 1]

    def total_day(self):
        """Insulin (basal + bolus) mU of the current bucket and the 288 before it."""
        return self.sum_total + self.st[self.at + 2]

    def bolus_at(self, k):
        """Bolus mU of the bucket k buckets before the current one (k < BOLUS_N)."""
        if k == 0:
            return self.st[self.at + 1]
        return self.v[D_BOLUS + (self.st[self.at] - k) % BOLUS_N]

    def iob(self, into_min, dia_min, permille):
        """Bolus insulin on board, mU (THR-9): each bucket's bolus weighted by
        `permille(age_min, dia_min)`, the age of a closed bucket being its youngest (IOB
        errs high, never low: no stacking). `into_min`: minutes into the current bucket.
        Walks back only as far as the insulin action lasts; the result is kept until one
        of its inputs changes (status requests repeat it). Allocation-free."""
        key = self.iob_key
        st = self.st
        bucket = st[self.at]
        now = st[self.at + 1]
        if (key[0] == self.gen and key[1] == bucket and key[2] == now
                and key[3] == into_min and key[4] == dia_min):
            return self.iob_mu
        v = self.v
        total = now  # the current bucket: age 0, all of it on board
        i = D_BOLUS + (bucket - 1) % BOLUS_N
        k = 1
        age = into_min  # of bucket k: (k - 1) * 5 min + into_min
        step = BUCKET_S // 60
        while k < BOLUS_N and age < dia_min:
            amount = v[i]
            if amount:
                total += amount * permille(age, dia_min) // 1000
            k += 1
            age += step
            i -= 1
            if i < D_BOLUS:
                i += BOLUS_N
        key[0] = self.gen
        key[1] = bucket
        key[2] = now
        key[3] = into_min
        key[4] = dia_min
        self.iob_mu = total
        return total
