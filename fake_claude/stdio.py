"""Line-framed stdin with timeouts, and whole-line writes to stdout.

POSIX: select() on fd 0. Windows pipes cannot be select()ed: a reader thread feeds a queue
(see _stdin_windows.py). Both give the same interface: readline(timeout).
"""

from __future__ import annotations

import json
import os
import sys
import time

TIMEOUT = object()  # readline() result when the timeout passed without a line


class _PosixLineReader:
    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf already known to hold no newline (big lines stay linear)
        self.eof = False

    def readline(self, timeout: float | None = None) -> bytes | None | object:
        """Next line without its newline; None at EOF; TIMEOUT if none came in time."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            nl = self.buf.find(b"\n", self.scanned)
            if nl >= 0:
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                self.scanned = 0
                return line
            self.scanned = len(self.buf)
            if self.eof:
                if self.buf:
                    line = bytes(self.buf)
                    self.buf.clear()
                    self.scanned = 0
                    return line
                return None
            if deadline is not None:
                # Looked at once even when the time is up: readline(0) takes what is written.
                left = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([self.fd], [], [], left)
                if not ready:
                    return TIMEOUT
            chunk = os.read(self.fd, 1 << 16)
            if chunk:
                self.buf += chunk
            else:
                self.eof = True


def line_reader():
    if sys.platform == "win32":
        from fake_claude._stdin_windows import ThreadLineReader

        return ThreadLineReader()
    return _PosixLineReader()


class StdoutClosed(Exception):
    """The reader of our stdout went away (EPIPE)."""


def write_bytes(data: bytes, fd: int = 1) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except (BrokenPipeError, OSError) as exc:
        if isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) in (22, 32):
            raise StdoutClosed() from exc
        raise


def utf8(text: str) -> bytes:
    """As Node writes a string: a lone surrogate (which JSON input may carry) becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def send(obj: dict) -> None:
    write_bytes((json.dumps(obj, separators=(",", ":")) + "\n").encode())
