"""A tiny process tree for proctree's tests (stdlib only, runs on every OS).

Every process appends "<role> <pid>" to --report and carries --token in its argv.
  main:       spawns --children children (and an escaper with --escape), then reads stdin;
              exits on EOF unless --ignore-eof.
  child:      spawns --grandchildren grandchildren, then sleeps.
  escaper:    starts an escapee in a new session and exits at once (a double fork), so the
              escapee is reparented away from the tree.
  escapee / grandchild / sleeper: sleep.
--ignore-term makes every process ignore SIGTERM.
--fork-on-term: children answer SIGTERM by starting a new process (a race for the killer).
--hop S: the child is a hopper instead: every S seconds it forks and the parent exits, so its
  pid keeps changing (each new pid reported as "hop"); --hop-setsid also starts a new session
  at each hop. It stops by itself after --hop-lifetime seconds, so a failed test leaves
  nothing running for long.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def report(path: str, role: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{role} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def spawn(args: argparse.Namespace, role: str, **kwargs: object) -> subprocess.Popen[bytes]:
    argv = [sys.executable, os.path.abspath(__file__), "--role", role, "--report", args.report]
    argv += ["--token", args.token, "--grandchildren", str(args.grandchildren)]
    if args.ignore_term:
        argv.append("--ignore-term")
    if args.scrub_escapee and role == "escaper":
        argv.append("--scrub-escapee")
    if args.fork_on_term and role == "child":
        argv.append("--fork-on-term")
    if args.hop and role == "child":
        argv += ["--hop", str(args.hop), "--hop-lifetime", str(args.hop_lifetime)]
        argv += ["--hop-setsid"] if args.hop_setsid else []
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def hop(args: argparse.Namespace) -> None:
    """Fork and exit, again and again: no pid of this lineage lives longer than one interval."""
    deadline = time.monotonic() + args.hop_lifetime
    while time.monotonic() < deadline:
        time.sleep(args.hop)
        if os.fork() == 0:
            if args.hop_setsid:
                os.setsid()
            report(args.report, "hop")
            continue
        os._exit(0)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="main")
    parser.add_argument("--report", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--children", type=int, default=0)
    parser.add_argument("--grandchildren", type=int, default=0)
    parser.add_argument("--escape", action="store_true")
    parser.add_argument("--scrub-escapee", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--ignore-eof", action="store_true")
    parser.add_argument("--fork-on-term", action="store_true")
    parser.add_argument("--hop", type=float, default=0.0)
    parser.add_argument("--hop-setsid", action="store_true")
    parser.add_argument("--hop-lifetime", type=float, default=30.0)
    args = parser.parse_args()

    if args.ignore_term and hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGBREAK") and args.ignore_term:
        # Windows: CTRL_BREAK_EVENT is the polite stage there; left at its default it ends
        # the process from the console handler's thread even while stdin.read() blocks.
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)

    if args.role == "escaper":
        env = dict(os.environ)
        if args.scrub_escapee:
            env.pop("LEAKPROOF_WORKER_MARK", None)
        if sys.platform == "win32":
            flags = subprocess.CREATE_NEW_PROCESS_GROUP | 0x01000000 | 0x00000008
            # CREATE_BREAKAWAY_FROM_JOB | DETACHED_PROCESS: tries to leave the job.
            try:
                spawn(args, "escapee", env=env, creationflags=flags)
            except OSError:
                spawn(args, "escapee", env=env, creationflags=0x00000008)
        else:
            spawn(args, "escapee", env=env, start_new_session=True)
        report(args.report, "escaper")
        os._exit(0)

    report(args.report, args.role)
    if args.role == "main":
        kids = [spawn(args, "child") for _ in range(args.children)]
        if args.escape:
            kids.append(spawn(args, "escaper"))
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        if args.ignore_eof:
            sleep_forever()
        report(args.report, "main-eof")
        sys.exit(0)
    if args.role == "child" and args.hop:
        hop(args)
    if args.role == "child":
        if args.fork_on_term and hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, lambda *_: spawn(args, "spawned-on-term"))
        for _ in range(args.grandchildren):
            spawn(args, "grandchild")
    sleep_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
