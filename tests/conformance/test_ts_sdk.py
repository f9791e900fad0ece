"""The real TypeScript Agent SDK (0.1.76 as bundled by claude-mem 9.0.0, and TS_NEW, the newest)
completes its kinds of session against the fake `claude`, through `pathToClaudeCodeExecutable`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conformance_support import (
    TS_NEW,
    TS_OLD,
    TS_SDKS,
    never_answering_server,
    node_driver,
    read_ledger,
)

import proctree
from fake_claude.mcp_server import server_argv

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("node_sdks")]

MakeFake = Callable[..., tuple[Path, Path]]


def _ok(res: dict) -> None:
    assert res["error"] is None, f"SDK error: {res['error']}\nstderr: {res['_stderr']}"
    assert res["_returncode"] == 0, res["_stderr"]


def _of(res: dict, kind: str, subtype: str | None = None) -> list[dict]:
    return [
        m
        for m in res["messages"]
        if m["type"] == kind and (subtype is None or m.get("subtype") == subtype)
    ]


def _texts(msg: dict) -> list[str]:
    return [b["text"] for b in msg.get("content", []) if b["type"] == "text"]


def _events(ledger: Path, kind: str) -> list[dict]:
    return [e for e in read_ledger(ledger) if e["event"] == kind]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_plain_query(sdk: str, make_fake: MakeFake) -> None:
    shim, ledger = make_fake("ok")
    res = node_driver(sdk, "plain", shim, prompt="Summarise the file layout").result()
    _ok(res)
    assert res["sdk_version"] == sdk.removeprefix("sdk-")
    kinds = [(m["type"], m.get("subtype")) for m in res["messages"]]
    assert kinds[0] == ("system", "init"), kinds
    assert kinds[-1] == ("result", "success"), kinds
    (assistant,) = _of(res, "assistant")
    (result,) = _of(res, "result")
    assert result["is_error"] is False
    # The reply is derived from the prompt: non-empty and the same in assistant and result.
    assert _texts(assistant) and _texts(assistant)[0] == result["result"]
    assert len({m["session_id"] for m in res["messages"]}) == 1
    # A string prompt: the SDK ends stdin after the result, the fake exits 0 on that EOF.
    (start,) = _events(ledger, "start")
    assert start["argv"][start["argv"].index("--input-format") + 1] == "stream-json"
    assert len(_events(ledger, "turn")) == 1
    assert _events(ledger, "stdin_eof")
    assert [e["code"] for e in _events(ledger, "exit")] == [0]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_multi_turn_streaming_input_with_interrupt(sdk: str, make_fake: MakeFake) -> None:
    # Latency on turn 2 only keeps it running long enough for the interrupt to land inside it
    # (the interrupt ends the wait, so a wide window costs nothing when the machine is quick).
    shim, ledger = make_fake("slow:latency=5,jitter=0,first=0,turn=2")
    res = node_driver(sdk, "multi-interrupt", shim).result()
    _ok(res)
    assert res["interrupt"] == "ok"
    results = _of(res, "result")
    assert [(r["subtype"], r["is_error"]) for r in results] == [
        ("success", False),
        ("error_during_execution", True),
        ("success", False),
    ]
    interrupted = [m for m in _of(res, "user") if "[Request interrupted by user]" in _texts(m)]
    assert len(interrupted) == 1
    assert len(_of(res, "system", "init")) == 3
    assert len({m["session_id"] for m in res["messages"]}) == 1
    turns = _events(ledger, "turn")
    assert [(t["n"], t["interrupted"]) for t in turns] == [(1, False), (2, True), (3, False)]
    # The async-iterable prompt ended, so the SDK ended stdin; the last turn succeeded: exit 0.
    assert [e["code"] for e in _events(ledger, "exit")] == [0]


def test_an_interrupt_calls_the_interrupt_hooks_once(make_fake: MakeFake) -> None:
    # TS 0.3.335 (CLI 2.1.335) added the Interrupt hook: the CLI calls it once when an interrupt
    # ends a turn, here the SDK's interrupt() of turn 2 (source user, reason stop, via client).
    shim, _ledger = make_fake("slow:latency=5,jitter=0,first=0,turn=2")
    res = node_driver(TS_NEW, "multi-interrupt", shim, hookEvents=["Interrupt"]).result()
    _ok(res)
    assert res["interrupt"] == "ok"
    (session_id,) = {m["session_id"] for m in res["messages"]}
    (call,) = res["hooks"]
    assert call["hook_event_name"] == "Interrupt"
    assert (call["source"], call["reason"], call["via"]) == ("user", "stop", "client")
    assert call["session_id"] == session_id
    assert call["permission_mode"] == "default"
    assert call["transcript_path"] and call["cwd"]


DENY_AND_STOP = {"behavior": "deny", "message": "no", "interrupt": True}


@pytest.mark.parametrize(
    ("by", "who"),
    [
        ("canUseTool", ("user", "permission_denied", "client")),
        ("PermissionRequest", ("system", "permission_denied", None)),
    ],
)
def test_a_deny_that_stops_the_turn_calls_the_interrupt_hooks(
    by: str, who: tuple, make_fake: MakeFake
) -> None:
    # 2.1.335 labels a deny with interrupt: true by who denied: the SDK's canUseTool (a client's
    # word, for a person) or a PermissionRequest hook (the system's, no `via`).
    shim, _ledger = make_fake("ok:tool=Bash")
    extra = {"canUse": DENY_AND_STOP} if by == "canUseTool" else {"decision": DENY_AND_STOP}
    res = node_driver(
        TS_NEW, "permission-request", shim, hookEvents=["Interrupt"], **extra
    ).result()
    assert res["_returncode"] in (0, 1), res["_stderr"]  # the turn's error result may throw
    (call,) = [h for h in res["hooks"] if h["hook_event_name"] == "Interrupt"]
    assert (call["source"], call["reason"], call.get("via")) == who


# 0.1.76 reads no session state: it closes stdin at the first result whatever the CLI says
# (it then throws ERR_STREAM_WRITE_AFTER_END answering the second turn's hook), with the real
# CLI as with the fake.
@pytest.mark.parametrize("sdk", [s for s in TS_SDKS if s != TS_OLD])
def test_prompts_sent_together_each_get_a_turn_with_hooks(sdk: str, make_fake: MakeFake) -> None:
    """A hook keeps the SDK's stdin open until "idle": the fake said it with the second prompt
    waiting, and the SDK closed stdin under it (error_during_execution, then a throw)."""
    shim, ledger = make_fake("ok+slow:first=0,latency=0.2,jitter=0,turn=1")
    res = node_driver(sdk, "queued-prompts", shim).result()
    _ok(res)
    results = _of(res, "result")
    assert [(r["subtype"], r["is_error"]) for r in results] == [("success", False)] * 2
    assert [h["prompt"] for h in res["hooks"]] == ["first prompt", "second prompt"]
    turns = _events(ledger, "turn")
    assert [(t["n"], t["result"]) for t in turns] == [(1, "success"), (2, "success")]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_tool_turn_with_can_use_tool_and_pre_tool_use_hook(sdk: str, make_fake: MakeFake) -> None:
    shim, ledger = make_fake("ok:tool=Bash")
    res = node_driver(sdk, "tools", shim).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    assert any(a.startswith("--permission-prompt-tool") for a in start["argv"])
    tool_uses = [b for m in _of(res, "assistant") for b in m["content"] if b["type"] == "tool_use"]
    assert [b["name"] for b in tool_uses] == ["Bash"]
    # The prompt's hook, the tool's hook, then (after the tool) the stop's.
    assert [(h["hook_event_name"], h["tool_name"]) for h in res["hooks"]] == [
        ("UserPromptSubmit", None), ("PreToolUse", "Bash"), ("Stop", None)
    ]  # fmt: skip
    assert res["hooks"][0]["prompt"]
    assert len(res["can_use_tool"]) == 1
    assert res["can_use_tool"][0]["tool_name"] == "Bash"
    assert "command" in res["can_use_tool"][0]["input"]
    tool_results = [b for m in _of(res, "user") for b in m["content"] if b["type"] == "tool_result"]
    assert len(tool_results) == 1
    (result,) = _of(res, "result")
    assert result["subtype"] == "success" and result["is_error"] is False


@pytest.mark.parametrize("sdk", TS_SDKS)
@pytest.mark.parametrize("decision", [None, {"behavior": "deny", "message": "not on a Friday"}])
def test_permission_request_hook_decides_before_can_use_tool(
    sdk: str, decision: dict | None, make_fake: MakeFake
) -> None:
    """Both SDKs register PermissionRequest; the real CLI (2.1.x) calls it for a call that
    would prompt, before canUseTool, which its deny answers for. The fake never called it."""
    shim, _ = make_fake("ok:tool=Bash")
    res = node_driver(sdk, "permission-request", shim, decision=decision).result()
    _ok(res)
    (hook,) = res["hooks"]
    (use,) = [b for m in _of(res, "assistant") for b in m["content"] if b["type"] == "tool_use"]
    assert (hook["hook_event_name"], hook["tool_name"]) == ("PermissionRequest", "Bash")
    assert "command" in hook["tool_input"] and hook["permission_suggestions"]
    assert "tool_use_id" not in hook and hook["tool_use_id_arg"] == use["id"]
    (tool_result,) = [
        b for m in _of(res, "user") for b in m["content"] if b["type"] == "tool_result"
    ]
    if decision is None:  # no decision: the prompt, canUseTool, goes on
        assert [c["tool_name"] for c in res["can_use_tool"]] == ["Bash"]
        assert not tool_result["is_error"]
    else:
        assert res["can_use_tool"] == []
        assert tool_result["is_error"] and "not on a Friday" in json.dumps(tool_result["content"])
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_a_task_call_runs_a_subagent_between_its_hooks(sdk: str, make_fake: MakeFake) -> None:
    """SubagentStart and SubagentStop, which both SDKs register, around the subagent of a Task
    call, as the real CLI; the fake ran no subagent and called neither."""
    shim, _ = make_fake("ok:tool=Task")
    events = ["PreToolUse", "SubagentStart", "SubagentStop", "PostToolUse"]
    options = {"permissionMode": "bypassPermissions", "allowDangerouslySkipPermissions": True}
    res = node_driver(sdk, "hooks", shim, hookEvents=events, options=options).result()
    _ok(res)
    assert [h["hook_event_name"] for h in res["hooks"]] == events
    _, start, stop, _ = res["hooks"]
    assert start["agent_type"] == stop["agent_type"] == "general-purpose"
    assert start["agent_id"] == stop["agent_id"]
    assert Path(stop["agent_transcript_path"]).is_file() and stop["last_assistant_message"]
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_session_notification_and_compact_hooks_are_not_called(
    sdk: str, make_fake: MakeFake
) -> None:
    """Pins what the real CLI does with these SDK callbacks in a session like this one (see
    fake_claude/README.md): SessionStart runs before the initialize request registers them,
    SessionEnd once stdin has closed ("Stream closed": never sent), Notification only for
    prompts a person sees, PreCompact only on a compaction."""
    shim, _ = make_fake("ok")
    events = ["SessionStart", "SessionEnd", "Notification", "PreCompact", "UserPromptSubmit"]
    res = node_driver(sdk, "hooks", shim, hookEvents=events).result()
    _ok(res)
    assert [h["hook_event_name"] for h in res["hooks"]] == ["UserPromptSubmit"]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_partial_messages(sdk: str, make_fake: MakeFake) -> None:
    shim, ledger = make_fake("ok")
    res = node_driver(sdk, "partial", shim).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    assert "--include-partial-messages" in start["argv"]
    events = [m["event_type"] for m in _of(res, "stream_event")]
    assert events[0] == "message_start" and events[-1] == "message_stop", events
    assert "content_block_delta" in events
    kinds = [m["type"] for m in res["messages"]]
    # Partial events stream before the complete assistant message they add up to.
    assert kinds.index("stream_event") < kinds.index("assistant") < kinds.index("result")


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_status_and_settings_calls(sdk: str, make_fake: MakeFake) -> None:
    # What a caller of the Query object reads after a turn: values in the shape the SDK's types
    # declare (0.1.76 has no getContextUsage; the driver skips calls an SDK does not have).
    shim, ledger = make_fake("ok")
    res = node_driver(sdk, "status", shim).result()
    _ok(res)
    status = res["status"]
    assert all("error" not in v for v in status.values()), status
    assert status["mcpServerStatus"]["value"] == []
    # Refused as an unknown request before (the real CLI answers it since 2.0).
    assert status["setMcpServers"]["value"] == {"added": [], "removed": [], "errors": {}}
    assert any(m["value"] == "claude-sonnet-4-5" for m in status["supportedModels"]["value"])
    assert set(status) >= {"mcpServerStatus", "setModel", "setPermissionMode", "supportedModels"}
    if sdk != TS_OLD:
        usage = status["contextUsage"]["value"]
        used = [c for c in usage["categories"] if c["kind"] == "used"]
        assert usage["totalTokens"] == sum(c["tokens"] for c in used) > 0
        assert 0 < usage["percentage"] < 100 and usage["maxTokens"] > usage["totalTokens"]
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"
    assert [e["code"] for e in _events(ledger, "exit")] == [0]


@pytest.mark.parametrize("sdk", TS_SDKS)
@pytest.mark.parametrize("allow", [False, True], ids=["launched-without", "allowDangerously"])
def test_set_permission_mode_to_bypass_needs_it_allowed_at_launch(
    sdk: str, allow: bool, make_fake: MakeFake
) -> None:
    # The real CLI refuses a switch to bypassPermissions in a session launched without
    # --dangerously-skip-permissions or --allow-dangerously-skip-permissions (the SDK's
    # allowDangerouslySkipPermissions), and the mode stays: canUseTool is still asked.
    shim, ledger = make_fake("ok:tool=Bash")
    options = {"allowDangerouslySkipPermissions": True} if allow else {}
    res = node_driver(sdk, "set-mode", shim, mode="bypassPermissions", options=options).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    assert ("--allow-dangerously-skip-permissions" in start["argv"]) is allow
    modes = [m["permission_mode"] for m in _of(res, "system", "init")]
    if allow:
        assert "error" not in res["set_mode"], res["set_mode"]
        if sdk != TS_OLD:  # 0.1.76's setPermissionMode resolves to nothing
            assert res["set_mode"]["value"] == {"mode": "bypassPermissions"}
        assert modes == ["default", "bypassPermissions"]
        assert [c["tool_name"] for c in res["can_use_tool"]] == ["Bash"]
    else:
        assert "not launched with --dangerously-skip-permissions" in res["set_mode"]["error"]
        assert modes == ["default", "default"]
        assert [c["tool_name"] for c in res["can_use_tool"]] == ["Bash", "Bash"]
    results = _of(res, "result")
    assert [(r["subtype"], r["is_error"]) for r in results] == [("success", False)] * 2


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_structured_output(sdk: str, make_fake: MakeFake) -> None:
    schema = {
        "type": "object",
        "required": ["title", "files"],
        "properties": {"title": {"type": "string"}, "files": {"type": "array"}},
    }
    shim, ledger = make_fake("ok")
    res = node_driver(
        sdk, "plain", shim, outputFormat={"type": "json_schema", "schema": schema}
    ).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    # Both SDKs pass it as one `--json-schema=...` token (0.3 also in the initialize request).
    assert any(a.startswith("--json-schema") for a in start["argv"]), start["argv"]
    (result,) = _of(res, "result")
    out = result["structured_output"]
    assert isinstance(out["title"], str) and out["title"] and isinstance(out["files"], list)


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_sdk_mcp_server_tool(sdk: str, make_fake: MakeFake) -> None:
    # createSdkMcpServer: the fake connects to the in-process server through the SDK and a turn
    # using its tool runs the driver's own code.
    shim, _ = make_fake("ok:tool=mcp__calc__add")
    res = node_driver(sdk, "mcp", shim).result()
    _ok(res)
    assert res["tool_calls"] and set(res["tool_calls"][0]) == {"a", "b"}
    (init,) = _of(res, "system", "init")
    assert {"name": "calc", "status": "connected"} in init["mcp_servers"]
    assert "mcp__calc__add" in init["tools"]
    results = [b for m in _of(res, "user") for b in m["content"] if b["type"] == "tool_result"]
    assert len(results) == 1 and not results[0]["is_error"]
    assert "sum=0" in json.dumps(results[0]["content"])
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"


@pytest.mark.parametrize("sdk", TS_SDKS)
@pytest.mark.parametrize("kind", ["sdk", "stdio"])
def test_an_interrupt_ends_a_running_mcp_tool_and_cancels_it(
    sdk: str, kind: str, make_fake: MakeFake, tmp_path: Path
) -> None:
    # interrupt() while an MCP tool runs is answered at once, ends the turn, and the server is
    # told (notifications/cancelled) to stop, as by the real CLI's MCP client: the driver's own
    # tool sees its abort signal, a stdio server reads the notification. The fake read no stdin
    # while a stdio server worked (the interrupt waited for MCP_TIMEOUT, 30 s, and the turn then
    # went on), and only told the SDK to drop its mcp_message request.
    shim, ledger = make_fake(f"ok:tool=mcp__{'slow' if kind == 'sdk' else 'never'}__wait")
    extra: dict = {"sdkTool": True}
    if kind == "stdio":
        server, said = never_answering_server(tmp_path)
        extra = {"options": {"mcpServers": {"never": server}, "allowedTools": ["mcp__never"]}}
    res = node_driver(sdk, "tool-interrupt", shim, **extra).result()
    _ok(res)
    assert res["interrupt_ms"] < 10_000
    (result,) = _of(res, "result")
    assert result["subtype"] == "error_during_execution" and result["is_error"]
    if kind == "sdk":
        assert res["tool_aborted"] is True
    else:
        (call,) = [m for m in said() if m.get("method") == "tools/call"]
        (cancel,) = [m for m in said() if m.get("method") == "notifications/cancelled"]
        assert cancel["params"]["requestId"] == call["id"]
    assert [e["interrupted"] for e in _events(ledger, "turn")] == [True]
    # Its input then ended: the CLI exits 1 after an error result, which the SDK throws.
    assert res.get("ended_with") in (None, "Claude Code process exited with code 1")


CURRENT = TS_NEW  # the newest pinned SDK, whose delivery options the tests below set
# (SDK, mcpServersDelivery): None is the SDK's default, argv for 0.1.76, initialize since 0.3.333.
STDIO_DELIVERIES = [*((sdk, None) for sdk in TS_SDKS), (CURRENT, "argv")]


@pytest.mark.parametrize(("sdk", "delivery"), STDIO_DELIVERIES)
def test_stdio_mcp_server_is_the_fakes_child(
    sdk: str, delivery: str | None, make_fake: MakeFake
) -> None:
    # A stdio server in mcpServers: the SDK passes it in --mcp-config, or (0.3.333's default)
    # in the initialize request under --await-initialize, and wants mcp_servers_applied back
    # (the fake before answered none: "This Claude Code ... is too old to read MCP servers over
    # stdin", and no turn). Either way the fake starts it as its child, a turn calls its tool,
    # mcp status lists it, and the fake ends it when the SDK closes its stdin.
    shim, ledger = make_fake("ok:tool=mcp__echo__pid")
    command, *args = server_argv()
    options = {"mcpServers": {"echo": {"command": command, "args": args}},
               "allowedTools": ["mcp__echo__pid"],
               **({"mcpServersDelivery": delivery} if delivery else {})}  # fmt: skip
    res = node_driver(sdk, "status", shim, options=options).result()
    _ok(res)
    (start,) = [e for e in _events(ledger, "start") if e.get("role", "main") == "main"]
    via_initialize = sdk != TS_OLD and delivery != "argv"
    assert ("--await-initialize" in start["argv"]) is via_initialize, start["argv"]
    assert any(a.startswith("--mcp-config") for a in start["argv"]) is not via_initialize
    (server,) = [e for e in _events(ledger, "start") if e.get("role") == "mcp-server"]
    assert server["parent_pid"] == start["pid"]
    (init,) = _of(res, "system", "init")
    assert {"name": "echo", "status": "connected"} in init["mcp_servers"]
    results = [b for m in _of(res, "user") for b in m["content"] if b["type"] == "tool_result"]
    assert len(results) == 1 and str(server["pid"]) in json.dumps(results[0]["content"])
    status = res["status"]["mcpServerStatus"]["value"]
    assert [(s["name"], s["status"]) for s in status] == [("echo", "connected")]
    assert [e["code"] for e in _events(ledger, "exit")] == [0]
    alive = proctree.is_alive(proctree.ProcId(server["pid"], server["create_time"]))
    assert not alive, "the fake left its MCP server running"


# option -> (its value: a rule that takes Bash away, the flag of its argv form, what the
# launch adds to read it from the initialize request instead)
DENY_BASH = {"permissions": {"deny": ["Bash"]}}
DELIVERED_OPTIONS = {
    "settings": (DENY_BASH, "--settings", "--initialize-fields=settings"),
    "disallowedTools": (["Bash"], "--disallowedTools", "--initialize-fields=disallowedTools"),
    "managedSettings": (DENY_BASH, "--managed-settings", "--managed-settings-in-initialize"),
}


@pytest.mark.parametrize("delivery", ["argv", "initialize"])
@pytest.mark.parametrize("option", sorted(DELIVERED_OPTIONS))
def test_a_deny_rule_takes_effect_however_the_sdk_delivers_it(
    option: str, delivery: str, make_fake: MakeFake
) -> None:
    # settingsDelivery, disallowedToolsDelivery, managedSettingsDelivery: 'initialize' puts the
    # value in the initialize request and ends the session unless the answer confirms it
    # (settings_applied, ...), which the fake before never did. Delivered either way, the deny
    # rule takes Bash from the model's tools, so canUseTool (which would allow it) is not asked.
    value, flag, launch_flag = DELIVERED_OPTIONS[option]
    shim, ledger = make_fake("ok:tool=Bash")
    options = {option: value, f"{option}Delivery": delivery}
    res = node_driver(CURRENT, "tools", shim, options=options).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    given = [a.partition("=")[0] for a in start["argv"]]
    assert (flag in given) is (delivery == "argv"), start["argv"]
    assert ("--await-initialize" in given) is (delivery == "initialize")
    assert (launch_flag in start["argv"]) is (delivery == "initialize"), start["argv"]
    (init,) = _of(res, "system", "init")
    assert "Bash" not in init["tools"]
    results = [b for m in _of(res, "user") for b in m["content"] if b["type"] == "tool_result"]
    assert len(results) == 1 and results[0]["is_error"]
    assert "No such tool available: Bash" in json.dumps(results[0]["content"])
    assert res["can_use_tool"] == []
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"
    assert [e["code"] for e in _events(ledger, "exit")] == [0]


@pytest.mark.parametrize("delivery", ["argv", "initialize"])
def test_plugins_either_way_leave_the_session_running(
    delivery: str, make_fake: MakeFake, tmp_path: Path
) -> None:
    # pluginDelivery 'initialize': the fake loads no plugin, from --plugin-dir or from the
    # request, so it answers plugins_applied: false, on which the SDK only logs a warning.
    shim, ledger = make_fake("ok")
    plugins = [{"type": "local", "path": str(tmp_path)}]
    options = {"plugins": plugins, "pluginDelivery": delivery}
    res = node_driver(CURRENT, "plain", shim, options=options).result()
    _ok(res)
    (start,) = _events(ledger, "start")
    given = [a.partition("=")[0] for a in start["argv"]]
    assert ("--plugin-dir" in given) is (delivery == "argv"), start["argv"]
    assert ("--await-initialize" in given) is (delivery == "initialize")
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"
    assert [e["code"] for e in _events(ledger, "exit")] == [0]


OPTION_CASES = {
    "system-prompt": {"systemPrompt": "-terse-"},
    "preset-prompt": {"systemPrompt": {"type": "preset", "preset": "claude_code", "append": "--x"}},
    "tools": {"allowedTools": ["Read"], "disallowedTools": ["Write"], "tools": ["Read", "Grep"]},
    "limits": {"maxTurns": 3, "maxBudgetUsd": 0.5, "fallbackModel": "claude-haiku-4-5"},
    "agents": {"agents": {"rev": {"description": "reviews", "prompt": "-review-", "tools": []}}},
    "thinking": {"maxThinkingTokens": 2000},
    "setting-sources": {"settingSources": ["user", "project", "local"]},
    "env": {"env": {"PATH": "/usr/bin:/bin", "FOO": "-x"}},
    "permission-mode": {"permissionMode": "acceptEdits"},
    "sandbox": {"sandbox": {"enabled": True}},
    "betas": {"betas": ["context-1m-2025-08-07"]},
    "resume-fork": {"resume": "<the first session's id>", "forkSession": True},
}


@pytest.mark.parametrize("sdk", TS_SDKS)
@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_options_the_sdk_turns_into_flags(sdk: str, case: str, make_fake: MakeFake) -> None:
    # Whatever flags an option becomes (values that start with a dash included), the fake
    # takes them and the session completes.
    shim, ledger = make_fake("ok")
    options = dict(OPTION_CASES[case])
    exits = [0]
    if case == "resume-fork":  # a conversation to go on with, in this fake's store
        first = node_driver(sdk, "plain", shim).result()
        _ok(first)
        options["resume"] = _of(first, "result")[0]["session_id"]
        exits = [0, 0]
    res = node_driver(sdk, "plain", shim, options=options).result()
    _ok(res)
    (result,) = _of(res, "result")
    assert result["subtype"] == "success"
    if case == "resume-fork":  # a fork goes on under a new id
        assert result["session_id"] != options["resume"]
    assert [e["code"] for e in _events(ledger, "exit")] == exits


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_resuming_a_conversation_that_is_gone_fails_as_with_the_real_cli(
    sdk: str, make_fake: MakeFake
) -> None:
    # claude-mem's stale memory session id after a restart: the real CLI exits 1 at once with
    # "No conversation found with session ID", which the SDK turns into an error.
    shim, ledger = make_fake("ok")
    gone = "0f0e0d0c-1111-4222-8333-444455556666"
    res = node_driver(sdk, "plain", shim, options={"resume": gone}).result()
    assert res["error"] is not None and "code 1" in res["error"], res
    assert [e["code"] for e in _events(ledger, "exit")] == [1]
    assert not _events(ledger, "turn")
    assert not _of(res, "result")  # stderr alone, unless the host asks (below)


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_a_host_that_asks_for_startup_failure_results_gets_the_reason(
    sdk: str, make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TS 0.3.334's types: with CLAUDE_CODE_STARTUP_FAILURE_RESULTS set, the CLI writes a zeroed
    # error result saying why it would not start (here resume_target_not_found) before exiting,
    # so a daemon can tell a stale session id from a crash without reading stderr.
    monkeypatch.setenv("CLAUDE_CODE_STARTUP_FAILURE_RESULTS", "1")  # the SDK passes it on
    shim, ledger = make_fake("ok")
    gone = "0f0e0d0c-1111-4222-8333-444455556666"
    res = node_driver(sdk, "plain", shim, options={"resume": gone}).result()
    # 0.1.76 throws on the exit code; 0.3.x throws on the error result, with its errors.
    said = (
        "code 1"
        if sdk == TS_OLD
        else f"error result: No conversation found with session ID: {gone}"
    )
    assert res["error"] is not None and said in res["error"], res
    (result,) = _of(res, "result")
    assert result["subtype"] == "error_during_execution" and result["is_error"] is True
    assert result["startup_failure_reason"] == "resume_target_not_found"
    assert result["errors"] == [f"No conversation found with session ID: {gone}"]
    assert result["num_turns"] == 0
    assert [e["code"] for e in _events(ledger, "exit")] == [1]
    assert not _events(ledger, "turn")
