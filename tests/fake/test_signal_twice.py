"""A tree is often signalled twice (its process group, then each process): the fake leaves once.

The second signal can arrive while the first one's handler is still leaving (writing the ledger;
under `-e coverage`, saving its measurements in os._exit). It must not run the handler again
half-way through: one `signal` record, one `exit` record, the first signal's exit code.

To hold the fake inside its handler, its ledger is a FIFO that the test has filled: the handler's
ledger write blocks until the test drains it, and the second signal is sent meanwhile.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from fake_helpers import DEADLINE, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/<pid>/wchan and signal masks"
)


def _status_mask(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


def _bit(signum: int) -> int:
    return 1 << (signum - 1)


def _pending(pid: int, signum: int) -> bool:
    return bool((_status_mask(pid, "ShdPnd") | _status_mask(pid, "SigPnd")) & _bit(signum))


def _in_pipe_write(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as fh:
        return fh.read().strip().endswith("pipe_write")  # pipe_write, anon_pipe_write (6.x)


def _drain(fd: int) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def _fill(fd: int) -> None:
    """Write blank lines until the FIFO is full (the fake's next ledger write then blocks)."""
    for size in (4096, 1):
        while True:
            try:
                os.write(fd, b"\n" * size)
            except BlockingIOError:
                break


def _read_to_eof(fd: int, deadline_s: float) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        select.select([fd], [], [], 0.5)
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("the fake never closed its ledger")


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_while_leaving_is_not_handled_again(spawn, tmp_path: Path, second):
    fifo = tmp_path / "ledger.fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader first: the fake's open needs one
    wfd = -1
    try:
        fake = spawn("ok", ledger=fifo)
        fake.initialize()  # its signal policy is installed by now
        records = _drain(rfd)
        wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        _fill(wfd)

        fake.signal(signal.SIGTERM)
        # Delivered, and blocked in a pipe write again: the handler's ledger write.
        wait_for(
            lambda: not _pending(fake.pid, signal.SIGTERM) and _in_pipe_write(fake.pid),
            "the fake to block in its SIGTERM handler's ledger write",
        )
        fake.signal(second)
        # Held back (blocked and pending), or - the bug - handled at once, inside the first.
        wait_for(
            lambda: (
                _pending(fake.pid, second) or not _status_mask(fake.pid, "SigBlk") & _bit(second)
            ),
            "the second signal to be sent",
        )
        os.close(wfd)
        wfd = -1
        records += _read_to_eof(rfd, DEADLINE)
        assert fake.wait_exit() == 128 + signal.SIGTERM
    finally:
        if wfd >= 0:
            os.close(wfd)
        os.close(rfd)
    events = [json.loads(line) for line in records.splitlines() if line.strip()]
    signals = [(e["name"], e["action"]) for e in events if e["event"] == "signal"]
    assert signals == [("SIGTERM", "exit")]
    assert [e["code"] for e in events if e["event"] == "exit"] == [128 + signal.SIGTERM]
