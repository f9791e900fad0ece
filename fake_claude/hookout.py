"""What the SDK's hooks answer and the real CLI acts on: `continue: false` (its `stopReason`)
and `decision: "block"` (its `reason`), read from the outputs `ToolTurns.run_hooks` returns.

The texts are the real CLI's (2.1.x), so an SDK user's code that shows or matches them sees
the same words."""

from __future__ import annotations

import os

from fake_claude import messages as m

STOPPED = "Operation stopped by hook"  # a prompt's hook said continue: false
PROMPT_BLOCKED = "UserPromptSubmit operation blocked by hook:\n"  # ... said decision: block
STOP_FEEDBACK = "Stop hook feedback:\n"  # a Stop hook's block, fed back to the model


def stop_of(outs: list[dict]) -> str | None:
    """The first `continue: false` among the outputs: its stopReason ("" without one); None
    when every hook lets the turn go on."""
    for out in outs:
        if out.get("continue") is False:
            reason = out.get("stopReason")
            return reason if isinstance(reason, str) else ""
    return None


def prompt_verdict(outs: list[dict]) -> tuple[str, str] | None:
    """A UserPromptSubmit hook that ends the turn, as the real CLI reads them (in order, the
    first that blocks or stops wins): ("blocked_by_hook" | "stopped_by_hook", its reason)."""
    for out in outs:
        if out.get("decision") == "block":
            return "blocked_by_hook", str(out.get("reason") or "")
        if out.get("continue") is False:
            reason = out.get("stopReason")
            return "stopped_by_hook", reason if isinstance(reason, str) else ""
    return None


def ended_text(kind: str, reason: str, prompt: str) -> str:
    """What the real CLI says (in its warning and as the result) of a prompt a hook ended:
    a blocked one is quoted, as it is not kept in the conversation."""
    if kind == "blocked_by_hook":
        return f"{PROMPT_BLOCKED}{reason or 'Blocked by hook'}\nOriginal prompt: {prompt}"
    return f"{STOPPED}: {reason}" if reason else STOPPED


def informational(
    session_id: str, content: str, *, kind: str | None = None, kept: bool = True,
    reason: str = "",
) -> dict:  # fmt: skip
    """The real CLI's `system`/`informational` warning; with `kind`, the one that says why a
    prompt went no further (`prevent_continuation`, `prompt_submit_outcome`)."""
    msg: dict = {"type": "system", "subtype": "informational", "content": content,
                 "level": "warning"}  # fmt: skip
    if kind is not None:
        outcome: dict = {"kind": kind, "prompt_kept": kept}
        if reason.strip():
            outcome["reason"] = reason.strip()
        msg.update(prevent_continuation=True, prompt_submit_outcome=outcome)
    return {**msg, "uuid": m.new_uuid(), "session_id": session_id}


def block_of(outs: list[dict]) -> str | None:
    """The first `decision: "block"` among the outputs: its reason (the real CLI's default
    when it gives none); None when no hook blocks."""
    for out in outs:
        if out.get("decision") == "block":
            return str(out.get("reason") or "Blocked by hook")
    return None


def block_cap() -> int:
    """How many Stop blocks in a row the real CLI heeds (CLAUDE_CODE_STOP_HOOK_BLOCK_CAP,
    8 by default; 0 or less: no cap)."""
    try:
        return int(os.environ.get("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP", "8"))
    except ValueError:
        return 8


def cap_text(blocks: int) -> str:
    return (
        f"A hook blocked the turn from ending {blocks} consecutive times\u2014overriding and "
        "ending turn. For Stop/SubagentStop hooks, check stop_hook_active in the input and "
        "return success while it's true. Set CLAUDE_CODE_STOP_HOOK_BLOCK_CAP to raise this limit."
    )


def synthetic_user(session_id: str, text: str) -> dict:
    """A user message the CLI itself adds (the SDK sees `isSynthetic`)."""
    return {"type": "user", "message": {"role": "user", "content": text},
            "parent_tool_use_id": None, "session_id": session_id, "uuid": m.new_uuid(),
            "isSynthetic": True}  # fmt: skip
