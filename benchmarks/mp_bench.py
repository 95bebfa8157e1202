"""Firmware measurements that run inside MicroPython (unix port, 32-bit wasm) and CPython.

benchmarks/fw_bench.py sends this file's source, then loads tests/mp_link.py and
tests/mp_scenarios.py into namespaces of their own (``load(src)``: the wasm runner mounts
only firmware/, boards/ and protocol/, and the two files share global names), then calls one
``main_*`` function, which prints ``RESULT <json>`` lines:

- ``main_request_alloc(L, rounds)``: bytes allocated per request the link handles, per
  message type (gc.mem_alloc() before and after each Link.poll with the collector off), and
  whether the same requests run under micropython.heap_lock() (MemoryErrors, link faults).
- ``main_tick_alloc(T, n, names)``: bytes allocated per scheduler tick in each delivery
  state (gc.mem_alloc delta over n ticks), next to the heap_lock run of
  tests/mp_scenarios.py (ticks that raised MemoryError).
- ``main_codec_us(L, samples, per)``: the firmware codec on the unix port, microseconds per
  frame (median of `samples` batches of `per` frames): encode of pump-to-host messages
  (Encoder.begin/put/finish: struct.pack_into, CRC, COBS), decode of host-to-pump frames
  (Decoder.feed, CRC check, field reads with wire.get), and a whole status request (Link.poll).
- ``main_codec_fuel(L, what, n)``: the same operations n times, for a fuel difference on wasm.

Heap after boot is measured by benchmarks/fw_bench.py's BOOT_MEMORY script instead: the
32-bit build can only collect garbage safely from top-level code.

Keep it MicroPython-compatible: no imports from tests/, no CPython-only syntax.
"""

import gc
import json
import sys
import time
from array import array

try:
    import micropython
except ImportError:  # CPython: nothing to lock, no heap to count
    micropython = None

MP = sys.implementation.name == "micropython"
WASI = getattr(sys.implementation, "_build", "") == "wasi"


def load(src):
    """Run a module's source in a namespace of its own; returns the namespace (a dict)."""
    ns = {"__name__": "guest"}
    exec(src, ns)
    return ns


def collect(force=False):
    """A collection where it is safe (tests/mp_scenarios.py: the WASI build may crash when
    one runs inside Python code; `force` takes the risk, for heap-in-use figures)."""
    if force or not WASI:
        gc.collect()


def gc_on():
    """The collector back on after a measurement, where it is safe: on the WASI build a
    collection that runs inside Python code may free objects that only its C stack still
    holds (see collect), and whether the 1 MB heap fills up and collects mid-run moves with
    the firmware's size (a request run crashed the wasm runtime after an unrelated change
    made pump.py's globals smaller). There the collector stays off: a full heap is then a
    MemoryError, not a crash."""
    if not WASI:
        gc.enable()


def mem():
    return gc.mem_alloc() if MP else 0


def block_size():
    """Bytes per GC block (4 machine words): 32 on the 64-bit unix port, 16 on 32-bit."""
    if not MP:
        return 0
    v = 5
    gc.disable()
    a = gc.mem_alloc()
    x = (v,)  # one block: a 1-tuple is 3 words
    b = gc.mem_alloc()
    gc_on()
    del x
    return b - a


def emit(record):
    # streamed, not built as one string first: a request_alloc record is ~2.5 kB, more than
    # the 32-bit wasm heap may have in one piece at the end of a run
    sys.stdout.write("RESULT ")
    json.dump(record, sys.stdout)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------- requests
def command_frames(L, rounds, first_counter):
    """Authenticated commands that act every time (fresh cmd_id and counter each):
    set_setting (snooze 40/45 alternating) and bolus / cancel_bolus pairs."""
    enc = L["wire"].encode_frame
    ID = L["ID"]
    S = L["S"]
    key = L["KEY"]
    c = first_counter  # counters in the order the frames are sent: settings, then pairs
    setting = []
    bolus = []
    cancel = []
    for i in range(rounds):
        c += 1
        setting.append(enc(ID["set_setting"], 100 + i, 0, [c, S.SET_SNOOZE, 40 + 5 * (i & 1)],
                           key=key, counter=c))
    for i in range(rounds):
        c += 1
        bolus.append(enc(ID["bolus"], 300 + i, 0, [c, S.BOLUS_NORMAL, 100, 0, 0], key=key,
                         counter=c))
        c += 1
        cancel.append(enc(ID["cancel_bolus"], 500 + i, 0, [c], key=key, counter=c))
    return setting, bolus, cancel


