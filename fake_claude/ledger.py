"""The JSON Lines ledger: one line per event, appended atomically by any number of processes.

POSIX: the file is opened O_APPEND and each line goes out in a single write(2), which the kernel
places at end of file as one unit. Windows has no such guarantee, so a lock file serialises appends.
"""

from __future__ import annotations

import json
import os
import sys

from fake_claude.identity import now


class Ledger:
    __slots__ = ("path", "run_id", "_fd")

    def __init__(self, path: str | None, run_id: str | None) -> None:
        self.path = path or None
        self.run_id = run_id
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o644)  # type: ignore[arg-type]
        return self._fd

    def write(self, event: str, **extra: object) -> None:
        if not self.path:
            return
        record = {"event": event, "ts": now(), "pid": os.getpid(), "run_id": self.run_id}
        record.update(extra)
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            fd = self._open()
            if sys.platform == "win32":
                from fake_claude._lock_windows import locked_append

                locked_append(fd, self.path, data)  # type: ignore[arg-type]
            else:
                _append(fd, data)
        except OSError as exc:
            # A ledger that cannot be written must not change the fake's behaviour.
            os.write(2, f"fake-claude: ledger write failed: {exc}\n".encode())


def _append(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # pragma: no cover - regular files write fully or fail
        raise OSError(f"short ledger write ({written} of {len(data)} bytes)")


def read_ledger(path: str | os.PathLike[str]) -> list[dict]:
    """Every record in a ledger file (for tests and harnesses). Raises on a malformed line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    return records
