"""POSIX: SIGTERM/SIGINT/SIGHUP end the process with 128+n (as node does), or are ignored."""

from __future__ import annotations

import signal
import sys

from fake_claude.ledger import Ledger
from fake_claude.lifecycle import exit_now

# POSIX only (its importers choose it by sys.platform); the assert also tells type checkers
# to skip this module when they check for Windows.
assert sys.platform != "win32"

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def install(ledger: Ledger, ignore: bool) -> None:
    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if ignore:
            ledger.write("signal", signum=signum, name=name, action="ignored")
            return
        # Leaving: a tree is often signalled twice (its group, then each process). A second
        # signal must stay pending, not run this handler again half-way through the exit (a
        # second `exit` record and another code; under coverage, a torn data file).
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        ledger.write("signal", signum=signum, name=name, action="exit")
        exit_now(ledger, 128 + signum)

    for sig in SIGNALS:
        signal.signal(sig, handler)
