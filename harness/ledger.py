"""Incremental reader of the fake's JSON Lines ledger (see docs/contracts.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# An event is a few hundred bytes (argv included: Linux caps one argument at 128 KiB). A longer
# line is not an event: it is skipped, so a writer gone wrong cannot grow the harness's memory.
MAX_LINE = 4 * 1024 * 1024
READ_CHUNK = 1024 * 1024


class LedgerTail:
    """Reads lines appended since the last call; a partial last line waits for its end."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._offset = 0
        self._partial = b""
        self._skipping = False  # inside a line longer than MAX_LINE, until its newline
        self.bad_lines = 0

    def read_new(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return events
        with fh:
            fh.seek(self._offset)
            # In bounded chunks: what was appended since the last call may be large.
            while chunk := fh.read(READ_CHUNK):
                self._offset += len(chunk)
                self._feed(chunk, events)
        return events

    def _feed(self, chunk: bytes, events: list[dict[str, Any]]) -> None:
        lines = chunk.split(b"\n")
        tail = lines.pop()  # after the last newline: the start of a line still being written
        if lines:
            if self._skipping:  # the end of an over-long line
                lines[0] = b""
                self._skipping = False
            else:
                lines[0] = self._partial + lines[0]
            self._partial = tail
            for raw in lines:
                self._take(raw, events)
        elif not self._skipping:
            self._partial += tail
        if len(self._partial) > MAX_LINE:
            self._partial = b""
            self._skipping = True
            self.bad_lines += 1

    def _take(self, raw: bytes, events: list[dict[str, Any]]) -> None:
        if not raw.strip():
            return
        if len(raw) > MAX_LINE:
            self.bad_lines += 1
            return
        try:
            event = json.loads(raw)
        except ValueError:
            self.bad_lines += 1
            return
        if not isinstance(event, dict):
            self.bad_lines += 1
            return
        if self.run_id is not None and event.get("run_id") not in (None, self.run_id):
            return
        events.append(event)
