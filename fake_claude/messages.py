"""Builders for the stream-json messages the real CLI writes (fields the SDKs read)."""

from __future__ import annotations

import json
import os
from typing import Any

from fake_claude import DEFAULT_VERSION

ABSENT: Any = object()  # a result without structured_output (no --json-schema)

TOOLS = [
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "Read",
    "Edit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
    "WebSearch",
    "ExitPlanMode",
]


def new_uuid() -> str:
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40  # version 4
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
    }


# Dollars per token (Sonnet 4.5's list prices): what the real CLI's results add up as their cost.
INPUT_USD, OUTPUT_USD = 3e-6, 15e-6


def cost_usd(input_tokens: int, output_tokens: int) -> float:
    return input_tokens * INPUT_USD + output_tokens * OUTPUT_USD


def control_success(request_id: str, response: dict | None = None) -> dict:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response or {}},
    }


def control_error(request_id: str, error: str) -> dict:
    return {
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": error},
    }


GENERAL_AGENT = {"name": "general-purpose", "description": "General-purpose agent"}


def initialize_response(
    model: str, version: str | None, agents: list[dict] | None = None, hooks: bool = True
) -> dict:
    """`hooks`: the request carried hooks; `hooks_applied` is absent when it did not (the TS
    SDK's types), true when it did (they are all registered)."""
    answer = {
        "commands": [
            {
                "name": "compact",
                "description": "Clear history but keep a summary",
                "argumentHint": "",
            },
            {"name": "context", "description": "Show current context usage", "argumentHint": ""},
        ],
        "agents": [GENERAL_AGENT, *(agents or [])],
        "output_style": "default",
        "available_output_styles": ["default", "Explanatory", "Learning"],
        "models": [
            {"value": "default", "displayName": "Default", "description": model},
            {"value": model, "displayName": model, "description": model},
        ],
        "account": {"apiKeySource": "none", "tokenSource": "none"},
        "pid": os.getpid(),
        "claude_code_version": version or DEFAULT_VERSION,
        "hook_on_failure_supported": True,
    }
    if hooks:
        answer["hooks_applied"] = True
    return answer


CONTEXT_WINDOW = 200_000
# What an empty session already holds (system prompt and tool schemas), roughly as /context shows.
BASE_CONTEXT = {"system_prompt": 3_000, "system_tools": 12_000}


def context_usage(model: str, message_tokens: int) -> dict:
    """The answer to get_context_usage: the fields both SDKs document, with the session's own
    token count in the messages row (a caller reading usage['percentage'] gets a number)."""
    rows = [
        ("system_prompt", "System prompt", BASE_CONTEXT["system_prompt"], "promptBorder"),
        ("system_tools", "System tools", BASE_CONTEXT["system_tools"], "inactive"),
        ("messages", "Messages", message_tokens, "purple"),
    ]
    used = sum(tokens for _, _, tokens, _ in rows)
    free = max(0, CONTEXT_WINDOW - used)
    categories = [
        {"id": key, "name": name, "tokens": tokens, "color": color, "kind": "used"}
        for key, name, tokens, color in rows
    ]
    categories.append(
        {
            "id": "free_space",
            "name": "Free space",
            "tokens": free,
            "color": "promptBorder",
            "kind": "free",
        }  # fmt: skip
    )
    return {
        "categories": categories,
        "totalTokens": used,
        "maxTokens": CONTEXT_WINDOW,
        "rawMaxTokens": CONTEXT_WINDOW,
        "percentage": round(100.0 * used / CONTEXT_WINDOW, 1),
        "gridRows": [],
        "model": model,
        "memoryFiles": [],
        "mcpTools": [],
        "agents": [],
    }


def session_state(session_id: str, state: str) -> dict:
    return {
        "type": "system",
        "subtype": "session_state_changed",
        "state": state,
        "sdk_host_only": True,
        "session_id": session_id,
        "uuid": new_uuid(),
    }


def system_init(
    session_id: str,
    model: str,
    permission_mode: str,
    version: str | None,
    tools: list[str],
    mcp_servers: list[dict] | None = None,
    agents: list[str] | None = None,
) -> dict:
    return {
        "type": "system",
        "subtype": "init",
        "cwd": os.getcwd(),
        "session_id": session_id,
        "tools": tools,
        "mcp_servers": mcp_servers or [],
        "model": model,
        "permissionMode": permission_mode,
        "slash_commands": ["compact", "context", "cost", "init", "review"],
        "apiKeySource": "none",
        "claude_code_version": version or DEFAULT_VERSION,
        "output_style": "default",
        "agents": [GENERAL_AGENT["name"], *(agents or [])],
        "skills": [],
        "plugins": [],
        "uuid": new_uuid(),
    }


