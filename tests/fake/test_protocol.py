"""The stream-json protocol, driven over real pipes the way the Agent SDKs drive it."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from fake_helpers import POSIX, SDK_ARGV, alive, wait_for

RESULT_REQUIRED = (
    "subtype",
    "duration_ms",
    "duration_api_ms",
    "is_error",
    "num_turns",
    "session_id",
)


def test_initialize_reply_echoes_request_id(spawn):
    fake = spawn()
    reply = fake.initialize(request_id="req_1_abcd")
    resp = reply["response"]
    assert resp["subtype"] == "success" and resp["request_id"] == "req_1_abcd"
    assert resp["response"]["pid"] == fake.pid
    assert resp["response"]["claude_code_version"] == "2.1.332"


def test_hooks_applied_answers_only_a_request_that_carried_hooks(spawn):
    # The TS SDK's types: absent when the request carried no hooks (it was always true).
    bare = spawn().initialize()["response"]["response"]
    assert "hooks_applied" not in bare and bare["hook_on_failure_supported"] is True
    hooks = {"Stop": [{"matcher": None, "hookCallbackIds": ["hook_0"]}]}
    assert spawn().initialize(hooks=hooks)["response"]["response"]["hooks_applied"] is True


def test_turn_sequence_and_required_fields(spawn):
    fake = spawn()
    fake.initialize()
    msgs = fake.turn("the cat sat on the mat")
    kinds = [(m["type"], m.get("subtype") or m.get("state")) for m in msgs]
    assert kinds[0] == ("system", "session_state_changed")
    assert msgs[0]["state"] == "running"
    assert kinds[1] == ("system", "init")
    assert kinds[-2][0] == "assistant" and kinds[-1] == ("result", "success")
    result = msgs[-1]
    for key in RESULT_REQUIRED:
        assert key in result, key
    assert result["is_error"] is False
    sid = msgs[1]["session_id"]
    assert all(m["session_id"] == sid for m in msgs)
    idle = fake.read_message()
    assert idle["subtype"] == "session_state_changed" and idle["state"] == "idle"
    fake.close_stdin()
    assert fake.wait_exit() == 0
    assert [r["n"] for r in fake.records("turn")] == [1]
    assert fake.records("exit")[0]["code"] == 0


def test_no_state_frames_unless_the_sdk_asks(spawn):
    # TS SDK 0.1.76 (claude-mem 9.0.0) does not set CLAUDE_CODE_SDK_READS_SESSION_STATE.
    fake = spawn(sdk_env=False)
    fake.initialize()
    msgs = fake.turn("old sdk")
    assert [m["type"] for m in msgs] == ["system", "assistant", "result"]
    assert msgs[0]["subtype"] == "init"


def test_replies_are_deterministic_in_the_input(spawn):
    texts = []
    for prompt in ("alpha beta", "alpha beta", "gamma delta"):
        fake = spawn()
        fake.initialize()
        texts.append(fake.turn(prompt)[-1]["result"])
        fake.close_stdin()
        fake.wait_exit()
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    assert "<observation>" in texts[0] and "alpha beta" in texts[0]


def test_a_lone_surrogate_in_a_prompt_is_answered(spawn):
    """JSON may carry half a surrogate pair (the SDKs' JSON.stringify escapes one as \\ud83d);
    the real CLI answers. Before: the fake's reply digest could not encode it, and it exited 1."""
    fake = spawn()
    fake.initialize()
    msgs = fake.turn("half an emoji: \ud83d, and a whole one: \U0001f600")
    assert msgs[-1]["type"] == "result" and msgs[-1]["is_error"] is False
    assert "half an emoji" in msgs[-1]["result"]
    fake.close_stdin()
    assert fake.wait_exit() == 0


def _a_conversation(spawn) -> str:
    """The session id of a finished one-turn conversation (in this test's ledger's store)."""
    fake = spawn()
    fake.initialize()
    (sid,) = {m["session_id"] for m in fake.turn("hello")}
    fake.close_stdin()
    assert fake.wait_exit() == 0
    return sid


def test_resume_keeps_session_id(spawn):
    resumed = _a_conversation(spawn)
    fake = spawn(args=[*SDK_ARGV, "--resume", resumed])
    fake.initialize()
    msgs = fake.turn("continue")
    assert {m["session_id"] for m in msgs} == {resumed}
    start = fake.wait_record("start")
    assert start["session_id"] == resumed


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        (["--fork-session"], False),
        (["--fork-session", "--session-id", "aaaaaaaa-0000-4000-8000-000000000001"], True),
    ],
)
def test_fork_session_goes_on_under_a_new_id(spawn, extra, kept):
    resumed = _a_conversation(spawn)
    fake = spawn(args=[*SDK_ARGV, "--resume", resumed, *extra])
    fake.initialize()
    (sid,) = {m["session_id"] for m in fake.turn("continue")}
    if kept:  # an explicit --session-id names the fork
        assert sid == "aaaaaaaa-0000-4000-8000-000000000001"
    else:
        assert sid != resumed and len(sid) == 36
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_multi_turn_and_interrupt(spawn):
    # slow: each message is held back long enough for the interrupt to land mid-turn.
    fake = spawn("slow:latency=30,jitter=0,first=0")
    fake.initialize()
    fake.user("first")
    fake.read_until(lambda m: m.get("subtype") == "init", "system init")
    fake.send(
        {"type": "control_request", "request_id": "int1", "request": {"subtype": "interrupt"}}
    )
    ack = fake.read_until(lambda m: m.get("type") == "control_response", "interrupt ack")
    assert ack["response"]["request_id"] == "int1"
    user = fake.read_message()
    assert user["type"] == "user"
    assert user["message"]["content"][0]["text"] == "[Request interrupted by user]"
    result = fake.read_message()
    assert result["type"] == "result" and result["is_error"] is True
    assert result["subtype"] == "error_during_execution"
    assert result["terminal_reason"] == "aborted_streaming"  # 2.1.x's, while the reply streamed
    assert result["permission_denials"] == []
    assert fake.wait_record("turn", n=1)["interrupted"] is True
    fake.close_stdin()
    # stdin EOF after an error result: exit 1, as the real CLI does.
    assert fake.wait_exit() == 1


