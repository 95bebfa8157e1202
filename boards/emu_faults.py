"""Emulator board, part 4: fault injection (emu_fault, SEC-3): each fault's range and
where its setting goes (the world, and the simulated part or port it acts on)."""

from protocol import spec as S

# fault id -> (world key, min, max)
FAULT_RANGES = {
    S.FAULT_OCCLUSION: ("occluded", 0, 1),
    S.FAULT_BATTERY_LEVEL: (None, 0, 100),
    S.FAULT_BATTERY_DRAIN: ("drain", 0, 1000000),
    S.FAULT_SENSOR_LOSS: ("sensor_loss", 0, 1),
    S.FAULT_BUTTON_STUCK: ("stuck", 0, 255),
    S.FAULT_BUTTON_PRESS: (None, 0, 255),
    S.FAULT_STORAGE_FAIL: ("storage_fail", 0, 1),
    S.FAULT_DROP_RX: ("drop_rx", 0, 1000),
    S.FAULT_DROP_TX: ("drop_tx", 0, 1000),
    S.FAULT_CORRUPT_RX: ("corrupt_rx", 0, 1000),
    S.FAULT_CORRUPT_TX: ("corrupt_tx", 0, 1000),
    S.FAULT_POWER_CUT: (None, -1, 0x7FFFFFFF),
    S.FAULT_SEED: ("seed", -0x80000000, 0x7FFFFFFF),
    S.FAULT_GLUCOSE: (None, S.CGM_EXPIRED, S.CGM_HIGH),
    S.FAULT_OUTAGE: ("outage_s", 0, 400 * 86400),
    S.FAULT_RTC_BACKUP: ("rtc_backup", 0, 1),
    S.FAULT_MOTOR: ("motor", S.MOTOR_OK, S.MOTOR_STALL),
}


def inject(emu, fault, value):
    """emu_fault(fault, value) on the Emulator `emu`: (code, detail) as the message answers."""
    rule = FAULT_RANGES.get(fault)
    if rule is None:
        return S.E_BAD_ARG, 1
    key, lo, hi = rule
    if not lo <= value <= hi:
        return S.E_OUT_OF_RANGE, 2
    if fault == S.FAULT_BATTERY_LEVEL:
        old = emu.battery.percent()
        emu.battery.set_percent(value)
        return S.OK, old
    if fault == S.FAULT_BUTTON_PRESS:
        emu.buttons.press(value)
        return S.OK, 0
    if fault == S.FAULT_POWER_CUT:
        if value < 0:
            value = emu.rng.below(60001)
        emu.clock.cut_at = emu.clock.elapsed + value
        return S.OK, value
    if fault == S.FAULT_SEED:
        emu.rng.seed(value)
        return S.OK, emu.world.set("seed", value)
    if fault == S.FAULT_GLUCOSE:
        if value == 0:
            return S.E_OUT_OF_RANGE, 2
        emu.radio.push(value)
        return S.OK, 0
    old = emu.world.set(key, value)
    if fault == S.FAULT_OCCLUSION:
        emu.line.occluded = bool(value)
    elif fault == S.FAULT_BATTERY_DRAIN:
        emu.battery.mult = value
    elif fault == S.FAULT_SENSOR_LOSS:
        emu.radio.lost = value
    elif fault == S.FAULT_BUTTON_STUCK:
        emu.buttons.stuck = value
    elif fault == S.FAULT_STORAGE_FAIL:
        emu.storage.fail = value
    elif fault == S.FAULT_MOTOR:
        emu.board.motor.set_fault(value)
    elif fault == S.FAULT_OUTAGE or fault == S.FAULT_RTC_BACKUP:
        pass  # read at the next power cut (Board.die)
    else:
        emu.serial.load_faults()
    return S.OK, old
