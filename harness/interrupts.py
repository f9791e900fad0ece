"""Ctrl-C, SIGTERM and SIGHUP: one interrupt path, and a shield over a run's own cleanup.

The first signal stops the run (asyncio's Ctrl-C path: the main task is cancelled, every process
of the run is ended, the report says `interrupted`). A second one while that cleanup runs would
raise KeyboardInterrupt in the middle of it, and what it had not ended yet (escapees known only to
the census) would be left running: under `shielded()` it is only acknowledged.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that end a run; SIGHUP is absent on Windows.
SIGNALS = tuple(
    sig for sig in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if sig
)
_SHIELDS = [0]  # how many shielded() bodies are running (main thread only)


def shield_up() -> bool:
    """Whether a run's cleanup is under shielded() now. An asyncio signal handler (compare's,
    added with loop.add_signal_handler) still runs then, through the loop's wakeup fd: it must
    not cancel the task, or the cleanup and the report it shields are cut short."""
    return _SHIELDS[0] > 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP do what Ctrl-C does now. Calling SIGINT's handler, not raising SIGINT: a
    harness started with SIGINT ignored (`cmd &` in a script) must still stop on SIGTERM."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)  # asyncio's: cancel the main task; or KeyboardInterrupt
    else:
        raise KeyboardInterrupt


def term_as_interrupt() -> None:
    """SIGTERM (`timeout`, a CI job cancelled, `kill`) and SIGHUP (the terminal closed, an ssh
    session dropped) take the Ctrl-C path: the run is stopped, every process of it ended, and
    the report says `interrupted`. Left at their default, they would end the harness on the
    spot and leave the worker's orphans running."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS[1:]:
        # Under `nohup` SIGHUP is ignored on purpose: the run is meant to outlive the terminal.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


@contextmanager
def shielded(judged: bool = False) -> Iterator[None]:
    """While the body runs, the interrupting signals (those not ignored) are acknowledged on
    stderr instead of acted on; their handlers are restored after. SIGKILL still ends the
    harness at once, and `python -m harness sweep` then ends what it left. `judged`: the run
    was over before the signal, so its verdict (and exit code) stands; said so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    told: list[bool] = []

    def acknowledge(signum: int, frame: FrameType | None) -> None:
        if not told:
            told.append(True)
            print(
                f"harness: {signal.Signals(signum).name} noted; ending the run's processes and "
                "writing its report first (stopping now would leave processes running)"
                + ("; the run was over, so its verdict stands" if judged else ""),
                file=sys.stderr,
                flush=True,
            )

    saved = {}
    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not signal.SIG_IGN:
            saved[sig] = handler
            signal.signal(sig, acknowledge)
    _SHIELDS[0] += 1
    try:
        yield
    finally:
        _SHIELDS[0] -= 1
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
