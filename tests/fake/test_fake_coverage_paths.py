"""Fake paths the SDK tests seldom take, each driven over real pipes: control requests that change
the session, list-shaped user content, hook denials, stdin closing mid-request, JSON that is not an
object, blank lines, `--help`, and jittered slowness."""

from __future__ import annotations

import os
import subprocess

from fake_helpers import SDK_ARGV, wait_for

from fake_claude.shim import command_for, write_shim

TOOL_ARGV = [*SDK_ARGV, "--permission-prompt-tool", "stdio"]


def test_set_model_and_status_requests_are_answered(spawn):
    fake = spawn()
    fake.initialize()
    assert fake.control("r1", {"subtype": "set_model", "model": "claude-opus-4"})["subtype"] == (
        "success"
    )
    status = fake.control("r2", {"subtype": "mcp_status"})
    assert status["subtype"] == "success" and status["response"] == {"mcpServers": []}
    usage = fake.control("r3", {"subtype": "get_context_usage"})
    assert usage["subtype"] == "success" and usage["response"]["model"] == "claude-opus-4"
    assert 0 < usage["response"]["percentage"] < 100
    interrupt = fake.control("r4", {"subtype": "interrupt"})  # no turn running: just success
    assert interrupt["subtype"] == "success"
    msgs = fake.turn("which model are you")
    assert msgs[-1]["type"] == "result" and msgs[-1]["is_error"] is False
    assert any(
        m["type"] == "assistant" and m["message"]["model"] == "claude-opus-4" for m in msgs
    ), msgs
    grown = fake.control("r5", {"subtype": "get_context_usage"})["response"]
    assert grown["totalTokens"] > usage["response"]["totalTokens"]
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_control_requests_the_cli_version_knows_are_answered_in_their_shape(spawn):
    """Before, these got "Unsupported control request subtype" (or a bare success where the
    SDK reads fields), though the fake says it is the CLI version that serves them."""
    fake = spawn()
    fake.initialize()
    for i, sub in enumerate(("set_max_thinking_tokens", "apply_flag_settings", "update_settings")):
        assert fake.control(f"s{i}", {"subtype": sub})["subtype"] == "success"
    rewind = fake.control("r1", {"subtype": "rewind_files", "user_message_id": "u-1"})
    assert rewind["response"]["canRewind"] is False and "u-1" in rewind["response"]["error"]
    for i, sub in enumerate(("mcp_reconnect", "mcp_toggle")):
        gone = fake.control(f"m{i}", {"subtype": sub, "serverName": "nowhere", "enabled": True})
        assert gone["subtype"] == "error" and "nowhere" in gone["error"]
    task = fake.control("t1", {"subtype": "stop_task", "task_id": "task-9"})
    assert task["subtype"] == "error" and "task-9" in task["error"]
    mode = fake.control("p1", {"subtype": "set_permission_mode", "mode": "bogusMode"})
    assert mode["subtype"] == "error" and "bogusMode" in mode["error"]
    assert fake.turn("still fine")[-1]["is_error"] is False
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_list_content_and_blank_lines_are_read_as_text(spawn):
    fake = spawn()
    fake.initialize()
    fake.send(b"\n   \n")  # blank lines are skipped, not parse errors
    fake.send(
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {"type": "text", "text": "alpha beta"},
                    {"type": "image", "source": {}},
                    {"type": "tool_result", "tool_use_id": "t1", "content": "gamma delta"},
                    "not a block",
                ],
            },
            "parent_tool_use_id": None,
            "session_id": "",
        }
    )
    msgs = []
    while not msgs or msgs[-1]["type"] != "result":
        msgs.append(fake.read_message())
    text = [m for m in msgs if m["type"] == "assistant"][0]["message"]["content"][0]["text"]
    # The reply's title is the prompt's first words: both text and tool_result content count.
    assert "alpha beta" in text and "gamma delta" in text
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_json_that_is_not_an_object_exits_1(spawn):
    fake = spawn()
    fake.initialize()
    fake.send(b"[1, 2, 3]\n")
    assert fake.wait_exit() == 1
    wait_for(lambda: b"not an object" in bytes(fake.stderr), "the parse error on stderr")
    assert fake.records("exit")[0]["code"] == 1


