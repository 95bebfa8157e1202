"""Bolus calculator in the firmware (THR-8) with insulin on board from the action curve
(THR-9); its schedules persist with the settings (HIS-2), also across the settings-layout
upgrade of issue 5."""

import struct

import pytest

from boards.fakes import Rig
from firmware.crc import crc16
from firmware.hal import R_SETTINGS_A, R_SETTINGS_B
from firmware.layout import CALC_STRIDE, SETTINGS_LEN, SETTINGS_LEN_1, V_CALC, V_SETTINGS_HI
from firmware.pump import Pump, iob_permille
from protocol import spec as S
from tests.pumpkit import history, make_pump, reboot, run

HOUR_S = 3600
# carb ratio 00:00 10 g/U, 11:00 12.5 g/U, 17:00 8 g/U; sensitivity 00:00 50, 06:00 40;
# target 00:00 100-120, 22:00 110-140
CR = ([0, 22, 34], [100, 125, 80])
ISF = ([0, 12], [50, 40])
TARGET = ([0, 44], [100, 110], [120, 140])


def calc_pump(local_h=13, pulse_mu=50):
    rig, pump = make_pump(pulse_mu=pulse_mu, utc=2511 * 86400 + local_h * HOUR_S)
    assert pump.calculator().set_schedule(S.CALC_CARB_RATIO, *CR, []) == S.OK
    assert pump.calculator().set_schedule(S.CALC_SENSITIVITY, *ISF, []) == S.OK
    assert pump.calculator().set_schedule(S.CALC_TARGET, *TARGET) == S.OK
    return rig, pump


def calc(pump, carbs, bg):
    code = pump.calculator().calculate(carbs, bg)
    assert code == S.OK, (code, pump.detail)
    out = list(pump.calculator().out)
    assert pump.detail == out[4]
    return out


@pytest.mark.req("THR-8")
def test_calculator_refuses_until_its_schedules_are_programmed():
    rig, pump = make_pump()
    calc = pump.calculator()
    assert calc.calculate(45, 180) == S.E_NOT_CONFIGURED and pump.detail == S.CALC_CARB_RATIO
    assert calc.set_schedule(S.CALC_CARB_RATIO, [0], [100], []) == S.OK
    assert calc.calculate(45, 180) == S.E_NOT_CONFIGURED and pump.detail == S.CALC_SENSITIVITY
    assert calc.set_schedule(S.CALC_SENSITIVITY, [0], [50], []) == S.OK
    assert calc.calculate(45, 180) == S.E_NOT_CONFIGURED and pump.detail == S.CALC_TARGET
    assert calc.set_schedule(S.CALC_TARGET, [0], [100], [120]) == S.OK
    assert calc.calculate(45, 180) == S.OK


@pytest.mark.req("THR-8")
@pytest.mark.parametrize(("kind", "starts", "values", "highs", "code", "detail"), [
    (3, [0], [100], [], S.E_BAD_ARG, 0),
    (S.CALC_CARB_RATIO, [], [], [], S.E_BAD_ARG, 1),
    (S.CALC_CARB_RATIO, [1], [100], [], S.E_BAD_ARG, 1),
    (S.CALC_CARB_RATIO, [0, 4, 4], [100] * 3, [], S.E_BAD_ARG, 1),
    (S.CALC_CARB_RATIO, [0, 48], [100] * 2, [], S.E_BAD_ARG, 1),
    (S.CALC_CARB_RATIO, list(range(9)), [100] * 9, [], S.E_BAD_ARG, 1),
    (S.CALC_CARB_RATIO, [0], [9], [], S.E_OUT_OF_RANGE, 2),
    (S.CALC_CARB_RATIO, [0], [1501], [], S.E_OUT_OF_RANGE, 2),
    (S.CALC_SENSITIVITY, [0], [401], [], S.E_OUT_OF_RANGE, 2),
    (S.CALC_TARGET, [0], [100], [], S.E_BAD_ARG, 3),
    (S.CALC_TARGET, [0], [120], [110], S.E_OUT_OF_RANGE, 3),
    (S.CALC_TARGET, [0], [69], [110], S.E_OUT_OF_RANGE, 2),
    (S.CALC_TARGET, [0], [100], [201], S.E_OUT_OF_RANGE, 3),
])
def test_schedule_refusals_change_nothing(kind, starts, values, highs, code, detail):
    rig, pump = calc_pump()
    before = list(pump.settings.values)
    calc = pump.calculator()
    assert calc.set_schedule(kind, starts, values, highs) == code and pump.detail == detail
    assert list(pump.settings.values) == before


