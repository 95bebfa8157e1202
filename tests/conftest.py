"""Shared fixtures for tests/ (the `req` and `slow` markers are registered in pyproject.toml)."""
