"""An intermediate parent: spawns contained tree_prog mains through proctree, then waits.

argv: REPORT TOKEN MARK N. Honours PROCTREE_FALLBACK like any proctree user. The test
SIGKILLs this process and watches what happens to the mains.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import proctree

PROG = Path(__file__).with_name("tree_prog.py")


def main() -> None:
    report, token, mark, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    kids = []
    for _ in range(n):
        opts = proctree.spawn_options(mark)
        argv = [sys.executable, str(PROG), "--report", report, "--token", token]
        argv += ["--ignore-term", "--ignore-eof"]
        kids.append(subprocess.Popen(argv, stdin=subprocess.PIPE, **opts))
        proctree.after_spawn(kids[-1].pid, opts)
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"spawner {os.getpid()}\n".encode())
    os.close(fd)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
