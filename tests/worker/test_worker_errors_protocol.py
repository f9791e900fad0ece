"""The worker's side of stream-json on inputs its observers seldom send: CLI-initiated control
requests (the observer may use no tool), lines that are not messages, unknown queue kinds."""

from __future__ import annotations

import pytest

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
