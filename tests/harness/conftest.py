"""Fixtures for the harness tests: real processes, always ended by identity."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator

import psutil
import pytest
from soak_helpers import SLEEPER


@pytest.fixture
def run_id() -> str:
    return secrets.token_hex(6)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a python child running `code` with extra argv; every one is killed at teardown."""
    started: list[tuple[subprocess.Popen[bytes], psutil.Process]] = []

    def _spawn(code: str = SLEEPER, *argv: str, **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kw,  # type: ignore[arg-type]
        )
        started.append((proc, psutil.Process(proc.pid)))
        return proc

    yield _spawn
    for proc, ps in started:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            ps.kill()  # psutil refuses if the PID was reused
        except psutil.Error:
            pass
        proc.wait(timeout=30)
