#!/usr/bin/env bash
# The Debian packages of the labgrid farm (issue 18, host_tools/farm.py): ser2net puts each
# emulator pty (or a board's USB serial port) on a TCP port. Installed with apt-get when
# missing (as root, or through sudo), like tools/arm/toolchain.sh.
set -euo pipefail
PACKAGES=(ser2net)
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "farm" "${PACKAGES[@]}"