def poll_bytes(rig, link, frames, sums, index, counts, results=None):
    """Feed each frame, poll, and add the bytes allocated by the poll to sums[index].
    With `results` (a (decode, list) pair) the result codes answered go to the list
    (decoded outside the measured window)."""
    serial = rig.serial
    for data in frames:
        serial.out_count = 0
        serial.send(data)
        m0 = mem()
        link.poll()
        sums[index] += mem() - m0
        counts[index] += 1
        if results is not None:
            for f in results[0](serial.take()):
                if f[0] == 0x80:
                    results[1].append(f[3][1])


def with_locked(result, locked):
    """result[label]'s locked_fails/locked_faults from an alloc_report ({} : -1, not run)."""
    for label in result["_order"]:
        lk = locked.get(label if label != "events_2" else "events", {})
        result[label]["locked_fails"] = lk.get("fails", -1)
        result[label]["locked_faults"] = lk.get("faults", -1)
    return result


def request_alloc(L, rounds=20, locked=True):
    """{label: {bytes_per_request, requests, answer, locked_fails, locked_faults}}.
    `locked` False: without the heap_lock runs (alloc_report builds a second rig: on the
    WASI build that is a run of its own, main_locked_report, see gc_on)."""
    rig, pump, link = L["bench"]()
    labels = []
    plans = []
    for label, data, answer in L["request_frames"]():
        if label == "bolus_auth":
            continue  # replaced by fresh authenticated commands below
        labels.append(label)
        plans.append(([data] * rounds, answer))
    # the set_setting path acts every time; bolus and cancel_bolus alternate
    sums = array("i", [0] * (len(labels) + 4))
    counts = array("i", [0] * (len(labels) + 4))
    answers = {}
    for i in range(len(labels)):
        frames, answer = plans[i]
        L["xfer"](rig, link, frames[0])  # warm up (first-use allocations)
        rig.serial.take()
        collect()
        gc.disable()
        poll_bytes(rig, link, frames, sums, i, counts)
        gc_on()
        got = L["frames"](rig.serial.take())
        answers[labels[i]] = got[-1][0] if got else 0
    k = len(labels)
    # end the bench's running bolus with a command (also the commands' warm-up)
    setting, bolus, cancel = command_frames(L, rounds, 1000)
    L["xfer"](rig, link, L["wire"].encode_frame(L["ID"]["cancel_bolus"], 99, 0, [999],
                                                key=L["KEY"], counter=999))
    rig.serial.take()
    codes = []
    results = (L["frames"], codes)
    collect()
    gc.disable()
    poll_bytes(rig, link, setting, sums, k, counts, results)
    j = 0
    while j < rounds:
        poll_bytes(rig, link, bolus[j:j + 1], sums, k + 1, counts, results)
        poll_bytes(rig, link, cancel[j:j + 1], sums, k + 2, counts, results)
        j += 1
    gc_on()
    # events: queue two, then one poll sends both
    pump.events.put(L["S"].EV_ALARM, 1, 2, 3)
    pump.events.put(L["S"].EV_BOLUS, 1, 100, 2000)
    collect()
    gc.disable()
    poll_bytes(rig, link, [b""], sums, k + 3, counts)
    gc_on()
    sent = len(L["frames"](rig.serial.take()))
    labels += ["set_setting_auth", "bolus_auth", "cancel_bolus_auth", "events_2"]
    answers["set_setting_auth"] = answers["bolus_auth"] = answers["cancel_bolus_auth"] = 0x80
    answers["events_2"] = sent
    result = {}
    for i in range(len(labels)):
        label = labels[i]
        result[label] = {
            "bytes_per_request": sums[i] / counts[i] if counts[i] else 0,
            "requests": counts[i],
            "answer": answers[label],
        }
    result["_command_codes"] = sorted(set(codes))  # [0]: every command was carried out
    result["_commands_answered"] = len(codes)
    result["_order"] = labels
    with_locked(result, L["alloc_report"](rounds) if MP and locked else {})
    # of a command's bytes: one MAC check (wire.Auth: two sha256 objects and digests)
    buf = bytearray(64)
    auth = link.auth
    collect()
    gc.disable()
    m0 = mem()
    auth.verify(buf, 40, buf, 40, 8)
    result["_mac_check_bytes"] = mem() - m0
    gc_on()
    return result