def test_pre_tool_hook_denial_is_a_permission_denial(spawn):
    fake = spawn("ok:tool=Bash", args=TOOL_ARGV)
    hooks = {
        "PreToolUse": [
            {"matcher": "Edit|Write", "hookCallbackIds": ["never"]},  # does not match Bash
            {"matcher": "Bash", "hookCallbackIds": ["guard"]},
        ]
    }
    fake.initialize(hooks=hooks)
    fake.user("delete everything")
    hook = fake.read_until(lambda m: m.get("type") == "control_request", "hook_callback")
    assert hook["request"]["callback_id"] == "guard"
    fake.send(
        {
            "type": "control_response",
            "response": {
                "subtype": "success",
                "request_id": hook["request_id"],
                "response": {
                    "hookSpecificOutput": {
                        "permissionDecision": "deny",
                        "permissionDecisionReason": "policy says no",
                        "updatedInput": {"command": "true"},
                    }
                },
            },
        }
    )
    # A hook's denial skips can_use_tool: the next message is the failed tool result.
    tool_result = fake.read_message()
    assert tool_result["type"] == "user", tool_result
    block = tool_result["message"]["content"][0]
    assert block["is_error"] is True and block["content"] == "policy says no"
    result = fake.read_until(lambda m: m.get("type") == "result", "result")
    assert result["permission_denials"][0]["tool_input"] == {"command": "true"}
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_can_use_tool_error_reply_denies(spawn):
    fake = spawn("ok:tool=Bash", args=TOOL_ARGV)
    fake.initialize()
    fake.user("try a tool")
    perm = fake.read_until(lambda m: m.get("type") == "control_request", "can_use_tool")
    fake.send(
        {
            "type": "control_response",
            "response": {"subtype": "error", "request_id": perm["request_id"], "error": "no UI"},
        }
    )
    tool_result = fake.read_until(lambda m: m.get("type") == "user", "tool result")
    block = tool_result["message"]["content"][0]
    assert block["is_error"] is True and block["content"] == "no UI"
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_a_denial_that_interrupts_ends_the_turn_interrupted(spawn):
    """can_use_tool's deny with interrupt: true (PermissionResultDeny(interrupt=True)): the
    turn stops there, as after an interrupt. Before, it went on to a reply and a success."""
    fake = spawn("ok:tool=Bash", args=TOOL_ARGV)
    fake.initialize()
    fake.user("delete everything")
    perm = fake.read_until(lambda m: m.get("type") == "control_request", "can_use_tool")
    answer = {"behavior": "deny", "message": "stop right there", "interrupt": True}
    fake.send({"type": "control_response", "response": {
        "subtype": "success", "request_id": perm["request_id"], "response": answer}})  # fmt: skip
    denied = fake.read_until(lambda m: m.get("type") == "user", "the denied tool result")
    assert denied["message"]["content"][0]["content"] == "stop right there"
    said = fake.read_until(lambda m: m.get("type") == "user", "the interruption")
    assert said["message"]["content"][0]["text"] == "[Request interrupted by user for tool use]"
    result = fake.read_until(lambda m: m.get("type") == "result", "result")
    assert result["subtype"] == "error_during_execution" and result["is_error"] is True
    # As 2.1.x: stopped while a tool waited; the denial is listed as any other is.
    assert result["terminal_reason"] == "aborted_tools"
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"]
    assert (
        result["permission_denials"][0]["tool_use_id"]
        == denied["message"]["content"][0]["tool_use_id"]
    )
    wait_for(lambda: fake.records("turn"), "the turn's ledger line")  # written after the result
    assert fake.records("turn")[-1]["interrupted"] is True
    fake.close_stdin()
    assert fake.wait_exit() == 1


def test_stdin_closing_while_a_tool_waits_ends_the_turn_as_an_error(spawn):
    fake = spawn("ok:tool=Bash", args=TOOL_ARGV)
    fake.initialize()
    fake.user("use a tool")
    fake.read_until(lambda m: m.get("type") == "control_request", "can_use_tool")
    fake.close_stdin()  # the SDK goes away without answering
    result = fake.read_until(lambda m: m.get("type") == "result", "error result")
    assert result["is_error"] is True and result["subtype"] == "error_during_execution"
    assert result["errors"] == ["stdin closed"]
    assert fake.wait_exit() == 1  # last turn ended in error
    assert fake.records("stdin_eof")


def test_jittered_slow_turns_still_complete(spawn):
    fake = spawn("slow:latency=0.01,jitter=0.05,first=0.05")
    fake.initialize()
    first = fake.turn("one")
    second = fake.turn("two")
    assert first[-1]["is_error"] is False and second[-1]["is_error"] is False
    fake.close_stdin()
    assert fake.wait_exit() == 0
    assert [r["n"] for r in fake.records("turn")] == [1, 2]


def test_help_prints_usage(tmp_path, run_id):
    argv, env = command_for({"run_id": run_id})
    out = subprocess.run(
        [*argv, "--help"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: claude [options] [prompt]")
    assert "fake-claude shim DIR" in out.stdout and "fake-claude selfcheck" in out.stdout
    assert "FAKE_CLAUDE_*" in out.stdout and "fake_claude/README.md" in out.stdout


def test_shim_settings_skip_none_and_prefix_plain_names(tmp_path, run_id):
    shim = write_shim(
        tmp_path / "bin",
        {"run_id": run_id, "version": "3.0.0", "scenario": None, "custom_thing": "x y"},
    )
    text = shim.read_text()
    assert "FAKE_CLAUDE_CUSTOM_THING='x y'" in text
    assert "FAKE_CLAUDE_SCENARIO=" not in text  # None means unset, not the string "None"
    out = subprocess.run([str(shim), "-v"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stdout == "3.0.0 (Claude Code)\n"
