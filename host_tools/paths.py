"""Where the pump's MicroPython sources are, and where the host tools keep their files.

From a checkout (`make`, `pip install -e .`) the sources are the repository's firmware/,
boards/ and protocol/. An installed wheel (pip, pipx) carries a copy of those three folders
as package data in host_tools/mp_tree/ (pyproject.toml, [tool.setuptools.package-dir]), so
`pumpctl emulate` and `pumpctl flash` work from any directory without a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_TREE = PACKAGE_DIR / "mp_tree"


def source_root() -> Path:
    """The folder that holds firmware/, boards/ and protocol/ as MicroPython imports them."""
    if (INSTALLED_TREE / "firmware").is_dir():
        return INSTALLED_TREE
    return PACKAGE_DIR.parent


def in_checkout() -> bool:
    """True when running from a source checkout (not from an installed wheel)."""
    return source_root() == PACKAGE_DIR.parent


def user_dir(kind: str) -> Path:
    """The per-user folder of `kind` ("state", "cache", "config") after the XDG base
    directory spec: $XDG_<KIND>_HOME/micropump, default ~/.local/state, ~/.cache, ~/.config."""
    defaults = {"state": "~/.local/state", "cache": "~/.cache", "config": "~/.config"}
    base = os.environ.get(f"XDG_{kind.upper()}_HOME") or os.path.expanduser(defaults[kind])
    return Path(base) / "micropump"
