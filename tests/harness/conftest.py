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
def popen() -> Iterator[Callable[..., subprocess.Popen]]:
    """popen(argv, patience=0, **Popen kw): at teardown each one's stdin is closed, it gets
    `patience` seconds to exit, then it is SIGKILLed by identity and reaped."""
    started: list[tuple[subprocess.Popen, psutil.Process, float]] = []

    def _popen(argv: list[str], patience: float = 0.0, **kw: object) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        started.append((proc, psutil.Process(proc.pid), patience))
        return proc

    yield _popen
    for proc, ps, patience in started:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            try:
                ps.kill()  # psutil refuses if the PID was reused
            except psutil.Error:
                pass
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(popen: Callable[..., subprocess.Popen]) -> Callable[..., subprocess.Popen[bytes]]:
    """Start a python child running `code` with extra argv; every one is killed at teardown."""

    def _spawn(code: str = SLEEPER, *argv: str, **kw: object) -> subprocess.Popen[bytes]:
        return popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kw,
        )

    return _spawn
