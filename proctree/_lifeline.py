"""A lifeline (POSIX): a pipe whose write end only the parent holds, so a child learns that its
parent is gone, however it died, by reading EOF.

Linux's parent-death signal kills a child outright (it cannot end its own children first) and
macOS has none at all. A daemon given a lifeline can stop the way it stops on SIGTERM: end its
trees, then exit. The parent's end is close-on-exec (os.pipe's default), so no other child of
the parent inherits it and keeps the line alive.

    line = proctree.Lifeline()                            # parent, before the spawn
    Popen([..., "--lifeline-fd", str(line.child_fd)], pass_fds=line.pass_fds)
    line.spawned()                                        # parent, after: drop the child's end
    ...
    proctree.watch_lifeline(fd, loop, on_gone)            # child: on_gone() at EOF
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable


class Lifeline:
    """The parent's side. Cut it with close() (the child sees EOF); dying cuts it too."""

    def __init__(self) -> None:
        self.child_fd, self._parent_fd = os.pipe()

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.child_fd,) if self.child_fd >= 0 else ()

    def spawned(self) -> None:
        """The child holds its end now: ours must go, or the child's EOF could never come from
        our death alone."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def close(self) -> None:
        self.spawned()
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1


def lifeline_problem(fd: int) -> str | None:
    """Why `fd` cannot be a lifeline's read end in this process, or None."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        return f"fd {fd} is not open ({os.strerror(exc.errno or 0)})"
    if not stat.S_ISFIFO(mode):
        return f"fd {fd} is not a pipe"
    return None


def watch_lifeline(fd: int, loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> None:
    """Call on_gone() once the parent's end closes. Our own children do not inherit the fd."""
    if sys.platform == "win32":  # no pipe readers in the Proactor loop; the job covers it there
        raise OSError("a lifeline is POSIX only")
    os.set_inheritable(fd, False)
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:  # nothing is ever written; drain it anyway rather than spin
            return
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        on_gone()

    loop.add_reader(fd, readable)
