#!/usr/bin/env bash
# The Debian packages of the labgrid farm (issue 18, host_tools/farm.py): ser2net puts each
# emulator pty (or a board's USB serial port) on a TCP port. Installed with apt-get when
# missing (as root, or through sudo), like tools/arm/toolchain.sh.
set -euo pipefail
PACKAGES=(ser2net)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "farm: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get -qq update  # quiet: CI logs carry no archive addresses
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
