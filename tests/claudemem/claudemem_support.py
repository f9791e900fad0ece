"""Helpers for the real claude-mem tests: skip cleanly when the worker cannot run here."""

from __future__ import annotations

import pytest

from harness import claude_mem_install as install

VERSION_13 = "13.25.3"
VERSION_10 = "10.6.3"


def require_cached(version: str) -> None:
    """Skip (with the reason and the fix) unless node, npm and the cached build are present."""
    reason = install.why_unavailable()
    if reason:
        pytest.skip(f"real claude-mem needs node and npm: {reason}")
    if not install.is_cached(version):
        pytest.skip(
            f"claude-mem {version} is not in the package cache {install.cache_dir()}; "
            f"run: python -m harness.claude_mem_install {version}"
        )