def assistant(
    session_id: str, model: str, content: list[dict], msg_id: str, stop_reason: str | None = None
) -> dict:
    return {
        "type": "assistant",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage(3, 1),
            "context_management": None,
        },
        "parent_tool_use_id": None,
        "session_id": session_id,
        "uuid": new_uuid(),
    }


def user(session_id: str, content: list[dict], tool_use_result: object = None) -> dict:
    msg: dict[str, Any] = {
        "type": "user",
        "message": {"role": "user", "content": content},
        "parent_tool_use_id": None,
        "session_id": session_id,
        "uuid": new_uuid(),
    }
    if tool_use_result is not None:
        msg["tool_use_result"] = tool_use_result
    return msg


def stream_event(session_id: str, event: dict) -> dict:
    return {
        "type": "stream_event",
        "event": event,
        "session_id": session_id,
        "parent_tool_use_id": None,
        "uuid": new_uuid(),
    }


def stream_events(model: str, msg_id: str, block: dict, pieces: int = 3) -> list[dict]:
    """The raw Messages API SSE events that stream one content block: a text block in
    text_delta pieces, or a tool_use block with its input in input_json_delta pieces."""
    if block["type"] == "tool_use":
        whole = json.dumps(block["input"])
        opening: dict = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        kind, field, stop_reason = "input_json_delta", "partial_json", "tool_use"
    else:
        whole = block["text"]
        opening = {"type": "text", "text": ""}
        kind, field, stop_reason = "text_delta", "text", "end_turn"
    step = max(1, -(-len(whole) // pieces))
    chunks = [whole[i : i + step] for i in range(0, len(whole), step)] or [""]
    events: list[dict] = [
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage(3, 1),
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": opening},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: chunk}}
        for chunk in chunks
    ]
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": max(1, len(whole) // 4)},
        }
    )
    events.append({"type": "message_stop"})
    return events


def result(
    session_id: str,
    *,
    subtype: str,
    is_error: bool,
    text: str | None,
    duration_ms: int,
    num_turns: int,
    model: str,
    input_tokens: int,
    output_tokens: int,
    permission_denials: list[dict] | None = None,
    errors: list[str] | None = None,
    structured_output: Any = ABSENT,
    total_cost_usd: float | None = None,
    stop_reason: Any = ABSENT,
    terminal_reason: str | None = None,
) -> dict:
    """`total_cost_usd`: the session's so far (the real CLI's), else this result's tokens'.
    `stop_reason`: the last reply's (a turn a hook ended after a tool: `tool_use`; no reply at
    all: None); by default `end_turn`, or None for an error."""
    cost = cost_usd(input_tokens, output_tokens) if total_cost_usd is None else total_cost_usd
    msg = {
        "type": "result",
        "subtype": subtype,
        "is_error": is_error,
        "duration_ms": duration_ms,
        "duration_api_ms": max(0, duration_ms // 2),
        "num_turns": num_turns,
        "stop_reason": stop_reason
        if stop_reason is not ABSENT
        else ("end_turn" if not is_error else None),
        "session_id": session_id,
        "total_cost_usd": cost,
        "usage": usage(input_tokens, output_tokens),
        "modelUsage": {
            model: {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "webSearchRequests": 0,
                "costUSD": cost,
                "contextWindow": 200000,
            }
        },
        "permission_denials": permission_denials or [],
        "uuid": new_uuid(),
    }
    if text is not None:
        msg["result"] = text
    if terminal_reason is not None:
        msg["terminal_reason"] = terminal_reason
    if structured_output is not ABSENT:  # only with --json-schema, as the real CLI
        msg["structured_output"] = structured_output
    if errors or subtype != "success":
        # TS 0.3 reads errors.map(...) on every non-success result: the field must be there.
        msg["errors"] = errors or []
    return msg


def hook_event(
    subtype: str, session_id: str, hook_id: str, event: str, name: str, **extra: object
) -> dict:
    """hook_started / hook_response, sent with --include-hook-events."""
    return {"type": "system", "subtype": subtype, "hook_id": hook_id, "hook_name": name,
            "hook_event": event, **extra, "uuid": new_uuid(), "session_id": session_id}  # fmt: skip
