"""Windows stdin reader: a daemon thread reads lines into a queue, readline(timeout) drains it."""

from __future__ import annotations

import queue
import sys
import threading
import time

from fake_claude.stdio import TIMEOUT


class ThreadLineReader:
    def __init__(self) -> None:
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.eof = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        stream = sys.stdin.buffer
        while True:
            line = stream.readline()
            if not line:
                self.lines.put(None)
                return
            self.lines.put(line.rstrip(b"\r\n"))

    def readline(self, timeout: float | None = None) -> bytes | None | object:
        if self.eof:
            return None
        # Wait in short slices: a blocked lock wait on Windows would hold off signal handlers.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0:  # time is up, but what has come is taken: readline(0) polls
                try:
                    line = self.lines.get_nowait()
                    break
                except queue.Empty:
                    return TIMEOUT
            try:
                line = self.lines.get(timeout=left)
                break
            except queue.Empty:
                continue
        if line is None:
            self.eof = True
        return line
