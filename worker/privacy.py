"""What claude-mem 9.0.0's worker keeps out of memory: private and injected text, some tools.

`<private>...</private>` (the user's) and `<claude-mem-context>...</claude-mem-context>` (what
claude-mem itself injected) are removed from prompts and from tool inputs and outputs. A prompt
with nothing left is not recorded, and the hooks of that prompt are answered `skipped`/`private`;
tool uses of the tools below are answered `skipped`/`tool_excluded` (9.0.0's default
CLAUDE_MEM_SKIP_TOOLS; this worker reads no settings file), and reads or writes of claude-mem's
own session-memory files `skipped`/`session_memory_meta`.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TAGS = re.compile(r"<claude-mem-context>[\s\S]*?</claude-mem-context>|<private>[\s\S]*?</private>")
SKIP_TOOLS = frozenset(
    {"ListMcpResourcesTool", "SlashCommand", "Skill", "TodoWrite", "AskUserQuestion"}
)
_FILE_TOOLS = frozenset({"Edit", "Write", "Read", "NotebookEdit"})


def strip_tags(text: str) -> str:
    """The text without its private and injected parts, trimmed (9.0.0's tag stripping)."""
    return _TAGS.sub("", text).strip()


def strip_value(value: Any) -> Any:
    """A tool input or output without its tagged parts. 9.0.0 strips them from the value's
    JSON text; the result is parsed back when it still is JSON (a tag inside one string, the
    usual case), else kept as that text."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False)
    if "<private>" not in text and "<claude-mem-context>" not in text:
        return value
    cleaned = strip_tags(text)
    try:
        return json.loads(cleaned)
    except ValueError:
        return cleaned


def skip_reason(tool_name: str, tool_input: Any) -> str | None:
    """Why 9.0.0 would not record this tool use at all, or None."""
    if tool_name in SKIP_TOOLS:
        return "tool_excluded"
    if tool_name in _FILE_TOOLS and isinstance(tool_input, dict):
        path = tool_input.get("file_path") or tool_input.get("notebook_path")
        if isinstance(path, str) and "session-memory" in path:
            return "session_memory_meta"
    return None
