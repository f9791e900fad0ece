"""The PermissionRequest hook: what the real CLI asks the SDK's hooks for a call that would
prompt, before anyone is prompted.

The real CLI runs these hooks where a tool call would otherwise need an answer (2.0.76 beside
its permission dialog; 2.1.x in every kind of session, SDK ones too, before `can_use_tool` or
--permission-prompt-tool: the TS SDK 0.3's settings documentation says they "decide first" and
that an SDK host should "answer from a PermissionRequest hook instead"). Their input has the
tool's name and input and the suggestions a prompt would offer, and no `tool_use_id` (the
hook_callback request still names the call). The first hook whose answer is an allow or a deny
decides, with the same shape as a `can_use_tool` answer; none: the prompt goes on as before."""

from __future__ import annotations

EVENT = "PermissionRequest"
# The real CLI's words for a hook's deny that gives no message (2.0.76).
DENIED_BY_HOOK = "Permission denied by hook"


def hook_input(tool_input: dict, suggestions: list[dict]) -> dict:
    """The event's own fields (the common ones and tool_name are the caller's)."""
    return {"tool_input": tool_input, "permission_suggestions": suggestions}


def decision_of(outs: list[dict]) -> dict | None:
    """The first `hookSpecificOutput.decision` among the outputs that allows or denies, as a
    can_use_tool answer (`behavior`, `updatedInput`, `updatedPermissions`, `message`,
    `interrupt`), a deny's message defaulted; None when no hook decides."""
    for out in outs:
        specific = out.get("hookSpecificOutput")
        if not isinstance(specific, dict) or specific.get("hookEventName") != EVENT:
            continue  # the real CLI reads a decision only under its own event's name
        decision = specific.get("decision")
        if not isinstance(decision, dict):
            continue
        if decision.get("behavior") == "allow":
            return dict(decision)
        if decision.get("behavior") == "deny":
            return {**decision, "message": str(decision.get("message") or DENIED_BY_HOOK)}
    return None
