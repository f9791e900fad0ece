"""A tool use within a turn, and the SDK's hook callbacks: the part of a session that asks the
SDK (PreToolUse/PostToolUse and other hooks, can_use_tool) and, for an SDK MCP server's tool,
calls it through the SDK."""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING

from fake_claude import messages as m
from fake_claude import permission_request, permissions, subagents
from fake_claude.hookout import stop_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fake_claude.context import Context
    from fake_claude.mcp import McpClients


class Interrupted(Exception):
    """The turn ends now, as after the SDK's interrupt (the message: what the user sees).

    `reason` is the result's `terminal_reason` as 2.1.x names it (aborted while the model
    streamed, or while a tool ran or waited for its permission); `denials`, the permission
    denial that ended it, if one did (the real CLI lists every answer that was not an allow);
    `who`, what the Interrupt hooks are told ended it (by default the SDK's interrupt())."""

    def __init__(
        self, text: str = "", *, reason: str = "aborted_streaming", denials: list | None = None,
        who: dict | None = None,
    ) -> None:  # fmt: skip
        super().__init__(text)
        self.reason = reason
        self.denials = denials or []
        self.who = who or INTERRUPT_BY_SDK


# The Interrupt hook's source/reason/via (2.1.335): the real CLI labels the turn's abort with
# them. An SDK's interrupt request, an SDK's can_use_tool deny with interrupt: true, and a
# PermissionRequest hook's deny with interrupt: true (no `via`: not a client's word).
INTERRUPT_BY_SDK = {"source": "user", "reason": "stop", "via": "client"}
DENIED_BY_SDK = {"source": "user", "reason": "permission_denied", "via": "client"}
DENIED_BY_HOOK = {"source": "system", "reason": "permission_denied"}


class HookStopped(Exception):
    """A PreToolUse or PostToolUse hook said `continue: false`: as the real CLI, the tool's
    result stands and the turn ends there, with no reply after it (`terminal_reason`
    hook_stopped); `denials`, the call's permission denial if it was denied."""

    def __init__(self, denials: list[dict]) -> None:
        super().__init__("hook_stopped")
        self.denials = denials


