"""Incremental reader of the fake's JSON Lines ledger (see docs/contracts.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class LedgerTail:
    """Reads lines appended since the last call; a partial last line waits for its end."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._offset = 0
        self._partial = b""
        self.bad_lines = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended with a newline
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(event, dict):
                self.bad_lines += 1
                continue
            if self.run_id is not None and event.get("run_id") not in (None, self.run_id):
                continue
            events.append(event)
        return events
