"""Fixtures for the fake-claude tests: a run id per test, fakes that are always cleaned up, and
a session-end check that no process carrying any of this session's run ids survives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_helpers import FakeProc, kill_run, new_run_id, run_processes, wait_for

_issued: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def no_survivors() -> Iterator[None]:
    yield
    # Anything still carrying one of our run ids is a leak of the suite itself: end it, then fail.
    survivors = [
        (p.pid, " ".join(p.info["cmdline"] or [])) for r in _issued for p in run_processes(r)
    ]
    for run_id in _issued:
        kill_run(run_id)
    assert not survivors, f"processes outlived the fake tests: {survivors}"


@pytest.fixture
def run_id() -> Iterator[str]:
    rid = new_run_id()
    _issued.append(rid)
    try:
        yield rid
    finally:
        kill_run(rid)
        wait_for(lambda: not run_processes(rid), f"run {rid} processes to die")


@pytest.fixture
def spawn(tmp_path: Path, run_id: str) -> Iterator[Callable[..., FakeProc]]:
    """spawn(scenario="ok", args=None, **kw) -> FakeProc; all of them end with the test."""
    started: list[FakeProc] = []

    def _spawn(scenario: str = "ok", args: list[str] | None = None, **kw) -> FakeProc:
        proc = FakeProc(tmp_path, run_id, scenario, args, **kw)
        started.append(proc)
        return proc

    try:
        yield _spawn
    finally:
        for proc in started:
            proc.cleanup()
