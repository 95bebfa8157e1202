"""Store level (HIS-1, HIS-2, THR-10): History ring records, A/B Slots with generation and
CRC, daily Totals, on the fake flash with torn, lost and completed writes at power cuts."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards.fakes import PowerCut, Storage
from firmware.store import REC_SIZE, TOT_SIZE, TOTAL_DAYS, History, Slots, Totals

HIST = 4
SIZES = (64, 64, 64, 64, REC_SIZE * 8, TOT_SIZE * TOTAL_DAYS)
BEFORE, TORN, AFTER = 0, 1, 2


def storage():
    return Storage(SIZES)


def rec(h, seq):
    buf = bytearray(REC_SIZE)
    return h.decode(buf) if h.read(seq, buf) else None


def append_n(h, n, first=0):
    for i in range(first, first + n):
        assert h.append(1000 + i, 3, i % 256, i, -i, 1 << 29) == h.next_seq - 1


def cut_next_write(s, mode):
    s.cut_at = s.writes + 1
    s.cut_mode = mode


# ----------------------------------------------------------------------------- History
@pytest.mark.req("HIS-1", "HIS-2")
def test_a_write_the_flash_silently_dropped_never_reads_as_a_newer_record():
    """A faulty flash that accepts a write and keeps the old bytes leaves a record of an
    earlier lap, with a valid CRC, in the slot: reading the new sequence number there must
    say "not stored", not hand back the old record (mutant history-read-other-lap)."""
    s = storage()
    h = History(s, 4)
    append_n(h, 8)  # the region holds 8 records: full
    real_write = s.write
    s.write = lambda region, offset, buf: None  # the flash says yes and keeps the old bytes
    seq = h.append(2000, 3, 1, 1, 1, 1)
    s.write = real_write
    assert seq == 9 and h.next_seq == 10
    assert rec(h, 9) is None  # slot 0 still holds record 1
    assert rec(h, 8)[4] == 7  # the others read as before
    assert rec(h, 1) is None  # and record 1 is older than one lap


@pytest.mark.req("HIS-1")
def test_history_records_round_trip():
    s = storage()
    h = History(s, HIST)
    assert h.capacity == 8
    assert h.scan() == 0 and (h.first_seq, h.next_seq) == (1, 1)
    assert h.append(0, 1, 0, 0, 1, 0) == 1
    assert h.append(2**32 - 1, 255, 255, -(2**31), 2**31 - 1, -1) == 2
    assert rec(h, 1) == (1, 0, 1, 0, 0, 1, 0)
    assert rec(h, 2) == (2, 2**32 - 1, 255, 255, -(2**31), 2**31 - 1, -1)
    assert rec(h, 0) is None and rec(h, 3) is None
    h2 = History(s, HIST)
    assert h2.scan() == 2
    assert (h2.first_seq, h2.next_seq) == (1, 3)


@pytest.mark.req("HIS-1")
@pytest.mark.parametrize("n", [7, 8, 9, 16, 21, 800])
def test_history_ring_wrap(n):
    s = storage()
    h = History(s, HIST)
    append_n(h, n)
    assert h.next_seq == n + 1
    assert h.first_seq == max(1, n + 1 - 8)
    for seq in range(1, n + 1):
        r = rec(h, seq)
        if seq < h.first_seq:
            assert r is None
        else:
            assert r == (seq, 1000 + seq - 1, 3, (seq - 1) % 256, seq - 1, 1 - seq, 1 << 29)
    h2 = History(s, HIST)
    assert h2.scan() == min(n, 8)
    assert (h2.first_seq, h2.next_seq) == (h.first_seq, h.next_seq)


@pytest.mark.req("HIS-1", "HIS-2")
@pytest.mark.parametrize("mode", [BEFORE, TORN, AFTER])
@pytest.mark.parametrize("n", [0, 3, 8, 13])
def test_history_cut_during_append(mode, n):
    """Power dies while record n+1 is written (n before it; 8 slots, so it may overwrite
    the oldest). The record is there whole or not at all; the rest is untouched."""
    s = storage()
    h = History(s, HIST)
    append_n(h, n)
    cut_next_write(s, mode)
    with pytest.raises(PowerCut):
        h.append(5, 9, 9, 9, 9, 9)
    h = History(s, HIST)
    h.scan()
    written = mode == AFTER
    assert h.next_seq == n + 1 + written
    if written:
        assert rec(h, n + 1) == (n + 1, 5, 9, 9, 9, 9, 9)
    # the oldest still listed is readable; a torn overwrite of the oldest just drops it
    for seq in range(h.first_seq, n + 1):
        assert rec(h, seq)[0] == seq
    if mode == TORN and n >= 8:
        assert h.first_seq == n - 6  # the torn write took the oldest record's slot
    else:
        assert h.first_seq == max(1, n + 1 + written - 8)
    # appending goes on with consecutive numbers, over the torn slot
    assert h.append(6, 1, 0, 0, 0, 0) == n + 1 + written
    assert rec(h, n + 1 + written) == (n + 1 + written, 6, 1, 0, 0, 0, 0)


@pytest.mark.req("HIS-1")
def test_history_write_error_is_counted_not_raised():
    s = storage()
    h = History(s, HIST)
    append_n(h, 2)
    s.fail = True
    assert h.append(1, 1, 1, 1, 1, 1) == 0
    assert h.write_errors == 1 and h.next_seq == 3
    s.fail = False
    assert h.append(1, 1, 1, 1, 1, 1) == 3


@pytest.mark.req("HIS-1", "HIS-2")
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 30), cut=st.integers(1, 31), mode=st.sampled_from([BEFORE, TORN, AFTER]),
       flips=st.lists(st.tuples(st.integers(0, 7), st.integers(0, REC_SIZE - 1)), max_size=3))
def test_history_property_cut_and_corruption(n, cut, mode, flips):
    """Whatever the cut and whatever bytes rot, every record read back is one that was
    written, under its own sequence number, and appends continue without reusing a number
    that a readable record holds."""
    s = storage()
    h = History(s, HIST)
    written = {}
    s.cut_at = cut
    s.cut_mode = mode
    try:
        for i in range(n):
            seq = h.next_seq
            h.append(i, 2, 0, i, 0, 0)
            written[seq] = (seq, i, 2, 0, i, 0, 0)
    except PowerCut:
        if mode == AFTER:
            written[seq] = (seq, i, 2, 0, i, 0, 0)
    s.cut_at = -1
    for slot, byte in flips:
        s.regions[HIST][slot * REC_SIZE + byte] ^= 0x41
    h = History(s, HIST)
    h.scan()
    readable = {}
    for seq in range(h.first_seq, h.next_seq):
        r = rec(h, seq)
        if r is not None:
            assert r == written[seq]
            readable[seq] = r
    if not flips and written:
        assert h.next_seq == max(written) + 1
        assert sorted(readable) == list(range(h.first_seq, h.next_seq))
    seq = h.append(99, 1, 0, 0, 0, 0)
    assert seq not in readable and seq > max(readable, default=0)


# ------------------------------------------------------------------------------- Slots
def slots(s, n=6):
    return Slots(s, 0, 1, array("i", [0] * n))


@pytest.mark.req("HIS-2")
def test_slots_round_trip_generation_and_alternation():
    s = storage()
    a = slots(s)
    assert a.load() == (0, True)  # blank flash
    newest = []
    for k in range(1, 6):
        for i in range(1, 6):
            a.values[i] = k * 100 + i - (1 << 30 if i == 5 else 0)
        assert a.save()
        assert a.values[0] == k  # generation
        newest.append(a.newest)
    assert newest == [0, 1, 0, 1, 0]
    b = slots(s)
    assert b.load() == (2, False)
    assert list(b.values) == [5, 501, 502, 503, 504, 505 - (1 << 30)]
    assert b.newest == 0
    assert b.save() and b.newest == 1 and b.values[0] == 6


@pytest.mark.req("HIS-2")
def test_slots_sharing_one_scratch_keep_their_own_values():
    """The pump's state, settings and dose rings share one save/load image (issue 12):
    each pair still saves and loads its own values; a scratch too small is refused at once
    (a shorter slice would only fail at the first save)."""
    s = storage()
    scratch = bytearray(4 * 6 + 2)
    a = Slots(s, 0, 1, array("i", [0] * 6), (), scratch)
    b = Slots(s, 2, 3, array("i", [0] * 4), (), scratch)  # a view of the first 18 bytes
    for i in range(1, 6):
        a.values[i] = 10 + i
    for i in range(1, 4):
        b.values[i] = -i
    assert a.save() and b.save() and a.save()
    a2 = Slots(s, 0, 1, array("i", [0] * 6), (), scratch)
    b2 = Slots(s, 2, 3, array("i", [0] * 4), (), scratch)
    assert a2.load() == (2, False) and b2.load() == (1, False)
    assert list(a2.values) == [2, 11, 12, 13, 14, 15] and list(b2.values) == [1, -1, -2, -3]
    with pytest.raises(ValueError, match="scratch smaller"):
        Slots(s, 0, 1, array("i", [0] * 7), (), scratch)


@pytest.mark.req("HIS-2")
@pytest.mark.parametrize("mode", [BEFORE, TORN, AFTER])
@pytest.mark.parametrize("saves", [0, 1, 2, 5])
def test_slots_torn_write_uses_other_copy(mode, saves):
    s = storage()
    a = slots(s)
    for k in range(saves):
        a.values[1] = k
        a.values[2] = -k
        assert a.save()
    a.values[1] = 77
    a.values[2] = -77
    cut_next_write(s, mode)
    with pytest.raises(PowerCut):
        a.save()
    b = slots(s)
    valid, blank = b.load()
    if mode == AFTER:
        assert list(b.values)[:3] == [saves + 1, 77, -77]
        assert valid == min(saves + 1, 2)
    elif saves == 0:
        assert valid == 0 and blank == (mode == BEFORE)
    else:
        assert list(b.values)[:3] == [saves, saves - 1, 1 - saves]
        assert valid == (1 if mode == TORN or saves == 1 else 2)
    s.cut_at = -1
    b.values[1] = 5
    assert b.save()
    c = slots(s)
    assert c.load()[0] >= 1 and c.values[1] == 5


@pytest.mark.req("HIS-2")
@pytest.mark.parametrize("gen_a,gen_b", [(10, 9), (9, 10), (1, 2), (2, 1), (1000, 7)])
def test_slots_generation_picks_newest(gen_a, gen_b):
    s = storage()
    writer = slots(s)
    for which, gen in ((0, gen_a), (1, gen_b)):
        writer.values[0] = gen - 1
        writer.values[1] = gen * 10
        writer.newest = 1 - which  # save() writes the copy not holding the newest
        assert writer.save()
    r = slots(s)
    assert r.load() == (2, False)
    top = max(gen_a, gen_b)
    assert (r.values[0], r.values[1]) == (top, top * 10)
    assert r.newest == (0 if gen_a > gen_b else 1)
    # the next save replaces the older copy
    r.values[1] = 1
    assert r.save()
    assert r.newest == (1 if gen_a > gen_b else 0)
    q = slots(s)
    q.load()
    assert (q.values[0], q.values[1]) == (top + 1, 1)


@pytest.mark.req("HIS-2")
def test_slots_corrupt_copies():
    s = storage()
    a = slots(s)
    a.values[1] = 1
    assert a.save()  # copy A
    a.values[1] = 2
    assert a.save()  # copy B
    assert a.newest == 1
    s.regions[1][5] ^= 1  # the newest copy rots: the older one is used
    b = slots(s)
    assert b.load() == (1, False) and b.values[1] == 1
    s.regions[0][20] ^= 1  # both bad: not blank, nothing loaded
    c = slots(s)
    assert c.load() == (0, False)
    assert list(c.values) == [0] * 6


@pytest.mark.req("HIS-2")
def test_slots_write_error_keeps_generation():
    s = storage()
    a = slots(s)
    assert a.save()
    s.fail = True
    a.values[1] = 9
    assert not a.save()
    assert a.values[0] == 1 and a.write_errors == 1
    s.fail = False
    assert a.save() and a.values[0] == 2


@pytest.mark.req("HIS-2")
@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=12),
       cut=st.integers(1, 13), mode=st.sampled_from([BEFORE, TORN, AFTER]))
def test_slots_property_atomic(values, cut, mode):
    """Saves of successive values, power cut at any write: a load yields exactly the last
    save that completed (or the one cut after writing), never a mix."""
    s = storage()
    a = slots(s, 3)
    s.cut_at = cut
    s.cut_mode = mode
    done = None
    try:
        for v in values:
            a.values[1] = v
            a.values[2] = ~v
            a.save()
            done = v
    except PowerCut:
        if mode == AFTER:
            done = v
    b = slots(s, 3)
    valid, _ = b.load()
    if done is None:
        assert valid == 0
    else:
        assert (b.values[1], b.values[2]) == (done, ~done)


# ------------------------------------------------------------------------------ Totals
@pytest.mark.req("THR-10", "HIS-2")
def test_totals_ring_of_days():
    s = storage()
    t = Totals(s, 5)
    assert TOTAL_DAYS >= 90
    assert t.load(2511) is None
    for day in range(2400, 2400 + TOTAL_DAYS):
        assert t.save(day, day, 2 * day, 3)
    for day in range(2400, 2400 + TOTAL_DAYS):
        assert t.load(day) == (day, 2 * day, 3)
    assert t.save(2400 + TOTAL_DAYS, 1, 2, 3)  # the oldest day is replaced
    assert t.load(2400) is None
    assert t.load(2400 + TOTAL_DAYS) == (1, 2, 3)
    assert t.save(2401, 7, 8, 9)  # a day saved again (clock set back) is overwritten
    assert Totals(s, 5).load(2401) == (7, 8, 9)


@pytest.mark.req("THR-10", "HIS-2")
@pytest.mark.parametrize("mode", [BEFORE, TORN, AFTER])
def test_totals_cut_and_corruption(mode):
    s = storage()
    t = Totals(s, 5)
    assert t.save(2510, 100, 200, 0)
    cut_next_write(s, mode)
    with pytest.raises(PowerCut):
        t.save(2511, 24000, 13000, 600)
    expected = {BEFORE: None, TORN: None, AFTER: (24000, 13000, 600)}[mode]
    assert Totals(s, 5).load(2511) == expected
    assert Totals(s, 5).load(2510) == (100, 200, 0)
    s.regions[5][(2510 % TOTAL_DAYS) * TOT_SIZE + 6] ^= 0x08
    assert Totals(s, 5).load(2510) is None
    s.fail = True
    assert not t.save(2512, 1, 1, 1)
