"""Alarm signals as heard and seen (ALM-8): measure a pulse timeline against IEC 60601-1-8's
numbers, and write it as a WAV file a person can listen to.

A timeline is a list of tone pulses (start ms, Hz, duration ms[, level]), as the emulator
records them (telemetry "pulses", boards.fakes.signal_pulses) or as a test reads them off a
board driver's PWM.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import wave
from functools import cache
from pathlib import Path

from host_tools.paths import source_root

BURST_GAP_MS = 1500  # a silence longer than this starts a new burst (longest pause: 1300)
RATE = 16000  # WAV sample rate: well above twice the highest fundamental (1 kHz)
LEVEL_GAIN = (0.25, 0.5, 1.0)  # amplitude per escalation level, as the PWM duty grows


@cache
def signals():
    """firmware/signals.py (plain data and one function), loaded from the MicroPython tree
    the emulator runs: a checkout or the copy in an installed wheel."""
    path = source_root() / "firmware" / "signals.py"
    spec = importlib.util.spec_from_file_location("micropump_signals", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recorded_pulses(emu: dict) -> list[tuple]:
    """The tone pulses of every signal in an emulator telemetry's "emu" part (this boot)."""
    segments = [tuple(g) for g in emu.get("signals", [])]
    return signals().signal_pulses(segments, emu.get("elapsed_ms", 0))


def bursts(pulses: list[tuple]) -> list[list[tuple]]:
    """Group pulses into bursts: a pause longer than BURST_GAP_MS ends a burst."""
    out: list[list[tuple]] = []
    end = None
    for p in sorted(pulses):
        if end is None or p[0] - end > BURST_GAP_MS:
            out.append([])
        out[-1].append(p)
        end = p[0] + p[2]
    return out


def measure(pulses: list[tuple], priority: int) -> dict[str, list[int]]:
    """Measured figures of one priority's timeline, each as every value seen:
    pulses per burst, pulse duration, pulse spacing (end to next start, for high only the
    short spacings x), spacing 5th to 6th pulse (high), burst repeat interval (start to
    start), fundamental frequency."""
    groups = bursts(pulses)
    spacing: list[int] = []
    long_gap: list[int] = []
    for g in groups:
        for k in range(1, len(g)):
            gap = g[k][0] - (g[k - 1][0] + g[k - 1][2])
            if priority == 3 and k == 5:
                long_gap.append(gap)
            elif priority == 3 and k in (3, 8):  # 2x + td: checked by its own figure
                continue
            else:
                spacing.append(gap)
    figures = {
        "pulses per burst": [len(g) for g in groups],
        "pulse duration": [p[2] for p in pulses],
        "pulse spacing": spacing,
        "burst repeat interval": [groups[k][0][0] - groups[k - 1][0][0]
                                  for k in range(1, len(groups))],
        "fundamental frequency": [p[1] for p in pulses],
    }
    if priority == 3:
        figures["spacing 5th to 6th pulse"] = long_gap
        figures["spacing 3rd to 4th pulse"] = [
            g[3][0] - (g[2][0] + g[2][2]) for g in groups if len(g) > 3]
    return figures


def flash(levels: list[tuple[int, int]]) -> tuple[int, int] | None:
    """(frequency in mHz, duty in %) of an LED from its (time ms, level) changes; None for
    a steady light. Uses whole cycles between the first and the last rising edge."""
    rises = [t for k, (t, v) in enumerate(levels) if v and (k == 0 or not levels[k - 1][1])]
    rises = rises[1:]  # the first "rise" may be the start, not an edge
    if len(rises) < 2:
        return None
    period = (rises[-1] - rises[0]) / (len(rises) - 1)
    on = 0
    for k, (t, v) in enumerate(levels):
        if v and rises[0] <= t < rises[-1] and k + 1 < len(levels):
            on += levels[k + 1][0] - t
    return round(1e6 / period), round(100 * on / (rises[-1] - rises[0]))


def write_wav(pulses: list[tuple], path: str | Path, start: int | None = None,
              end: int | None = None) -> float:
    """Write the pulses as a mono 16-bit WAV (square-ish tones with soft edges, as a piezo
    driven by PWM sounds); returns the length in seconds."""
    if not pulses:
        raise ValueError("no tone pulses to write: no alarm sounded in that window")
    t0 = min(p[0] for p in pulses) if start is None else start
    t1 = max(p[0] + p[2] for p in pulses) if end is None else end
    if t1 <= t0:
        raise ValueError("the window to write is empty")
    n = (t1 - t0) * RATE // 1000
    samples = [0.0] * n
    for p in pulses:
        gain = LEVEL_GAIN[p[3]] if len(p) > 3 and 0 <= p[3] < 3 else LEVEL_GAIN[0]
        a = max(0, (p[0] - t0) * RATE // 1000)
        b = min(n, (p[0] + p[2] - t0) * RATE // 1000)
        ramp = RATE // 100  # 10 ms rise and fall: no clicks
        for i in range(a, b):
            edge = min(1.0, (i - a) / ramp, (b - i) / ramp)
            w = 2 * math.pi * p[1] * (i - a) / RATE
            # fundamental plus 3rd and 5th harmonics: a square wave's first terms
            samples[i] = gain * edge * (math.sin(w) + math.sin(3 * w) / 3 + math.sin(5 * w) / 5)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", int(max(-1.0, min(1.0, s * 0.7)) * 32767))
                                 for s in samples))
    return n / RATE
