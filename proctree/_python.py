"""Starting and stopping a Python child of ours so that the pid we hold is the interpreter.

On Windows a venv's python.exe is a redirector that starts the base interpreter as its own
child (bpo-34977): the pid Popen returns would be the redirector's, not the one that reports
itself (worker.json) or that a console break should reach. CPython's multiprocessing starts
the base interpreter directly with __PYVENV_LAUNCHER__ naming the venv's python.exe, which
keeps the venv's packages; we do the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def python_command() -> tuple[str, dict[str, str]]:
    """(interpreter, environment additions) for a Python child that should be the process
    Popen returns, with this interpreter's packages."""
    base = getattr(sys, "_base_executable", None)
    if sys.platform == "win32" and base and sys.prefix != sys.base_prefix:
        same = os.path.normcase(os.path.abspath(base)) == os.path.normcase(
            os.path.abspath(sys.executable)
        )
        if not same and os.path.isfile(base):
            return base, {"__PYVENV_LAUNCHER__": sys.executable}
    return sys.executable, {}


def ask_to_stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """The polite stop of a child started with proctree.spawn_options: SIGTERM on POSIX; on
    Windows, where Popen's SIGTERM is TerminateProcess (no shutdown code runs), a console
    break to the child's own group (spawn_options makes it the leader of one)."""
    if proc.poll() is not None:
        return
    if sys.platform == "win32":
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        proc.send_signal(signal.SIGTERM)
