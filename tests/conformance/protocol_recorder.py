#!/usr/bin/env python3
"""A minimal stand-in `claude` that records what an SDK sends, for docs/protocol-notes.md.

Not the fake (that is fake_claude/): it answers just enough for an SDK to finish a session and
writes everything it sees (argv, SDK environment, stdin lines, signals, EOF, with times) to the
JSONL file named by RECORDER_LOG.  Run a driver with it as `pathToClaudeCodeExecutable` (through a
small shim; see `write_recorder_shim`) to learn exactly what an SDK version does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

T0 = time.monotonic()
_LOCK = threading.RLock()  # re-entrant: signal handlers log too
_SESSION = "00000000-0000-4000-8000-000000000001"


def _log(event: str, **fields: object) -> None:
    path = os.environ.get("RECORDER_LOG")
    if not path:
        return
    line = json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **fields})
    with _LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _out(obj: dict) -> None:
    with _LOCK:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


_MODES = set(filter(None, os.environ.get("RECORDER_MODES", "").split(",")))


def _out_raw(text: str) -> None:
    with _LOCK:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _on_signal(signum: int, _frame: object) -> None:
    ignored = "ignore-sigterm" in _MODES
    _log("signal", name=signal.Signals(signum).name, ignored=ignored)
    if not ignored:
        os._exit(128 + signum)


def _turn(msg: dict, hooks: dict, tool: bool, partial: bool) -> None:
    _out(
        {
            "type": "system",
            "subtype": "init",
            "session_id": _SESSION,
            "cwd": os.getcwd(),
            "model": "m",
            "tools": ["Bash"],
            "mcp_servers": [],
            "permissionMode": "default",
            "slash_commands": [],
            "apiKeySource": "none",
            "claude_code_version": "2.1.332",
            "output_style": "default",
            "uuid": "u-init",
        }
    )
    if partial:
        _out(
            {
                "type": "stream_event",
                "event": {"type": "message_start"},
                "session_id": _SESSION,
                "parent_tool_use_id": None,
                "uuid": "u-se",
            }
        )
    if tool:
        for cb in hooks.get("PreToolUse", []):
            for cid in cb.get("hookCallbackIds", []):
                _out(
                    {
                        "type": "control_request",
                        "request_id": f"cli_hook_{cid}",
                        "request": {
                            "subtype": "hook_callback",
                            "callback_id": cid,
                            "input": {
                                "hook_event_name": "PreToolUse",
                                "tool_name": "Bash",
                                "tool_input": {"command": "true"},
                                "session_id": _SESSION,
                            },
                            "tool_use_id": "toolu_1",
                        },
                    }
                )
        _out(
            {
                "type": "control_request",
                "request_id": "cli_perm_1",
                "request": {
                    "subtype": "can_use_tool",
                    "tool_name": "Bash",
                    "input": {"command": "true"},
                    "tool_use_id": "toolu_1",
                    "permission_suggestions": [],
                },
            }
        )
    _out(
        {
            "type": "assistant",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": None,
                "usage": {},
            },
            "parent_tool_use_id": None,
            "session_id": _SESSION,
            "uuid": "u-a",
        }
    )
    _out(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "duration_ms": 1,
            "duration_api_ms": 1,
            "num_turns": 1,
            "result": "ok",
            "stop_reason": "end_turn",
            "session_id": _SESSION,
            "total_cost_usd": 0,
            "usage": {},
            "permission_denials": [],
            "uuid": "u-r",
        }
    )


def main(argv: list[str]) -> int:
    if "-v" in argv or "--version" in argv:
        print("2.1.332 (Claude Code)")
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    env = {k: v for k, v in os.environ.items() if k.startswith(("CLAUDE", "BUN_"))}
    _log("start", argv=argv, env=env, pid=os.getpid(), ppid=os.getppid())
    partial = "--include-partial-messages" in argv
    tool = "--permission-prompt-tool" in argv or "--permission-prompt-tool=stdio" in argv
    hooks: dict = {}
    for raw in sys.stdin:
        _log("stdin", line=raw.rstrip("\n"))
        msg = json.loads(raw)
        if msg.get("type") == "control_request":
            req = msg["request"]
            if req.get("subtype") == "initialize":
                hooks = req.get("hooks") or {}
            if req.get("subtype") == "initialize" and "no-init-reply" in _MODES:
                continue
            reply = {"pid": os.getpid(), "commands": [], "models": [], "account": {}}
            _out(
                {
                    "type": "control_response",
                    "response": {
                        "subtype": "success",
                        "request_id": msg["request_id"],
                        "response": reply,
                    },
                }
            )
        elif msg.get("type") == "user":
            if "garbage" in _MODES:
                _out_raw("this is not json")
            _turn(msg, hooks, tool, partial)
    _log("stdin_eof")
    if "ignore-eof" in _MODES:
        while True:  # the idle observer of #603: stdin is gone, the process stays
            time.sleep(3600)
    return 0


def write_recorder_shim(directory: Path, log: Path, modes: str = "") -> Path:
    """Write an executable `claude` that runs this recorder with RECORDER_LOG=log (the folder
    is made if need be, as `fake-claude shim` does)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "claude"
    path.write_text(
        f"#!/bin/sh\nRECORDER_LOG='{log}' RECORDER_MODES='{modes}' "
        f"exec '{sys.executable}' '{Path(__file__).resolve()}' "
        '"$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
