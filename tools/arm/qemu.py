"""Start the QEMU ARM board (boards/qemu_arm.py in build/qemu-arm/micropump.elf) behind a pty.

    python -m tools.arm.qemu --state DIR [--speed X | --lockstep] [--seed N] [--pulse 50]
                             [--sensor]

Like host_tools/launch.py (whose relay and restart logic it reuses): prints the protocol
pty path, relays bytes until Ctrl-C, and starts qemu again after a simulated power cut or
watchdog reset (qemu exits with the board's status, boards/qemu_layout.py). The board's
flash, plunger position, battery and world live in DIR/flash.bin, which qemu maps as the
board's PSRAM; the launcher provisions the key (DIR/key), pulse size and reset cause in it
before each boot. qemu runs with `-icount shift=0` when asked (icount=True): one
instruction is one ns of board time, runs repeat exactly, costs are instruction counts.
No second console port and no telemetry on this board.

With --romfs FILE (romfs=bytes) the launcher writes a ROMFS image of the firmware's .mpy
files (tools/arm/romfs.py) into the PSRAM at ROMFS_AT and the board boots from it: its
main.py mounts it at /rom ahead of the frozen modules (the .mpy deployment on a board
with ROMFS, issue 12); without, that area's header is erased and the frozen firmware runs.

With --sensor (sensor=True) the board's second UART (UART1) is its sensor link (SNS-4):
the launcher opens a pty for it (printed after the protocol pty, `QemuBoard.sensor_port`)
and hands its master side to qemu as the UART's character device (`-add-fd` and a serial
chardev on /dev/fdset/N: qemu reads the very pty the launcher keeps, no relay), so CGM
frames written to the path (`pumpctl sensor --port`, the HIL fixture `sensor`) reach the
board byte by byte like a USB-serial adapter's, and wait in the pty across a power cut.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from boards import qemu_layout as L
from host_tools import launch as HL

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = REPO_ROOT / "build" / "qemu-arm" / "micropump.elf"
TEST_IMAGE = REPO_ROOT / "build" / "qemu-arm" / "micropump-test.elf"
QEMU = "qemu-system-arm"


def find_image(image: str | os.PathLike | None = None) -> Path:
    path = Path(image) if image else IMAGE
    if not path.is_file():
        raise FileNotFoundError(f"no QEMU ARM image at {path}: build it with "
                                "`make firmware BOARD=qemu-arm`")
    if shutil.which(QEMU) is None:
        raise FileNotFoundError(f"{QEMU} not found: apt-get install qemu-system-arm")
    return path


SENSOR_FDSET = 1  # qemu's fd set that holds the sensor pty


def qemu_command(image: Path, flash: Path, icount: bool = False,
                 sensor_fd: int | None = None) -> list[str]:
    """qemu for the board: UART0 on stdio (no signals: bytes are bytes), PSRAM on `flash`;
    UART1 on the pty master `sensor_fd` when given (the child must inherit it)."""
    cmd = [QEMU, "-machine", "mps2-an385,memory-backend=psram", "-display", "none",
           "-monitor", "none", "-semihosting",
           "-object", f"memory-backend-file,id=psram,size={L.PSRAM_SIZE},"
                      f"mem-path={flash},share=on",
           "-chardev", "stdio,id=uart0,signal=off", "-serial", "chardev:uart0"]
    if sensor_fd is not None:
        cmd += ["-add-fd", f"fd={sensor_fd},set={SENSOR_FDSET}",
                "-chardev", f"serial,id=uart1,path=/dev/fdset/{SENSOR_FDSET}",
                "-serial", "chardev:uart1"]
    cmd += ["-kernel", str(image)]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd


def prepare_flash(path: Path, world: dict | None):
    """The PSRAM file: created erased (0xff) where the storage regions are; the world's
    JSON written when given (a fresh launch), kept otherwise (a reboot)."""
    if not path.exists() or path.stat().st_size != L.PSRAM_SIZE:
        with open(path, "wb") as f:
            f.truncate(L.PSRAM_SIZE)
            f.seek(L.FLASH_AT - L.PSRAM)
            f.write(b"\xff" * (L.WORLD_AT - L.FLASH_AT))
    if world is not None:
        text = json.dumps(world).encode()
        with open(path, "r+b") as f:
            f.seek(L.WORLD_AT - L.PSRAM)
            f.write(len(text).to_bytes(4, "little") + text)


ROMFS_HEADER = b"\xd2\xcd\x31"  # "RM1": the first bytes of a ROMFS image (extmod/vfs_rom.c)


def write_romfs(path: Path, image: bytes | None):
    """The ROMFS area (boards/qemu_layout.py ROMFS_AT): `image` (tools/arm/romfs.py), which
    the board then boots from, or, with None, its header erased (the frozen firmware)."""
    if image is not None:
        if not image.startswith(ROMFS_HEADER):
            raise ValueError("not a ROMFS image (it must start with the bytes d2 cd 31)")
        if len(image) > L.ROMFS_MAX:
            raise ValueError(f"ROMFS image of {len(image)} bytes: at most {L.ROMFS_MAX}")
    with open(path, "r+b") as f:
        f.seek(L.ROMFS_AT - L.PSRAM)
        f.write(image if image is not None else bytes(len(ROMFS_HEADER)))


def provision(path: Path, key: bytes, pulse_mu: int, reset_cause: int,
              script: str | None = None, sensor: bool = False):
    """The control area (boards/qemu_layout.py); with `script`, MODE_SCRIPT and its text;
    `sensor`: UART1 is the sensor link."""
    mode = L.MODE_PUMP if script is None else L.MODE_SCRIPT
    words = b"".join(v.to_bytes(4, "little") for v in
                     (L.CONTROL_MAGIC, L.EXIT_CRASH, reset_cause, pulse_mu))
    with open(path, "r+b") as f:
        f.seek(L.CONTROL_AT - L.PSRAM)
        f.write(words + key + mode.to_bytes(4, "little") + int(sensor).to_bytes(4, "little"))
        if script is not None:
            data = script.encode()
            if len(data) > L.SCRIPT_MAX:
                raise ValueError(f"script of {len(data)} bytes: at most {L.SCRIPT_MAX}")
            f.seek(L.SCRIPT_AT - L.PSRAM)
            f.write(len(data).to_bytes(4, "little") + data)


class ScriptError(AssertionError):
    """A script on the QEMU board raised, or qemu ended otherwise than by its end."""


def run_script(code: str, *, state_dir: str | os.PathLike, image=None, icount: bool = True,
               timeout: float = 900, world: dict | None = None,
               sensor: bytes | None = None) -> str:
    """Run MicroPython `code` on the QEMU board (MODE_SCRIPT, tools/arm/qemu/main.py); what
    it printed (\r\n as \n). The board's flash is DIR/flash.bin: kept between runs, so
    one script can prepare what the next boots from. `icount`: qemu -icount shift=0 (one
    instruction per ns of board time; time.ticks_cpu() counts 40 instructions). `sensor`:
    bytes waiting on UART1 (a sensor pty, as with QemuBoard's sensor=True)."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    flash = state / HL.FLASH_FILE
    fresh = not flash.exists()
    prepare_flash(flash, world if world is not None or not fresh else
                  {"speed": 0, "jitter": 0, "seed": 1, "rng": 0})
    provision(flash, bytes(32), 50, 0, script=code)
    master = slave = None
    if sensor is not None:
        master, slave, _path = HL._raw_pty()
        os.write(slave, sensor)
    try:
        proc = subprocess.run(qemu_command(find_image(image or TEST_IMAGE), flash, icount,
                                           master),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              pass_fds=[master] if master is not None else [])
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    out = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
    if proc.returncode != 0:
        raise ScriptError(f"qemu exited with {proc.returncode}:\n{out[-4000:]}\n"
                          f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return out


class QemuBoard(HL.Emulator):
    """host_tools.launch.Emulator with qemu-system-arm as the board process."""

    def __init__(self, state_dir, *, image=None, icount: bool = False,
                 romfs: bytes | None = None, **kw):
        self.image = find_image(image)
        self.icount = icount
        self.romfs = romfs  # a ROMFS image to boot the .mpy firmware from (None: frozen)
        self._uart_log = None
        kw["console"] = False  # the UART is the board's only port
        kw.setdefault("micropython", "unused")
        super().__init__(state_dir, **kw)

    def _write_world(self, speed: int, jitter: int, heap_check: bool):
        world = {"speed": speed, "jitter": jitter, "seed": self.seed, "rng": 0,
                 "heap_check": int(heap_check)}
        self.flash = self.state_dir / HL.FLASH_FILE
        prepare_flash(self.flash, world)
        write_romfs(self.flash, self.romfs)

    def _spawn(self, reset_cause: int):
        prepare_flash(self.flash, None)
        key = bytes.fromhex(self.key_path.read_text().strip())
        sensor = self.sensor_master
        provision(self.flash, key, self.pulse_mu, reset_cause, sensor=sensor is not None)
        tel_r, tel_w = os.pipe()
        os.close(tel_w)  # no telemetry: the relay sees its end at once
        self.proc = subprocess.Popen(qemu_command(self.image, self.flash, self.icount, sensor),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, bufsize=0, start_new_session=True,
                                     pass_fds=[sensor] if sensor is not None else [])
        self._tel_r = tel_r
        self._tel_buf = b""
        self._child_in = None  # the UART's input is Popen's stdin pipe
        self._con_in_w = self._con_out_r = None
        self._pat_r = self._pat_w = None

    def _to_pty(self, fd: int, data: bytes):
        # Everything the UART sends also goes to DIR/uart.log: a traceback (text between
        # the frames) is the only trace a crashed firmware leaves on a board with one port.
        if self._uart_log is None:
            self._uart_log = open(self.state_dir / "uart.log", "ab")
        self._uart_log.write(data)
        self._uart_log.flush()
        super()._to_pty(fd, data)

    def uart_text(self) -> str:
        """The printable text the board sent (tracebacks, messages), frames left out."""
        try:
            raw = (self.state_dir / "uart.log").read_bytes()
        except OSError:
            return ""
        lines = raw.replace(b"\r", b"").split(b"\n")
        text = [ln for ln in lines if ln and all(32 <= b < 127 for b in ln)]
        return "\n".join(t.decode() for t in text)


def launch(state_dir, **kw) -> QemuBoard:
    return QemuBoard(state_dir, **kw)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run the QEMU ARM board behind a pty.")
    p.add_argument("--state", required=True, help="folder of the board's flash and key")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--lockstep", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--pulse", type=int, default=50, choices=(10, 25, 50))
    p.add_argument("--fresh", action="store_true", help="erase the flash first")
    p.add_argument("--icount", action="store_true", help="qemu -icount shift=0")
    p.add_argument("--image", default=None)
    p.add_argument("--romfs", default=None, metavar="FILE",
                   help="boot the firmware's .mpy files from this ROMFS image "
                        "(`python -m tools.arm.romfs`) instead of the frozen ones")
    p.add_argument("--sensor", action="store_true",
                   help="sensor link on UART1 through a second pty (printed last): "
                        "`pumpctl sensor --port`")
    args = p.parse_args(argv)
    try:
        romfs = Path(args.romfs).read_bytes() if args.romfs else None
        board = launch(args.state, speed=args.speed, lockstep=args.lockstep, seed=args.seed,
                       pulse_mu=args.pulse, fresh=args.fresh, icount=args.icount,
                       image=args.image, sensor=args.sensor, romfs=romfs)
    except (OSError, ValueError) as exc:
        print(f"tools/arm/qemu.py: {exc}", file=sys.stderr)
        return 2
    print(board.port, flush=True)
    if board.sensor_port:
        print(board.sensor_port, flush=True)
    try:
        code = board.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        board.close()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
