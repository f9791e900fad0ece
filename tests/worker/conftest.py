"""Fixtures for the worker tests (cleanup by PID, also on failure and Ctrl-C)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from workerkit import FAST_FLAGS, FakeRun, Worker


@pytest.fixture
def fake_run(tmp_path: Path) -> Iterator[FakeRun]:
    run = FakeRun(secrets.token_hex(6), tmp_path / "fake")
    run.root.mkdir()
    try:
        yield run
    finally:
        run.kill_everything()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: workers(claude, mode=, flags=, data_dir=) -> a started Worker; all closed after."""
    started: list[Worker] = []

    def make(
        claude: Path,
        *,
        mode: str = "fixed",
        flags: list[str] | None = None,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Worker:
        worker = Worker(
            data_dir or tmp_path / "data",
            claude,
            mode,
            flags if flags is not None else FAST_FLAGS,
            env,
        )
        started.append(worker)
        return worker.start()

    try:
        yield make
    finally:
        for worker in reversed(started):
            worker.close()
