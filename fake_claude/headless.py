"""`headless`: the main thread hands the work to another thread and exits.

As a program whose main thread returns early while a worker thread carries on. On Linux the
process then reads as a zombie (its leader has exited) while it runs and holds its memory; a
tool that takes "zombie" for "ended" stops looking at it. Everywhere, Python signal handlers no
longer run (only the main thread runs them), so the fake's SIGTERM/SIGINT/SIGHUP policy is gone:
those signals are caught and then nothing happens. Stdin EOF still ends it (the work does), and
so does SIGKILL.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

from fake_claude.ledger import Ledger
from fake_claude.lifecycle import exit_now


def go_headless(ledger: Ledger, work: Callable[[], int]) -> None:
    """Run `work` in a new thread, which leaves the process with its return code, and end the
    calling (main) thread. Returns only if the platform cannot end it: then it waits for the
    work like any thread would."""

    def carry_on() -> None:
        code = 1
        try:
            code = work()
        finally:
            exit_now(ledger, code)  # os._exit: the process, from any thread

    ledger.write("misbehave", what="headless")
    worker = threading.Thread(target=carry_on, name="headless-work")
    worker.start()
    _end_this_thread()
    worker.join()


def _end_this_thread() -> None:
    try:
        if sys.platform == "win32":
            ctypes.windll.kernel32.ExitThread(0)
        else:
            ctypes.CDLL(None).pthread_exit(None)
    except (OSError, AttributeError):
        return  # no such call here: the caller waits instead
