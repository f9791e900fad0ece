"""Windows ledger appends: an exclusive byte-range lock on a sidecar file around each write."""

from __future__ import annotations

import msvcrt  # type: ignore[import-not-found]
import os
import sys
import time

# Imported on Windows only; the assert also tells type checkers to skip it elsewhere.
assert sys.platform == "win32"


def locked_append(fd: int, path: str, data: bytes) -> None:
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_BINARY, 0o644)  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                msvcrt.locking(lock_fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.lseek(lock_fd, 0, os.SEEK_SET)
            msvcrt.locking(lock_fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(lock_fd)
