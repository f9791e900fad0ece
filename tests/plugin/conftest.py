"""Fixtures for the leak-check plugin's tests: a per-test marker, and cleanup by that marker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from leakcheck_helpers import processes_with

from harness.cleanup import kill_and_wait


@pytest.fixture(autouse=True)
def _inner_runs_have_their_own_rootdir(request: pytest.FixtureRequest) -> None:
    """An inner pytest run's rootdir is its own folder, whatever TMPDIR is: under a checkout
    (TMPDIR=./tmp), the checkout's pyproject.toml would be its config, and its node ids (which
    the tests read in its reports) would carry the path from there."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester").makeini("[pytest]\n")


@pytest.fixture
def marker() -> Iterator[str]:
    """A token put in the argv of every process the inner tests start; killed by it afterwards."""
    token = f"leakcheck-test-{secrets.token_hex(6)}"
    try:
        yield token
    finally:
        kill_and_wait(processes_with(token), timeout=10)