def test_set_permission_mode_and_unknown_control(spawn):
    fake = spawn()
    fake.initialize()
    fake.send(
        {
            "type": "control_request",
            "request_id": "pm",
            "request": {"subtype": "set_permission_mode", "mode": "acceptEdits"},
        }
    )
    ack = fake.read_until(lambda m: m.get("type") == "control_response", "ack")
    assert ack["response"]["subtype"] == "success"
    init = [m for m in fake.turn("x") if m.get("subtype") == "init"][0]
    assert init["permissionMode"] == "acceptEdits"
    fake.send(
        {"type": "control_request", "request_id": "zz", "request": {"subtype": "no_such_request"}}
    )
    err = fake.read_until(lambda m: m.get("type") == "control_response", "error reply")
    assert err["response"]["subtype"] == "error"
    assert "no_such_request" in err["response"]["error"]


@pytest.mark.parametrize(
    ("launch", "starts_in", "may_bypass"),
    [
        ([], "default", False),
        (["--permission-mode", "acceptEdits"], "acceptEdits", False),
        (["--allow-dangerously-skip-permissions"], "default", True),
        (["--dangerously-skip-permissions"], "bypassPermissions", True),
        (["--permission-mode", "bypassPermissions"], "bypassPermissions", True),
    ],
)
def test_bypass_permissions_is_had_only_from_the_launch(spawn, launch, starts_in, may_bypass):
    # As the real CLI: set_permission_mode may switch to bypassPermissions only in a session
    # that started in it or was launched allowing it; otherwise it is refused, the mode kept.
    fake = spawn(args=[*SDK_ARGV, *launch])
    fake.initialize()
    init = [m for m in fake.turn("x") if m.get("subtype") == "init"][0]
    assert init["permissionMode"] == starts_in
    assert fake.control("d", {"subtype": "set_permission_mode", "mode": "default"}) == {
        "subtype": "success", "request_id": "d", "response": {"mode": "default"}
    }  # fmt: skip
    answer = fake.control("b", {"subtype": "set_permission_mode", "mode": "bypassPermissions"})
    init = [m for m in fake.turn("y") if m.get("subtype") == "init"][0]
    if may_bypass:
        assert answer["response"] == {"mode": "bypassPermissions"}
        assert init["permissionMode"] == "bypassPermissions"
    else:
        assert answer["subtype"] == "error"
        assert answer["error"] == (
            "Cannot set permission mode to bypassPermissions because the session was not "
            "launched with --dangerously-skip-permissions"
        )
        assert init["permissionMode"] == "default"


