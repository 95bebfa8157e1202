"""Security campaign guest code (SEC-2, SEC-3, SEC-4, LNK-3, LNK-4): runs on the MicroPython
unix port (and under CPython alike).

``main_chunk(seed, n)`` attacks the firmware link of a board build (boards.fakes Rig with a
pairing key and no emulator, like a Pico or an ESP32) with ``n`` frames, between genuine
commands from the paired host (about one in four inputs, each of which must be accepted,
so counters move and there are real frames to replay), and prints ``RESULT <json>``.

Attacks (kind: what the pump must answer):
  forged_key       a command signed with another key, fresh counter    E_BAD_AUTH / BAD_MAC
  forged_mac       a genuine frame with MAC bytes changed (CRC right)  E_BAD_AUTH / BAD_MAC
  forged_content   a genuine frame changed after signing (CRC right)   refused or dropped
  replay           an accepted frame sent again                        E_BAD_AUTH / REPLAYED
  replay_reboot    an accepted frame sent again after a reboot         E_BAD_AUTH / REPLAYED
  stale_counter    right key and MAC, counter not above the last       E_BAD_AUTH / REPLAYED
  unauthenticated  a delivery command without the auth trailer         E_BAD_AUTH / MISSING
  zero_mac         a command with F_AUTH and an all-zero trailer       E_BAD_AUTH / BAD_MAC
  emulator_only    emu_clock / emu_fault, genuinely signed             E_UNKNOWN_MESSAGE
  no_key_board     genuine commands to a board flashed without a key   E_BAD_AUTH / BAD_MAC
  lost_link_state  both copies of the link state corrupted (garbage or  E_BAD_AUTH / UNPAIRED
                   flipped bits), a reboot, then a frame captured before
                   or a fresh genuine command
  console          REPL control bytes (Ctrl-C, Ctrl-D, raw REPL, paste  no state change, no
                   mode), garbage and read-only lines on the bench       escape, answered
                   console of the main loop's Runner
  console_break    a KeyboardInterrupt out of the console driver (a      the safe state
                   Ctrl-C where it was still armed)                      (ST_CRASH), loop on

Every attack must be refused: no RESULT with OK, and the pump state (tests/mp_link.snapshot:
state, settings, history head, alarms, event queue, auth counter, command-id ring) exactly
as before the attack (lost_link_state: as after the reboot that found the loss, with
ST_LINK set). Refusals with another code than the expected one are counted apart.
console_break is "refused" when no exception escaped the loop, the pump is in its safe
state with the self-test alarm, and the link still answers; its state change is the safe
state, so only other changes count.
"""

import json

from boards.fakes import Serial
from firmware import wire
from firmware.console import Console
from firmware.hal import R_LINK_A, R_LINK_B
from firmware.link import LINK_LEN, Link
from firmware.main import Runner
from firmware.pump import S_STOP, Pump
from protocol import spec as S
from tests import mp_link as M

ID = wire.INDEX
KINDS = ("forged_key", "forged_mac", "forged_content", "replay", "replay_reboot",
         "stale_counter", "unauthenticated", "zero_mac", "emulator_only", "no_key_board",
         "lost_link_state", "console", "console_break")
DELIVERY = ("bolus", "temp_basal", "cancel_bolus", "cancel_temp_basal", "suspend", "resume",
            "prime", "fill", "rewind", "set_setting", "set_time", "set_profile")
EXPECT = {
    "forged_key": (S.E_BAD_AUTH, S.AUTH_BAD_MAC),
    "forged_mac": (S.E_BAD_AUTH, S.AUTH_BAD_MAC),
    "replay": (S.E_BAD_AUTH, S.AUTH_REPLAYED),
    "replay_reboot": (S.E_BAD_AUTH, S.AUTH_REPLAYED),
    "stale_counter": (S.E_BAD_AUTH, S.AUTH_REPLAYED),
    "unauthenticated": (S.E_BAD_AUTH, S.AUTH_MISSING),
    "zero_mac": (S.E_BAD_AUTH, S.AUTH_BAD_MAC),
    "emulator_only": (S.E_UNKNOWN_MESSAGE, None),
    "no_key_board": (S.E_BAD_AUTH, S.AUTH_BAD_MAC),
    "lost_link_state": (S.E_BAD_AUTH, S.AUTH_UNPAIRED),
}
CONSOLE_BYTES = (b"\x03", b"\x03\x03", b"\x04", b"\x01", b"\x02", b"\x05", b"\x1b[A", b"\x7f",
                 b"help", b"status", b"history", b"alarms", b"xyzzy", b"bolus", b"\xff\xfe",
                 b"\r", b"\n", b"\r\n", b" ")
