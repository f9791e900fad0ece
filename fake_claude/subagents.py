"""A Task (Agent) tool call's subagent: the SubagentStart and SubagentStop hooks the real CLI
calls around it, and the subagent's own transcript.

As the real CLI (2.0.76's cli.js; field lists of the SDKs' types): once the call may run, the
SubagentStart hooks whose matcher matches the agent type (the input's `subagent_type`) get
`agent_id` and `agent_type`, with no `permission_mode`; the subagent then works (here: one
reply to the call's prompt, kept as a sidechain transcript,
`<project>/<session id>/subagents/agent-<id>.jsonl` as the TS SDK 0.3's session docs lay it
out); its end runs the SubagentStop hooks (every one: 2.0.76 matches them against nothing) with
`stop_hook_active`, `agent_id`, `agent_transcript_path`, `agent_type` and
`last_assistant_message`. Each hook_callback names a fresh id, not the Task call's. What the
hooks answer is not acted on: a SubagentStart hook's context reaches only the subagent's model,
and a SubagentStop block would make it go on, which the fake's one-reply subagent does not do.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

from fake_claude import messages as m
from fake_claude.reply import observation

if TYPE_CHECKING:
    from fake_claude.toolturns import ToolTurns

TOOLS = frozenset({"Task", "Agent"})  # the tool's names (Agent in later 2.1.x)


def new_agent_id() -> str:
    """An agent id in the real CLI's form: "a" and six hex digits."""
    return "a" + os.urandom(3).hex()


def run(session: ToolTurns, tool_input: dict) -> None:
    """The subagent of one call, between its hooks."""
    agent_id = new_agent_id()
    agent_type = str(tool_input.get("subagent_type") or "general-purpose")
    session.run_hooks(
        "SubagentStart", None, m.new_uuid(), {"agent_id": agent_id, "agent_type": agent_type},
        query=agent_type, with_mode=False,
    )  # fmt: skip
    prompt = str(tool_input.get("prompt") or "")
    reply = observation(prompt)
    path = _keep(session, agent_id, prompt, reply)
    extra = {
        "stop_hook_active": False,
        "agent_id": agent_id,
        "agent_transcript_path": path,
        "agent_type": agent_type,
        "last_assistant_message": reply,
    }
    session.run_hooks("SubagentStop", None, m.new_uuid(), extra, query="")


def _keep(session: ToolTurns, agent_id: str, prompt: str, reply: str) -> str:
    """Write the subagent's prompt and reply to its sidechain transcript (none without a main
    one, as with --no-session-persistence); its path either way."""
    main = session.ctx.transcript
    if main is None:
        return ""
    folder = os.path.join(os.path.dirname(main.path), session.session_id, "subagents")
    path = os.path.join(folder, f"agent-{agent_id}.jsonl")
    if not main.keep:
        return path
    lines, parent = [], None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    for kind, content in (("user", prompt), ("assistant", reply)):
        message = {"role": kind, "content": content if kind == "user" else
                   [{"type": "text", "text": content}]}  # fmt: skip
        uuid = m.new_uuid()
        line = {"parentUuid": parent, "isSidechain": True, "userType": "external",
                "cwd": main.cwd, "sessionId": session.session_id, "agentId": agent_id,
                "type": kind, "message": message, "uuid": uuid, "timestamp": stamp}  # fmt: skip
        lines.append(line)
        parent = uuid
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
    except OSError:
        return path  # as the main transcript on a full disk: the session goes on unsaved
    main.mirrored(path, lines)
    return path
