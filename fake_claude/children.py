"""Processes a fake main starts: MCP-server-like grandchildren and escaping daemons.

Each is `python -I -S fake_claude/_boot.py --fake-claude-child ...` and carries the run id in argv.
Platform mechanics live in _spawn_posix.py / _spawn_windows.py.
"""

from __future__ import annotations

import os
import sys

from fake_claude import RUN_ID_FLAG
from fake_claude.context import Context

BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")


def child_argv(
    role: str,
    run_id: str | None,
    *,
    ignore: bool,
    linger: bool,
    hop: float = 0.0,
    headless: bool = False,
) -> list[str]:
    extra = ["--hop", str(hop)] if hop > 0 else []
    extra += ["--headless", "1"] if headless else []
    return [
        sys.executable,
        "-I",
        "-S",
        BOOT,
        "--fake-claude-child",
        "--role",
        role,
        "--parent-pid",
        str(os.getpid()),
        "--ignore",
        "1" if ignore else "0",
        "--linger",
        "1" if linger else "0",
        *extra,
        f"{RUN_ID_FLAG}={run_id or ''}",
    ]


def _platform():
    if sys.platform == "win32":
        from fake_claude import _spawn_windows as impl
    else:
        from fake_claude import _spawn_posix as impl
    return impl


def start_children(ctx: Context) -> list[int]:
    """Start what the scenario asks for; returns the pids of direct children still ours."""
    sc = ctx.scenario
    impl = _platform()
    pids: list[int] = []
    if sc.has("grandchild"):
        n = int(sc.num("grandchild", "n", 2))
        ignore = sc.flag("grandchild", "ignore")
        linger = sc.flag("grandchild", "linger")
        hop = sc.num("grandchild", "hop", 0.0)
        headless = sc.flag("grandchild", "headless")
        # scrub=1: a session of its own and none of the environment it inherited (the worker's
        # mark), yet still our child: only its parentage says whose it is.
        scrub = sc.flag("grandchild", "scrub")
        for _ in range(n):
            argv = child_argv(
                "grandchild", ctx.run_id, ignore=ignore, linger=linger, hop=hop, headless=headless
            )
            pids.append(impl.spawn_grandchild(argv, scrubbed_env() if scrub else None))
    if sc.has("escape"):
        hop = sc.num("escape", "hop", 0.0)
        env = scrubbed_env() if sc.flag("escape", "scrub") else None
        headless = sc.flag("escape", "headless")
        for _ in range(int(sc.num("escape", "n", 1))):
            argv = child_argv(
                "escapee", ctx.run_id, ignore=True, linger=True, hop=hop, headless=headless
            )
            impl.spawn_escapee(argv, env, uncell=sc.flag("escape", "uncell"))
    return pids


# What a scrubbed escapee keeps: its ledger, and what Windows needs to start a Python at all.
_KEPT_BY_SCRUB = ("FAKE_CLAUDE_LEDGER", "FAKE_CLAUDE_RUN_ID", "SYSTEMROOT")


def scrubbed_env() -> dict[str, str]:
    """escape:scrub=1: the escapee sheds the environment it inherited, and with it any mark its
    worker put there, as a tool that sanitizes its environment before it daemonizes does."""
    return {k: os.environ[k] for k in _KEPT_BY_SCRUB if k in os.environ}
