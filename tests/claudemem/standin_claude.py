"""A minimal stand-in `claude` (stream-json), used when the project fake is not importable.

Answers `initialize`, answers every user turn with one assistant message and a result, exits 0 on
stdin EOF and stays alive while stdin is open (the #603 mechanism). It carries the run id in argv
like the real fake, so a census finds it.
"""

from __future__ import annotations

import json
import os
import sys
import uuid


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    if any(a in ("-v", "--version") for a in sys.argv[1:]):
        print(f"{os.environ.get('FAKE_CLAUDE_VERSION', '2.1.332')} (Claude Code)")
        return 0
    session_id = str(uuid.uuid4())
    turns = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        if msg.get("type") == "control_request":
            req = msg.get("request", {})
            sub = req.get("subtype")
            body = {"commands": [], "agents": [], "models": [], "account": {}, "pid": os.getpid()}
            resp = {"subtype": "success", "request_id": msg.get("request_id"), "response": body}
            if sub != "initialize":
                resp = {"subtype": "success", "request_id": msg.get("request_id"), "response": {}}
            _emit({"type": "control_response", "response": resp})
        elif msg.get("type") == "user":
            turns += 1
            _emit(
                {
                    "type": "system",
                    "subtype": "init",
                    "session_id": session_id,
                    "cwd": os.getcwd(),
                    "model": "claude-sonnet-4-5",
                    "tools": [],
                    "mcp_servers": [],
                    "permissionMode": "default",
                    "slash_commands": [],
                    "apiKeySource": "none",
                    "claude_code_version": "2.1.332",
                    "output_style": "default",
                    "uuid": str(uuid.uuid4()),
                }
            )
            text = "<observation><type>discovery</type><title>stand-in</title></observation>"
            _emit(
                {
                    "type": "assistant",
                    "message": {
                        "id": f"msg_{turns}",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-sonnet-4-5",
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "usage": {"input_tokens": 1, "output_tokens": 1},
                    },
                    "parent_tool_use_id": None,
                    "session_id": session_id,
                    "uuid": str(uuid.uuid4()),
                }
            )
            _emit(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "duration_ms": 1,
                    "duration_api_ms": 1,
                    "num_turns": turns,
                    "result": text,
                    "stop_reason": "end_turn",
                    "session_id": session_id,
                    "total_cost_usd": 0.0,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                    "modelUsage": {},
                    "permission_denials": [],
                    "uuid": str(uuid.uuid4()),
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
