"""A parent that drives the real Python `claude_agent_sdk` once and exits; prints one JSON line.

    python py_sdk_parent.py '{"claude": "/path/to/claude", "exit": "return"|"sys-exit"}'

After the first result the parent exits without closing the session itself:
- "return": leaves the `async for` and lets asyncio.run() finish (finalising the generator runs
  the SDK's close(): stdin EOF, 5 s, SIGTERM, 5 s, SIGKILL);
- "sys-exit": raises SystemExit from inside the loop, the way a daemon's shutdown path would.
Either way the SDK's atexit hook sends SIGTERM to children still running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query


async def main(cfg: dict) -> dict:
    out: dict = {"parent_pid": os.getpid(), "messages": [], "error": None}
    options = ClaudeAgentOptions(cli_path=cfg["claude"], model="claude-sonnet-4-5")
    async for message in query(prompt="Say hello", options=options):
        out["messages"].append(type(message).__name__)
        if isinstance(message, ResultMessage):
            out["session_id"] = message.session_id
            if cfg.get("exit") == "sys-exit":
                print(json.dumps(out), flush=True)
                sys.exit(0)
            break
    return out


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