@pytest.mark.req("THR-8")
@pytest.mark.parametrize(("hour", "carbs", "bg", "want"), [
    # 13:00: 12.5 g/U, 40 mg/dL/U, 100-120
    (13, 45, 180, [3600, 1500, 0, 5100, 5100, 0, 125, 40, 100, 120]),
    (13, 47, 180, [3760, 1500, 0, 5260, 5250, S.CALC_ROUNDED, 125, 40, 100, 120]),
    (13, 45, 110, [3600, 0, 0, 3600, 3600, 0, 125, 40, 100, 120]),  # inside the range
    (13, 45, 0, [3600, 0, 0, 3600, 3600, S.CALC_NO_BG, 125, 40, 100, 120]),
    # 03:00: 10 g/U, 50 mg/dL/U; below the range: -ceil(20 * 1000 / 50)
    (3, 45, 80, [4500, -400, 0, 4100, 4100, 0, 100, 50, 100, 120]),
    (3, 0, 59, [0, -820, 0, -820, 0, S.CALC_FLOORED, 100, 50, 100, 120]),
    (3, 0, 300, [0, 3600, 0, 3600, 3600, 0, 100, 50, 100, 120]),
    # 10:59 and 11:00: the carb ratio changes at slot 22
    (10.5, 30, 0, [3000, 0, 0, 3000, 3000, S.CALC_NO_BG, 100, 40, 100, 120]),
    (11, 30, 0, [2400, 0, 0, 2400, 2400, S.CALC_NO_BG, 125, 40, 100, 120]),
    # 18:00: 8 g/U; 23:00 target 110-140 (correction from 140)
    (18, 20, 0, [2500, 0, 0, 2500, 2500, S.CALC_NO_BG, 80, 40, 100, 120]),
    (23, 20, 180, [2500, 1000, 0, 3500, 3500, 0, 80, 40, 110, 140]),
    (23, 200, 400, [25000, 6500, 0, 31500, 31500, S.CALC_OVER_MAX, 80, 40, 110, 140]),
])
def test_calculator_parts_across_schedule_segments(hour, carbs, bg, want):
    rig, pump = calc_pump(local_h=0)
    run(rig, pump, int(hour * HOUR_S), step_ms=60000)
    assert calc(pump, carbs, bg) == want


@pytest.mark.req("THR-8")
def test_a_correction_below_the_target_rounds_toward_less_insulin():
    """Below the range the negative correction is rounded up in size, -ceil(...): a
    sensitivity of 45 does not divide 15 000 (mutant
    calc-low-correction-rounded-toward-insulin)."""
    rig, pump = calc_pump()  # 13:00: 12.5 g/U, target 100-120
    assert pump.calculator().set_schedule(S.CALC_SENSITIVITY, [0], [45], []) == S.OK
    out = calc(pump, 45, 85)  # (100 - 85) * 1000 / 45 = 333.3 mU
    assert out[:5] == [3600, -334, 0, 3266, 3250]
    assert out[5] == S.CALC_ROUNDED and out[7] == 45


@pytest.mark.req("THR-8")
def test_rounding_down_to_the_pulse_of_the_board():
    rig, pump = calc_pump(pulse_mu=25)
    out = calc(pump, 47, 180)  # 5260 mU: 5250 with 25-mU pulses too
    assert out[4] == 5250 and out[5] == S.CALC_ROUNDED
    out = calc(pump, 46, 180)  # 3680 + 1500 = 5180 -> 5175
    assert out[3:6] == [5180, 5175, S.CALC_ROUNDED]
    rig, pump = calc_pump(pulse_mu=10)
    out = calc(pump, 46, 180)
    assert out[3:6] == [5180, 5180, 0]


@pytest.mark.req("THR-8", "THR-9")
def test_insulin_on_board_is_subtracted():
    rig, pump = calc_pump()
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK
    run(rig, pump, 2 * 60)  # delivered at 1.5 U/min
    run(rig, pump, 58 * 60)
    iob = pump.iob()
    # the whole 3 U sits in one 5-min bucket, aged 55 min by its youngest edge
    assert iob == 3000 * iob_permille(55, 300) // 1000 == 2598
    out = calc(pump, 45, 180)
    assert out == [3600, 1500, 2598, 2502, 2500, S.CALC_ROUNDED, 125, 40, 100, 120]
    out = calc(pump, 0, 130)  # correction 250 - IOB 2598: not below 0
    assert out[:6] == [0, 250, 2598, -2348, 0, S.CALC_FLOORED]
    run(rig, pump, 5 * HOUR_S, step_ms=60000)  # past the insulin action (5 h)
    assert calc(pump, 45, 180)[2] == 0