def main_request_alloc(L, rounds=20, locked=True):
    emit({"what": "request_alloc", "runtime": runtime(), "block": block_size(),
          "rounds": rounds, "results": request_alloc(L, rounds, locked)})


def main_locked_report(L, rounds=20):
    emit({"what": "locked_report", "results": L["alloc_report"](rounds)})


# --------------------------------------------------------------------------- ticks
def counted_run(rig, pump, n, press_every=0):
    """tests/mp_scenarios.py locked_run's ticks (same steps and button presses), with the
    collector off and gc.mem_alloc read around each tick instead of the heap locked.
    Returns (bytes allocated, ticks that allocated)."""
    clock = rig.clock
    buttons = rig.buttons
    total = 0
    ticks = 0
    i = 0
    gc.disable()
    while i < n:
        s = 1000
        if i % 10 == 3:
            s = 100
        elif i % 50 == 17:
            s = 7000
        clock.advance(s)
        if press_every and i % press_every == press_every - 1:
            buttons.press(1)
        m0 = mem()
        pump.tick()
        d = mem() - m0
        if d:
            total += d
            ticks += 1
        i += 1
    gc_on()
    return total, ticks


def main_tick_alloc(T, n, names=None, locked=True):
    """Per state of tests/mp_scenarios.py (all 17, and the 4 checker self-tests, which must
    allocate): bytes allocated by n ticks (counted_run), the state's own check that it
    was exercised, and (`locked`) the heap_lock run of the same state (MemoryErrors)."""
    out = {}
    for entry in T["STATES"]:
        name = entry[0]
        if names is not None and name not in names:
            continue
        collect()
        if WASI and gc.mem_free() < T["HEAP_RESERVE"]:
            out[name] = {"status": "heap: run fewer states per run"}
            continue
        rec = {"ticks": n}
        try:
            c = entry[1](n)
            total, ticks = counted_run(c["rig"], c["pump"], n, c["press"])
            rec["bytes"] = total
            rec["bytes_per_tick"] = total / n
            rec["allocating_ticks"] = ticks
            try:
                entry[2](c)
                rec["status"] = "ok"
            except AssertionError as e:
                rec["status"] = "assert: " + str(e)
        except Exception as e:  # noqa: BLE001 - reported: other states still run
            rec["status"] = "error: " + repr(e)
        if locked and MP:
            collect()
            r = T["run_state"](name, n)
            rec["locked_fails"] = r["fails"]
            rec["locked_status"] = r.get("status", "")
        out[name] = rec
    emit({"what": "tick_alloc", "runtime": runtime(), "block": block_size(), "results": out,
          "order": [e[0] for e in T["STATES"] if names is None or e[0] in names]})


# --------------------------------------------------------------------------- codec
def encoders(L):
    """name -> (mid, values): pump-to-host messages the link sends."""
    S = L["S"]
    ID = L["ID"]
    status = [0] * len(S.MESSAGES[ID["status_info"]][1])
    for i in range(len(status)):
        status[i] = (i * 37) % 200  # small ints, all fields
    return {
        "result": (ID["result"], [1234, 0, 56]),
        "event": (ID["event"], [S.EV_BOLUS, 7, 1500, 2000]),
        "status_info": (ID["status_info"], status),
        "link_stats": (ID["link_stats"], [1, 2, 3, 4, 5, 6, 7, 8, 9]),
    }


def decoders(L):
    """name -> wire bytes of host-to-pump frames, and whether their MAC is checked."""
    wire = L["wire"]
    ID = L["ID"]
    key = L["KEY"]
    profile = [9, 0, b"weekday", 6, bytes([0, 12, 18, 24, 36, 44]),
               bytes(range(96))]
    return {
        "status": (wire.encode_frame(ID["status"], 3, 0, []), False),
        "get_history": (wire.encode_frame(ID["get_history"], 3, 0, [100, 8]), False),
        "bolus": (wire.encode_frame(ID["bolus"], 3, 0, [9, 1, 1500, 0, 0], key=key,
                                    counter=77), False),
        "bolus+mac": (wire.encode_frame(ID["bolus"], 3, 0, [9, 1, 1500, 0, 0], key=key,
                                        counter=77), True),
        "set_profile": (wire.encode_frame(ID["set_profile"], 3, 0, profile, key=key,
                                          counter=78), False),
    }


