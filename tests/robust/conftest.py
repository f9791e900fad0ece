"""Fixtures for the hostile-child tests: hostile `claude` scripts and workers, ended by identity
(also on failure)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The worker tests' kit (a real `python -m worker serve`, its HTTP face, polling with deadlines).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))

from hostile import Hostile, write_hostile  # noqa: E402
from workerkit import Worker  # noqa: E402


@pytest.fixture
def hostiles(tmp_path: Path) -> Iterator[Callable[..., Hostile]]:
    made: list[Hostile] = []

    def make(case: str, **params: object) -> Hostile:
        h = write_hostile(tmp_path / f"{case}-{len(made)}", case, **params)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.kill_all()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def make(
        claude: Path, *, mode: str = "fixed", flags: list[str], env: dict[str, str] | None = None
    ) -> Worker:
        worker = Worker(tmp_path / f"data-{len(started)}", claude, mode, flags, env=env)
        started.append(worker)
        return worker.start()

    try:
        yield make
    finally:
        for worker in reversed(started):
            worker.close()
