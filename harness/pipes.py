"""Standard streams whose reader may go away mid-run.

A soak run under tox (`python3 ci/tox.py -e soak`) writes into tox's pipes. On Ctrl-C tox may
exit before the harness has ended its processes and written its report: the next write raised
BrokenPipeError, the cleanup stopped half-way, and the report said `running` for ever. A broken
stream is pointed at the null device instead, and the run goes on to its end.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class PipeSafe:
    """A text stream that drops what it cannot write once its reader is gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        # Now, not at some later write or at exit (where a failed flush of a pipe makes
        # Python exit 120): the break is seen here, where it can be handled.
        self.flush()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        # The stream's buffer still holds what failed; the interpreter flushes it at exit.
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def protect_standard_streams() -> None:
    """Make sys.stdout and sys.stderr PipeSafe (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafe):
            setattr(sys, name, PipeSafe(stream))
