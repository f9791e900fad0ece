"""Helpers for the real claude-mem tests: skip cleanly when the worker cannot run here."""

from __future__ import annotations

import os

import pytest

from harness import claude_mem_install as install

VERSION_13 = "13.25.3"
VERSION_10 = "10.6.3"


def require_cached(version: str) -> None:
    """Skip (with the reason and the fix) unless node, npm and the cached build are present.

    Under CI=true it fails instead: .ci/run installs node, and `tox -e claude-mem-tests`
    installs the builds before these tests, so a missing one there is a real failure."""
    reason = install.why_unavailable()
    if reason:
        _skip(f"real claude-mem needs node and npm: {reason}")
    if not install.is_cached(version):
        _skip(
            f"claude-mem {version} is not in the package cache {install.cache_dir()}; "
            f"run: python -m harness.claude_mem_install {version}"
        )


def _skip(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: tox -e claude-mem-tests should have installed it)")
    pytest.skip(reason)