M_RESULT = 0x80


def values(r, name, cmd_id):
    """Plausible field values of a command (the first field is cmd_id)."""
    mid = ID[name]
    vals = M._sample_values(mid, r)
    vals[0] = cmd_id
    if name == "bolus":
        vals[1:] = [S.BOLUS_NORMAL, 50 * (1 + r.below(10)), 0, 0]
    elif name == "temp_basal":
        vals[1:] = [S.TEMP_PERCENT, 10 * r.below(20), 15 * (1 + r.below(4))]
    elif name == "set_setting":
        vals[1:] = [S.SET_SNOOZE, 5 + r.below(100)]
    elif name == "emu_clock":
        vals[1:] = [S.CLK_ADVANCE, 1000 * r.below(3600)]
    elif name == "emu_fault":
        vals[1:] = [1 + r.below(13), r.below(1000)]
    return vals


class Bench:
    def __init__(self, key=M.KEY):
        self.rig, self.pump, self.link = M.bench(key=key)
        self.key = key
        self.cmd = 5000
        self.accepted = []  # wire bytes of accepted genuine frames (for replays)

    def reboot(self):
        """Power off and on: a new Pump and Link on the same storage (counter persisted)."""
        rig = self.rig
        rig.serial = Serial()
        self.pump = Pump(rig.hardware())
        self.pump.boot()
        self.link = Link(self.pump, rig.hardware())
        while self.pump.events.count:
            self.link.poll()
        rig.serial.take()

    def xfer(self, data):
        self.rig.serial.send(data)
        self.link.poll()
        return M.frames(self.rig.serial.take())

    def genuine(self, r):
        """A command from the paired host: must be accepted (OK or a logic refusal)."""
        self.cmd += 1
        name = ("set_setting", "temp_basal", "cancel_temp_basal", "bolus",
                "cancel_bolus")[r.below(5)]
        data = wire.encode_frame(ID[name], r.below(65536), 0, values(r, name, self.cmd),
                                 key=M.KEY, counter=self.link.counter + 1 + r.below(3))
        got = [f for f in self.xfer(data) if f[0] == M_RESULT]
        ok = bool(got) and got[-1][3][0] == self.cmd and got[-1][3][1] != S.E_BAD_AUTH
        if ok:
            self.accepted.append(data)
            if len(self.accepted) > 64:
                self.accepted.pop(0)
        return ok


class BreakingPort(Serial):
    """A console driver that raises KeyboardInterrupt once (a Ctrl-C on an armed REPL)."""

    armed = False

    def readinto(self, buf):
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return Serial.readinto(self, buf)


class ConsoleBench(Bench):
    """The main loop's Runner with the bench console on a port of its own."""

    def __init__(self):
        Bench.__init__(self)
        hw = self.rig.hardware()
        hw.console = BreakingPort()  # a console port of its own: Runner reads it in chunks
        runner = Runner(hw)
        runner.pump = self.pump
        runner.link = self.link
        runner.tick = self.pump.tick
        runner.feed = self.rig.watchdog.feed
        runner.console = Console(self.pump)
        self.runner = runner

    def type(self, data):
        """Bytes typed on the console; (escaped, answer bytes)."""
        con = self.runner.con
        con.send(data)
        try:
            self.runner.service()
        except BaseException:  # noqa: BLE001 - an escape is what is counted
            return 1, con.take()
        return 0, con.take()


