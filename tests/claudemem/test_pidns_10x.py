"""10.6.3's orphan reaper, contained: run in a PID namespace, it cannot kill a host orphan.

10.6.3 SIGKILLs, every 30 s, every process whose parent is PID 1 and whose argv matches
`claude.*output-format`. Here a decoy with such an argv is orphaned on the host (parent PID 1)
before the worker starts, a second one is orphaned inside the worker's namespace (parent: its
init, PID 1 there), and the worker runs until its reaper has killed the inner one (one cycle,
> 30 s). The host decoy must still be alive then: the worker could neither see nor signal it.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from claudemem_support import VERSION_10, require_cached

from harness.census import Census
from harness.target import RunContext
from harness.targets import claude_mem_pidns as pidns
from harness.targets.claude_mem import ClaudeMemTarget

READY_S = 120.0  # the reaper starts once the worker's MCP server is connected (loaded machine)
CYCLE_S = 30.0 + 60.0  # one 30 s reaper cycle, and slack for a loaded 2-core machine

# Forks, the child starts a new session, points stdio at /dev/null and execs the decoy; the parent
# prints the child's PID and exits, so the decoy is orphaned (no shell anywhere).
_ORPHAN = """
import os, sys
pid = os.fork()
if pid == 0:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(900)",
                              "claude", "--output-format", "stream-json", sys.argv[1]])
print(pid, flush=True)
"""


def _poll(predicate, deadline_s: float):  # noqa: ANN001, ANN202 - tiny helper
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def _orphan(token: str, prefix: list[str] | None = None) -> psutil.Process:
    """A decoy `... claude --output-format stream-json <token>` whose parent is gone."""
    argv = [*(prefix or []), sys.executable, "-I", "-S", "-c", _ORPHAN, "--decoy=" + token]
    subprocess.run(argv, check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    # Found by its token on the host (inside a namespace the printed PID is a namespace PID).
    found = _poll(
        lambda: [
            p
            for p in psutil.process_iter(["cmdline"])
            if "--decoy=" + token in (p.info["cmdline"] or [])
        ],
        10.0,
    )
    assert len(found) == 1, f"decoy {token} not found once: {found}"
    return psutil.Process(found[0].pid)


def _end(proc: psutil.Process | None) -> None:
    """Kill a decoy of this test by PID (psutil checks its create time first)."""
    if proc is None:
        return
    try:
        proc.kill()
        proc.wait(timeout=10)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def _log_text(home: Path | None) -> str:
    if home is None:
        return ""
    return "".join(
        p.read_text(errors="replace") for p in sorted((home / ".claude-mem" / "logs").glob("*.log"))
    )


def test_orphan_reaper_cannot_reach_a_host_orphan(run_ctx: RunContext) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PID namespaces are Linux only")
    require_cached(VERSION_10)
    prefix, how = pidns.probe()
    if prefix is None:
        pytest.skip(f"no PID namespace can be made here: {how}")
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        pytest.skip("util-linux nsenter is not on PATH (needed to orphan a decoy inside)")
    token = secrets.token_hex(6)
    host_decoy = inner_decoy = None
    target = ClaudeMemTarget(version=VERSION_10)
    try:
        host_decoy = _orphan("host-" + token)
        if host_decoy.ppid() != 1:
            pytest.skip(
                f"an orphan here is adopted by PID {host_decoy.ppid()} (a subreaper above the "
                "test), not PID 1: the reaper would not target it anyway"
            )
        host_ct = host_decoy.create_time()

        async def scenario() -> tuple[str, dict]:
            handle = await target.start(run_ctx)
            try:
                assert target.isolation_used == "pid-namespace", target.isolation_note
                init = target.namespace_init
                assert init is not None
                # The worker's own RSS is bun's inside the namespace, not the wrapper's (unshare,
                # about 2 MB: a worker-alone slope that could never see the worker grow).
                assert handle.core is not None
                core = psutil.Process(handle.core[0])
                assert pidns.pid_ns(core.pid) == pidns.pid_ns(init.pid)
                assert any(a.endswith("worker-service.cjs") for a in core.cmdline())
                census = Census(run_ctx.run_id, run_ctx.ledger_path, grace=5.0)
                census.set_worker(handle.pid, handle.create_time, handle.core)
                worker_rss = census.sample().worker_rss
                wrapper_rss = psutil.Process(handle.pid).memory_info().rss
                assert worker_rss > 4 * wrapper_rss, (worker_rss, wrapper_rss)
                log = await asyncio.to_thread(
                    _poll, lambda: "Started orphan reaper" in _log_text(target.home), READY_S
                )
                if not log:
                    pytest.fail("no orphan reaper started:\n" + _log_text(target.home)[-3000:])
                nonlocal inner_decoy
                enter = [nsenter, f"--target={init.pid}"]
                if "--user" in prefix:
                    # Made in a user namespace (not root): only its members may enter its PID
                    # namespace, so join it first, keeping who we are (no setgroups there).
                    enter += ["--user", "--preserve-credentials"]
                enter += ["--pid", "--mount", "--"]
                inner_decoy = await asyncio.to_thread(_orphan, "inner-" + token, enter)
                assert pidns.pid_ns(inner_decoy.pid) == pidns.pid_ns(init.pid)
                assert pidns.ns_pids(inner_decoy.pid)[-1] != 1
                assert inner_decoy.ppid() == init.pid  # PID 1 as the worker's `ps` shows it
                # One reaper cycle: the orphan inside is SIGKILLed, which proves it ran.
                await asyncio.to_thread(_poll, lambda: not inner_decoy.is_running(), CYCLE_S)
                log = _log_text(target.home)
                reaper_lines = [ln for ln in log.splitlines() if "PROCESS" in ln or "eaper" in ln]
                assert not inner_decoy.is_running(), (
                    "no reaper cycle within the deadline; the worker's reaper lines:\n"
                    + "\n".join(reaper_lines[-20:])
                )
                assert "Killing system orphan PID" in log
                ns = pidns.pid_ns(init.pid)
            finally:
                await target.stop()
            return ns or "", target.namespace_stop or {}

        ns, stopped = asyncio.run(scenario())
        # The host orphan matched the same pattern, had PID 1 as parent, and was not touched.
        assert host_decoy.is_running() and abs(host_decoy.create_time() - host_ct) < 0.01
        assert host_decoy.ppid() == 1
        # Stopping ended the namespace's init by PID: nothing of it is left.
        assert stopped.get("left_in_namespace") == 0, stopped
        assert pidns.members(ns) == []
    finally:
        _end(inner_decoy)
        _end(host_decoy)
        if target.namespace_init is not None and target.namespace_init.is_running():
            target.stop_now()