class Codec:
    """One encode or decode operation on preallocated buffers (what the link does)."""

    def __init__(self, L):
        wire = L["wire"]
        self.wire = wire
        self.enc = wire.Encoder()
        self.dec = wire.Decoder()
        self.auth = wire.Auth(L["KEY"])
        self.crc16 = L["crc16"]
        self.encoders = encoders(L)
        self.decoders = decoders(L)
        self.rig, self.pump, self.link = L["bench"]()
        self.status_req = self.decoders["status"][0]

    def encode(self, name):
        mid, values = self.encoders[name]
        e = self.enc
        e.begin(mid, 7, 2)
        i = 0
        n = len(values)
        while i < n:
            e.put(i, values[i])
            i += 1
        return e.finish()

    def decode(self, name):
        data, mac = self.decoders[name]
        dec = self.dec
        dec.feed(data, 0, len(data))
        n = dec.size
        buf = dec.buf
        ok = self.crc16(buf, 0, n - 2) == buf[n - 2] | (buf[n - 1] << 8)
        mid = buf[4]
        kinds = self.wire.KINDS[mid]
        i = 0
        s = 0
        while i < len(kinds):
            if kinds[i]:
                s += self.wire.get(buf, mid, i) & 0xFF
            i += 1
        if mac:
            at = 5 + self.wire.SIZE[mid]
            ok = ok and self.auth.verify(buf, at + 4, buf, at + 4, 8)
        return ok

    def status_request(self):
        serial = self.rig.serial
        serial.out_count = 0
        serial.send(self.status_req)
        self.link.poll()


def ops(c):
    """(label, callable, arg) of every measured operation."""
    out = []
    for name in ("result", "event", "status_info", "link_stats"):
        out.append(("encode " + name, c.encode, name))
    for name in ("status", "get_history", "bolus", "bolus+mac", "set_profile"):
        out.append(("decode " + name, c.decode, name))
    out.append(("status request (Link.poll)", None, None))
    return out


def main_codec_us(L, samples=200, per=20):
    c = Codec(L)
    res = {}
    for label, fn, arg in ops(c):
        if fn is None:
            fn = lambda _: c.status_request()  # noqa: E731
        fn(arg)  # warm up
        times = array("i", [0] * samples)
        k = 0
        while k < samples:
            j = 0
            t0 = time.ticks_us()
            while j < per:
                fn(arg)
                j += 1
            times[k] = time.ticks_diff(time.ticks_us(), t0)
            k += 1
        ordered = sorted(times)
        res[label] = {"median_us": ordered[samples // 2] / per,
                      "p90_us": ordered[samples * 9 // 10] / per, "samples": samples,
                      "per_sample": per}
    sizes = {}
    for name in c.encoders:
        sizes["encode " + name] = c.encode(name)  # wire length
    for name in ("status", "get_history", "bolus", "bolus+mac", "set_profile"):
        sizes["decode " + name] = len(c.decoders[name][0])
    sizes["status request (Link.poll)"] = len(c.status_req)
    emit({"what": "codec_us", "runtime": runtime(), "results": res, "wire_bytes": sizes,
          "order": [op[0] for op in ops(c)]})


def main_codec_fuel(L, label, n):
    """Run operation `label` n times (after building everything): fuel(n) - fuel(0) / n."""
    c = Codec(L)
    for lab, fn, arg in ops(c):
        if lab == label:
            if fn is None:
                fn = lambda _: c.status_request()  # noqa: E731
            fn(arg)
            i = 0
            while i < n:
                fn(arg)
                i += 1
            emit({"what": "codec_fuel", "label": label, "n": n})
            return
    raise ValueError("no operation " + label)


def runtime():
    if not MP:
        return "cpython"
    return "wasm32" if WASI else "unix64"
