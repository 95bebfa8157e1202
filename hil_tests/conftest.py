"""Fixtures for the hardware-in-the-loop suite.

The HIL suite arrives with the emulator (boards/emulator.py): it will provide capability
fixtures (`pump`, `sim`) that start one emulator per test session (per xdist worker), or
drive a real board when `--port` is given. There are no HIL tests yet.
"""