@pytest.mark.parametrize("allow", [True, False])
def test_tool_use_round_trips(spawn, allow):
    fake = spawn(
        "ok:tool=Bash",
        args=[
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--permission-prompt-tool",
            "stdio",
        ],
    )
    hooks = {"PreToolUse": [{"matcher": "Bash", "hookCallbackIds": ["hook_0"]}]}
    fake.initialize(hooks=hooks)
    fake.user("run something")
    hook = fake.read_until(lambda m: m.get("type") == "control_request", "hook_callback")
    assert hook["request"]["subtype"] == "hook_callback"
    assert hook["request"]["callback_id"] == "hook_0"
    assert hook["request"]["input"]["hook_event_name"] == "PreToolUse"
    assert hook["request"]["input"]["tool_name"] == "Bash"
    fake.send(
        {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": hook["request_id"], "response": {}},
        }
    )
    perm = fake.read_until(lambda m: m.get("type") == "control_request", "can_use_tool")
    assert perm["request"]["subtype"] == "can_use_tool"
    assert perm["request"]["tool_name"] == "Bash"
    answer = (
        {"behavior": "allow", "updatedInput": {"command": "echo changed"}}
        if allow
        else {"behavior": "deny", "message": "not today"}
    )
    fake.send(
        {
            "type": "control_response",
            "response": {
                "subtype": "success",
                "request_id": perm["request_id"],
                "response": answer,
            },
        }
    )
    tool_result = fake.read_until(lambda m: m.get("type") == "user", "tool result")
    block = tool_result["message"]["content"][0]
    assert block["type"] == "tool_result" and block["is_error"] is (not allow)
    assert ("echo changed" in block["content"]) if allow else (block["content"] == "not today")
    result = fake.read_until(lambda m: m.get("type") == "result", "result")
    assert result["is_error"] is False
    assert bool(result["permission_denials"]) is (not allow)


def test_partial_messages_stream_events(spawn):
    fake = spawn(
        args=[
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--include-partial-messages",
        ]
    )
    fake.initialize()
    msgs = fake.turn("stream this please")
    events = [m["event"] for m in msgs if m["type"] == "stream_event"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    streamed = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assistant = [m for m in msgs if m["type"] == "assistant"][0]
    assert streamed == assistant["message"]["content"][0]["text"]


def test_partial_messages_stream_a_tool_use_input(spawn):
    fake = spawn("ok:tool=Bash", args=[*SDK_ARGV, "--include-partial-messages"])
    fake.initialize()
    msgs = fake.turn("run it")
    # Two model messages: the tool use, then the reply; each streamed before it is whole.
    starts = [i for i, m in enumerate(msgs) if m.get("event", {}).get("type") == "message_start"]
    assert len(starts) == 2
    first = [m["event"] for m in msgs[starts[0] : starts[1]] if m["type"] == "stream_event"]
    (opening,) = [e for e in first if e["type"] == "content_block_start"]
    use = next(b for m in msgs if m["type"] == "assistant" for b in m["message"]["content"])
    assert opening["content_block"] == {**use, "input": {}}
    deltas = [e["delta"] for e in first if e["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d["partial_json"] for d in deltas)) == use["input"]
    (stop,) = [e for e in first if e["type"] == "message_delta"]
    assert stop["delta"]["stop_reason"] == "tool_use"
    fake.close_stdin()
    assert fake.wait_exit() == 0


@pytest.mark.parametrize(
    "line",
    [b"this is not json", b"[" * 100_000 + b"]" * 100_000],  # too deep: was a RecursionError
)
def test_non_json_line_exits_1_with_message(spawn, line):
    fake = spawn()
    fake.initialize()
    fake.send(line + b"\n")
    assert fake.wait_exit() == 1
    # The stderr pump thread may still be reading what the fake wrote before it exited.
    wait_for(lambda: b"Error parsing streaming input line" in bytes(fake.stderr), "the message")
    assert b"Traceback" not in bytes(fake.stderr)


def test_idle_with_stdin_open_stays_alive_then_eof_ends_it(spawn):
    fake = spawn()
    fake.initialize()
    fake.turn("hello")
    # The #603 mechanism: nothing closes stdin, so the fake waits. It must still be there after
    # the reply and a pause; the pause asserts persistence, it does not synchronise anything.
    with pytest.raises(subprocess.TimeoutExpired):
        fake.popen.wait(timeout=1.0)
    assert alive(fake.pid)
    fake.close_stdin()
    assert fake.wait_exit() == 0
    assert fake.records("stdin_eof")


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
def test_sigterm_exits_143(spawn):
    fake = spawn()
    fake.initialize()
    fake.signal(signal.SIGTERM)
    assert fake.wait_exit() == 143
    rec = fake.wait_record("signal")
    assert rec["name"] == "SIGTERM" and rec["action"] == "exit"
    assert fake.records("exit")[0]["code"] == 143


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
def test_sigterm_while_reading_before_any_input(spawn):
    fake = spawn()
    fake.wait_record("start")
    fake.signal(signal.SIGTERM)
    assert fake.wait_exit() == 143
    wait_for(lambda: not alive(fake.pid), "fake to be gone")


def test_huge_input_line_is_read_whole(spawn):
    # Tool results make SDK->CLI lines large; the reader must not assume a small buffer.
    fake = spawn()
    fake.initialize()
    big = "word " * (2 << 20)  # 10 MiB
    msgs = fake.turn(big)
    assert msgs[-1]["is_error"] is False
    assert f"input had {2 << 20} words" in msgs[-1]["result"]
