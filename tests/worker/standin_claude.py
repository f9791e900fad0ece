#!/work/main/.venv/bin/python
"""Temporary stand-in for the fake claude (deleted once fake_claude lands)."""

import json
import os
import sys

sid = "standin-" + str(os.getpid())
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "control_request":
        out = {"type": "control_response", "response": {"subtype": "success", "request_id": msg["request_id"], "response": {}}}
        print(json.dumps(out), flush=True)
    elif msg["type"] == "user":
        print(json.dumps({"type": "system", "subtype": "init", "session_id": sid}), flush=True)
        text = "obs: " + str(msg["message"]["content"])[:40]
        print(json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}, "session_id": sid}), flush=True)
        print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": sid, "duration_ms": 1, "duration_api_ms": 1, "num_turns": 1}), flush=True)
