"""The host's CGM transmitter fed by the pump (SNS-4): calibration gaps of the simulated
sensor, the insulin the pump reports delivered, pacing by the pump's clock, and
`pumpctl sensor --patient --fast` against the emulator (the virtual patient's glucose
on the sensor pty, the pump's insulin into the patient)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from host_tools import client as C
from host_tools import pumpctl
from host_tools.patient import simglucose_available
from host_tools.sensor import (
    DEFAULT_TX,
    DeliveredInsulin,
    NotPaired,
    SensorError,
    SensorSession,
    play,
)
from protocol import cgm_record as H
from protocol import spec as S


def _values(session, minutes):
    """minute -> mg/dL sent (None: nothing sent, "NaN": no glucose yet)."""
    out = {}
    for m in range(0, minutes, 5):
        rec = session.record(m)
        if rec is not None:
            g = H.sfloat_value(H.parse_record(rec).glucose)
            out[m] = "NaN" if g is None else g
        else:
            out[m] = None
    return out


# ----------------------------------------------------------------------------- calibration gaps
@pytest.mark.req("SNS-4")
def test_calibration_gaps_at_set_intervals_with_seeded_lengths():
    s = SensorSession(lambda m: 120.0, warmup_min=10, calibration_every_min=60,
                      calibration_gap_min=30, seed=4)
    sent = _values(s, 400)
    silent = [m for m, v in sent.items() if v is None]
    # gaps start at warm-up end + k * 60 (70, 130, ...); their lengths come from seed 4
    gaps = [s.calibration_gap(k) for k in range(1, 7)]
    assert [a for a, _ in gaps] == [70, 130, 190, 250, 310, 370]
    assert [b - a for a, b in gaps] == [30, 20, 15, 25, 25, 25]  # 5 x randint(1, 6)
    assert silent == [m for a, b in gaps for m in range(a, min(b, 400), 5)]
    assert s.uncalibrated == len(silent) and s.sent == 80 - 2 - len(silent)
    assert {v for m, v in sent.items() if m >= 10 and v is not None} == {120}
    assert (sent[0], sent[5]) == ("NaN", "NaN")  # warm-up: glucose NaN, not a gap
    again = SensorSession(lambda m: 120.0, warmup_min=10, calibration_every_min=60,
                          calibration_gap_min=30, seed=4)
    assert _values(again, 400) == sent
    other = SensorSession(lambda m: 120.0, warmup_min=10, calibration_every_min=60,
                          calibration_gap_min=30, seed=5)
    assert [other.calibration_gap(k) for k in range(1, 7)] != gaps


@pytest.mark.req("SNS-4")
def test_calibration_gaps_do_not_change_the_dropout_stream():
    """The gaps have their own random stream: the same seed drops the same readings."""
    plain = SensorSession(lambda m: 100.0, dropout=0.3, seed=9)
    gapped = SensorSession(lambda m: 100.0, dropout=0.3, seed=9, calibration_every_min=120,
                           calibration_gap_min=20)
    a, b = _values(plain, 600), _values(gapped, 600)
    assert plain.dropped == gapped.dropped > 0
    assert all(b[m] is None for m in a if a[m] is None)  # every dropout is still one
    assert gapped.uncalibrated > 0
    assert [m for m in a if a[m] is not None and b[m] is None] and all(
        gapped.in_calibration_gap(m) for m in a if a[m] is not None and b[m] is None)


def test_calibration_gap_bounds_are_checked():
    with pytest.raises(ValueError, match="calibration gap"):
        SensorSession(lambda m: 100.0, calibration_every_min=30, calibration_gap_min=30)
    with pytest.raises(ValueError, match="calibration gap"):
        SensorSession(lambda m: 100.0, calibration_every_min=60, calibration_gap_min=4)


# ----------------------------------------------------------------------------- delivered insulin
class FakePump:
    """A pump's protocol answers, enough for DeliveredInsulin and PumpPacer: a clock that
    moves `step_s` per status query, basal delivered at `rate_mu_h`, daily totals."""

    def __init__(self, board=S.BOARD_PICO, step_s=40, rate_mu_h=1200, sensor_id=DEFAULT_TX,
                 utc=86400 * 100 - 600):
        self.info = SimpleNamespace(board=board)
        self.step_s, self.rate, self.utc = step_s, rate_mu_h, utc
        self.days: dict[int, int] = {}  # local day -> basal mU delivered
        self.settings = {"sensor_id": sensor_id}
        self.frames = self.accepted = 0
        self.stats_asked = 0

    def status(self):
        if not hasattr(self, "start_utc"):
            self.start_utc = self.utc + self.step_s  # the first answer: the session's start
        self.utc += self.step_s
        day = self.utc // 86400
        self.days[day] = self.days.get(day, 0) + self.rate * self.step_s // 3600
        return SimpleNamespace(utc=self.utc, local_day=day, basal_today=self.days[day],
                               bolus_today=0)

    def get_totals(self, day):
        return C.Totals(day, day in self.days, self.days.get(day, 0), 0, 0)

    def get_settings(self):
        return dict(self.settings)

    def get_sensor_stats(self):
        self.stats_asked += 1
        return SimpleNamespace(frames=self.frames, accepted=self.accepted, foreign=0,
                               duplicate=0, out_of_order=0, sensor_id=DEFAULT_TX)


@pytest.mark.req("SNS-4")
def test_delivered_insulin_across_the_pump_s_midnight():
    pump = FakePump(step_s=300, rate_mu_h=1200)  # 100 mU per status
    ins = DeliveredInsulin(pump)
    got = [ins.since_last(pump.status()) for _ in range(4)]
    assert got == [100, 100, 100, 100]  # the second status of these crossed midnight
    assert ins.total == 400 and ins.day == pump.utc // 86400
    day = ins.day
    st = SimpleNamespace(local_day=day - 1, basal_today=5000, bolus_today=0)
    assert ins.since_last(st) == 0  # clock set back a day: its insulin was counted before
    fresh = FakePump()  # a pump without daily totals of day 7 (a fresh flash)
    ins = DeliveredInsulin(fresh, SimpleNamespace(local_day=7, basal_today=100, bolus_today=0))
    assert ins.since_last(SimpleNamespace(local_day=8, basal_today=300, bolus_today=200)) == 500
    fresh.days[8] = 900  # day 8 ended with 900 mU: 400 more after the last look
    assert ins.since_last(SimpleNamespace(local_day=9, basal_today=50, bolus_today=0)) == 450
    assert ins.total == 950


class FakeTx:
    tx_id = DEFAULT_TX

    def __init__(self, pump):
        self.pump = pump
        self.sent: list[bytes] = []

    def send(self, record):
        self.sent.append(record)
        self.pump.frames += 1
        self.pump.accepted += 1


@pytest.mark.req("SNS-4")
def test_paced_by_a_board_s_clock_fast_falls_back_to_real_time():
    """A board (not the emulator): --fast says it cannot hurry the pump, and each reading
    waits until the pump's own clock moved 5 minutes; the insulin is the pump's."""
    pump = FakePump(board=S.BOARD_PICO, step_s=40, rate_mu_h=1200)
    tx = FakeTx(pump)
    said: list[str] = []
    session = SensorSession(lambda m: 100.0 + m)
    steps = list(play(session, tx, 20, pump=pump, fast=True, say=said.append,
                      sleep=lambda s: None))
    assert len(said) == 1 and "pico" in said[0] and "real time" in said[0]
    assert [r.minute for r in steps] == [0, 5, 10, 15]
    assert all(r.taken for r in steps) and len(tx.sent) == 4
    assert [H.sfloat_value(H.parse_record(b).glucose) for b in tx.sent] == [100, 105, 110, 115]
    # the pump's clock moves 40 s (13 mU of basal) per status: the last reading waited for
    # 15 minutes of pump time, and all the insulin after the start reached the readings
    assert 900 <= pump.utc - pump.start_utc < 940
    assert sum(r.insulin_mu for r in steps) == 13 * ((pump.utc - pump.start_utc) // 40)
    assert all(r.insulin_mu >= 7 * 13 for r in steps[1:])  # about 5 minutes each


def test_play_refuses_an_unpaired_pump_and_reports_a_foreign_drop():
    pump = FakePump(sensor_id=77)
    with pytest.raises(NotPaired, match="paired with transmitter 77, not"):
        list(play(SensorSession(lambda m: 100.0), FakeTx(pump), 10, pump=pump,
                  sleep=lambda s: None))

    class Foreign(FakePump):
        def get_sensor_stats(self):
            st = super().get_sensor_stats()
            st.foreign = self.frames
            st.accepted = 0
            return st

    pump = Foreign()
    with pytest.raises(SensorError, match="settings set sensor_id"):
        list(play(SensorSession(lambda m: 100.0), FakeTx(pump), 10, pump=pump,
                  sleep=lambda s: None))

    class Deaf(FakePump):
        def get_sensor_stats(self):
            st = super().get_sensor_stats()
            st.frames = 0
            return st

    pump = Deaf()
    with pytest.raises(SensorError, match="did not take the reading of minute 0"):
        list(play(SensorSession(lambda m: 100.0), FakeTx(pump), 10, pump=pump,
                  sleep=lambda s: None))


# ----------------------------------------------------------------------------- command line
NEED_MODEL = ("unknown virtual patient 'adult#042'", "calibration gap", "nothing to play")


def test_pumpctl_sensor_patient_bad_input(capsys):
    cases = [
        (["--patient", "adult#001"], "--patient needs --minutes"),
        (["--patient", "adult#001", "--trace", "t.csv", "--minutes", "10"], "not allowed with"),
        (["--trace", "t.csv", "--scenario", "m.csv"], "need --patient"),
        (["--patient", "adult#042", "--minutes", "10", "--pump-port", "loop://"],
         "unknown virtual patient 'adult#042'"),
        (["--patient", "adult#001", "--minutes", "10", "--calibrate-every", "20",
          "--calibration-gap", "20", "--pump-port", "loop://"], "calibration gap"),
        (["--patient", "adult#001", "--minutes", "0"], "--minutes must be 1 or more"),
        (["--patient", "adult#001", "--minutes", "10", "--from", "7"], "multiple of 5"),
        (["--patient", "adult#001", "--expiry", "60", "--from", "100"], "nothing to play"),
    ]
    for extra, message in cases:
        if message in NEED_MODEL and not simglucose_available():
            continue  # checked after the patient model is built
        code = pumpctl.main(["sensor", "--port", "loop://", *extra])
        err = capsys.readouterr().err
        assert code == pumpctl.EXIT_BAD_INPUT, (extra, err)
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- the emulator
LOADED_S = 3.0  # answer timeout: the test machines are shared and busy


def _run_patient(tmp_path, name, *, bolus_mu=0, lockstep=True, capsys=None, after=None):
    """An emulator with its sensor link on a pty, set up and paired; `pumpctl sensor
    --patient adult#001 --fast` for 2 hours; then `after(emu)`. -> (the JSON lines, the
    pump's CGM readings, its sensor-link statistics, stderr)."""
    from host_tools.launch import launch
    from tests.test_emulator import set_up

    emu = launch(tmp_path / name, lockstep=lockstep, seed=11, sensor=True)
    try:
        key = C.load_key(emu.key_path)
        with C.connect(emu.port, key=key, timeout=LOADED_S, retries=3) as pump:
            set_up(pump)
            pump.set_setting("sensor_id", DEFAULT_TX)
            if bolus_mu:
                pump.bolus(bolus_mu)  # delivered while the sensor session runs the clock
        code = pumpctl.main(["--json", "--timeout", str(LOADED_S), "sensor", "--port",
                             emu.sensor_port, "--patient", "adult#001", "--fast", "--minutes",
                             "120", "--pump-port", emu.port, "--pump-key", str(emu.key_path)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        lines = [json.loads(line) for line in captured.out.splitlines()]
        with C.connect(emu.port, key=key, timeout=LOADED_S, retries=3) as pump:
            readings = pump.get_cgm(0)
            stats = pump.get_sensor_stats()
        if after is not None:
            after(emu)
        return lines, readings, stats, captured.err
    finally:
        emu.close()


@pytest.mark.req("SNS-4", "HW-3", "SNS-1")
@pytest.mark.skipif(not simglucose_available(), reason="needs simglucose (the patient extra)")
def test_pumpctl_sensor_patient_fed_by_the_emulated_pump(tmp_path, capsys):
    """The pump's CGM readings are the patient's glucose, one per 5 virtual minutes; a
    5 U bolus the pump delivers goes into the patient and lowers its glucose."""
    again = []

    def run_again(emu):
        """A second session on the same pump: its earlier offsets refuse minute 0 with a
        one-line error; --from continues the session past them."""
        base = ["--timeout", str(LOADED_S), "sensor", "--port", emu.sensor_port, "--patient",
                "adult#001", "--fast", "--pump-port", emu.port, "--pump-key",
                str(emu.key_path), "--minutes", "10"]
        again.append((pumpctl.main(base), capsys.readouterr()))
        again.append((pumpctl.main(["--json", *base, "--from", "120"]), capsys.readouterr()))
        again.append((pumpctl.main([*base, "--tx", "99"]), capsys.readouterr()))

    basal, readings_a, stats_a, err_a = _run_patient(tmp_path, "a", lockstep=False,
                                                     capsys=capsys, after=run_again)
    (code, cap), (code2, cap2), (code3, cap3) = again
    assert code3 == pumpctl.EXIT_BAD_INPUT and len(cap3.err.splitlines()) == 1
    assert f"paired with transmitter {DEFAULT_TX}, not 99" in cap3.err and not cap3.out
    assert code == pumpctl.EXIT_LINK and len(cap.err.splitlines()) == 1
    assert "old time offset" in cap.err and "--from" in cap.err and "Traceback" not in cap.err
    assert code2 == 0, cap2.err
    assert [(d["minute"], d["taken"]) for d in map(json.loads, cap2.out.splitlines())] == [
        (120, True), (125, True)]
    bolus, readings_b, stats_b, _ = _run_patient(tmp_path, "b", bolus_mu=5000, capsys=capsys)
    assert "lockstep" in err_a  # --fast put the real-time emulator's clock in lockstep
    for lines, readings, stats in ((basal, readings_a, stats_a), (bolus, readings_b, stats_b)):
        assert [d["minute"] for d in lines] == list(range(0, 120, 5))
        assert all(d["sent"] and d["taken"] for d in lines)
        sent = [d["mg_dl"] for d in lines]
        assert sent == [round(d["glucose"]) for d in lines]  # no noise: the patient's value
        assert [r.mg_dl for r in readings] == sent  # the pump holds what the patient gave
        minutes = [r.minute for r in readings]
        assert [m - minutes[0] for m in minutes] == list(range(0, 120, 5))  # in pump time
        assert (stats.frames, stats.accepted) == (24, 24)
    units_a = sum(d["insulin_mu"] for d in basal)
    units_b = sum(d["insulin_mu"] for d in bolus)
    assert 1500 <= units_a <= 2100  # 1.0 U/h of basal for 115 minutes, in 50-mU pulses
    assert abs(units_b - units_a - 5000) <= 50  # the bolus, all of it, into the patient
    assert basal[0]["glucose"] == bolus[0]["glucose"]  # the same patient at the start
    assert abs(basal[-1]["glucose"] - basal[0]["glucose"]) < 5  # basal alone: steady
    assert bolus[-1]["glucose"] < basal[-1]["glucose"] - 10  # the bolus lowered it
    falls = [b["glucose"] - a["glucose"] for a, b in zip(bolus, bolus[1:], strict=False)]
    assert all(f < 0.1 for f in falls[6:])  # and keeps it falling


@pytest.mark.req("SNS-4", "SNS-2")
def test_a_calibration_gap_on_the_emulator_raises_signal_loss_and_the_next_reading_clears_it(
        tmp_path, capsys):
    """A trace paced by the emulated pump (--fast) with a seeded 30-minute calibration gap
    from minute 60 (seed 4, as above): the pump hears nothing for 35 minutes, raises signal
    loss 20 minutes after the last reading and clears it with the first one after the gap."""
    from hil_tests.kit import history
    from host_tools.launch import launch
    from tests.test_emulator import set_up

    trace = tmp_path / "flat.csv"
    trace.write_text("minute,mg_dl\n0,120\n")
    emu = launch(tmp_path / "emu", lockstep=True, seed=11, sensor=True)
    try:
        key = C.load_key(emu.key_path)
        with C.connect(emu.port, key=key, timeout=LOADED_S, retries=3) as pump:
            set_up(pump)
            pump.set_setting("sensor_id", DEFAULT_TX)
            first_seq = pump.status().history_next
        code = pumpctl.main(["--json", "--timeout", str(LOADED_S), "sensor", "--port",
                             emu.sensor_port, "--trace", str(trace), "--minutes", "120",
                             "--calibrate-every", "60", "--calibration-gap", "30", "--seed",
                             "4", "--fast", "--pump-port", emu.port, "--pump-key",
                             str(emu.key_path)])
        cap = capsys.readouterr()
        assert code == 0, cap.err
        lines = [json.loads(line) for line in cap.out.splitlines()]
        assert [d["minute"] for d in lines if not d["sent"]] == [60, 65, 70, 75, 80, 85]
        assert all(d["taken"] for d in lines if d["sent"])
        assert "6 in calibration gaps" in cap.err
        with C.connect(emu.port, key=key, timeout=LOADED_S, retries=3) as pump:
            readings = pump.get_cgm(0)
            recs = history(pump, first_seq)
    finally:
        emu.close()
    start = readings[0].minute * 60
    assert [r.minute * 60 - start for r in readings] == [m * 60 for m in
                                                         [*range(0, 60, 5), *range(90, 120, 5)]]
    loss = [(r.arg, r.time - start) for r in recs
            if r.kind == S.H_ALARM and r.v1 == S.A_SIGNAL_LOSS]
    # raised, cleared by the reading, and shown until acknowledged (ALM: ALARM_UNACKED)
    assert [a for a, _ in loss] == [S.ALARM_RAISED, S.ALARM_CLEARED, S.ALARM_UNACKED]
    assert 75 * 60 <= loss[0][1] <= 75 * 60 + 62  # 20 min after the reading of minute 55
    assert 90 * 60 <= loss[1][1] <= 90 * 60 + 62  # the first reading after the gap
