"""Leaving the process in a logged way, and the signal policy (platform parts live elsewhere)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fake_claude.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable

# Run by exit_now before it leaves: what an orderly exit of the real CLI ends (its stdio MCP
# servers). A death by signal or a crash skips them, as it would the real one's.
_on_exit: list[Callable[[], None]] = []


def at_exit(fn: Callable[[], None]) -> None:
    _on_exit.append(fn)


def exit_now(ledger: Ledger, code: int) -> None:
    """Log `exit` and leave at once (no interpreter teardown: children are not ours to wait for,
    except what at_exit() named)."""
    while _on_exit:
        try:
            _on_exit.pop()()
        except Exception:  # leaving regardless
            pass
    ledger.write("exit", code=code)
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(code)


def die_by_signal(ledger: Ledger, signame: str) -> None:
    """Log `exit` with the negative signal number, then really die by that signal."""
    import signal

    from fake_claude.scenario import signal_number

    signum = signal_number(signame)
    if signum is None:  # checked where the spec was read; a safeguard, not a path
        raise ValueError(f"not a signal: {signame!r}")
    ledger.write("exit", code=-signum)
    if sys.platform == "win32":
        os._exit(3)  # Windows has no death by signal; the CRT's abort code stands in
    if signum != signal.SIGKILL:  # SIGKILL cannot be handled, so it needs no reset
        try:
            signal.signal(signum, signal.SIG_DFL)
        except ValueError:  # not the main thread (headless): the exit below stands in
            pass
    if signum == signal.SIGABRT:
        os.abort()
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # only if the signal was somehow survivable


def install_signal_policy(ledger: Ledger, ignore: bool) -> None:
    """Termination signals either end the process like the real CLI (128+n) or are ignored."""
    if sys.platform == "win32":
        from fake_claude._signals_windows import install
    else:
        from fake_claude._signals_posix import install
    install(ledger, ignore)
