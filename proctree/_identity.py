"""Process identity: (pid, create_time), never a bare PID (PIDs are reused)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# psutil's create_time has clock-tick resolution on Linux; the contract's tolerance.
CREATE_TIME_TOLERANCE = 0.01


@dataclass(frozen=True, order=True)
class ProcId:
    """A process as a (pid, create_time) pair."""

    pid: int
    create_time: float

    def matches(self, create_time: float) -> bool:
        return abs(self.create_time - create_time) <= CREATE_TIME_TOLERANCE

    def process(self) -> psutil.Process | None:
        """The live psutil.Process behind this identity, or None if it is gone or reused."""
        try:
            proc = psutil.Process(self.pid)
            if not self.matches(proc.create_time()):
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None


def identify(pid: int) -> ProcId | None:
    """The identity of the process currently holding `pid` (zombies included), or None."""
    try:
        return ProcId(pid, psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, ValueError):
        return None


def of_process(proc: psutil.Process) -> ProcId | None:
    try:
        return ProcId(proc.pid, proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None
