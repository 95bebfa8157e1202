#!/usr/bin/env bash
# The Debian packages the ARM images need (HW-4): installed with apt-get when missing, so
# `make test` on a fresh machine installs what it needs itself (as root, or through sudo).
# Bookworm's own packages only; the MicroPython, Pico SDK, TinyUSB and picotool sources come
# from trixie through tools/arm/sources.py (a private apt configuration).
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
          qemu-system-arm cmake dpkg-dev xz-utils bzip2 patch make g++ libusb-1.0-0-dev
          pkg-config)
"$(dirname "${BASH_SOURCE[0]}")/../apt-install.sh" "ARM toolchain" "${PACKAGES[@]}"
