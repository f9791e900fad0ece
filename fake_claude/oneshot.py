"""`claude -p PROMPT`: one turn, printed as text, json or stream-json, then exit."""

from __future__ import annotations

import json
import sys
import time

from fake_claude import messages as m
from fake_claude.context import Context
from fake_claude.faults import at_point
from fake_claude.reply import observation
from fake_claude.stdio import send, utf8, write_bytes


def run_oneshot(ctx: Context, session_id: str) -> int:
    started = time.monotonic()
    args = ctx.args
    prompt = " ".join(args.positional)
    if not prompt:
        prompt = sys.stdin.read()
        ctx.ledger.write("stdin_eof")
    fmt = args.value("--output-format") or "text"
    model = args.value("--model") or "claude-sonnet-4-5"
    mode = args.value("--permission-mode") or "default"
    tools, servers = list(m.TOOLS), None
    if any(ctx.mcp_configs()):
        # `claude -p` starts its stdio MCP servers too (the orphans of bug reports about
        # scripted runs), connects them before its turn and ends them as it leaves in order.
        from fake_claude.mcp import McpClients, mcp_timeout
        from fake_claude.mcp_stdio import start_configured

        clients = McpClients(ctx.version or m.DEFAULT_VERSION)
        start_configured(ctx, clients, mcp_timeout())
        clients.connect()
        tools, servers = tools + clients.tool_names(), clients.server_list()
    ctx.remember("user", {"role": "user", "content": prompt})
    at_point(ctx, "mid-turn", 1, session_id)
    text = observation(prompt)
    res = m.result(
        session_id,
        subtype="success",
        is_error=False,
        text=text,
        duration_ms=int((time.monotonic() - started) * 1000),
        num_turns=1,
        model=model,
        input_tokens=max(1, len(prompt.split())),
        output_tokens=max(1, len(text) // 4),
        structured_output=ctx.structured(text),
    )
    reply = m.assistant(session_id, model, [{"type": "text", "text": text}], m.new_id("msg_"))
    ctx.remember("assistant", reply["message"], reply.get("uuid"))
    if fmt == "json":
        write_bytes((json.dumps(res) + "\n").encode())
    elif fmt == "stream-json":
        send(m.system_init(session_id, model, mode, ctx.version, tools, servers))
        send(reply)
        send(res)
    else:
        write_bytes(utf8(text + "\n"))
    ctx.ledger.write("turn", n=1, session_id=session_id, interrupted=False)
    at_point(ctx, "after-result", 1, session_id)
    return 0
