"""PID 1 of a claude-mem worker's PID namespace (stdlib only; run as `python -I -S <this> CMD...`).

The worker must not be PID 1 itself: 10.6.3's orphan reaper kills `claude` processes whose parent
is PID 1, which would then be every observer the worker started. So this init starts CMD as its
child, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to it, reaps every orphan that lands here, and exits
with CMD's status when CMD ends. When it exits the kernel SIGKILLs whatever is left in the
namespace.
"""

from __future__ import annotations

import os
import signal
import sys

# POSIX only (its importers choose it by sys.platform); the assert also tells type checkers
# to skip this module when they check for Windows.
assert sys.platform != "win32"

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def main(argv: list[str]) -> int:
    cmd = argv[1:]
    if not cmd:
        sys.stderr.write("pidns-init: no command\n")
        return 2
    child = os.fork()
    if child == 0:  # pragma: no cover - replaced by exec
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
