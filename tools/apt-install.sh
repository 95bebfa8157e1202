#!/usr/bin/env bash
# apt-install.sh WHAT PACKAGE...: install the Debian packages that are missing (as root, or
# through sudo), saying "WHAT: installing ..." first; nothing to do when all are there.
# tools/arm/toolchain.sh and tools/farm-packages.sh list their packages and call this.
set -euo pipefail
what="$1"
shift
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "$what: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get -qq update  # quiet: CI logs carry no archive addresses
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