class ToolTurns:
    """Mixed into Session, which provides what is declared here."""

    ctx: Context
    session_id: str
    model: str
    partial: bool
    permission_mode: str
    hook_events: bool  # --include-hook-events: hook_started/hook_response around each call
    stdio_permissions: bool
    tools: list[str]
    allow_rules: list[str]
    deny_rules: list[str]
    denied_tools: set[str]  # named outright by a deny rule: not in the model's list
    hooks: dict
    mcp: McpClients | None

    def emit(self, msg: dict) -> None:
        raise NotImplementedError

    def request(self, body: dict, timeout: float | None = None) -> dict:
        raise NotImplementedError

    def request_all(self, asks: list[tuple[dict, float | None]]) -> list[dict]:
        raise NotImplementedError

    def post(self, body: dict) -> str:
        raise NotImplementedError

    def tool_round(self, tool: str, prompt: str) -> list[dict]:
        """One tool use: PreToolUse hooks, can_use_tool, the result, PostToolUse hooks."""
        tool_id = m.new_id("toolu_")
        tool_input = builtin_input(tool, len(prompt.split()))
        mcp_tool = self.mcp.find(tool) if self.mcp is not None else None
        if mcp_tool is not None:
            # Arguments valid against the tool's own input schema, carrying the prompt.
            from fake_claude.schema import instance

            schema = mcp_tool[1].get("inputSchema")
            made = instance(schema if isinstance(schema, dict) else {"type": "object"}, prompt)
            tool_input = made if isinstance(made, dict) else {}
        use = {"type": "tool_use", "id": tool_id, "name": tool, "input": tool_input}
        msg_id = m.new_id("msg_")
        if self.partial:
            for event in m.stream_events(self.model, msg_id, use):
                self.emit(m.stream_event(self.session_id, event))
        self.emit(m.assistant(self.session_id, self.model, [use], msg_id, stop_reason="tool_use"))
        if tool not in self.tools and (mcp_tool is None or tool in self.denied_tools):
            # Not in the model's list (unknown, or a bare-name deny rule): the real CLI's error.
            error = f"<tool_use_error>Error: No such tool available: {tool}</tool_use_error>"
            self._tool_result(tool_id, error, is_error=True)
            return []
        denied, hook = None, None
        pre = self.run_hooks("PreToolUse", tool, tool_id, {"tool_input": tool_input})
        # continue: false does not stop the call itself (its permission and run go on, as in
        # the real CLI): the turn ends once the tool's result is in.
        stop = stop_of(pre) is not None
        for out in pre:
            specific = out.get("hookSpecificOutput") or {}
            decision = specific.get("permissionDecision")
            if out.get("decision") == "block" or decision == "deny":
                denied = str(
                    specific.get("permissionDecisionReason") or out.get("reason") or "hook denied"
                )
            elif decision in (permissions.ASK, permissions.ALLOW) and hook != permissions.ASK:
                hook = decision  # of several hooks: deny over ask over allow
            if isinstance(specific.get("updatedInput"), dict):
                tool_input = specific["updatedInput"]
        if denied is None:
            verdict, why = permissions.decide(
                tool, tool_input, mode=self.permission_mode, allow=self.allow_rules,
                deny=self.deny_rules, hook=hook,
            )  # fmt: skip
            if verdict == permissions.DENY:
                denied = why
            elif verdict == permissions.ASK:
                offered = permissions.suggestions(tool, tool_input)
                # As the real CLI 2.1.x: the PermissionRequest hooks decide first; only when
                # none does is the SDK's can_use_tool asked (or, with nobody to ask, denied).
                answer = permission_request.decision_of(
                    self.run_hooks(
                        permission_request.EVENT, tool, tool_id,
                        permission_request.hook_input(tool_input, offered), with_id=False,
                    )
                )  # fmt: skip
                by_hook = answer is not None
                if answer is None and self.stdio_permissions:
                    answer = self.request(
                        {
                            "subtype": "can_use_tool",
                            "tool_name": tool,
                            "input": tool_input,
                            "tool_use_id": tool_id,
                            "permission_suggestions": offered,
                        }
                    )
                if answer is None:
                    denied = permissions.not_granted(tool)  # nobody to ask: headless
                elif answer.get("behavior") == "allow":
                    if isinstance(answer.get("updatedInput"), dict):
                        tool_input = answer["updatedInput"]
                        if by_hook:  # a hook's new input meets the deny rules again (2.1.x)
                            denied = permissions.denied_by_rules(tool, tool_input, self.deny_rules)
                    if denied is None:
                        # "Always allow": the rules (or mode) hold for the session's next calls.
                        mode = permissions.apply_updates(
                            answer.get("updatedPermissions"), self.allow_rules, self.deny_rules
                        )
                        self.permission_mode = mode or self.permission_mode
                else:
                    denied = str(answer.get("message") or answer.get("_error") or "denied")
                    if answer.get("interrupt"):  # deny and stop: the turn ends interrupted
                        self._tool_result(tool_id, denied, is_error=True)
                        raise Interrupted(
                            "[Request interrupted by user for tool use]",
                            denials=[_denial(tool, tool_id, tool_input)],
                            who=DENIED_BY_HOOK if by_hook else DENIED_BY_SDK,
                        )
        failed = False
        output: str | list[dict]
        if denied is not None:
            output = denied
        elif mcp_tool is not None and self.mcp is not None:
            output, failed = self.mcp.call_tool(mcp_tool[0], str(mcp_tool[1]["name"]), tool_input)
        else:
            if tool in subagents.TOOLS:  # as the real CLI: a subagent, with its own hooks
                subagents.run(self, tool_input)
            output = f"fake {tool} ran with {json.dumps(tool_input, sort_keys=True)}"
        self._tool_result(tool_id, output, is_error=denied is not None or failed)
        if denied is not None:
            denials = [_denial(tool, tool_id, tool_input)]
            if stop:
                raise HookStopped(denials)
            return denials
        if failed:  # a tool that failed (an MCP tool's isError too): the failure's own hooks
            error = output if isinstance(output, str) else _text_of(output)
            extra = {"tool_input": tool_input, "error": error, "is_interrupt": False}
            # The real CLI reads no continue: false from these (only a block and context).
            self.run_hooks("PostToolUseFailure", tool, tool_id, extra)
        else:
            # A built-in tool's response is its output object (Bash's stdout, stderr, ...), the
            # one the tool result message carries; an MCP tool's, what the tool gave.
            response: object = output
            if mcp_tool is None and isinstance(output, str):
                response = tool_output(output)
            extra = {"tool_input": tool_input, "tool_response": response}
            post = self.run_hooks("PostToolUse", tool, tool_id, extra)
            stop = stop or stop_of(post) is not None
        if stop:
            raise HookStopped([])
        return []

    def _tool_result(self, tool_id: str, output: str | list[dict], *, is_error: bool) -> None:
        block = {"type": "tool_result", "tool_use_id": tool_id, "content": output,
                 "is_error": is_error}  # fmt: skip
        result = tool_output(output) if isinstance(output, str) else output
        self.emit(m.user(self.session_id, [block], tool_use_result=result))

    def run_hooks(
        self, event: str, tool: str | None, tool_id: str | None, extra: dict, *,
        with_id: bool = True, query: str | None = None, with_mode: bool = True,
    ) -> list[dict]:  # fmt: skip
        """Call the SDK's callbacks registered for `event` (tool events: those whose matcher
        matches the tool; `query`, if given, is what they match instead, "" none), all at once
        as the real CLI does; return their outputs in order. `with_id`: the input carries the
        tool_use_id (PermissionRequest's does not); `with_mode`: the permission_mode."""
        asks: list[tuple[dict, float | None]] = []
        names: list[tuple[str, str]] = []  # (hook_id, hook_name) of each, for hook events
        for matcher, cb, hook_input in self._callbacks(
            event, tool, tool_id, extra, with_id=with_id, query=query, with_mode=with_mode
        ):
            # The matcher's timeout (seconds; the real CLI's default 60): a hook that does not
            # answer in time is cancelled and counts as having said nothing.
            timeout = matcher.get("timeout")
            wait = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 60.0
            body = {"subtype": "hook_callback", "callback_id": cb, "input": hook_input,
                    "tool_use_id": tool_id}  # fmt: skip
            asks.append((body, wait))
            names.append((m.new_uuid(), f"{event}:{matcher.get('matcher') or ''}"))
        if not asks:
            return []
        if self.hook_events:
            for hook_id, name in names:
                self.emit(m.hook_event("hook_started", self.session_id, hook_id, event, name))
        outs = self.request_all(asks)
        if self.hook_events:
            for (hook_id, name), out in zip(names, outs, strict=True):
                self._hook_response(hook_id, event, name, out)
        return [{} if "_error" in out else out for out in outs]

    def fire_hooks(self, event: str, extra: dict, query: str) -> None:
        """Send the hook_callbacks for `event` and wait for none of them, as the real CLI runs
        its Interrupt hooks (2.1.335: not awaited; their output is ignored). Their answers,
        coming later, are dropped (no request waits on them), so no hook_response either."""
        for _, cb, hook_input in self._callbacks(
            event, None, None, extra, with_id=False, query=query, with_mode=True
        ):
            self.post({"subtype": "hook_callback", "callback_id": cb, "input": hook_input,
                       "tool_use_id": None})  # fmt: skip

    def _callbacks(
        self, event: str, tool: str | None, tool_id: str | None, extra: dict, *,
        with_id: bool, query: str | None, with_mode: bool,
    ) -> Iterator[tuple[dict, str, dict]]:  # fmt: skip
        """(matcher, callback id, hook input) of each SDK callback registered for `event`
        whose matcher matches `query`, or the tool when no query is given ("": every one)."""
        subject = tool if query is None else query
        for matcher in self.hooks.get(event) or []:
            if subject and not matcher_matches(matcher.get("matcher"), subject):
                continue
            for cb in matcher.get("hookCallbackIds") or []:
                yield (
                    matcher,
                    cb,
                    {
                        "session_id": self.session_id,
                        "transcript_path": self.ctx.transcript_path(),
                        "cwd": os.getcwd(),
                        **({"permission_mode": self.permission_mode} if with_mode else {}),
                        "hook_event_name": event,
                        **({"tool_name": tool} if tool is not None else {}),
                        **({"tool_use_id": tool_id} if tool is not None and with_id else {}),
                        **extra,
                    },
                )

    def _hook_response(self, hook_id: str, event: str, name: str, out: dict) -> None:
        error = str(out.get("_error", ""))
        outcome = "cancelled" if out.get("_cancelled") else "error" if error else "success"
        shown = json.dumps({} if error else out)
        self.emit(m.hook_event("hook_response", self.session_id, hook_id, event, name,
                               output=shown, stdout=shown, stderr=error,
                               exit_code=1 if error else 0, outcome=outcome))  # fmt: skip


