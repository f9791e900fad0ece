"""Reading an observer's stdout as bounded lines, and draining its stderr to a short tail."""

from __future__ import annotations

import asyncio
from collections import deque


class LineTooLong(Exception):
    """A line went past the bound: the session fails, the worker's memory stays bounded."""


class EndOfStream(Exception):
    """The observer closed stdout (it exited or is exiting)."""


class BoundedLines:
    """Split a StreamReader into non-blank lines of at most `limit` bytes.

    Blank lines (whitespace only) are skipped in bulk, and bounded like a line: more than
    `limit` bytes of them in a row is LineTooLong. Skipped one by one and unbounded, an
    observer writing newlines without end kept the worker's loop busy (77 % of a core for
    one) and, never pausing the read, got round the back-pressure on its output."""

    def __init__(self, stream: asyncio.StreamReader, limit: int, chunk: int = 64 * 1024) -> None:
        self._stream = stream
        self._limit = limit
        self._chunk = chunk
        self._buf = bytearray()
        self._eof = False
        self._blank = 0  # whitespace skipped since the last line

    async def next_line(self) -> bytes:
        while True:
            self._skip_blank()
            cut = self._buf.find(b"\n")
            if cut >= 0:
                line = bytes(self._buf[:cut])
                del self._buf[: cut + 1]
                if len(line) > self._limit:
                    raise LineTooLong(f"stdout line of {len(line)} bytes > {self._limit}")
                self._blank = 0
                return line
            if len(self._buf) > self._limit:
                size = len(self._buf)
                self._buf.clear()
                raise LineTooLong(f"stdout line longer than {self._limit} bytes (>= {size})")
            if self._eof:
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._blank = 0
                    return line
                raise EndOfStream()
            data = await self._stream.read(self._chunk)
            if not data:
                self._eof = True
            else:
                self._buf += data

    def _skip_blank(self) -> None:
        """Drop the whitespace the buffer starts with (blank lines, and a line's leading
        whitespace, which JSON ignores), in one C-level pass."""
        if not self._buf or not self._buf[:1].isspace():
            return
        kept = self._buf.lstrip()
        self._blank += len(self._buf) - len(kept)
        self._buf = kept
        if self._blank > self._limit:
            size = self._blank
            self._blank = 0
            raise LineTooLong(f"more than {self._limit} bytes of blank lines in a row ({size})")


async def drain_tail(stream: asyncio.StreamReader, keep: int = 2048) -> bytes:
    """Read a stream to its end, keeping only the last `keep` bytes (a flood cannot block us)."""
    tail: deque[bytes] = deque()
    size = 0
    while True:
        data = await stream.read(64 * 1024)
        if not data:
            return b"".join(tail)[-keep:]
        tail.append(data)
        size += len(data)
        while size - len(tail[0]) >= keep:
            size -= len(tail.popleft())
