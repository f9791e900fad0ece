"""A stdio MCP server to put in a fake's `--mcp-config`, well-behaved or not.

    python -m fake_claude.mcp_server [--ignore-eof] [--ignore-sigterm] [--silent]

It answers `initialize`, `tools/list` and `tools/call` for two tools, `echo` (gives back its
`text` argument) and `pid` (its own process id, so a test can find it). By default it exits at
stdin EOF, as a well-behaved server does when its client is gone. `--ignore-eof` stays (the
servers that outlive their CLI in the bug reports), `--ignore-sigterm` ignores SIGTERM, and
`--silent` reads but never answers (a server that hangs at its handshake).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

TOOLS = [
    {
        "name": "echo",
        "description": "Gives back its text argument.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {
        "name": "pid",
        "description": "The server's own process id.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]


def server_argv(*flags: str, python: str = sys.executable) -> list[str]:
    """A command for an MCP config: this file run by path (stdlib only; `-I -S` for a quick
    start), so it needs no installed package wherever the config is used."""
    return [python, "-I", "-S", os.path.abspath(__file__), *flags]


def mcp_config(count: int, *flags: str) -> dict:
    """An MCP config of `count` such servers (mcp1, mcp2, ...), each with these flags."""
    servers = {}
    for i in range(1, count + 1):
        command, *args = server_argv(*flags)
        servers[f"mcp{i}"] = {"command": command, "args": args}
    return {"mcpServers": servers}


def answer(msg: dict) -> dict | None:
    """The reply to one JSON-RPC message, or None for a notification."""
    method, rid = msg.get("method"), msg.get("id")
    if rid is None:
        return None
    if method == "initialize":
        params = msg.get("params") or {}
        result: dict = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake-mcp-server", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        params = msg.get("params") or {}
        args = params.get("arguments") or {}
        if params.get("name") == "echo":
            text = str(args.get("text", ""))
        elif params.get("name") == "pid":
            text = str(os.getpid())
        else:
            return {"jsonrpc": "2.0", "id": rid, "result": {"isError": True, "content": [
                {"type": "text", "text": f"no tool {params.get('name')!r}"}]}}  # fmt: skip
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid,
                "error": {"code": -32601, "message": f"Method not found: {method}"}}  # fmt: skip
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fake_claude.mcp_server")
    parser.add_argument("--ignore-eof", action="store_true", help="stay after stdin EOF")
    parser.add_argument("--ignore-sigterm", action="store_true", help="ignore SIGTERM")
    parser.add_argument("--silent", action="store_true", help="never answer")
    args = parser.parse_args(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        reply = None if args.silent or not isinstance(msg, dict) else answer(msg)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    if args.ignore_eof:
        while True:  # a signal still ends it (SIGKILL always)
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
