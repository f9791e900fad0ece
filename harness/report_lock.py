"""One run at a time per report folder: an advisory lock on the folder itself, held from the
check before the run to its end.

The check that a live run writes there (its report.json says "running" and the runs registry
names its harness alive) cannot see a run that has marked the folder but not yet written its
record (that comes once its worker runs, about a second later): two soaks started together
with one --report both ran, and each printed its verdict beside the other's report.json.
The kernel drops the lock when its holder exits, however it ends (SIGKILL too), so no stale
lock is ever left to clear. Where there is no flock (Windows) the registry's check alone holds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The folders this process holds, by resolved path: the open fd that holds each lock.
_HELD: dict[str, int] = {}


def take(folder: Path) -> bool:
    """Lock the folder for this run; False if another process holds it. True where there is
    no flock, or the folder cannot be opened for one (the other checks then say why)."""
    key = str(Path(folder).resolve())
    if sys.platform == "win32" or key in _HELD:
        return True
    import fcntl

    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError:  # a file system without flock: nothing to lock with
        os.close(fd)
        return True
    _HELD[key] = fd
    return True


def release(folder: Path | None) -> None:
    """Let the next run have the folder (a library caller may run several soaks in one process)."""
    if folder is None:
        return
    fd = _HELD.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        os.close(fd)
