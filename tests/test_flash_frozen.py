"""`pumpctl flash --board pico --frozen` (HW-2, HW-4): a board running the image with the
firmware frozen in (make firmware BOARD=pico) gets only main.py, its manifest, the key and
the settings; old .mpy folders go, so they cannot shadow the frozen modules.

The "board" is the MicroPython unix port on a pty (tests/test_flash.py's UnixBoard) whose
module path stands in for the image's frozen modules: its filesystem (the current folder)
first, then the repository and tools/arm/pico (pump_main), as on the Pico where the
filesystem comes before `.frozen` on sys.path.
"""

import hashlib
import subprocess

import pytest

from host_tools import flash as F
from tests.runtimes import REPO_ROOT
from tests.test_flash import MPREMOTE, UNIX_MP, UnixBoard, board_files

pytestmark = pytest.mark.skipif(UNIX_MP is None or MPREMOTE is None,
                                reason="MicroPython unix port or mpremote not installed")


@pytest.fixture
def frozen_board(tmp_path, monkeypatch):
    root = tmp_path / "board"
    root.mkdir()
    real_popen = subprocess.Popen

    def popen(args, **kw):
        if args and args[0] == UNIX_MP:
            kw["env"] = dict(kw.get("env") or {},
                             MICROPYPATH=f":{REPO_ROOT}:{REPO_ROOT / 'tools/arm/pico'}")
        return real_popen(args, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    b = UnixBoard(root)
    monkeypatch.setattr(subprocess, "Popen", real_popen)
    yield b
    b.close()


@pytest.mark.req("HW-2", "HW-4", "SEC-1")
def test_frozen_deploy_copies_main_key_and_settings_only(frozen_board, tmp_path, capsys):
    board = frozen_board
    # a board that had the .mpy deploy before: its code folders must go
    (board.root / "firmware").mkdir()
    (board.root / "firmware" / "pump.mpy").write_bytes(b"M\x06stale")
    (board.root / "data").mkdir()
    (board.root / "data" / "r0").write_bytes(b"kept")
    key_file = tmp_path / "pump.key"
    build = tmp_path / "build"
    lines: list[str] = []
    fw_id = F.flash("pico", board.port, key_file, {"max_bolus": 8000}, out=lines.append,
                    build_dir=build, resume=True, start=False, frozen=True)
    assert [ln[:5] for ln in lines] == [f"[{i}/8]" for i in range(1, 9)]
    assert "frozen in the board's image" in lines[0]
    key = bytes.fromhex(key_file.read_text().strip())
    on_board = board_files(board.root)
    assert set(on_board) == {"main.py", "manifest.sha256", "pairing.key", "provision.txt",
                             "data/r0"}
    assert on_board["main.py"].endswith(b"\nimport pump_main\n")
    assert on_board["pairing.key"] == key
    assert on_board["provision.txt"] == b"0 8000\n"
    assert on_board["data/r0"] == b"kept"
    assert not any((board.root / d).exists() for d in ("firmware", "protocol", "boards"))
    manifest = on_board["manifest.sha256"]
    assert fw_id == hashlib.sha256(manifest).hexdigest()
    assert manifest == (hashlib.sha256(on_board["main.py"]).hexdigest() + "  main.py\n").encode()
    # the verify step ran the (stand-in) frozen boards.drivers on the board: id and check ok
    assert f"firmware id {fw_id[:16]}" in lines[6]


@pytest.mark.req("HW-2")
def test_frozen_is_refused_for_a_board_without_such_an_image(tmp_path, capsys):
    code = F.main(["--board", "esp32", "--port", str(tmp_path / "none"), "--frozen",
                   "--key", str(tmp_path / "k")])
    out, err = capsys.readouterr()
    assert code == F.EXIT_BAD_INPUT
    assert err.strip() == ("pumpctl flash: error: --frozen: no esp32 image with the firmware "
                           "frozen in (only pico)")
    assert not (tmp_path / "k").exists()  # refused before anything was touched
