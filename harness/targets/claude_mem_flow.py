"""Which HTTP calls a given claude-mem build's hooks make, read from the build's own code.

Found by reading the installed plugins (not guessed):
- 9.0.0 (`new-hook.js`, `save-hook.js`, `summary-hook.js`, no SessionEnd hook): UserPromptSubmit
  posts `/api/sessions/init` {contentSessionId, project, prompt}, then always
  `/sessions/{sessionDbId}/init` {userPrompt, promptNumber}; PostToolUse posts
  `/api/sessions/observations`; Stop posts `/api/sessions/summarize`. Nothing ends a session.
- 10.6.3: the same two-step init, but step 2 is skipped when step 1 answers `contextInjected`
  (the session already has a generator). Its SessionEnd hook would post
  `/api/sessions/complete` {contentSessionId}, but it reads `sessionId` from its stdin, where
  Claude Code sends `session_id`: it exits at once and never posts (so neither does the harness).
- 13.x: `/api/sessions/init` alone starts the generator; bodies carry `platformSource`
  ("claude" for Claude Code); SessionEnd posts `/api/sessions/session-end`
  {contentSessionId, platformSource, reason, cwd}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Code that kills processes which are not the worker's own, anywhere on the machine:
# - 9.0.0 at start-up: `ps aux | grep chroma-mcp`, then kills every match;
# - 10.6.3 at start-up ("aggressive startup cleanup"): `ps -eo pid,etime,command`, then SIGKILLs
#   every process whose command line holds `worker-service.cjs` or `chroma-mcp` (any other
#   claude-mem worker on the machine, anyone's) and every `mcp-server.cjs` older than 30 minutes;
# - 10.6.3 every 30 s ("orphan reaper"): `ps -eo pid,ppid,args | grep -E "claude.*haiku|
#   claude.*output-format"`, then SIGKILLs every match whose parent is PID 1 (any user's orphaned
#   claude, or another harness's fake, whose argv matches). Seen here killing a foreign PID.
FOREIGN_KILLERS: dict[str, tuple[str, ...]] = {
    "kills every chroma-mcp process on the machine at start-up (ps aux | grep chroma-mcp)": (
        "Cleaning up orphaned chroma-mcp processes",
        "ps aux",
    ),
    "SIGKILLs at start-up every process on the machine whose command line holds "
    "worker-service.cjs or chroma-mcp (every other claude-mem worker), and mcp-server.cjs ones "
    "older than 30 min": (
        "Aggressive startup cleanup: killing orphaned processes",
        '"worker-service.cjs","chroma-mcp"',
    ),
    "SIGKILLs, every 30 s, every process on the machine whose parent is PID 1 and whose argv "
    'matches "claude.*output-format" or "claude.*haiku"': (
        "Killing system orphan PID",
        "ps -eo pid,ppid,args",
    ),
}


@dataclass(frozen=True)
class HookFlow:
    two_step_init: bool  # UserPromptSubmit also posts /sessions/{id}/init
    skip_step2_if_injected: bool  # ... unless step 1 answered contextInjected
    platform_source: str | None  # added to hook bodies (13.x)
    session_end: str | None  # "session-end" (13.x), "complete" or None (9.0.0, 10.6.3)
    foreign_kills: tuple[str, ...] = ()  # what it kills that is not its own (see FOREIGN_KILLERS)
    session_end_note: str | None = None  # why a SessionEnd hook there posts nothing

    @property
    def label(self) -> str:
        init = "two-step init" if self.two_step_init else "single init"
        end = {"session-end": "session-end", "complete": "complete"}.get(
            self.session_end or "", "no session end"
        )
        if self.session_end_note:
            end += f" ({self.session_end_note})"
        return f"{init}, {end}"


def _scripts_text(plugin: Path) -> str:
    parts = []
    for pattern in ("*.cjs", "*.js"):
        for path in sorted((plugin / "scripts").glob(pattern)):
            try:
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return "\n".join(parts)


def _session_end_commands(plugin: Path) -> list[str] | None:
    """The commands of the build's SessionEnd hook, or None if it has none."""
    try:
        hooks = json.loads((plugin / "hooks" / "hooks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entries = hooks.get("hooks", {}).get("SessionEnd") if isinstance(hooks, dict) else None
    if not entries:
        return None
    return [
        str(hook.get("command", ""))
        for entry in entries
        if isinstance(entry, dict)
        for hook in entry.get("hooks", [])
        if isinstance(hook, dict)
    ]


def _never_posts(commands: list[str]) -> str | None:
    """Why a SessionEnd hook written inline (`node -e ...`) can never post: it takes the
    session from a stdin field Claude Code does not send (its hook input says `session_id`;
    10.6.3's reads `sessionId` and exits without it). A hook that runs a script is trusted."""
    inline = " ".join(commands)
    if "sessionId" in inline and "session_id" not in inline:
        return "its SessionEnd hook reads sessionId, which Claude Code does not send"
    return None


def detect_flow(plugin: Path) -> HookFlow:
    text = _scripts_text(plugin)
    two_step = "/sessions/:sessionDbId/init" in text
    end: str | None = None
    commands = _session_end_commands(plugin)
    note = _never_posts(commands) if commands is not None else None
    if commands is not None and note is None:
        if '"/api/sessions/session-end"' in text:
            end = "session-end"
        elif '"/api/sessions/complete"' in text:
            end = "complete"
    return HookFlow(
        two_step_init=two_step,
        skip_step2_if_injected=two_step and "reason=context_already_injected" in text,
        platform_source="claude" if "getPlatformSourceFromRequest" in text else None,
        session_end=end,
        session_end_note=note,
        foreign_kills=tuple(
            what for what, markers in FOREIGN_KILLERS.items() if all(m in text for m in markers)
        ),
    )


def major_version(version: str | None) -> int | None:
    m = re.match(r"^v?(\d+)\.", version or "")
    return int(m.group(1)) if m else None
