"""Hardware-in-the-loop tests: drive a pump (emulator or real board) over the protocol."""
