"""A `claude` that passes the start-up check (an executable file) but cannot be executed: each
failed attempt says why (the exit and the exec's own words), not just that stdin was closed.
Its `#!` interpreter is relative: looked up from the spawner's folder, which the check cannot
know (a missing absolute one is refused at start-up)."""

from __future__ import annotations

import re
import sys

import pytest
from workerkit import wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX interpreter lines")

MESSAGES = 10
FLAGS = ["--grace", "0.2", "--reap-interval", "0.5", "--turn-timeout", "20", "--max-attempts", "1"]


def test_a_claude_with_a_bad_interpreter_fails_each_attempt_with_its_reason(tmp_path, workers):
    claude = tmp_path / "claude"
    claude.write_text("#!nonexistent/interpreter\n", encoding="utf-8")
    claude.chmod(0o755)
    worker = workers(claude, flags=FLAGS)
    sid = worker.new_session("bad-interpreter")
    for i in range(MESSAGES):
        worker.observe("bad-interpreter", i)
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid, 60)

    def failures() -> list[str]:
        text = worker.log_path.read_text(encoding="utf-8", errors="replace")
        return re.findall(rf"WARNING worker\.sessions: session {sid}: (.*)", text)

    # Each observation: one attempt each, each failed.
    said = wait_until(lambda: (f := failures()) and len(f) >= MESSAGES and f, 30, "failures")
    # Whichever spawns it: the launcher ("cannot execute PATH"), setpriv ("failed to execute
    # PATH"), or the worker itself ("cannot start 'PATH'": OSError at the spawn).
    unclear = [s for s in said if str(claude) not in s]
    assert not unclear, f"{len(unclear)} of {len(said)} failures do not say why: {unclear[:3]}"
    # And the exec's own reason (the interpreter is missing), whichever spawned it.
    unclear = [s for s in said if "No such file or directory" not in s]
    assert not unclear, f"{len(unclear)} of {len(said)} failures lack the reason: {unclear[:3]}"
    assert worker.proc is not None and worker.proc.poll() is None
    assert not worker.processes() or all(r["state"] == "ended" for r in worker.processes())


def test_an_observer_that_exits_at_once_keeps_its_exit_code_among_others(tmp_path, workers):
    """Sessions side by side, each observer failing at its exec: one's ending (reaping what its
    tree left) must not reap another between its fork and its registration, whose status is
    asyncio's. Before: asyncio logged 'exit status already read' and the registry said 255."""
    claude = tmp_path / "claude"
    claude.write_text("#!nonexistent/interpreter\n", encoding="utf-8")
    claude.chmod(0o755)
    worker = workers(claude, flags=FLAGS)
    sids = [worker.new_session(f"side-by-side-{n}") for n in range(4)]
    for i in range(25):
        for n in range(4):
            worker.observe(f"side-by-side-{n}", i)
    for sid in sids:
        worker.api().ok("POST", f"/sessions/{sid}/complete")
    for sid in sids:
        worker.wait_session_done(sid, 120)
    rows = worker.processes()
    codes = sorted({r.get("exit_code") for r in rows}, key=str)
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "exit status already read" not in log, worker.log()
    # 127 from the launcher or setpriv; no rows where the worker's own spawn raised.
    assert all(r["state"] == "ended" for r in rows), rows[:3]
    assert 255 not in codes, codes
