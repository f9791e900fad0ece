"""The hook flow is read from each build's own code, and unsafe builds are refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psutil
import pytest
from claudemem_support import VERSION_10, VERSION_13, require_cached

from harness import claude_mem_install as install
from harness.target import RunContext
from harness.targets.claude_mem import ClaudeMemError, ClaudeMemTarget, UnsafeVersionRefused
from harness.targets.claude_mem_flow import detect_flow


def test_13x_single_init_and_session_end() -> None:
    require_cached(VERSION_13)
    flow = detect_flow(install.plugin_dir(VERSION_13))
    assert not flow.two_step_init
    assert flow.session_end == "session-end"
    assert flow.platform_source == "claude"
    assert flow.foreign_kills == ()


def test_10x_two_step_init_skipped_when_injected_and_no_session_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_cached(VERSION_10)
    monkeypatch.delenv("LEAKPROOF_ALLOW_FOREIGN_KILL", raising=False)
    flow = detect_flow(install.plugin_dir(VERSION_10))
    assert flow.two_step_init and flow.skip_step2_if_injected
    # Its SessionEnd hook reads `sessionId` where Claude Code sends `session_id`: it never posts
    # /api/sessions/complete, so the harness does not either.
    assert flow.session_end is None
    assert flow.session_end_note is not None and "sessionId" in flow.session_end_note
    assert "sessionId" in flow.label
    assert flow.platform_source is None
    # Its 30-second orphan reaper SIGKILLs matching processes of anyone, and at start-up it
    # SIGKILLs every other worker-service.cjs: refused unless a PID namespace contains it.
    assert len(flow.foreign_kills) == 2
    assert any("PID 1" in k for k in flow.foreign_kills)
    assert any("worker-service.cjs" in k for k in flow.foreign_kills)
    with pytest.raises(UnsafeVersionRefused, match="PID 1"):
        ClaudeMemTarget(version=VERSION_10, isolation="none").resolve()
    from harness.targets import claude_mem_pidns as pidns

    target = ClaudeMemTarget(version=VERSION_10)
    prefix, how = pidns.probe()
    if prefix is None:  # no PID namespace here: refused, and the message says why
        with pytest.raises(UnsafeVersionRefused, match="would run contained in a PID namespace"):
            target.resolve()
    else:
        target.resolve()
        assert target.isolation_used == "pid-namespace", how


def _plugin_like_9_0_0(root: Path) -> Path:
    """A plugin folder shaped like the v9.0.0 tag: prebuilt worker, plugin.json, no SessionEnd."""
    plugin = root / "plugin"
    (plugin / "scripts").mkdir(parents=True)
    (plugin / ".claude-plugin").mkdir()
    (plugin / ".claude-plugin" / "plugin.json").write_text(json.dumps({"version": "9.0.0"}))
    (plugin / "hooks").mkdir()
    (plugin / "hooks" / "hooks.json").write_text(json.dumps({"hooks": {"Stop": []}}))
    (plugin / "scripts" / "worker-service.cjs").write_text(
        'r.post("/sessions/:sessionDbId/init",h);'
        'execSync("ps aux | grep chroma-mcp");'
        'log("Cleaning up orphaned chroma-mcp processes");'
    )
    return plugin


def test_9_0_0_is_refused_without_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKPROOF_ALLOW_FOREIGN_KILL", raising=False)
    plugin = _plugin_like_9_0_0(tmp_path)
    flow = detect_flow(plugin)
    assert len(flow.foreign_kills) == 1 and "chroma-mcp" in flow.foreign_kills[0]
    assert flow.two_step_init and flow.session_end is None
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    target = ClaudeMemTarget(plugin=tmp_path, bun="/nonexistent/bun", isolation="none")
    with pytest.raises(UnsafeVersionRefused, match="chroma-mcp"):
        target.resolve()
    # Refused before anything ran: no child was started.
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
    # Where a PID namespace can hold it, the default (auto) runs it there instead.
    from harness.targets import claude_mem_pidns as pidns

    if pidns.probe()[0] is not None:
        target = ClaudeMemTarget(plugin=tmp_path, bun="/nonexistent/bun")
        target.resolve()
        assert target.isolation_used == "pid-namespace"


def test_exactly_one_source_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKPROOF_CLAUDE_MEM", raising=False)
    monkeypatch.delenv("LEAKPROOF_CLAUDE_MEM_PLUGIN", raising=False)
    with pytest.raises(ValueError):
        ClaudeMemTarget()
    monkeypatch.setenv("LEAKPROOF_CLAUDE_MEM", VERSION_13)  # what `harness soak` relies on
    assert ClaudeMemTarget().label == f"claude-mem {VERSION_13}"
    with pytest.raises(ValueError):
        ClaudeMemTarget(version=VERSION_13, plugin="/x")


def test_a_worker_that_fails_at_start_is_shown_with_its_own_log(
    run_ctx: RunContext, tmp_path: Path
) -> None:
    """claude-mem writes why it failed to ~/.claude-mem/logs, not to its output: the error must
    show that log (9.0.0 without node said `Executable not found in $PATH: "node"` there, while
    the message showed the empty output log and a path that was moved away)."""
    require_cached(VERSION_13)
    plugin = tmp_path / "plugin"
    (plugin / "scripts").mkdir(parents=True)
    (plugin / "scripts" / "worker-service.cjs").write_text(
        'const fs = require("fs"), path = require("path");\n'
        'const logs = path.join(process.env.HOME, ".claude-mem", "logs");\n'
        "fs.mkdirSync(logs, { recursive: true });\n"
        'fs.writeFileSync(path.join(logs, "claude-mem-2026-01-01.log"),\n'
        '  "[ERROR] Background initialization failed Executable not found: node\\n");\n'
        "process.exit(3);\n"
    )
    target = ClaudeMemTarget(plugin=plugin, isolation="none", start_timeout=60.0)
    with pytest.raises(ClaudeMemError) as failed:
        asyncio.run(target.start(run_ctx))
    message = str(failed.value)
    assert "exited with 3 before it was ready" in message
    assert "Background initialization failed Executable not found: node" in message
    assert "claude-mem-home/.claude-mem/logs/claude-mem-2026-01-01.log" in message


def _plugin_with_session_end(root: Path, command: str) -> Path:
    plugin = root / "plugin"
    (plugin / "scripts").mkdir(parents=True)
    (plugin / "hooks").mkdir()
    end = {"hooks": [{"type": "command", "command": command}]}
    (plugin / "hooks" / "hooks.json").write_text(json.dumps({"hooks": {"SessionEnd": [end]}}))
    (plugin / "scripts" / "worker-service.cjs").write_text('r.post("/api/sessions/complete",h);')
    return plugin


@pytest.mark.parametrize(
    ("field", "posts"),
    [("session_id", True), ("sessionId", False)],
)
def test_an_inline_session_end_hook_posts_only_with_the_field_claude_code_sends(
    tmp_path: Path, field: str, posts: bool
) -> None:
    command = (
        "node -e \"let d='';process.stdin.on('end',()=>{const{FIELD:s}=JSON.parse(d);"
        "if(!s){process.exit(0)}post('/api/sessions/complete',{contentSessionId:s})})\""
    ).replace("FIELD", field)
    flow = detect_flow(_plugin_with_session_end(tmp_path, command))
    assert flow.session_end == ("complete" if posts else None)
    assert (flow.session_end_note is None) == posts
