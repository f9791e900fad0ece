"""What the worker says to the observer `claude` and how it reads the answers (stream-json).

The argv and the shape of the prompts follow claude-mem 9.0.0's SDKAgent (through the TS Agent SDK
0.1.76, which passes `--flag value` and an empty value after `--setting-sources`).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from typing import Any

from worker.config import DISALLOWED_TOOLS

_request_ids = itertools.count(1)


class ProtocolError(Exception):
    """The observer wrote something a session cannot go on from."""


def observer_argv(claude: str, model: str, resume: str | None) -> list[str]:
    argv = [
        claude,
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--model",
        model,
    ]
    if resume:
        argv += ["--resume", resume]
    argv += [
        "--disallowedTools",
        DISALLOWED_TOOLS,
        "--setting-sources",
        "",
        "--permission-mode",
        "default",
    ]
    return argv


def initialize_request() -> tuple[str, dict[str, Any]]:
    request_id = f"req_{next(_request_ids)}_{secrets.token_hex(4)}"
    return request_id, {
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": "initialize", "hooks": None},
    }


def user_message(text: str, session_id: str) -> dict[str, Any]:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": session_id,
        "isSynthetic": True,
    }


def control_reply(request: dict[str, Any]) -> dict[str, Any]:
    """Answer a CLI-initiated control request: the observer may use no tool."""
    request_id = request.get("request_id", "")
    body = request.get("request") or {}
    subtype = body.get("subtype") if isinstance(body, dict) else None
    if subtype == "can_use_tool":
        response: dict[str, Any] = {
            "subtype": "success",
            "request_id": request_id,
            "response": {"behavior": "deny", "message": "the memory observer uses no tools"},
        }
    elif subtype == "hook_callback":
        response = {"subtype": "success", "request_id": request_id, "response": {}}
    else:
        response = {
            "subtype": "error",
            "request_id": request_id,
            "error": f"Unsupported control request subtype: {subtype}",
        }
    return {"type": "control_response", "response": response}


def prompt_text(kind: str, payload: dict[str, Any], project: str, prompt_number: int) -> str:
    """The user message for one queued item, in the spirit of claude-mem's prompts."""
    if kind == "prompt":
        intro = "You are a memory observer" if prompt_number <= 1 else "Continue observing"
        return (
            f"{intro} for project {project!r}. The user's prompt #{prompt_number} was:\n"
            f"<user_request>{payload.get('userPrompt', '')}</user_request>\n"
            "Record what the primary session does as <observation> blocks."
        )
    if kind == "observation":
        return (
            "<observed_from_primary_session>\n"
            f"<what_happened>{payload.get('tool_name', '')}</what_happened>\n"
            f"<working_directory>{payload.get('cwd', '')}</working_directory>\n"
            f"<parameters>{json.dumps(payload.get('tool_input'))}</parameters>\n"
            f"<outcome>{json.dumps(payload.get('tool_response'))}</outcome>\n"
            "</observed_from_primary_session>"
        )
    if kind == "summarize":
        return (
            "Summarize this session as a <summary> block. The assistant's last message was:\n"
            f"{payload.get('last_assistant_message', '')}"
        )
    raise ValueError(f"unknown queued item kind {kind!r}")


def parse_line(line: bytes) -> dict[str, Any]:
    """One stdout line -> message. Garbage is a session error (ProtocolError)."""
    try:
        message = loads_text(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        raise ProtocolError(f"observer wrote a line that is not JSON: {line[:80]!r}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"observer wrote JSON that is not a message: {line[:80]!r}")
    return message


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads_text(raw: bytes) -> Any:
    """json.loads, with each lone surrogate (a `\\ud800` escape with no partner: half an emoji
    cut by a truncation, say) made U+FFFD, as a JavaScript writer's UTF-8 would make it: such a
    string cannot be encoded, so it would fail later in SQLite, or in an observer."""
    value = json.loads(raw)
    _within_depth(value)
    if b"\\u" not in raw:  # a lone surrogate can only come from an escape
        return value
    return _no_lone_surrogates(value)


# Deeper than any hook's body; json.loads takes ~1000 levels, but storing the body (json.dumps)
# or mending its surrogates (recursive) failed on fewer: a 500, or a 400 only with an escape.
MAX_DEPTH = 200


def _within_depth(value: Any) -> None:
    """ValueError if arrays and objects nest deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"arrays and objects nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))


def _no_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_no_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_no_lone_surrogates(k): _no_lone_surrogates(v) for k, v in value.items()}
    return value


def assistant_text(message: dict[str, Any]) -> str:
    """The text of an assistant message; fields of another type than the CLI's count as none."""
    body = message.get("message")
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


# The CLI's session ids are UUIDs; one is passed back as `--resume ID` argv, so anything else
# (another type, a huge or unprintable string) is not taken for one.
MAX_SESSION_ID = 256


def session_id_of(message: dict[str, Any]) -> str | None:
    value = message.get("session_id")
    if isinstance(value, str) and 0 < len(value) <= MAX_SESSION_ID and value.isprintable():
        return value
    return None
