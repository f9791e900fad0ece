"""SDK MCP servers, with this test as the SDK: the fake's side of the JSON-RPC over
`mcp_message` (handshake, tools/list, tools/call), a server that fails its handshake, and the
config forms (JSON text, a file, the TS SDK's initialize field)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fake_helpers import SDK_ARGV

from fake_claude.mcp import sdk_server_names

CONFIG = json.dumps({"mcpServers": {"calc": {"type": "sdk", "name": "calc"},
                                    "files": {"command": "some-stdio-server"}}})  # fmt: skip
# The config's stdio server is the fake's to start (test_fake_mcp_stdio.py); this one's command
# does not exist, so it is listed as failed, first (started at the fake's start).
FILES = {"name": "files", "status": "failed"}
ADD = {
    "name": "add",
    "inputSchema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
    },  # fmt: skip
}


def serve_turn(fake, text: str, answer: Callable[[dict], dict]) -> tuple[list[dict], list[dict]]:
    """Send a user turn; answer each mcp_message with answer(jsonrpc message) -> mcp_response.
    Returns (the JSON-RPC messages the fake sent, the turn's stdout messages)."""
    fake.user(text)
    sent, out = [], []
    while True:
        msg = fake.read_message()
        assert msg is not None, "stdout closed mid-turn"
        request = msg.get("request") or {}
        if msg.get("type") == "control_request" and request.get("subtype") == "mcp_message":
            assert request["server_name"] == "calc"
            sent.append(request["message"])
            fake.send({"type": "control_response", "response": {
                "subtype": "success", "request_id": msg["request_id"],
                "response": {"mcp_response": answer(request["message"])}}})  # fmt: skip
            continue
        out.append(msg)
        if msg.get("type") == "result":
            return sent, out


def good_server(message: dict) -> dict:
    method, rid = message.get("method"), message.get("id")
    if method == "initialize":
        return {"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
            "serverInfo": {"name": "calc", "version": "1"}}}  # fmt: skip
    if method == "tools/list":
        return {"jsonrpc": "2.0", "id": rid, "result": {"tools": [ADD]}}
    if method == "tools/call":
        args = message["params"]["arguments"]
        return {"jsonrpc": "2.0", "id": rid,
                "result": {"content": [{"type": "text", "text": f"got {args['a']}"}]}}  # fmt: skip
    return {"jsonrpc": "2.0", "result": {}}  # a notification's ack


# An MCP tool needs permission: approved by a rule, as an SDK user's allowed_tools would.
ALLOW_CALC = [*SDK_ARGV, "--allowedTools", "mcp__calc"]


def test_handshake_list_and_call(spawn) -> None:
    fake = spawn("ok:tool=mcp__calc__add", args=[*ALLOW_CALC, "--mcp-config", CONFIG])
    fake.initialize()
    sent, out = serve_turn(fake, "use the adder", good_server)
    assert [m["method"] for m in sent] == [
        "initialize", "notifications/initialized", "tools/list", "tools/call"
    ]  # fmt: skip
    assert "id" not in sent[1]  # a notification
    assert sent[3]["params"] == {"name": "add", "arguments": {"a": 0}}
    init = next(m for m in out if m.get("subtype") == "init")
    assert init["mcp_servers"] == [FILES, {"name": "calc", "status": "connected"}]
    assert "mcp__calc__add" in init["tools"]
    (result_block,) = [b for m in out if m["type"] == "user" for b in m["message"]["content"]]
    assert result_block["content"] == "got 0" and result_block["is_error"] is False
    # The second turn reuses the connection: only the call goes out.
    sent, out = serve_turn(fake, "again", good_server)
    assert [m["method"] for m in sent] == ["tools/call"]
    assert out[-1]["subtype"] == "success"
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_a_server_that_fails_its_handshake_is_reported_and_the_turn_goes_on(spawn) -> None:
    fake = spawn("ok:tool=mcp__calc__add", args=[*ALLOW_CALC, "--mcp-config", CONFIG])
    fake.initialize()

    def broken(message: dict) -> dict:
        return {"jsonrpc": "2.0", "id": message.get("id"),
                "error": {"code": -32603, "message": "boom"}}  # fmt: skip

    sent, out = serve_turn(fake, "use the adder", broken)
    assert [m["method"] for m in sent] == ["initialize"]
    init = next(m for m in out if m.get("subtype") == "init")
    assert init["mcp_servers"] == [FILES, {"name": "calc", "status": "failed"}]
    assert out[-1]["type"] == "result" and out[-1]["subtype"] == "success"
    status = fake.control("q1", {"subtype": "mcp_status"})["response"]
    files, calc = status["mcpServers"]
    assert calc["status"] == "failed" and "boom" in calc["error"]
    assert files["status"] == "failed" and "some-stdio-server" in files["error"]
    assert files["config"] == {"type": "stdio", "command": "some-stdio-server", "args": []}
    # As the real CLI, a server whose handshake failed is tried again at the next turn.
    sent, out = serve_turn(fake, "and now", good_server)
    assert [m["method"] for m in sent] == [
        "initialize", "notifications/initialized", "tools/list", "tools/call"
    ]  # fmt: skip
    assert next(m for m in out if m.get("subtype") == "init")["mcp_servers"][1]["status"] == (
        "connected"
    )
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_server_names_from_every_form(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(CONFIG)
    assert sdk_server_names(CONFIG) == ["calc"]  # the stdio server is not the SDK's
    assert sdk_server_names(str(path)) == ["calc"]
    assert sdk_server_names(None, {"sdkMcpServers": ["calc", "notes"]}) == ["calc", "notes"]
    assert sdk_server_names(CONFIG, {"sdkMcpServers": {"calc": {}}}) == ["calc"]
    for junk in (
        "{not json",
        "[1]",
        '{"mcpServers": 3}',
        str(tmp_path / "missing.json"),
        "{" * 9999,
    ):
        assert sdk_server_names(junk) == []


def test_a_server_that_never_answers_fails_after_mcp_timeout(spawn, monkeypatch) -> None:
    # A host that names an SDK server but never answers: the turn goes on after MCP_TIMEOUT
    # (ms, the real CLI's variable), the server reported failed.
    monkeypatch.setenv("MCP_TIMEOUT", "300")
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config", CONFIG])
    fake.initialize()
    fake.user("anyone there")
    out = []
    while not out or out[-1].get("type") != "result":
        msg = fake.read_message()
        assert msg is not None
        out.append(msg)  # the mcp_message requests go unanswered
    init = next(m for m in out if m.get("subtype") == "init")
    assert init["mcp_servers"] == [FILES, {"name": "calc", "status": "failed"}]
    assert out[-1]["subtype"] == "success"
    fake.close_stdin()
    assert fake.wait_exit() == 0
