"""Run the pump firmware on the MicroPython unix port and expose its serial link on a pty.

    python -m host_tools.launch --state DIR [--pulse 50]

prints the pty path (e.g. /dev/pts/7) on stdout, then relays bytes between the pty and the
firmware's stdin/stdout until the firmware exits or Ctrl-C. Anything that opens a serial
port by path (pyserial, `pumpctl --port /dev/pts/7`) talks to it like to /dev/ttyACM0.

DIR holds the board's persistent state: flash.bin (storage regions, motor position) and
key, the 256-bit pairing key as 64 hex digits, created with a random key (mode 0600) if
absent (SEC-1). Stopping the launcher (or killing the firmware) is a power cut; the next
launch with the same DIR boots from what was saved.

From Python: `with launch(state_dir) as emu: serial.Serial(emu.port)`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import tty
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BOARD_SCRIPT = REPO_ROOT / "boards" / "unix.py"
KEY_FILE = "key"
FLASH_FILE = "flash.bin"


def find_micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    venv = REPO_ROOT / ".venv" / "bin" / "micropython"
    if venv.is_file():
        return str(venv)
    from shutil import which

    found = which("micropython")
    if found is None:
        raise FileNotFoundError("MicroPython unix port not found: run `make .venv/.installed`")
    return found


def ensure_key(state_dir: str | os.PathLike) -> Path:
    """The state dir's key file, created with a fresh random 256-bit key if absent."""
    path = Path(state_dir) / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_bytes(32).hex() + "\n")
    return path


class Emulator:
    """The firmware process plus the pty relay. `port` is the pty path to open."""

    def __init__(self, state_dir: str | os.PathLike, pulse_mu: int = 50,
                 micropython: str | None = None, stderr=None):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.key_path = ensure_key(self.state_dir)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{REPO_ROOT}{os.pathsep}.frozen"
        self.proc = subprocess.Popen(
            [micropython or find_micropython(), str(BOARD_SCRIPT), "--state",
             str(self.state_dir), "--pulse", str(pulse_mu)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
            cwd=REPO_ROOT, bufsize=0)
        self.dropped = 0  # bytes from the firmware nobody read (pty buffer full)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="pump-pty-relay", daemon=True)
        self._thread.start()

    def _relay(self):
        child_out = self.proc.stdout.fileno()
        child_in = self.proc.stdin.fileno()
        sel = selectors.DefaultSelector()
        sel.register(child_out, selectors.EVENT_READ, "fw")
        sel.register(self.master, selectors.EVENT_READ, "pty")
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    if key.data == "fw":
                        data = os.read(child_out, 4096)
                        if not data:
                            return  # the firmware exited
                        self._to_pty(data)
                    else:
                        try:
                            data = os.read(self.master, 4096)
                        except (BlockingIOError, InterruptedError):
                            continue
                        if data:
                            os.write(child_in, data)
        except OSError:
            return
        finally:
            sel.close()

    def _to_pty(self, data: bytes):
        # Like a UART with nobody listening: what does not fit is lost, never blocks.
        while data:
            try:
                n = os.write(self.master, data)
            except BlockingIOError:
                self.dropped += len(data)
                return
            data = data[n:]

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def close(self):
        """Stop the firmware (a power cut) and the relay."""
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._thread.join(timeout=2)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def launch(state_dir: str | os.PathLike, pulse_mu: int = 50, micropython: str | None = None,
           stderr=None) -> Emulator:
    """Start the firmware with its state in `state_dir`; returns the running Emulator."""
    return Emulator(state_dir, pulse_mu=pulse_mu, micropython=micropython, stderr=stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools.launch",
        description="Run the pump firmware on the MicroPython unix port behind a pty.")
    parser.add_argument("--state", required=True, metavar="DIR",
                        help="state directory (flash.bin, key); created if absent")
    parser.add_argument("--pulse", type=int, default=50, choices=(10, 25, 50),
                        help="insulin per motor pulse, mU (default 50)")
    parser.add_argument("--micropython", metavar="PATH", help="MicroPython unix binary")
    args = parser.parse_args(argv)
    try:
        emu = launch(args.state, args.pulse, args.micropython)
    except (OSError, FileNotFoundError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    print(emu.port, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C, kill and hang-up all power the pump off (also when started in the
    # background, where a shell ignores SIGINT)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        code = emu.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        emu.close()
    if code not in (0, -9):
        print(f"launch: firmware exited with status {code}", file=sys.stderr)
    return code if code > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
