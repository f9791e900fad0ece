"""The worker's side of stream-json on inputs its observers seldom send: CLI-initiated control
requests (the observer may use no tool), lines that are not messages, unknown queue kinds."""

from __future__ import annotations

import sys

import pytest
from workerkit import Worker

from worker import protocol


def _reply(request: dict) -> dict:
    out = protocol.control_reply(
        {"type": "control_request", "request_id": "r9", "request": request}
    )
    assert out["type"] == "control_response" and out["response"]["request_id"] == "r9"
    return out["response"]


def test_tool_permission_is_always_denied():
    resp = _reply({"subtype": "can_use_tool", "tool_name": "Bash", "input": {}})
    assert resp["subtype"] == "success"
    assert resp["response"]["behavior"] == "deny" and "no tools" in resp["response"]["message"]


def test_hook_callbacks_succeed_empty_and_unknown_subtypes_are_errors():
    assert _reply({"subtype": "hook_callback", "callback_id": "h"})["response"] == {}
    unknown = _reply({"subtype": "elicitation"})
    assert unknown["subtype"] == "error" and "elicitation" in unknown["error"]
    odd = protocol.control_reply({"request": "not a dict"})
    assert odd["response"]["subtype"] == "error" and odd["response"]["request_id"] == ""


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"<html>502</html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a message"),
        (b'{"type": 3}', "not a message"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nested too deep: was a RecursionError
        (b'{"type": "x", "a": ' + b'["\\ud800", ' * 5000 + b"1" + b"]" * 5000 + b"}", "not JSON"),
    ],
)
def test_lines_that_are_not_messages_are_protocol_errors(line, why):
    with pytest.raises(protocol.ProtocolError, match=why):
        protocol.parse_line(line)


def test_assistant_text_from_string_or_blocks_and_unknown_kind():
    assert protocol.assistant_text({"message": {"content": "plain"}}) == "plain"
    blocks = [
        {"type": "text", "text": "a"},
        {"type": "tool_use"},
        "x",
        {"type": "text", "text": "b"},
    ]
    assert protocol.assistant_text({"message": {"content": blocks}}) == "ab"
    assert protocol.assistant_text({}) == ""
    with pytest.raises(ValueError, match="unknown queued item kind"):
        protocol.prompt_text("teleport", {}, "proj", 1)


@pytest.mark.parametrize(
    "message",
    [
        {"message": "hi"},
        {"message": {"content": 42}},
        {"message": {"content": [{"type": "text", "text": 5}, {"type": "text", "text": None}]}},
        {"message": {"content": {"type": "text", "text": "a dict, not a list"}}},
    ],
)
def test_assistant_fields_of_another_type_are_no_text(message):
    """Before: AttributeError/TypeError in the generator, and the session's queue stuck."""
    assert protocol.assistant_text(message) == ""


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("0b1e4c1e-7e67-4f4a-9d53-2b1c1f3a9b10", True),
        (123, False),
        ({"a": 1}, False),
        ("", False),
        ("s" * 200_000, False),  # as --resume argv: E2BIG at every later spawn of the session
        ("bad\nid", False),
    ],
)
def test_only_a_usable_session_id_is_taken(value, taken):
    got = protocol.session_id_of({"type": "result", "session_id": value})
    assert got == (value if taken else None)


# A "claude" whose messages carry fields of the wrong type (TYPED_CASE): not the fake.
TYPED_CLAUDE = r"""
import json, os, sys
case = os.environ["TYPED_CASE"]
def out(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
sid = {"int-id": 123, "huge-id": "s" * 200_000}.get(case, "typed-1")
content = {"str-message": None, "int-content": 42}.get(case, [{"type": "text", "text": "ok"}])
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") == "control_request":
        out({"type": "control_response", "response": {"subtype": "success",
             "request_id": msg.get("request_id"), "response": {}}})
    elif msg.get("type") == "user":
        out({"type": "system", "subtype": "init", "session_id": sid})
        body = "hi" if case == "str-message" else {"content": content}
        out({"type": "assistant", "message": body})
        out({"type": "result", "subtype": "success", "is_error": False, "session_id": sid,
             "result": [1] if case == "list-result" else "done"})
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a script with a shebang line")
@pytest.mark.parametrize("case", ["str-message", "int-content", "list-result", "int-id", "huge-id"])
def test_wrongly_typed_fields_fail_nothing(tmp_path, workers, case):
    """Before: the generator died on the first such message (a traceback), its message stayed
    'processing' and the session never drained; an int or huge session id was stored and
    passed to the next spawn as --resume."""
    claude = tmp_path / "typed-claude"
    claude.write_text(f"#!{sys.executable}\n{TYPED_CLAUDE}")
    claude.chmod(0o755)
    worker: Worker = workers(claude, env={"TYPED_CASE": case})
    sid = worker.new_session("typed-1")
    worker.prompt(sid, "typed-1", "hello")
    worker.summarize("typed-1")
    worker.prompt(sid, "typed-1", "again")  # a second observer, resumed if an id was taken
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    status = worker.wait_session_done(sid)
    stats = worker.stats()
    assert stats["session_errors"] == 0 and stats["summaries"] == 1, worker.log()
    assert "Traceback" not in worker.log(), worker.log()
    want_id = None if case.endswith("-id") else "typed-1"
    assert status["memorySessionId"] == want_id


def test_lone_surrogates_become_replacement_chars_and_pairs_stay():
    raw = b'{"a\\udfff": ["x\\ud800y", {"k": "\\ud83d\\ude00"}], "n": 1}'
    assert protocol.loads_text(raw) == {"a\ufffd": ["x\ufffdy", {"k": "\U0001f600"}], "n": 1}
    line = b'{"type": "assistant", "message": {"content": "cut \\udc80"}}'
    assert protocol.assistant_text(protocol.parse_line(line)) == "cut \ufffd"
