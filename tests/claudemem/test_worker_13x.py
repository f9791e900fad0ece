"""One real claude-mem 13.25.3 worker, the project's fake `claude`, one session end to end."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
from claudemem_support import VERSION_13, require_cached

from harness.cleanup import run_processes
from harness.target import RunContext
from harness.targets.claude_mem import ClaudeMemError, ClaudeMemTarget, free_port, real_home
from harness.workload import make_session

DEADLINE_S = 60.0  # generous: a loaded 2-core machine


def _poll(predicate, deadline_s: float = DEADLINE_S):  # noqa: ANN001, ANN202 - tiny helper
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def _ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _real_claude_mem_state() -> tuple[bool, float | None]:
    home = real_home()
    data = home / ".claude-mem" if home else None
    if data is None or not data.exists():
        return False, None
    return True, data.stat().st_mtime


def test_one_session_end_to_end(run_ctx: RunContext) -> None:
    require_cached(VERSION_13)
    real_before = _real_claude_mem_state()
    target = ClaudeMemTarget(version=VERSION_13)
    session = make_session(0, run_ctx.run_id, 1, prompts=2, observations=1)

    async def scenario() -> dict:
        handle = await target.start(run_ctx)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                await target.drive_session(session, http)
                # 13.x starts one observer per session and keeps it until its idle timeout.
                alive = await asyncio.to_thread(_poll, lambda: run_processes(run_ctx.run_id))
                ids = await target.session_processes(session, http)
            # Session over: within a 5 s grace the worker did not end its observer.
            reap = await target.wait_reaped(5.0)
            return {"handle": handle, "alive": alive, "ids": ids, "reap": reap}
        finally:
            await target.stop()

    out = asyncio.run(scenario())
    handle = out["handle"]
    db_id = target.db_ids[session.content_session_id]

    # The observer: one process of the run, the worker's child, in the session's own folder.
    assert len(out["ids"]) == 1
    assert [p.pid for p in out["alive"]] == [out["ids"][0][0]]
    assert target.flow is not None and target.flow.session_end == "session-end"
    home = run_ctx.work_dir / "claude-mem-home"
    observer_dir = home / ".claude-mem" / "observer-sessions" / str(db_id)
    assert observer_dir.is_dir()

    # The fake really served it: started with the session's argv, answered turns.
    events = _ledger(run_ctx.ledger_path)
    starts = [e for e in events if e["event"] == "start" and e.get("role") == "main"]
    assert len(starts) == 1 and starts[0]["ppid"] == handle.pid
    assert "--no-session-persistence" in starts[0]["argv"]
    assert any(e["event"] == "turn" for e in events)

    # The worker's own SQLite (in the temporary HOME) recorded the session and both prompts.
    con = sqlite3.connect(f"file:{home / '.claude-mem' / 'claude-mem.db'}?mode=ro", uri=True)
    try:
        prompts = con.execute(
            "SELECT prompt_number FROM user_prompts WHERE content_session_id = ? ORDER BY 1",
            (session.content_session_id,),
        ).fetchall()
    finally:
        con.close()
    assert prompts == [(1,), (2,)]

    # The leak window that time-to-reap measures: alive after the session ended.
    reap = out["reap"]
    assert reap["outlived_session"] == 1 and reap["not_reaped"] == 1, reap["outlived"]

    # Stopped: no process of the run, the worker gone, the real HOME untouched.
    assert _poll(lambda: not run_processes(run_ctx.run_id), 15.0)
    assert not psutil.pid_exists(handle.pid) or (
        psutil.Process(handle.pid).create_time() != handle.create_time
    )
    assert target.stop_result is not None and target.stop_result["survivors"] == []
    assert _real_claude_mem_state() == real_before


def test_a_worker_port_setting_is_used_and_a_taken_port_refused(run_ctx: RunContext) -> None:
    """`--claude-mem-setting CLAUDE_MEM_WORKER_PORT=N` moves the worker: the harness must wait on
    that port (it waited 120 s on its own, then blamed the worker), and refuse a taken one."""
    require_cached(VERSION_13)
    port = free_port()
    target = ClaudeMemTarget(
        version=VERSION_13, settings={"CLAUDE_MEM_WORKER_PORT": str(port)}, start_timeout=60.0
    )

    async def start_and_stop() -> str:
        handle = await target.start(run_ctx)
        try:
            return handle.base_url
        finally:
            await target.stop()

    assert asyncio.run(start_and_stop()) == f"http://127.0.0.1:{port}"

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        target = ClaudeMemTarget(
            version=VERSION_13, settings={"CLAUDE_MEM_WORKER_PORT": str(taken)}
        )
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        with pytest.raises(ClaudeMemError, match=f"127.0.0.1:{taken} is already in use"):
            asyncio.run(target.start(run_ctx))
        # Refused before a worker was started.
        assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_soak_summary_names_no_reference_mode_for_claude_mem(tmp_path: Path) -> None:
    """claude-mem has no fixed or leaky mode: every claude-mem soak said `mode=fixed` (summary,
    report.json, junit, Markdown), the reference worker's default."""
    require_cached(VERSION_13)
    report = tmp_path / "report"
    env = {**os.environ, "LEAKPROOF_CLAUDE_MEM": VERSION_13}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--target", "claude-mem", "--sessions", "1"]
        + ["--prompts", "1", "--progress", "none", "--no-plot", "--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    assert first.startswith("soak ") and " target=claude-mem sessions 1/1 " in first, proc.stdout
    assert "mode=" not in proc.stdout
    assert json.loads((report / "report.json").read_text())["mode"] is None
    assert 'name="claude-mem-1-sessions"' in (report / "junit.xml").read_text()


def test_soak_passes_claude_mem_settings_to_the_worker(tmp_path: Path) -> None:
    """`soak --claude-mem-setting` reaches the run's ~/.claude-mem/settings.json (only compare had
    it: a soak of 13.x's mix ran 3 observers for 16 sessions, its 2 slots held by live ones)."""
    require_cached(VERSION_13)
    report = tmp_path / "report"
    env = {**os.environ, "LEAKPROOF_CLAUDE_MEM": VERSION_13}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--target", "claude-mem", "--sessions", "1"]
        + ["--claude-mem-setting", "CLAUDE_MEM_MAX_CONCURRENT_AGENTS=7", "--keep-work-dir"]
        + ["--prompts", "1", "--progress", "none", "--no-plot", "--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # a verdict, not a usage error
    homes = list(report.glob("work*/claude-mem-home/.claude-mem/settings.json"))
    assert len(homes) == 1, (sorted(str(p) for p in report.rglob("*"))[:40], proc.stdout)
    assert json.loads(homes[0].read_text())["CLAUDE_MEM_MAX_CONCURRENT_AGENTS"] == "7"


def test_soak_with_mcp_servers_says_13x_started_none(tmp_path: Path) -> None:
    """13.x starts claude with --strict-mcp-config: the user's MCP servers that --mcp-servers
    configures never start, so no MCP server's leak is tested; the report was silent on it."""
    require_cached(VERSION_13)
    report = tmp_path / "report"
    env = {**os.environ, "LEAKPROOF_CLAUDE_MEM": VERSION_13}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--target", "claude-mem", "--sessions", "1"]
        + ["--prompts", "1", "--mcp-servers", "1", "--progress", "none", "--no-plot"]
        + ["--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # a verdict, not a usage error
    data = json.loads((report / "report.json").read_text())
    assert data["claude_starts"] >= 1 and data["mcp_server_starts"] == 0, data["warnings"]
    assert data["strict_mcp_starts"] == data["claude_starts"]
    [warning] = [w for w in data["warnings"] if w.startswith("--mcp-servers 1 was asked for")]
    assert "--strict-mcp-config in" in warning
    assert f"warning: {warning}" in proc.stdout  # the printed summary says it too
