#!/usr/bin/env bash
# Build MicroPython images with the pump firmware frozen in (HW-4).
#
#   tools/arm/build.sh qemu-arm -> build/qemu-arm/micropump.elf (ports/qemu, mps2-an385,
#                                ARMv6-M code, 192 KiB heap; board tools/arm/qemu) and
#                                micropump-test.elf (the same + tests/mp_scenarios.py)
#
# Sources come from tools/arm/sources.py (Debian trixie, private apt configuration). The
# MicroPython tree is copied to build/arm/mp and patched there with tools/arm/*/*.patch
# (small, commented); the copy is redone only when a patch changes. make -j2 at most.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARM="$ROOT/build/arm"
JOBS="${JOBS:-2}"

python3 "$ROOT/tools/arm/sources.py" --dest "$ARM"

MP="$ARM/mp"
PATCHES=("$ROOT/tools/arm/qemu/micropython-qemu.patch")
want="$(cat "$ARM/src/micropython/.version" "${PATCHES[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$MP/.patched" 2>/dev/null)" != "$want" ]; then
    echo "micropython: fresh patched copy in $MP"
    rm -rf "$MP"
    cp -a "$ARM/src/micropython" "$MP"
    patch -s -d "$MP/ports/qemu" -p0 < "$ROOT/tools/arm/qemu/micropython-qemu.patch"
    echo "$want" > "$MP/.patched"
fi

make -s -C "$MP/mpy-cross" -j"$JOBS"

case "${1:-qemu-arm}" in
qemu-arm)
    OUT="$ROOT/build/qemu-arm"
    mkdir -p "$OUT"
    make -s -C "$MP/ports/qemu" -j"$JOBS" BOARD_DIR="$ROOT/tools/arm/qemu" \
        BUILD="$ARM/build-qemu"
    cp "$ARM/build-qemu/firmware.elf" "$OUT/micropump.elf"
    # the test image: the same plus tests/mp_scenarios.py frozen (manifest_test.py)
    make -s -C "$MP/ports/qemu" -j"$JOBS" BOARD_DIR="$ROOT/tools/arm/qemu" \
        BUILD="$ARM/build-qemu-test" FROZEN_MANIFEST="$ROOT/tools/arm/qemu/manifest_test.py"
    cp "$ARM/build-qemu-test/firmware.elf" "$OUT/micropump-test.elf"
    arm-none-eabi-size "$OUT/micropump.elf" "$OUT/micropump-test.elf"
    ;;
*)
    echo "tools/arm/build.sh: unknown board '$1' (qemu-arm or pico)" >&2
    exit 2
    ;;
esac