def console_input(r):
    out = b""
    for _ in range(1 + r.below(8)):
        out += CONSOLE_BYTES[r.below(len(CONSOLE_BYTES))]
    return out


def corrupt_link(r, b):
    """Both copies of the link state made invalid (never blank), then a reboot."""
    img = bytearray(4 * LINK_LEN + 2)
    for region in (R_LINK_A, R_LINK_B):
        if r.below(2):
            for i in range(len(img)):
                img[i] = 1 + r.below(255)
        else:
            b.rig.storage.read(region, 0, img)
            img[r.below(len(img))] ^= 1 << r.below(8)
        b.rig.storage.write(region, 0, img)
    b.reboot()


def _distinct(r, k, n):
    """k distinct indexes below n (so two changes never cancel out)."""
    out = []
    while len(out) < k:
        i = r.below(n)
        if i not in out:
            out.append(i)
    return out


def attack(r, b, kind):
    """Wire bytes of one attack of `kind` on bench `b`."""
    name = DELIVERY[r.below(len(DELIVERY))]
    cmd = 900000 + r.below(100000)
    fresh = b.link.counter + 1 + r.below(1000)
    if kind == "forged_key":
        key = bytes([r.below(256) for _ in range(32)])
        return wire.encode_frame(ID[name], r.below(65536), 0, values(r, name, cmd), key=key,
                                 counter=fresh)
    if kind in ("forged_mac", "forged_content"):
        genuine = wire.encode_frame(ID[name], r.below(65536), 0, values(r, name, cmd),
                                    key=M.KEY, counter=fresh)
        body = M._unstuff(genuine)[:-2]
        if kind == "forged_mac":  # 1..4 distinct MAC bytes changed
            spots = _distinct(r, 1 + r.below(4), S.MAC_SIZE)
            at = len(body) - S.MAC_SIZE
        else:  # 1..3 distinct bytes of header, payload or counter changed after signing
            spots = _distinct(r, 1 + r.below(3), len(body) - S.MAC_SIZE)
            at = 0
        for i in spots:
            body[at + i] ^= 1 + r.below(255)  # never 0: each byte really changes
        return M._stuff(M._with_crc(body))
    if kind in ("replay", "replay_reboot"):
        return b.accepted[r.below(len(b.accepted))]
    if kind == "stale_counter":
        stale = r.below(b.link.counter + 1)
        return wire.encode_frame(ID[name], r.below(65536), 0, values(r, name, cmd), key=M.KEY,
                                 counter=stale)
    if kind == "unauthenticated":
        return wire.encode_frame(ID[name], r.below(65536), 0, values(r, name, cmd))
    if kind == "zero_mac":
        body = M._unstuff(wire.encode_frame(ID[name], r.below(65536), 0,
                                            values(r, name, cmd)))[:-2]
        body[1] |= S.F_AUTH
        body += bytes([fresh & 0xFF, (fresh >> 8) & 0xFF, (fresh >> 16) & 0xFF,
                       fresh >> 24]) + bytes(S.MAC_SIZE)
        return M._stuff(M._with_crc(body))
    if kind == "emulator_only":
        emu = ("emu_clock", "emu_fault")[r.below(2)]
        how = r.below(3)
        vals = values(r, emu, cmd)
        if how == 0:
            return wire.encode_frame(ID[emu], r.below(65536), 0, vals, key=M.KEY,
                                     counter=fresh)
        if how == 1:
            return wire.encode_frame(ID[emu], r.below(65536), 0, vals)
        return wire.encode_frame(ID[emu], r.below(65536), 0, vals,
                                 key=bytes([r.below(256) for _ in range(32)]), counter=fresh)
    raise ValueError(kind)


