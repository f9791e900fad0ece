"""Leaving the process in a logged way, and the signal policy (platform parts live elsewhere)."""

from __future__ import annotations

import os
import sys

from fake_claude.ledger import Ledger


def exit_now(ledger: Ledger, code: int) -> None:
    """Log `exit` and leave at once (no interpreter teardown: children are not ours to wait for)."""
    ledger.write("exit", code=code)
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(code)


def die_by_signal(ledger: Ledger, signame: str) -> None:
    """Log `exit` with the negative signal number, then really die by that signal."""
    import signal

    signum = int(getattr(signal, "SIG" + signame.upper().removeprefix("SIG")))
    ledger.write("exit", code=-signum)
    if sys.platform == "win32":
        os._exit(3)  # Windows has no death by signal; the CRT's abort code stands in
    if signum != signal.SIGKILL:  # SIGKILL cannot be handled, so it needs no reset
        signal.signal(signum, signal.SIG_DFL)
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
