"""micropump firmware: pure MicroPython, never imports `machine`; importable by CPython."""

VERSION = 1  # firmware version reported by HELLO (u16)
