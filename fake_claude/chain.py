"""`chain` (POSIX): a line of descendants below the fake main, each the parent of the next.

Level k is `python -I -S _boot.py --fake-claude-child --role chain --level k --chain PARAMS`.
Each level but the last starts the next (in a session of its own with `setsid=1`) and then idles,
or exits at once (`exit=1`: the daemon's fork-and-leave, so the levels below are orphaned before
a census may have seen them). The last level (the leaf) then misbehaves as asked:
`leaf=blank` zeroes its argv in place (as a process that hides its arguments does: its cmdline
reads empty), `leaf=tracker`/`forkserver` rewrites it to read as a `multiprocessing` helper,
`leaf=sleep` execs `sleep` (another program, no run id); `stop=1` stops itself (SIGSTOP);
`zombie=N` forks N children that exit at once and are never reaped; `spawn=S` forks a new idle
child every S seconds (for SPAWN_FOR_S seconds, so a failed test leaves no endless spawner).
`quiet=1`: no level writes a ledger line or carries the run id in argv, so only its parentage
tells whose it is, as with a program the fake does not control.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from fake_claude import RUN_ID_FLAG
from fake_claude.context import Context
from fake_claude.ledger import Ledger

if sys.platform == "win32":  # pragma: no cover - refused there (scenario.validate_spec)
    raise ImportError("chain needs fork")

# What a rewritten leaf's argv reads as: multiprocessing's own helpers, as started by Python.
_LOOKS = {
    "tracker": "from multiprocessing.resource_tracker import main;main(7)",
    "forkserver": "from multiprocessing.forkserver import main; main(8, 9, ['__main__'], **{})",
}
SPAWN_FOR_S = 30.0


def params_arg(ctx: Context) -> str:
    """The scenario's `chain` part as one argv element, handed down the chain."""
    return ",".join(f"{k}={v}" for k, v in ctx.scenario.parts.get("chain", {}).items())


def _argv(level: int, params: str, run_id: str | None, quiet: bool) -> list[str]:
    from fake_claude.children import BOOT

    argv = [sys.executable, "-I", "-S", BOOT, "--fake-claude-child", "--role", "chain"]
    argv += ["--level", str(level), "--chain", params]
    return argv if quiet else [*argv, f"{RUN_ID_FLAG}={run_id or ''}"]


def _params(raw: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in raw.split(",") if item)


def _flag(params: dict[str, str], key: str) -> bool:
    return params.get(key, "0").lower() not in ("0", "false", "no", "off", "")


def spawn_level(level: int, params: str, run_id: str | None) -> int:
    p = _params(params)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        return os.posix_spawn(
            sys.executable,
            _argv(level, params, run_id, _flag(p, "quiet")),
            os.environ,
            setsid=_flag(p, "setsid"),
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)],
            setsigdef=(signal.SIGCHLD,),  # the fake main ignores it; a level reaps by choice
        )
    finally:
        os.close(devnull)


def start(ctx: Context) -> None:
    """From the fake main: start level 1; the main reaps it if it exits (SIGCHLD ignored)."""
    spawn_level(1, params_arg(ctx), ctx.run_id)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def run_level(argv: list[str], run_id: str | None) -> int:
    from fake_claude.child import _opt
    from fake_claude.faults import idle_forever
    from fake_claude.identity import ledger_fields

    level = int(_opt(argv, "--level", "1"))
    raw = _opt(argv, "--chain", "")
    p = _params(raw)
    quiet = _flag(p, "quiet")
    ledger = Ledger(None if quiet else os.environ.get("FAKE_CLAUDE_LEDGER"), run_id)
    leaf = level >= int(float(p.get("depth") or 4))
    ledger.write(
        "start",
        ppid=os.getppid(),
        **(ledger_fields() if ledger.path else {}),
        argv=list(sys.orig_argv),
        scenario=f"chain:{raw}" if raw else "chain",
        role="chain",
        parent_pid=os.getppid(),  # as a grandchild's: its session is its parent's
    )
    if not leaf:
        spawn_level(level + 1, raw, run_id)
        if _flag(p, "exit"):
            os._exit(0)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap a next level that exits
        idle_forever()
    what = p.get("leaf", "keep")
    if what == "sleep":
        os.execv("/bin/sleep", ["sleep", "600"])
    if what != "keep":
        _rewrite_argv([] if what == "blank" else [sys.executable, "-c", _LOOKS[what]])
    for _ in range(int(float(p.get("zombie") or 0))):
        if os.fork() == 0:
            os._exit(0)  # never reaped: SIGCHLD stays at its default
    if _flag(p, "stop"):
        os.kill(os.getpid(), signal.SIGSTOP)
    every = float(p.get("spawn") or 0)
    if every > 0:
        deadline = time.monotonic() + SPAWN_FOR_S
        while time.monotonic() < deadline:
            time.sleep(every)
            if os.fork() == 0:
                idle_forever()
    idle_forever()
    return 0


def _rewrite_argv(args: list[str]) -> None:
    """Overwrite this process's argv area (what /proc/PID/cmdline reads) with `args`, padded
    with NULs, as setproctitle does: the kernel keeps the area, the program writes into it.
    Linux only (its /proc/self/stat names the area); elsewhere argv stays."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        data = b"\0".join(a.encode() for a in args)[: end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data.ljust(end - start, b"\0"))
    except (OSError, ValueError, IndexError):
        pass
