"""Windows spawning: grandchildren on a stdin pipe; escapees detached, trying to leave the job."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

# Imported on Windows only; the assert also tells type checkers to skip it elsewhere.
assert sys.platform == "win32"

_keep: list[subprocess.Popen] = []

DETACHED_PROCESS = 0x00000008
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_BREAKAWAY_FROM_JOB = 0x01000000


def spawn_grandchild(argv: list[str], env: dict[str, str] | None = None) -> int:
    """A child on a stdin pipe we hold; with `env`, that environment and a group of its own."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        creationflags=CREATE_NEW_PROCESS_GROUP if env is not None else 0,
    )
    _keep.append(proc)  # holding the pipe: EOF reaches the child when we die
    return proc.pid


def spawn_escapee(argv: list[str], env: dict[str, str] | None = None, uncell: bool = False) -> None:
    del uncell  # cgroups are Linux's
    base = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
    io: dict[str, Any] = {
        "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
        "env": env,
    }  # fmt: skip
    try:
        subprocess.Popen(argv, creationflags=base | CREATE_BREAKAWAY_FROM_JOB, close_fds=True, **io)
    except OSError:
        # The job forbids breakaway (as a well-contained worker's should): stay detached inside it.
        subprocess.Popen(argv, creationflags=base, close_fds=True, **io)
