"""A day of therapy, printed as it happens: the firmware core on simulated parts.

Run `micropython boards/demo.py` (or `make demo`): the pump engine on the MicroPython unix
port with the parts of boards/fakes.py and a virtual clock driven from this script (no
serial link): hourly basal, a normal and a dual-wave bolus, a temp basal, an occlusion
alarm and its acknowledgement, then daily totals and the history. The emulator board that
runs the whole firmware behind a pty is boards/emulator.py (`make emulate`).
"""

import sys

# the repository root, so `firmware`, `boards` and `protocol` import as packages
sys.path.insert(0, (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/..")

from array import array  # noqa: E402

from boards.fakes import Annunciator, Rig  # noqa: E402
from firmware.console import mu_text  # noqa: E402
from firmware.pump import Pump  # noqa: E402
from protocol import refusals  # noqa: E402
from protocol import spec as S  # noqa: E402

DAY_S = 86400
START_UTC = 2511 * DAY_S  # Monday 2026-11-16 00:00 UTC
PRIORITY_NAMES = ("", "low", "medium", "high")


class LoudAnnunciator(Annunciator):
    """Prints each annunciation, as the buzzer would sound it."""

    def sound(self, priority, level):
        Annunciator.sound(self, priority, level)
        print("          buzzer: {} priority pattern, level {}".format(PRIORITY_NAMES[priority],
                                                                       level))


def clock_text(pump):
    ms = pump.state[22]  # S_LOCAL_MS
    return "{:02d}:{:02d}".format(ms // 3600000, ms // 60000 % 60)


def show(code, pump, what):
    if code == S.OK:
        print("  {:<44} ok".format(what))
    else:
        print("  {:<44} REFUSED: {} (detail {})".format(what, refusals.ERRORS[code], pump.detail))


def drain_events(pump, out):
    while pump.events.take(out):
        if out[0] == S.EV_ALARM:
            action = ("raised", "acknowledged", "cleared")[out[2]]
            print("   {} alarm {} {} ({} priority)".format(
                clock_text(pump), S.ALARMS[out[1]][0], action,
                PRIORITY_NAMES[S.ALARMS[out[1]][1]]))
        elif out[0] == S.EV_STATE:
            print("   {} delivery: {}".format(clock_text(pump), refusals.STOP_REASONS[out[1]]))


def main():
    rig = Rig(pulse_mu=50)
    rig.annunciator = LoudAnnunciator()
    pump = Pump(rig.hardware())
    print("micropump demo - firmware core on {} {}, virtual clock, simulated hardware".format(
        sys.implementation.name, ".".join(str(v) for v in sys.implementation.version[:3])))
    print("boot: self-test bits {} (0 = all passed), pulse size {} U".format(
        pump.boot(), mu_text(rig.pulse_mu)))
    print("\nsetting up")
    show(pump.settings.set_profile(0, b"weekday", [0, 12, 24, 44], [800, 1200, 1000, 700]), pump,
         "basal profile 'weekday' (4 segments)")
    show(pump.set_time(START_UTC, 60), pump, "clock: Mon 2026-11-16 01:00 (UTC+1)")
    show(pump.rewind(), pump, "rewind")
    show(pump.fill(200000), pump, "fill reservoir 200 U")
    show(pump.prime(S.PRIME_TUBING, 10000), pump, "prime tubing 10 U")
    show(pump.prime(S.PRIME_CANNULA, 300), pump, "fill cannula 0.3 U")
    show(pump.resume(), pump, "resume delivery")
    show(pump.bolus(S.BOLUS_NORMAL, 30000, 0, 0), pump, "bolus 30 U (over the 10 U max bolus)")

    print("\n time  rate U/h  basal U  bolus U  reservoir U  IOB U  alarms")
    events = array("i", [0] * 4)
    plan = {
        7 * 3600 + 30 * 60: ("normal bolus 4 U", lambda: pump.bolus(S.BOLUS_NORMAL, 4000, 0, 0)),
        12 * 3600 + 30 * 60: ("dual bolus 2 U now + 3 U over 2 h",
                              lambda: pump.bolus(S.BOLUS_DUAL, 2000, 3000, 120)),
        18 * 3600: ("temp basal 50 % for 2 h",
                    lambda: pump.set_temp_basal(S.TEMP_PERCENT, 50, 120)),
    }
    second = 3600  # local time starts at 01:00
    last_bolus = 0
    while second < 24 * 3600:
        rig.clock.advance(1000)
        pump.tick()
        second += 1
        if second in plan:
            what, action = plan[second]
            print("   {} ".format(clock_text(pump)), end="")
            show(action(), pump, what)
        if second == 23 * 3600:
            print("   {} (a kinked line blocks the infusion set)".format(clock_text(pump)))
            rig.line.occluded = True
            pump.set_temp_basal(S.TEMP_ABSOLUTE, 3000, 60)
        if second == 23 * 3600 + 58 * 60:
            print("   {} button pressed: acknowledge".format(clock_text(pump)))
            rig.buttons.press(1)
        bolus_id, done, req = pump.bolus_progress()
        if bolus_id and done != last_bolus and (done * 4 // req) != (last_bolus * 4 // req):
            print("   {} bolus #{} progress {} / {} U".format(clock_text(pump), bolus_id,
                                                             mu_text(done), mu_text(req)))
        last_bolus = done if bolus_id else 0
        drain_events(pump, events)
        if second % 3600 == 0:
            st = pump.status()
            print("{}  {:>8}  {:>7}  {:>7}  {:>11}  {:>5}  {}".format(
                clock_text(pump), mu_text(pump.basal_rate()), mu_text(st["basal_today"]),
                mu_text(st["bolus_today"]), mu_text(st["reservoir"]), mu_text(st["iob"]),
                ",".join(S.ALARMS[a][0] for a in st["alarms"]) or "-"))

    st = pump.status()
    basal, bolus, prime = pump.day_totals(START_UTC // DAY_S)
    print("\ntotals of Mon 2026-11-16: basal {} U, bolus {} U, prime {} U (not counted as"
          " given)".format(mu_text(basal), mu_text(bolus), mu_text(prime)))
    print("motor moved {} pulses = {} U; reservoir left {} U".format(
        rig.motor.odometer, mu_text(rig.motor.odometer * rig.pulse_mu), mu_text(st["reservoir"])))
    print("delivery now: {}".format(refusals.STOP_REASONS[st["stop"]]))
    print("\nhistory (last 12 of {} records)".format(pump.history.next_seq - 1))
    rec = bytearray(24)
    for seq in range(max(1, pump.history.next_seq - 12), pump.history.next_seq):
        if pump.history.read(seq, rec):
            r = pump.history.decode(rec)
            t = r[1] + 3600
            print("  #{:<4} {:02d}:{:02d}:{:02d}  {:<16} arg={} v=({}, {}, {})".format(
                r[0], t // 3600 % 24, t // 60 % 60, t % 60, refusals.HISTORY_KINDS[r[2]], r[3],
                r[4], r[5], r[6]))


main()