@pytest.mark.req("THR-8")
def test_calculate_delivers_nothing():
    rig, pump = calc_pump()
    st = list(pump.state)
    pos = rig.motor.pos
    seq = pump.history.next_seq
    for _ in range(5):
        calc(pump, 120, 250)
    assert rig.motor.pos == pos and list(pump.state) == st
    assert pump.history.next_seq == seq  # not even logged
    assert pump.bolus_progress() == (0, 0, 0)
    run(rig, pump, 600)
    assert pump.state[7] == 0  # S_BOLUS_TODAY


@pytest.mark.req("THR-8")
def test_calculator_input_ranges():
    rig, pump = calc_pump()
    assert pump.calculator().calculate(301, 0) == S.E_OUT_OF_RANGE and pump.detail == 0
    assert pump.calculator().calculate(-1, 0) == S.E_OUT_OF_RANGE and pump.detail == 0
    assert pump.calculator().calculate(10, 19) == S.E_OUT_OF_RANGE and pump.detail == 1
    assert pump.calculator().calculate(10, 601) == S.E_OUT_OF_RANGE and pump.detail == 1
    assert pump.calculator().calculate(300, 600) == S.OK


@pytest.mark.req("THR-8", "HIS-1", "HIS-2")
def test_schedules_persist_are_logged_and_read_back():
    rig, pump = calc_pump()
    assert pump.calculator().get_schedule(S.CALC_CARB_RATIO) == (CR[0], CR[1], [0, 0, 0])
    assert pump.calculator().get_schedule(S.CALC_TARGET) == (TARGET[0], TARGET[1], TARGET[2])
    recs = [r[3:6] for r in history(pump) if r[2] == S.H_CALC_SCHEDULE]
    assert recs == [(S.CALC_CARB_RATIO, 3, 100), (S.CALC_SENSITIVITY, 2, 50),
                    (S.CALC_TARGET, 2, 100)]
    pump = reboot(rig)
    assert pump.calculator().get_schedule(S.CALC_SENSITIVITY) == (ISF[0], ISF[1], [0, 0])
    rig.storage.fail = True
    assert pump.calculator().set_schedule(S.CALC_SENSITIVITY, [0], [60], []) == S.E_STORAGE
    assert pump.calculator().get_schedule(S.CALC_SENSITIVITY) == (ISF[0], ISF[1], [0, 0])


@pytest.mark.req("HIS-2", "SNS-2")
def test_settings_saved_by_the_previous_layout_still_load():
    """A pump updated to this firmware keeps its settings: the old, shorter image loads
    (Slots legacy length), the new settings get their defaults, the next save upgrades."""
    assert SETTINGS_LEN_1 == 233 and V_SETTINGS_HI == SETTINGS_LEN_1
    assert V_CALC == V_SETTINGS_HI + S.SETTINGS_MAX - 13 and SETTINGS_LEN == V_CALC + 3 * 25
    assert CALC_STRIDE == 1 + 3 * S.CALC_SEGMENTS
    rig = Rig()
    pump = Pump(rig.hardware())
    pump.boot()
    assert pump.settings.set(S.SET_MAX_BOLUS, 7000) == S.OK
    assert pump.settings.set_profile(0, b"old", [0, 12], [700, 900]) == S.OK
    old = list(pump.settings.values[:SETTINGS_LEN_1])
    for region in (R_SETTINGS_A, R_SETTINGS_B):  # both copies as the old firmware wrote
        img = bytearray(struct.pack(f"<{SETTINGS_LEN_1}i", *old))
        img += struct.pack("<H", crc16(img, 0, len(img)))
        rig.storage.regions[region][:] = b"\xff" * len(rig.storage.regions[region])
        rig.storage.regions[region][:len(img)] = img
    pump = Pump(rig.hardware())
    assert pump.boot() == 0  # no storage failure
    assert pump.setting(S.SET_MAX_BOLUS) == 7000
    assert pump.settings.get_profile(0) == (b"old", [0, 12], [700, 900])
    assert pump.setting(S.SET_GLUCOSE_LOW) == 70 and pump.setting(S.SET_SBL) == 0
    assert pump.settings.slots.loaded_n == SETTINGS_LEN_1
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.settings.slots.loaded_n == SETTINGS_LEN  # saved in the new layout at boot
    assert pump.setting(S.SET_MAX_BOLUS) == 7000 and pump.calculator().get_schedule(0) is None
