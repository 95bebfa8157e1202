"""ROMFS images of the firmware's .mpy files (issue 12): MicroPython 1.25's read-only
file system (extmod/vfs_rom.c) whose files are memory-mapped, so the import of a .mpy
file from it runs the bytecode and reads the strings where they lie (flash on a board,
the PSRAM on the QEMU board) instead of copying them into the heap (py/persistentcode.c,
mp_reader_try_read_rom). The image format is mpremote's (mpremote.romfs.VfsRomWriter,
what `mpremote romfs build/deploy` writes).

    python -m tools.arm.romfs [--out build/qemu-arm/firmware.romfs]

builds the QEMU board's image: every module frozen into its image
(tools/arm/qemu/manifest.py) as ARMv6-M .mpy files, compiled by the image's own
mpy-cross (build/arm/mp/mpy-cross). `tools/arm/qemu.py --romfs FILE` boots the pump from
such an image (the board mounts it at /rom, ahead of the frozen modules).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mpremote.romfs import VfsRomWriter

ROOT = Path(__file__).resolve().parents[2]
MPY_CROSS = ROOT / "build/arm/mp/mpy-cross/build/mpy-cross"
QEMU_MANIFEST = ROOT / "tools/arm/qemu/manifest.py"
HEADER = VfsRomWriter.ROMFS_HEADER  # b"\xd2\xcd\x31": "RM1", the first bytes of an image


def manifest_sources(manifest: Path = QEMU_MANIFEST, root: Path = ROOT) -> list[str]:
    """The repository files a freeze manifest's package() calls freeze (paths from the
    repository root, sorted): the same set as the frozen image, so a ROMFS boot and a
    frozen boot run the same modules. module() entries (the board's main.py) are left out."""
    found: list[str] = []

    def package(name, files=None, base_path=".", opt=None):
        pkg = Path(base_path.replace("$(BOARD_DIR)", str(manifest.parent))) / name
        if files is None:
            paths = sorted(pkg.rglob("*.py"))
        else:
            paths = [pkg / f for f in files]
        found.extend(p.resolve().relative_to(root.resolve()).as_posix() for p in paths)

    def module(*args, **kw):
        pass

    exec(compile(manifest.read_text(), str(manifest), "exec"),
         {"package": package, "module": module, "freeze": module, "require": module,
          "include": module})
    return sorted(found)


def compile_mpy(sources: Iterable[str], out_dir: Path, *, root: Path = ROOT,
                mpy_cross: Path = MPY_CROSS, march: str = "armv6m") -> dict[str, bytes]:
    """mpy-cross each source (paths from `root`) into out_dir: {"pkg/mod.mpy": bytes}."""
    if not Path(mpy_cross).is_file():
        raise FileNotFoundError(f"no mpy-cross at {mpy_cross}: build the ARM image first "
                                "(`tools/arm/build.sh qemu-arm`)")
    files = {}
    for src in sources:
        name = src[:-3] + ".mpy"
        out = Path(out_dir) / name
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([str(mpy_cross), f"-march={march}", "-o", str(out), src],
                           cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            raise ValueError(f"mpy-cross {src}: {r.stderr.strip() or r.stdout.strip()}")
        files[name] = out.read_bytes()
    return files


def image(files: dict[str, bytes]) -> bytes:
    """A ROMFS image holding `files` ({"dir/sub/name": data}), folders made as needed."""
    tree: dict = {}
    for path, data in files.items():
        *dirs, name = path.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = data
    fs = VfsRomWriter()

    def put(node: dict):
        for name in sorted(node):
            if isinstance(node[name], dict):
                fs.opendir(name)
                put(node[name])
                fs.closedir()
            else:
                fs.mkfile(name, node[name])

    put(tree)
    return fs.finalise()


def qemu_image(**kw) -> bytes:
    """The QEMU board's ROMFS image: its frozen set as ARMv6-M .mpy files."""
    with tempfile.TemporaryDirectory(prefix="romfs-") as tmp:
        return image(compile_mpy(manifest_sources(), Path(tmp), **kw))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build the QEMU board's ROMFS image.")
    p.add_argument("--out", default=str(ROOT / "build/qemu-arm/firmware.romfs"))
    args = p.parse_args(argv)
    try:
        data = qemu_image()
    except (FileNotFoundError, ValueError) as exc:
        print(f"tools/arm/romfs.py: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"{out}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
