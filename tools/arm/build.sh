#!/usr/bin/env bash
# Build MicroPython images with the pump firmware frozen in (HW-4).
#
#   tools/arm/build.sh qemu-arm -> build/qemu-arm/micropump.elf (ports/qemu, mps2-an385,
#                                ARMv6-M code, 192 KiB heap; board tools/arm/qemu) and
#                                micropump-test.elf (the same + tests/mp_scenarios.py)
#   tools/arm/build.sh pico     -> build/pico/micropump.uf2 (ports/rp2, RPI_PICO, firmware
#                                frozen; tools/arm/pico), picotool in build/arm/picotool
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
# micropump's user C modules (hmac256: the link's HMAC-SHA256, SEC-2), compiled into both
# images: make-based ports take the directory, cmake-based ones its micropython.cmake
CMOD="$ROOT/tools/arm/cmod"
PATCHES=("$ROOT/tools/arm/qemu/micropython-qemu.patch" "$ROOT/tools/arm/pico/micropython-rp2.patch")
want="$(cat "$ARM/src/micropython/.version" "${PATCHES[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$MP/.patched" 2>/dev/null)" != "$want" ]; then
    echo "micropython: fresh patched copy in $MP"
    rm -rf "$MP"
    cp -a "$ARM/src/micropython" "$MP"
    patch -s -d "$MP/ports/qemu" -p0 < "$ROOT/tools/arm/qemu/micropython-qemu.patch"
    patch -s -d "$MP/ports/rp2" -p0 < "$ROOT/tools/arm/pico/micropython-rp2.patch"
    echo "$want" > "$MP/.patched"
fi

make -s -C "$MP/mpy-cross" -j"$JOBS"

# A build directory made with another set of C modules or another patched tree has stale
# generated headers (qstrs, module table) that make does not redo: start it again when
# either changes. The modules' contents count too: a new method name in a module moves the
# qstr numbers the frozen firmware was compiled with (it then reads the wrong names).
cmod_set="$want $(cd "$CMOD" && find . -type f | sort | xargs sha256sum)"
fresh_build() {
    if [ "$(cat "$1/.cmod-set" 2>/dev/null)" != "$cmod_set" ]; then
        rm -rf "$1"
        mkdir -p "$1"
        echo "$cmod_set" > "$1/.cmod-set"
    fi
}

case "${1:-qemu-arm}" in
qemu-arm)
    OUT="$ROOT/build/qemu-arm"
    mkdir -p "$OUT"
    fresh_build "$ARM/build-qemu"
    fresh_build "$ARM/build-qemu-test"
    make -s -C "$MP/ports/qemu" -j"$JOBS" BOARD_DIR="$ROOT/tools/arm/qemu" \
        BUILD="$ARM/build-qemu" USER_C_MODULES="$CMOD"
    cp "$ARM/build-qemu/firmware.elf" "$OUT/micropump.elf"
    # the test image: the same plus tests/mp_scenarios.py frozen (manifest_test.py)
    make -s -C "$MP/ports/qemu" -j"$JOBS" BOARD_DIR="$ROOT/tools/arm/qemu" \
        BUILD="$ARM/build-qemu-test" USER_C_MODULES="$CMOD" \
        FROZEN_MANIFEST="$ROOT/tools/arm/qemu/manifest_test.py"
    cp "$ARM/build-qemu-test/firmware.elf" "$OUT/micropump-test.elf"
    arm-none-eabi-size "$OUT/micropump.elf" "$OUT/micropump-test.elf"
    ;;
pico)
    # picotool (host tool: makes the UF2, reads it back), from trixie's source
    PT="$ARM/picotool"
    if [ ! -x "$PT/bin/picotool" ]; then
        echo "picotool: building from $ARM/src/picotool"
        # +dfsg source: no prebuilt ARM blobs, so build them (USE_PRECOMPILED=false)
        cmake -S "$ARM/src/picotool" -B "$ARM/picotool-build" -DCMAKE_BUILD_TYPE=Release \
            -DPICO_SDK_PATH="$ARM/src/pico-sdk" -DCMAKE_INSTALL_PREFIX="$PT" \
            -DUSE_PRECOMPILED=false > "$ARM/picotool-build.log"
        make -C "$ARM/picotool-build" -j"$JOBS" install >> "$ARM/picotool-build.log"
    fi
    # the SDK and TinyUSB where MicroPython's tree expects its submodules
    for lib in pico-sdk tinyusb mbedtls; do
        if [ ! -L "$MP/lib/$lib" ]; then
            rm -rf "$MP/lib/$lib"
            ln -s "$ARM/src/$lib" "$MP/lib/$lib"
        fi
    done
    # Debian's micropython-lib is cut down (requests, mip): the manifest require()s nothing
    # from it, but the build wants to see the submodule's README.md
    touch "$MP/lib/micropython-lib/README.md"
    # firmware id: sha256 over the frozen sources and the C modules (path and content), as
    # picotool shows it
    FW_ID="$(cd "$ROOT" && for f in $(find firmware -name '*.py' | sort) \
        $(find tools/arm/cmod -type f | sort) protocol/__init__.py \
        protocol/spec.py boards/__init__.py boards/drivers.py boards/pico.py \
        tools/arm/pico/pump_main.py; do echo "$f"; cat "$f"; done | sha256sum | cut -c1-16)"
    BOARD_DIR="$ARM/pico-board"
    rm -rf "$BOARD_DIR"
    cp -a "$MP/ports/rp2/boards/RPI_PICO" "$BOARD_DIR"
    cat "$ROOT/tools/arm/pico/mpconfigboard-extra.cmake" >> "$BOARD_DIR/mpconfigboard.cmake"
    cat "$ROOT/tools/arm/pico/mpconfigboard-extra.h" >> "$BOARD_DIR/mpconfigboard.h"
    cp "$ROOT/tools/arm/pico/pump_main.py" "$BOARD_DIR/"
    B="$ARM/build-pico"
    fresh_build "$B"
    # the port's Makefile wants a git checkout of pico-sdk (README.md): call cmake directly
    # with the arguments it would pass
    # GIT_CEILING_DIRECTORIES: the version comes from the source (1.25.0), not from the
    # git repository around build/
    export GIT_CEILING_DIRECTORIES="$ARM"
    CMAKE_PREFIX_PATH="$PT" cmake -S "$MP/ports/rp2" -B "$B" -DPICO_BUILD_DOCS=0 \
        -DMICROPY_BOARD=RPI_PICO -DMICROPY_BOARD_DIR="$BOARD_DIR" \
        -DMICROPY_FROZEN_MANIFEST="$ROOT/tools/arm/pico/manifest.py" \
        -DUSER_C_MODULES="$CMOD/micropython.cmake" \
        -DMICROPUMP_FIRMWARE_ID="$FW_ID" > "$ARM/build-pico.log"
    make -s -C "$B" -j"$JOBS" >> "$ARM/build-pico.log"
    OUT="$ROOT/build/pico"
    mkdir -p "$OUT"
    cp "$B/firmware.uf2" "$OUT/micropump.uf2"
    cp "$B/firmware.elf" "$OUT/micropump.elf"
    echo "$FW_ID" > "$OUT/firmware-id.txt"
    arm-none-eabi-size "$OUT/micropump.elf"
    "$PT/bin/picotool" info "$OUT/micropump.uf2"
    ;;
*)
    echo "tools/arm/build.sh: unknown board '$1' (qemu-arm or pico)" >&2
    exit 2
    ;;
esac
