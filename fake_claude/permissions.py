"""Whether a tool call may run: the real CLI's evaluation order, as the Agent SDK documents it
(code.claude.com/docs/en/agent-sdk/permissions): PreToolUse hooks, deny rules, the permission
mode, allow rules, then the SDK's can_use_tool callback (never asked in dontAsk mode).

A bare-name deny rule (`--disallowedTools Bash`) takes the tool out of the model's list
altogether; Session leaves it out of system/init, and a call to it gets "No such tool".
"""

from __future__ import annotations

import fnmatch
import re

# Approved by acceptEdits (file edits).
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
# Tools that need no permission in any mode (they only read, or keep a list).
READ_ONLY_TOOLS = frozenset(
    {"Read", "Glob", "Grep", "LS", "NotebookRead", "Task", "Agent", "TodoWrite"}
)
# Asks whatever the rules and mode say (the user approves the plan); denied in dontAsk.
ALWAYS_ASKS = frozenset({"ExitPlanMode"})
# What a rule's specifier is matched against, by the first key the input has.
_SUBJECT_KEYS = ("command", "file_path", "notebook_path", "path", "url", "pattern", "query")
_RULE = re.compile(r"^([^()]+?)(?:\((.*)\))?$", re.S)

ALLOW, DENY, ASK = "allow", "deny", "ask"
MODES = frozenset({"default", "acceptEdits", "bypassPermissions", "plan", "dontAsk", "auto"})
BYPASS = "bypassPermissions"
# The real CLI's refusal of set_permission_mode to bypassPermissions in a session launched
# without it (claude-code #62776, #62907 quote it): the SDKs' setPermissionMode rejects with it.
BYPASS_REFUSED = (
    "Cannot set permission mode to bypassPermissions because the session was not launched "
    "with --dangerously-skip-permissions"
)


def launch_mode(
    flag_mode: str | None, settings_mode: str | None, skip: bool, allow_skip: bool
) -> tuple[str, bool]:
    """(the mode a session starts in, whether bypassPermissions may be switched to later), as
    the real CLI decides them: --dangerously-skip-permissions first, then --permission-mode,
    then the settings' defaultMode; bypass stays available to a session that started in it or
    was launched with --allow-dangerously-skip-permissions (the TS SDK's
    allowDangerouslySkipPermissions)."""
    mode = (BYPASS if skip else None) or flag_mode or settings_mode or "default"
    return mode, mode == BYPASS or skip or allow_skip


def parse_rules(*values: str | None) -> list[str]:
    """Rules from --allowedTools / --disallowedTools values: separated by commas or spaces,
    except inside a specifier's parentheses ("Bash(git log:*)")."""
    rules: list[str] = []
    for value in values:
        depth, current = 0, ""
        for ch in value or "":
            depth += (ch == "(") - (ch == ")")
            if depth <= 0 and (ch == "," or ch.isspace()):
                depth = 0
                if current:
                    rules.append(current)
                current = ""
            else:
                current += ch
        if current:
            rules.append(current)
    return rules


def whole_tool(rule: str) -> str | None:
    """The tool a rule names outright ("Bash", "Bash()", "Bash(*)"), else None."""
    found = _RULE.match(rule.strip())
    if found is None:
        return None
    name, spec = found.group(1), found.group(2)
    return name if spec in (None, "", "*") else None


def matches(rule: str, tool: str, tool_input: dict) -> bool:
    found = _RULE.match(rule.strip())
    if found is None:
        return False
    name, spec = found.group(1), found.group(2)
    if name != tool:
        # An MCP server's rule covers its tools: "mcp__srv" and "mcp__srv__*".
        server = name.removesuffix("__*")
        if not (name.startswith("mcp__") and tool.startswith(server + "__")):
            return False
        return spec in (None, "", "*")
    if spec in (None, "", "*"):
        return True
    subject = next((tool_input[k] for k in _SUBJECT_KEYS if isinstance(tool_input.get(k), str)), "")
    if spec.endswith(":*"):  # the prefix form: "Bash(git log:*)"
        return subject.startswith(spec[:-2])
    return fnmatch.fnmatchcase(subject, spec)


