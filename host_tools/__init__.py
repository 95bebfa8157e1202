"""Host-side tools for micropump: client library, pumpctl command line, emulator launcher."""
