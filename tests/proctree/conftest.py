"""Fixtures for proctree tests: a run id per test and cleanup of everything carrying it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from proctree_helpers import SESSION, Runner, new_token

import proctree


@pytest.fixture(scope="session")
def session_guardian() -> Iterator[proctree.Guardian]:
    """If this pytest process is killed outright, the guardian ends every tree it started."""
    guardian = proctree.start_guardian(SESSION, token=SESSION)
    try:
        yield guardian
    finally:
        guardian.close()


@pytest.fixture
def run(tmp_path, session_guardian: proctree.Guardian) -> Iterator[Runner]:
    """A run id for this test; teardown kills everything carrying it, then reaps by pid."""
    runner = Runner(new_token(), tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture
def popens() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Popen objects a test starts; killed and waited for on teardown (by pid)."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(params=["native", "fallback"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on this OS's native path and with subreaper/pdeathsig forced off."""
    proctree.force_fallback(request.param == "fallback")
    try:
        yield request.param
    finally:
        proctree.force_fallback(False)


@pytest.fixture
def subreaper() -> Iterator[bool]:
    """Make this test process a child subreaper for the test only (Linux)."""
    if not proctree.capabilities().has_subreaper:
        pytest.skip("no child subreaper on this platform (or fallback forced)")
    from proctree import _linux

    was = _linux.is_subreaper()
    assert proctree.enable_subreaper()
    try:
        yield True
    finally:
        if not was:
            _linux.disable_subreaper()
