"""Shared fixtures for tests/ (the `req` and `slow` markers are registered in pyproject.toml)."""

import pytest


@pytest.fixture(autouse=True)
def _own_user_dirs(tmp_path_factory, monkeypatch):
    """pumpctl reads a per-user config file and finds a running default emulator in the
    XDG folders (host_tools/config.py): tests use empty ones, never the user's own."""
    home = tmp_path_factory.mktemp("xdg")
    for kind in ("CONFIG", "STATE", "CACHE"):
        monkeypatch.setenv(f"XDG_{kind}_HOME", str(home / kind.lower()))
    for name in ("PUMPCTL_PORT", "PUMPCTL_KEY"):
        monkeypatch.delenv(name, raising=False)
