"""The .mpy deployment on a board with ROMFS (issue 12, HW-4): the QEMU ARM board boots the
pump from a ROMFS image of its .mpy files (tools/arm/romfs.py; tools/arm/qemu.py --romfs;
the board's main.py mounts it at /rom ahead of the frozen modules), and the pump runs.

The image is built from a copy of the frozen sources whose firmware version (HELLO's
`firmware`, firmware/__init__.py) is changed, so the HELLO answer tells which copy runs.

Needs the QEMU ARM image and its mpy-cross (`make firmware BOARD=qemu-arm`) and
qemu-system-arm; skipped, saying so, without them.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from hil_tests import kit
from hil_tests.bringup import Bench
from hil_tests.strategy import PumpStrategy
from host_tools import client as C
from protocol import spec as S
from tests.runtimes import run_unix
from tools.arm import qemu as Q
from tools.arm import romfs

ROOT = Path(__file__).resolve().parent.parent
MARK_VERSION = 0x7E57  # firmware version of the ROMFS copy (the frozen firmware's is 1)
BOOT_S = 60.0  # qemu on a loaded machine boots slowly


def test_image_set_is_the_frozen_set():
    """The image holds what the QEMU image freezes: every firmware module, the protocol
    table and the board with its simulated parts."""
    got = romfs.manifest_sources()
    firmware = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "firmware").rglob("*.py"))
    assert set(firmware) <= set(got)
    for path in ("protocol/spec.py", "protocol/refusals.py", "boards/__init__.py",
                 "boards/qemu_arm.py", "boards/qemu_layout.py", "boards/emulator.py"):
        assert path in got
    assert all((ROOT / p).is_file() for p in got)


def test_image_reads_back_through_micropythons_vfsrom(tmp_path):
    """The image as MicroPython's own ROMFS driver (extmod/vfs_rom.c, the unix port's
    build) reads it: folders, names, sizes and contents."""
    files = {"firmware/pump.mpy": bytes(range(256)) * 3, "firmware/x/y.mpy": b"M\x06",
             "protocol/spec.mpy": b"abc", "main.py": b"print(1)\n"}
    img = tmp_path / "fw.romfs"
    img.write_bytes(romfs.image(files))
    out = run_unix(f"""
import os, vfs
vfs.mount(vfs.VfsRom(open({str(img)!r}, "rb").read()), "/rom")
for d in ("/rom", "/rom/firmware", "/rom/firmware/x", "/rom/protocol"):
    print(d, sorted(os.listdir(d)))
for f in {sorted(files)!r}:
    data = open("/rom/" + f, "rb").read()
    print(f, len(data), sum(data))
""")
    want = ["/rom ['firmware', 'main.py', 'protocol']",
            "/rom/firmware ['pump.mpy', 'x']", "/rom/firmware/x ['y.mpy']",
            "/rom/protocol ['spec.mpy']"]
    want += [f"{f} {len(files[f])} {sum(files[f])}" for f in sorted(files)]
    assert out.split("\n")[:-1] == want


def test_launcher_refuses_what_is_not_a_romfs_image(tmp_path):
    flash = tmp_path / "flash.bin"
    Q.prepare_flash(flash, {"speed": 0})
    with pytest.raises(ValueError, match="not a ROMFS image"):
        Q.write_romfs(flash, b"M\x06\x00" + bytes(10))
    with pytest.raises(ValueError, match="at most"):
        Q.write_romfs(flash, romfs.HEADER + bytes(Q.L.ROMFS_MAX))


def _connect(emu) -> Bench:
    b = Bench(emu.port, C.load_key(emu.key_path), emulator=emu,
              started_board=S.BOARD_QEMU_ARM, has_sim=True)
    deadline = time.monotonic() + BOOT_S
    while True:
        try:
            b.connect()
            return b
        except C.PumpTimeout:
            if time.monotonic() > deadline:
                b.close()
                raise


@pytest.mark.req("HW-4")
def test_the_board_boots_the_pump_from_a_romfs_image(tmp_path):
    try:
        Q.find_image(Q.IMAGE)
        if not romfs.MPY_CROSS.is_file():
            raise FileNotFoundError(f"no mpy-cross at {romfs.MPY_CROSS}")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    src = tmp_path / "src"
    sources = romfs.manifest_sources()
    for path in sources:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, src / path)
    init = src / "firmware/__init__.py"
    text, n = re.subn(r"^VERSION = \d+", f"VERSION = {MARK_VERSION}", init.read_text(),
                      flags=re.M)
    assert n == 1, "firmware/__init__.py no longer sets VERSION: update this test"
    init.write_text(text)
    image = romfs.image(romfs.compile_mpy(sources, tmp_path / "mpy", root=src))

    state = tmp_path / "state"
    log = open(tmp_path / "qemu.log", "wb")
    b = _connect(Q.launch(state, lockstep=True, seed=5, console=False, stderr=log,
                          romfs=image))
    try:
        assert (b.info.board, b.info.firmware) == (S.BOARD_QEMU_ARM, MARK_VERSION)
        pump = b.client
        sim = kit.Sim(pump)
        PumpStrategy(pump, sim).to_ready()
        st0 = pump.status()
        bolus_id = pump.bolus(1000).detail
        sim.advance(seconds=60)  # 1.5 U/min: 1 U in 40 s
        st = pump.status()
        assert st.bolus_id == 0 and st.bolus_today - st0.bolus_today == 1000
        assert st0.reservoir - st.reservoir == 1000 + st.basal_today - st0.basal_today
        assert bolus_id != 0
    finally:
        b.close()
        log.close()

    # the same board launched without an image: its header erased, the frozen firmware
    log = open(tmp_path / "qemu2.log", "wb")
    b = _connect(Q.launch(state, lockstep=True, seed=5, console=False, stderr=log))
    try:
        assert (b.info.board, b.info.firmware) == (S.BOARD_QEMU_ARM, 1)
        assert b.client.status().bolus_today >= 1000  # the same pump: its flash kept
    finally:
        b.close()
        log.close()