def decide(
    tool: str,
    tool_input: dict,
    *,
    mode: str,
    allow: list[str],
    deny: list[str],
    hook: str | None = None,
) -> tuple[str, str]:
    """(ALLOW | DENY | ASK, why) for a call that no hook denied; `hook`: a hook's allow or
    ask. ASK goes to can_use_tool, or is denied where there is none to ask."""
    denied = denied_by_rules(tool, tool_input, deny)  # even in bypassPermissions, after a
    if denied is not None:  # hook's allow
        return DENY, denied
    if hook == ASK:
        return ASK, "a PreToolUse hook asked"
    if hook == ALLOW:
        return ALLOW, "a PreToolUse hook allowed it"
    if tool in ALWAYS_ASKS:
        return (DENY, dont_ask_text(tool)) if mode == "dontAsk" else (ASK, "it always asks")
    if mode == "bypassPermissions":
        return ALLOW, "bypassPermissions"
    if mode == "acceptEdits" and tool in EDIT_TOOLS:
        return ALLOW, "acceptEdits"
    if tool in READ_ONLY_TOOLS:
        return ALLOW, "needs no permission"
    for rule in allow:
        if matches(rule, tool, tool_input):
            return ALLOW, f"allowed by the rule {rule!r}"
    if mode == "dontAsk":
        return DENY, dont_ask_text(tool)
    return ASK, "no rule decides it"


def denied_by_rules(tool: str, tool_input: dict, deny: list[str]) -> str | None:
    """What the first deny rule that matches the call says; None when none does."""
    for rule in deny:
        if matches(rule, tool, tool_input):
            return denied_text(rule, tool, tool_input)
    return None


# The real CLI's words (2.0.76).
def dont_ask_text(tool: str) -> str:
    return f"Permission to use {tool} has been auto-denied in dontAsk mode."


def denied_text(rule: str, tool: str, tool_input: dict) -> str:
    if whole_tool(rule) is not None or not isinstance(tool_input.get("command"), str):
        return f"Permission to use {tool} has been denied."
    return f"Permission to use {tool} with command {tool_input['command']} has been denied."


def not_granted(tool: str) -> str:
    """The real CLI's words when nobody can be asked (no --permission-prompt-tool)."""
    return f"Claude requested permissions to use {tool}, but you haven't granted it yet."


def suggestions(tool: str, tool_input: dict) -> list[dict]:
    """What can_use_tool is offered to answer "always allow" with (permission_suggestions), in
    the real CLI's shapes: a command prefix rule for Bash, acceptEdits for file edits."""
    if tool == "Bash" and isinstance(tool_input.get("command"), str):
        prefix = tool_input["command"].split(" ", 1)[0]
        rules = [{"toolName": "Bash", "ruleContent": f"{prefix}:*"}]
    elif tool in EDIT_TOOLS:
        return [{"type": "setMode", "mode": "acceptEdits", "destination": "session"}]
    else:
        rules = [{"toolName": tool}]
    return [{"type": "addRules", "rules": rules, "behavior": "allow", "destination": "session"}]


def apply_updates(updates: object, allow: list[str], deny: list[str]) -> str | None:
    """Apply an allow answer's updatedPermissions to the session's rules (in place); return
    the permission mode one of them sets, if any. Directory updates mean nothing here."""
    mode = None
    for update in updates if isinstance(updates, list) else []:
        if not isinstance(update, dict):
            continue
        kind = update.get("type")
        if kind == "setMode" and update.get("mode") in MODES:
            mode = str(update["mode"])
            continue
        target = {"allow": allow, "deny": deny}.get(str(update.get("behavior")))
        if target is None or kind not in ("addRules", "replaceRules", "removeRules"):
            continue
        rules = [
            str(r["toolName"]) + (f"({r['ruleContent']})" if r.get("ruleContent") else "")
            for r in update.get("rules") or []
            if isinstance(r, dict) and r.get("toolName")
        ]
        if kind == "replaceRules":
            target.clear()
        if kind == "removeRules":
            target[:] = [r for r in target if r not in rules]
        else:
            target.extend(r for r in rules if r not in target)
    return mode
