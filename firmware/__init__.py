"""micropump firmware: pure MicroPython, never imports `machine`; importable by CPython."""