def chunk(seed, n):
    r = M.Rand(seed)
    b = Bench()
    nokey = Bench(key=None)
    nokey.cmd = 7000
    lost = Bench()  # its link state is corrupted before each of its attacks
    lost.cmd = 8000
    for _ in range(8):
        lost.genuine(r)
    con = ConsoleBench()
    con_escapes = 0
    counts = {}
    for k in KINDS:
        counts[k] = [0, 0, 0, 0]  # sent, refused, refused as expected, state changed
    genuine = genuine_ok = reboots = 0
    accepted = []
    i = 0
    while i < n:
        if not b.accepted or r.below(4) == 0:
            genuine += 1
            genuine_ok += b.genuine(r)
            continue
        kind = KINDS[r.below(len(KINDS))]
        target = b
        if kind == "replay_reboot":
            b.reboot()
            reboots += 1
        if kind in ("console", "console_break"):
            c = counts[kind]
            c[0] += 1
            escaped, ok, changed = console_attack(r, con, kind)
            con_escapes += escaped
            c[1] += ok
            c[2] += ok
            c[3] += changed
            if (not ok or changed) and len(accepted) < 10:
                accepted.append([kind, seed, i])
            i += 1
            continue
        if kind == "no_key_board":
            target = nokey
            nokey.cmd += 1
            name = DELIVERY[r.below(len(DELIVERY))]
            data = wire.encode_frame(ID[name], r.below(65536), 0,
                                     values(r, name, nokey.cmd), key=M.KEY,
                                     counter=1 + r.below(1 << 20))
        elif kind == "lost_link_state":
            target = lost
            corrupt_link(r, lost)
            if r.below(2):
                data = lost.accepted[r.below(len(lost.accepted))]  # captured before
            else:
                lost.cmd += 1
                name = DELIVERY[r.below(len(DELIVERY))]
                data = wire.encode_frame(ID[name], r.below(65536), 0,
                                         values(r, name, lost.cmd), key=M.KEY,
                                         counter=lost.link.counter + 1 + r.below(1000))
        else:
            data = attack(r, b, kind)
        before = M.snapshot(target.pump, target.link)
        got = target.xfer(data)
        after = M.snapshot(target.pump, target.link)
        c = counts[kind]
        c[0] += 1
        oks = [f for f in got if f[0] == M_RESULT and f[3][1] == S.OK]
        if kind == "lost_link_state" and not target.pump.selftest_bits & S.ST_LINK:
            oks.append("no ST_LINK")  # the loss went unnoticed
        if not oks:
            c[1] += 1
        elif len(accepted) < 10:
            accepted.append([kind, seed, i])
        results = [f for f in got if f[0] == M_RESULT]
        want = EXPECT.get(kind)
        if want is None:  # forged_content: any refusal, or dropped
            c[2] += not oks
        elif results and results[-1][3][1] == want[0] and (
                want[1] is None or results[-1][3][2] == want[1]):
            c[2] += 1
        if before != after:
            c[3] += 1
            if len(accepted) < 10:
                accepted.append([kind, seed, i, "state"])
        i += 1
    return {"seed": seed, "attacks": n, "counts": counts, "genuine": genuine,
            "genuine_ok": genuine_ok, "reboots": reboots, "faults": b.link.faults
            + nokey.link.faults + lost.link.faults + con.link.faults,
            "console_escapes": con_escapes, "examples": accepted}


def console_attack(r, con, kind):
    """(escaped, refused as expected, other state change) of one console attack."""
    pump = con.pump
    if kind == "console":
        before = M.snapshot(pump, con.link)
        escaped, answer = con.type(console_input(r))
        after = M.snapshot(pump, con.link)
        return escaped, not escaped, before != after
    con.runner.con.armed = True  # Ctrl-C while the loop runs: one period of it
    escaped = 0
    try:
        con.runner.run(1)
    except BaseException:  # noqa: BLE001 - an escape is what is counted
        escaped = 1
    safe = (pump.selftest_bits & S.ST_CRASH and pump.state[S_STOP] == S.STOP_SELFTEST
            and pump.alarms.active[S.A_SELFTEST])
    got = con.xfer(wire.encode_frame(ID["status"], r.below(65536), 0, []))
    answered = any(f[0] == 0x82 for f in got)
    return escaped, bool(safe and answered and not escaped), False


def main_chunk(seed, n):
    print("RESULT " + json.dumps(chunk(seed, n)))
