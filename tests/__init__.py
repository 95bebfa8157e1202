"""Unit and property tests: CPython, MicroPython unix port and 32-bit wasm runs."""
