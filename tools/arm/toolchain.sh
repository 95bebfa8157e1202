#!/usr/bin/env bash
# The Debian packages the ARM images need (HW-4): installed with apt-get when missing, so
# `make test` on a fresh machine installs what it needs itself (as root, or through sudo).
# Bookworm's own packages only; the MicroPython, Pico SDK, TinyUSB and picotool sources come
# from trixie through tools/arm/sources.py (a private apt configuration).
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
          qemu-system-arm cmake dpkg-dev xz-utils bzip2 patch make g++ libusb-1.0-0-dev
          pkg-config)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "ARM toolchain: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get -qq update  # quiet: CI logs carry no archive addresses
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
