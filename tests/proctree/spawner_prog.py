"""An intermediate parent (a stand-in worker): spawns contained tree_prog mains through
proctree, optionally under a guardian, reports, then waits to be killed.

Honours PROCTREE_FALLBACK like any proctree user. The tests SIGKILL this process and watch
what happens to the trees it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import proctree

PROG = Path(__file__).with_name("tree_prog.py")


def report(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("token")
    ap.add_argument("mark")
    ap.add_argument("n", type=int)
    ap.add_argument("--children", type=int, default=0)
    ap.add_argument("--escape", action="store_true")
    ap.add_argument("--guardian", action="store_true")
    ap.add_argument("--hop", type=float, default=0.0, help="children fork and exit (tree_prog)")
    ap.add_argument("--hop-setsid", action="store_true")
    # argv: the command built by spawn_options(argv=...) (Linux: a pdeathsig launcher);
    # kwargs: spawn_options() alone (Linux: a preexec_fn).
    ap.add_argument("--style", choices=("argv", "kwargs"), default="argv")
    args = ap.parse_args()
    # The token too: where environ() is unreadable (macOS) argv is what identifies escapees.
    guardian = proctree.start_guardian(args.mark, token=args.token) if args.guardian else None
    if guardian is not None:
        report(args.report, f"guardian {guardian.pid}")
    kids = []
    for i in range(args.n):
        argv = [sys.executable, str(PROG), "--report", args.report, "--token", args.token]
        argv += ["--ignore-term", "--ignore-eof", "--children", str(args.children)]
        argv += ["--grandchildren", "1"] if args.children else []
        argv += ["--escape"] if args.escape else []
        argv += ["--hop", str(args.hop)] if args.hop else []
        argv += ["--hop-setsid"] if args.hop_setsid else []
        if args.style == "argv":
            opts = proctree.spawn_options(f"{args.mark}:{i}", argv=argv)
            argv = opts.argv or argv
        else:
            opts = proctree.spawn_options(f"{args.mark}:{i}")
        kids.append(subprocess.Popen(argv, stdin=subprocess.PIPE, **opts))
        c = proctree.after_spawn(kids[-1].pid, opts)
        if guardian is not None:
            guardian.watch(c)
    report(args.report, f"spawner {os.getpid()}")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
