"""What the SDK's hooks answer and the real CLI acts on: `continue: false` (its `stopReason`)
and `decision: "block"` (its `reason`), read from the outputs `ToolTurns.run_hooks` returns.

The texts are the real CLI's (2.1.x), so an SDK user's code that shows or matches them sees
the same words."""

from __future__ import annotations

from fake_claude import messages as m

STOPPED = "Operation stopped by hook"  # a prompt's hook said continue: false
PROMPT_BLOCKED = "UserPromptSubmit operation blocked by hook:\n"  # ... said decision: block


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
