"""A grandchild (MCP-server-like) or escapee process started by a fake main.

Grandchild: reads stdin until EOF (its parent's death), then exits, unless `--linger 1`.
Escapee: detached, idles forever. Either may ignore SIGTERM/SIGINT/SIGHUP (`--ignore 1`), and
either may go on in a thread of its own while its main thread exits (`--headless 1`).
`--hop S` (POSIX): instead, every S seconds it forks and the parent exits, so the lineage lives
on under ever new pids (each writes a `hop` ledger line); an escapee also starts a new session
at each hop. It stops by itself after `--hop-for` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from fake_claude import RUN_ID_FLAG

if TYPE_CHECKING:
    from fake_claude.ledger import Ledger


def _opt(argv: list[str], name: str, default: str) -> str:
    if name in argv:
        i = argv.index(name)
        if i + 1 < len(argv):
            return argv[i + 1]
    return default


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from fake_claude.identity import ledger_fields
    from fake_claude.ledger import Ledger
    from fake_claude.lifecycle import install_signal_policy

    run_id = os.environ.get("FAKE_CLAUDE_RUN_ID")
    for tok in argv:
        if tok.startswith(RUN_ID_FLAG + "="):
            run_id = tok.partition("=")[2] or run_id
    role = _opt(argv, "--role", "grandchild")
    if role == "chain":
        from fake_claude.chain import run_level

        return run_level(argv, run_id)
    ignore = _opt(argv, "--ignore", "0") == "1"
    linger = _opt(argv, "--linger", "0") == "1"
    headless = _opt(argv, "--headless", "0") == "1"
    ledger = Ledger(os.environ.get("FAKE_CLAUDE_LEDGER"), run_id)
    install_signal_policy(ledger, ignore)
    ledger.write(
        "start",
        ppid=os.getppid(),
        **(ledger_fields() if ledger.path else {}),
        argv=list(sys.orig_argv),
        scenario=f"{role}:ignore={int(ignore)},linger={int(linger)},headless={int(headless)}",
        role=role,
        parent_pid=int(_opt(argv, "--parent-pid", "0")),
    )
    hop = float(_opt(argv, "--hop", "0"))
    if hop > 0 and hasattr(os, "fork"):
        _hop(ledger, hop, float(_opt(argv, "--hop-for", "30")), new_session=role == "escapee")
    if headless:
        from fake_claude.headless import go_headless

        go_headless(ledger, lambda: _live(ledger, role, linger))  # does not return
    return _live(ledger, role, linger)


def _live(ledger: Ledger, role: str, linger: bool) -> int:
    """A grandchild reads stdin until EOF and exits (unless it lingers); the rest idle."""
    from fake_claude.lifecycle import exit_now

    if role == "grandchild":
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
        ledger.write("stdin_eof")
        if not linger:
            exit_now(ledger, 0)
    from fake_claude.faults import idle_forever

    idle_forever()
    return 0


def _hop(ledger: Ledger, interval: float, lifetime: float, *, new_session: bool) -> None:
    from fake_claude.identity import ledger_fields
    from fake_claude.lifecycle import exit_now

    if sys.platform == "win32":  # the caller asks for fork; this tells type checkers
        raise NotImplementedError("hop needs fork")

    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        time.sleep(interval)
        parent = os.getpid()  # getppid() in the child may already say 1: the parent exits now
        if os.fork() == 0:
            if new_session:
                os.setsid()
            ledger.write("hop", ppid=parent, **ledger_fields())
            continue
        os._exit(0)  # the lineage goes on in the child
    exit_now(ledger, 0)


if __name__ == "__main__":
    sys.exit(main())
