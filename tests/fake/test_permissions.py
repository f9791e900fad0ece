"""The fake's permission decisions follow the real CLI's documented order: hooks, deny rules,
mode, allow rules, then can_use_tool (never in dontAsk). Before, only bypassPermissions and the
presence of a callback counted: allowed_tools, a hook's allow and the other modes were ignored."""

from __future__ import annotations

import pytest

from fake_claude.permissions import ALLOW, ASK, DENY, decide, matches, parse_rules, whole_tool

BASH = {"command": "git log --oneline", "description": "x"}


def test_rules_split_on_commas_and_spaces_outside_parentheses() -> None:
    assert parse_rules("Bash,Read", "Edit Write", None) == ["Bash", "Read", "Edit", "Write"]
    assert parse_rules("Bash(git log:*),Read") == ["Bash(git log:*)", "Read"]
    assert parse_rules("") == []


@pytest.mark.parametrize(
    ("rule", "tool"),
    [("Bash", "Bash"), ("Bash()", "Bash"), ("Bash(*)", "Bash"), ("Bash(ls:*)", None)],
)
def test_whole_tool(rule: str, tool: str | None) -> None:
    assert whole_tool(rule) == tool


@pytest.mark.parametrize(
    ("rule", "tool", "tool_input", "expected"),
    [
        ("Bash", "Bash", BASH, True),
        ("Read", "Bash", BASH, False),
        ("Bash(git log:*)", "Bash", BASH, True),
        ("Bash(git push:*)", "Bash", BASH, False),
        ("Bash(git *)", "Bash", BASH, True),
        ("Edit(src/*.py)", "Edit", {"file_path": "src/a.py"}, True),
        ("Edit(src/*.py)", "Edit", {"file_path": "docs/a.md"}, False),
        ("mcp__calc", "mcp__calc__add", {}, True),
        ("mcp__calc__*", "mcp__calc__add", {}, True),
        ("mcp__calc__add", "mcp__calc__add", {}, True),
        ("mcp__calc", "mcp__calculus__add", {}, False),
    ],
)
def test_rule_matches(rule: str, tool: str, tool_input: dict, expected: bool) -> None:
    assert matches(rule, tool, tool_input) is expected


def _decide(tool: str = "Bash", mode: str = "default", **kw) -> str:
    kw.setdefault("allow", [])
    kw.setdefault("deny", [])
    return decide(tool, BASH, mode=mode, **kw)[0]


def test_the_evaluation_order() -> None:
    assert _decide() == ASK  # nothing decides: the callback is asked
    assert _decide(allow=["Bash"]) == ALLOW  # an allow rule shadows the callback
    assert _decide(hook="allow") == ALLOW
    assert _decide(hook="ask", allow=["Bash"]) == ASK  # a hook's ask goes to the callback
    # A deny rule wins over everything, bypassPermissions and a hook's allow included.
    assert _decide(mode="bypassPermissions", hook="allow", deny=["Bash(git *)"]) == DENY
    assert _decide(mode="bypassPermissions") == ALLOW
    assert _decide("Edit", mode="acceptEdits") == ALLOW
    assert _decide("Bash", mode="acceptEdits") == ASK  # not a file edit
    assert _decide(mode="dontAsk") == DENY  # never asks
    assert _decide(mode="dontAsk", allow=["Bash(git log:*)"]) == ALLOW
    assert _decide("Read", mode="dontAsk") == ALLOW  # reading needs no permission
    assert _decide(mode="plan") == ASK  # falls through, as the documented order says


@pytest.mark.parametrize(
    ("pattern", "tool", "expected"),
    [
        (None, "Bash", True),
        ("*", "Bash", True),
        ("Bash", "Bash", True),
        ("Read|Bash", "Bash", True),
        ("Bas", "Bash", False),  # a plain name is exact, not a prefix
        ("Ba.*", "Bash", True),  # before, every regular expression matched nothing
        ("^(Bash|Shell)$", "Bash", True),
        ("mcp__memory__.*", "mcp__memory__search", True),
        ("mcp__memory__.*", "Bash", False),
        ("(", "Bash", False),  # not a valid expression
    ],
)
def test_hook_matchers(pattern: str | None, tool: str, expected: bool) -> None:
    from fake_claude.toolturns import matcher_matches

    assert matcher_matches(pattern, tool) is expected


def test_suggestions_and_their_updates() -> None:
    from fake_claude.permissions import apply_updates, suggestions

    (bash,) = suggestions("Bash", {"command": "touch x.txt"})
    assert bash["rules"] == [{"toolName": "Bash", "ruleContent": "touch:*"}]
    assert suggestions("Edit", {"file_path": "a"}) == [
        {"type": "setMode", "mode": "acceptEdits", "destination": "session"}
    ]
    allow: list[str] = []
    deny: list[str] = ["WebFetch"]
    assert apply_updates([bash], allow, deny) is None and allow == ["Bash(touch:*)"]
    assert _decide(allow=allow) == ASK  # git log is not a touch
    assert decide("Bash", {"command": "touch y"}, mode="default", allow=allow, deny=[])[0] == ALLOW
    remove = {"type": "removeRules", "rules": [{"toolName": "WebFetch"}], "behavior": "deny"}
    mode = {"type": "setMode", "mode": "acceptEdits"}
    updates = [remove, mode, "junk", {"type": "setMode", "mode": "bogus"}]
    assert apply_updates(updates, allow, deny) == "acceptEdits"
    assert deny == []
    assert apply_updates(None, allow, deny) is None