def builtin_input(tool: str, words: int) -> dict:
    """An input in the shape of the tool's own schema (an SDK user's code reads its fields).
    Bash's command writes a file: the real CLI allows read-only commands (echo, ls) unasked."""
    name = f"fake-{words}-words.txt"
    inputs: dict[str, dict] = {
        "Bash": {"command": f"touch {name}", "description": "fake"},
        "Edit": {"file_path": name, "old_string": "a", "new_string": "b"},
        "Write": {"file_path": name, "content": f"{words} words"},
        "Read": {"file_path": name},
        "NotebookEdit": {"notebook_path": "fake.ipynb", "new_source": f"{words} words"},
        "Glob": {"pattern": "**/*.py"},
        "Grep": {"pattern": "words"},
        "WebFetch": {"url": "https://example.com/", "prompt": "summarize"},
        "WebSearch": {"query": f"{words} words"},
        "Task": {
            "description": "fake",
            "prompt": f"{words} words",
            "subagent_type": "general-purpose",
        },  # fmt: skip
        "TodoWrite": {"todos": []},
        "ExitPlanMode": {"plan": f"a plan of {words} words"},
    }
    return dict(inputs.get(tool, {"command": f"touch {name}", "description": "fake"}))


def matcher_matches(pattern: object, tool: str) -> bool:
    """A hook matcher as the real CLI reads it: none, "" or "*" match every tool; names joined
    by "|" match exactly; anything else is a regular expression searched in the name."""
    if pattern in (None, "", "*"):
        return True
    text = str(pattern)
    if re.fullmatch(r"[A-Za-z0-9_|]+", text):
        return tool in text.split("|")
    try:
        return re.search(text, tool) is not None
    except re.error:
        return False  # not a valid expression: matches nothing


def tool_output(output: str) -> dict:
    """What a command tool gives back, in the shape of Bash's output (the real CLI's)."""
    return {"stdout": output, "stderr": "", "interrupted": False, "isImage": False}


def _text_of(blocks: list[dict]) -> str:
    return "\n".join(str(b["text"]) for b in blocks if b.get("type") == "text")


def _denial(tool: str, tool_id: str, tool_input: dict) -> dict:
    """One entry of a result's `permission_denials`."""
    return {"tool_name": tool, "tool_use_id": tool_id, "tool_input": tool_input}
