"""Alarm signals after IEC 60601-1-8 (ALM-8): the one table of what each priority sounds
like and how its LED flashes. Board drivers play it, the emulator records it, tests check it
against the standard's ranges (STANDARD below).

Auditory signal: a burst of tone pulses, repeated from the start of one burst to the start of
the next every BURST_INTERVAL_MS until the alarm is silenced. BURSTS[p] lists the burst as
on, off, on, ..., on times in ms (even index: tone, odd: pause). Every time is a multiple of
20 ms, the boards' service-timer period. Tones are square waves from the PWM, so the
fundamental is the PWM frequency and the odd harmonics come with it.
"""

# Index = priority (0 none, 1 low, 2 medium, 3 high).
# High: 10 pulses as 3 + 2, pause, 3 + 2. Pulse 160 ms (standard 75-200), spacing x = 100 ms
# (50-125), 3rd to 4th pulse 2x + td = 360 ms, 5th to 6th 700 ms (350-1300).
# Medium: 3 pulses of 200 ms (125-250), spacing 200 ms (125-250).
# Low: 2 pulses of 200 ms, spacing 200 ms; not repeated (the alarm manager re-annunciates
# it at the alarm-repeat setting, minutes apart).
BURSTS = (
    (),
    (200, 200, 200),
    (200, 200, 200, 200, 200),
    (160, 100, 160, 100, 160, 360, 160, 100, 160, 700,
     160, 100, 160, 100, 160, 360, 160, 100, 160),
)
BURST_INTERVAL_MS = (0, 0, 20000, 10000)  # 0: the burst is not repeated
TONE_HZ = (0, 523, 659, 880)  # C5, E5, A5: a higher pitch for a higher priority

# Visual signal: (on ms, off ms) of the LED per priority; off 0 means steady.
# High 2 Hz (1.4-2.8 Hz) at 48 % duty, medium 0.5 Hz (0.4-0.8 Hz) at 50 % (20-60 %); low
# steady. Multiples of 20 ms, the service-timer period.
FLASH = ((0, 0), (1, 0), (1000, 1000), (240, 260))
COLOUR = ("off", "yellow", "yellow", "red")  # IEC: high red, medium yellow, low yellow/cyan
# RGB LED channels (red, green, blue) per priority, for boards that have one.
RGB = ((0, 0, 0), (1, 1, 0), (1, 1, 0), (1, 0, 0))

# The standard's numbers (IEC 60601-1-8 tables 2 and 3 as ALM-8 quotes them), for tests and
# the generated table in docs/alarm-signals.md: (name, priority, low, high, unit).
STANDARD = (
    ("pulses per burst", 3, 10, 10, "pulses"),
    ("pulses per burst", 2, 3, 3, "pulses"),
    ("pulses per burst", 1, 1, 2, "pulses"),
    ("pulse duration", 3, 75, 200, "ms"),
    ("pulse duration", 2, 125, 250, "ms"),
    ("pulse duration", 1, 125, 250, "ms"),
    ("pulse spacing", 3, 50, 125, "ms"),
    ("pulse spacing", 2, 125, 250, "ms"),
    ("pulse spacing", 1, 125, 250, "ms"),
    ("spacing 5th to 6th pulse", 3, 350, 1300, "ms"),
    ("burst repeat interval", 3, 2500, 15000, "ms"),
    ("burst repeat interval", 2, 2500, 30000, "ms"),
    ("fundamental frequency", 3, 150, 1000, "Hz"),
    ("fundamental frequency", 2, 150, 1000, "Hz"),
    ("fundamental frequency", 1, 150, 1000, "Hz"),
    ("flash frequency", 3, 1400, 2800, "mHz"),
    ("flash frequency", 2, 400, 800, "mHz"),
    ("flash duty cycle", 3, 20, 60, "%"),
    ("flash duty cycle", 2, 20, 60, "%"),
)


def burst_ms(priority):
    """Length of one burst, first tone start to last tone end."""
    total = 0
    for t in BURSTS[priority]:
        total += t
    return total


def signal_pulses(segments, until, since=None):
    """Host side and emulator telemetry only (it allocates; never in the tick).
    Expand recorded signals (start, priority, level, stop or -1) into the tone pulses a
    buzzer plays up to `until` (and from `since`): [(start ms, Hz, duration ms, level)].
    A burst repeats every BURST_INTERVAL_MS; a signal stopped mid-pulse cuts the pulse."""
    out = []
    for start, priority, level, stop in segments:
        end = until if stop < 0 else min(stop, until)
        burst = BURSTS[priority]
        interval = BURST_INTERVAL_MS[priority]
        b = start
        while b < end:
            t = b
            for k in range(len(burst)):
                if t >= end:
                    break
                if not k & 1 and (since is None or t + burst[k] > since):
                    out.append((t, TONE_HZ[priority], min(burst[k], end - t), level))
                t += burst[k]
            if not interval:
                break
            b += interval
    return out
