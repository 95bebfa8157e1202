"""Deploy path (HW-2, SEC-1) without hardware: host_tools/flash.py against the MicroPython
unix port behind a pseudo-terminal, driven by the real mpremote.

The unix port runs its REPL on the pty's master side (stdin/stdout/stderr), with a
temporary folder as its current directory: that folder is the "board's" filesystem.
mpremote talks to the slave side like to /dev/ttyACM0. Every mpremote call uses `resume`:
without it, mpremote soft-resets the board first, which ends the unix port's process.
"""

import hashlib
import os
import select
import stat
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from host_tools import flash as F
from tests.runtimes import REPO_ROOT, UNIX_MP

MPREMOTE = F._tool("mpremote")

pytestmark = pytest.mark.skipif(UNIX_MP is None or MPREMOTE is None,
                                reason="MicroPython unix port or mpremote not installed")


class UnixBoard:
    """The unix port on a pty: `port` is the device path mpremote opens."""

    def __init__(self, root: Path):
        self.root = root
        master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}  # only its cwd
        self.proc = subprocess.Popen([UNIX_MP, "-i"], stdin=master, stdout=master,
                                     stderr=master, cwd=root, env=env, start_new_session=True)
        os.close(master)
        self._wait_for(b">>> ")

    def _wait_for(self, prompt: bytes, timeout: float = 15) -> None:
        seen = b""
        end = time.monotonic() + timeout
        while prompt not in seen:
            left = end - time.monotonic()
            assert left > 0, f"no REPL prompt from the unix port: {seen!r}"
            if select.select([self.slave], [], [], left)[0]:
                seen += os.read(self.slave, 1024)

    def mpremote(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([MPREMOTE, "connect", self.port, "resume", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=30)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.slave)


@pytest.fixture
def board(tmp_path):
    root = tmp_path / "board"
    root.mkdir()
    b = UnixBoard(root)
    yield b
    b.close()


def board_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.req("HW-2")
def test_mpremote_drives_the_unix_port_over_a_pty(board, tmp_path):
    r = board.mpremote("exec", "import sys; print(sys.implementation.name, 6 * 7)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "micropython 42"
    src = tmp_path / "hello.txt"
    src.write_text("line one\nline two\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 8)  # every byte value, 0x00 and 0x03 included
    r = board.mpremote("fs", "cp", str(src), ":hello.txt", "+", "fs", "cp", str(blob), ":b")
    assert r.returncode == 0, r.stderr
    assert (board.root / "hello.txt").read_bytes() == src.read_bytes()
    assert (board.root / "b").read_bytes() == blob.read_bytes()
    r = board.mpremote("fs", "cat", ":hello.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "line one\nline two\n"
    assert board.proc.poll() is None  # `resume`: no soft reset, the process lives on


BOOT_ON_BOARD = """
import sys
import fake_machine
sys.modules["machine"] = fake_machine
fake_machine.I2C.devices[0x68] = fake_machine.Ds3231Chip()  # the optional RTC is fitted
import boards.pico as b
from firmware.main import run

class Serial:
    def readinto(self, buf):
        return 0
    def write(self, buf, n):
        return n

b.main(serial=Serial())
print("resets", fake_machine.resets[0])
hw = b.make_hardware(serial=Serial())
pump = run(hw, ticks=3)
key = open("pairing.key", "rb").read()
print("boot", pump.selftest_bits, pump.setting(0), pump.setting(4), hw.key == key,
      hw.rtc is not None)
"""


@pytest.mark.req("HW-2", "SEC-1", "ALM-5")
def test_flash_deploys_compiled_firmware_key_and_settings(board, tmp_path, capsys):
    key_file = tmp_path / "keys" / "pump.key"
    build = tmp_path / "build"
    lines: list[str] = []
    fw_id = F.flash("pico", board.port, key_file, {"max_bolus": 8000, "bolus_speed": 1000},
                    out=lines.append, build_dir=build, resume=True, start=False)

    # progress: one line per step
    assert [ln[:5] for ln in lines] == [f"[{i}/8]" for i in range(1, 9)]
    # the key file: generated, 256 bits as hex, owner-only
    text = key_file.read_text()
    key = bytes.fromhex(text.strip())
    assert len(key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    printed = "\n".join(lines) + capsys.readouterr().out
    assert key.hex() not in printed.lower() and key.hex()[:16] not in printed.lower()
    assert "generated in" in printed

    # what landed on the board: the build, byte for byte, plus key and settings
    on_board = board_files(board.root)
    built = board_files(build)
    assert {k: v for k, v in on_board.items() if k in built} == built
    assert set(on_board) == set(built) | {"pairing.key", "provision.txt"}
    assert on_board["pairing.key"] == key
    assert on_board["provision.txt"] == b"0 8000\n4 1000\n"
    assert on_board["main.py"] == b"# micropump: written by host_tools/flash.py; runs the " \
                                  b"pump at power-on.\nimport boards.pico\n\nboards.pico.main()\n"
    modules = {name for name in built if name.endswith(".mpy")}
    expected = {f"firmware/{p.stem}.mpy" for p in (REPO_ROOT / "firmware").glob("*.py")}
    expected |= {"protocol/__init__.mpy", "protocol/spec.mpy", "protocol/refusals.mpy",
                 "boards/__init__.mpy",
                 "boards/drivers.mpy", "boards/pico.mpy"}
    assert modules == expected
    assert all(on_board[name][:1] == b"M" for name in modules)  # .mpy, not source
    manifest = on_board["manifest.sha256"]
    assert fw_id == hashlib.sha256(manifest).hexdigest()
    listed = dict(reversed(ln.split("  ")) for ln in manifest.decode().splitlines())
    assert set(listed) == set(built) - {"manifest.sha256"}
    assert all(hashlib.sha256(on_board[n]).hexdigest() == h for n, h in listed.items())

    # the deployed board module boots on the unix port (fake `machine`): settings applied
    # once through the firmware, key loaded, every power-on self-test passes, RTC found
    r = board.mpremote("fs", "cp", str(REPO_ROOT / "tests" / "fake_machine.py"),
                       ":fake_machine.py")
    assert r.returncode == 0, r.stderr
    r = board.mpremote("exec", BOOT_ON_BOARD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n")[:2] == ["resets 1", "boot 0 8000 1000 True True"], r.stdout
    assert not (board.root / "provision.txt").exists()

    # redeploy through the command line: same key, stale files gone, data/ kept
    (board.root / "firmware" / "stale.py").write_text("raise ImportError\n")
    data_before = board_files(board.root / "data")
    assert data_before
    code = F.main(["--board", "pico", "--port", board.port, "--key", str(key_file),
                   "--resume", "--no-start", "--build-dir", str(build)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    assert "pairing key from" in out and out.strip().endswith(f"runs firmware {fw_id}")
    assert key.hex() not in out
    assert not (board.root / "firmware" / "stale.py").exists()
    assert (board.root / "pairing.key").read_bytes() == key
    assert board_files(board.root / "data") == data_before
    assert not (board.root / "provision.txt").exists()


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pumpctl flash: error: ")
    return lines[0]


@pytest.mark.req("HW-2")
def test_port_not_found_is_one_line_and_exit_4(tmp_path, capsys):
    code = F.main(["--board", "pico", "--port", "/dev/ttyACM-none", "--key",
                   str(tmp_path / "k")])
    assert code == 4
    assert "port /dev/ttyACM-none not found" in one_error_line(capsys)
    assert not (tmp_path / "k").exists()  # nothing generated for a failed deploy


@pytest.mark.req("HW-2")
def test_missing_mpremote_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    real = F._tool
    monkeypatch.setattr(F, "_tool", lambda name: None if name == "mpremote" else real(name))
    code = F.main(["--board", "esp32", "--port", "/dev/null", "--key", str(tmp_path / "k")])
    assert code == 1
    assert "mpremote not found" in one_error_line(capsys)


@pytest.mark.req("HW-2")
def test_compile_failure_is_one_line_and_exit_1(board, tmp_path, capsys, monkeypatch):
    tree = tmp_path / "repo"
    for name in ("protocol/__init__.py", "protocol/spec.py", "protocol/refusals.py",
                 "boards/__init__.py", "boards/drivers.py", "boards/pico.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("")
    (tree / "firmware").mkdir()
    (tree / "firmware" / "broken.py").write_text("def f(:\n    pass\n")
    monkeypatch.setattr(F, "SOURCE_ROOT", tree)
    code = F.main(["--board", "pico", "--port", board.port, "--resume", "--key",
                   str(tmp_path / "k"), "--build-dir", str(tmp_path / "build")])
    assert code == 1
    assert "mpy-cross failed on firmware/broken.py" in one_error_line(capsys)
    assert not (tmp_path / "k").exists()
    assert board_files(board.root) == {}  # nothing copied


@pytest.mark.req("HW-2")
@pytest.mark.parametrize(("args", "message"), [
    (["--set", "max_bolus=8000"], "setting max_bolus: 8000.0 U is outside 0 .. 25 U"),
    (["--set", "max_bolus=8000mU"], "setting max_bolus is written in U, not mU"),
    (["--set", "max_bolus=8 U/h"], "setting max_bolus takes a number of U, not '8 U/h'"),
    (["--set", "max_bolus=0.0005"], "0.0005 U is not a whole number of 0.001 U"),
    (["--set", "bolus_speed=1500"], "bolus_speed: 1500.0 U/min is outside 0.5 .. 3 U/min"),
    (["--set", "dia=2.5"], "setting dia takes a whole number of min, not '2.5'"),
    (["--set", "auto_off=3"], "setting auto_off: 3 h is outside 0 (off) or 5 .. 24 h"),
    (["--set", "utc_offset=60"], "utc_offset is set with the clock"),
    (["--set", "volume=3"], "unknown setting 'volume'"),
    (["--set", "max_bolus"], "expected NAME=VALUE"),
    (["--board", "stm32"], "invalid choice: 'stm32'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    argv = ["--board", "pico", "--port", "/dev/null", "--key", str(tmp_path / "k"), *args]
    assert F.main(argv) == 2
    assert message in one_error_line(capsys)


@pytest.mark.req("HW-2", "SEC-1")
def test_bad_key_file_is_refused_and_never_echoed(tmp_path, capsys):
    bad = tmp_path / "pump.key"
    bad.write_text("secret-but-not-a-key\n")
    assert F.main(["--board", "pico", "--port", "/dev/null", "--key", str(bad)]) == 2
    line = one_error_line(capsys)
    assert "expected 32 raw bytes or 64 hex digits" in line
    assert "secret-but-not-a-key" not in line


@pytest.mark.req("HW-2", "SEC-1")
def test_key_generation_is_owner_only_and_reused(tmp_path):
    path = tmp_path / "pump.key"
    key, created = F.ensure_key(path)
    assert created and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = F.ensure_key(path)
    assert again == key and not created
    other, _ = F.ensure_key(tmp_path / "other.key")
    assert other != key


@pytest.mark.req("HW-2")
def test_build_is_board_specific(tmp_path):
    pico = F.build("pico", tmp_path / "pico")
    esp32 = F.build("esp32", tmp_path / "esp32")
    assert pico != esp32
    assert (tmp_path / "pico" / "boards" / "pico.mpy").is_file()
    assert not (tmp_path / "pico" / "boards" / "esp32.mpy").exists()
    assert not (tmp_path / "esp32" / "boards" / "fakes.mpy").exists()  # no test parts
    assert F.build("pico", tmp_path / "pico") == pico  # reproducible


@pytest.mark.req("HW-2")
def test_python_m_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "host_tools.flash", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--board" in proc.stdout


class SilentPort:
    """A pty nobody answers on: a wrong port, or a board whose REPL is not there."""

    def __init__(self):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self.slave = slave

    def close(self):
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.req("HW-2", "SEC-1")
def test_wrong_port_fails_fast_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(F, "PROBE_TIMEOUT", 3, raising=False)
    monkeypatch.setattr(F, "STEP_TIMEOUT", 3)  # the old single timeout, were it still used
    silent = SilentPort()
    try:
        started = time.monotonic()
        code = F.main(["--board", "pico", "--port", silent.port, "--key",
                       str(tmp_path / "keys" / "pump.key"), "--build-dir",
                       str(tmp_path / "build")])
        took = time.monotonic() - started
    finally:
        silent.close()
    assert code == 4
    line = one_error_line(capsys)
    assert f"no MicroPython REPL answers at {silent.port} within 3 s" in line
    assert "hold ACK while resetting" in line
    assert took < 20
    assert list(tmp_path.iterdir()) == []  # no key file, no key folder, no build


@pytest.mark.req("HW-2")
def test_unix_port_is_not_said_to_start_and_settings_are_in_units(board, tmp_path, capsys):
    key_file = tmp_path / "pump.key"
    code = F.main(["--board", "pico", "--port", board.port, "--key", str(key_file),
                   "--resume", "--build-dir", str(tmp_path / "build"),
                   "--set", "max_bolus=8", "--set", "bolus_speed=1.5 U/min",
                   "--set", "max_basal=2.5U/h", "--set", "dia=300"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("[1/8] board at ") and lines[0].endswith(
        "answers (MicroPython, linux)")
    assert lines[7] == ("[8/8] not started: the MicroPython unix port does not run main.py "
                        "at a reset")
    assert "firmware starts" not in out
    assert board.proc.poll() is None  # no reset was sent: the REPL process lives on
    # pump units on the board: 8 U -> 8000 mU, 1.5 U/min -> 1500, 2.5 U/h -> 2500, 300 min
    assert (board.root / "provision.txt").read_text() == "0 8000\n4 1500\n1 2500\n11 300\n"


class _Answers:
    """A Remote stand-in that answers the probe with a given platform."""

    port = "/dev/ttyACM9"

    def __init__(self, platform):
        self.platform = platform

    def run(self, *args, timeout=None, cwd=None):
        return f"micropump-probe {self.platform}\n"


@pytest.mark.req("HW-2")
def test_probe_refuses_another_board_before_anything_is_copied():
    assert F.probe(_Answers("rp2"), "pico") == "rp2"
    assert F.probe(_Answers("linux"), "esp32") == "linux"  # the unix port stands in
    with pytest.raises(F.FlashError) as err:
        F.probe(_Answers("esp32"), "pico")
    assert err.value.status == 2
    assert str(err.value) == ("the board at /dev/ttyACM9 runs MicroPython for esp32 "
                              "(--board esp32), not for pico")
