"""The stream-json session: control protocol, turns, interrupts, tool round-trips."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

from fake_claude import hookout, permissions, settings
from fake_claude import messages as m
from fake_claude.context import Context
from fake_claude.faults import at_point, idle_forever
from fake_claude.lifecycle import exit_now
from fake_claude.reply import content_text, observation
from fake_claude.stdio import TIMEOUT, StdoutClosed, line_reader, send
from fake_claude.toolturns import HookStopped, Interrupted, ToolTurns

if TYPE_CHECKING:
    from fake_claude.args import Args
    from fake_claude.mcp import McpClients
    from fake_claude.mcp_set import ServerSets

INTERRUPTED_TEXT = "[Request interrupted by user]"
# Initialize request fields that stand in for launch flags (delivery.py).
DELIVERABLE = ("mcpServers", "settings", "disallowedTools", "managedSettings", "plugins")


class MaxTurns(Exception):
    """The turn needs more model round trips than --max-turns allows (`num_turns`: the one
    past the limit, which the real CLI's result reports)."""

    def __init__(self, num_turns: int) -> None:
        super().__init__(num_turns)
        self.num_turns = num_turns


class BudgetExhausted(Exception):
    """The session has spent what --max-budget-usd allows."""


class PromptEnded(Exception):
    """A UserPromptSubmit hook ended the turn before the model saw the prompt."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.reason = reason


class InputClosed(Exception):
    """stdin ended while the turn was waiting for an answer from the SDK."""


class Session(ToolTurns):
    def __init__(self, ctx: Context, session_id: str) -> None:
        a = ctx.args
        self.ctx = ctx
        self.reader = line_reader()
        self.session_id = session_id
        self.model = a.value("--model") or "claude-sonnet-4-5"
        self.partial = a.has("--include-partial-messages")
        self.hook_events = a.has("--include-hook-events")
        self.replay = a.has("--replay-user-messages")
        self.agents: list[dict] = []  # the SDK's own agent definitions (initialize request)
        self.launched: dict[str, object] = {}  # the launch settings the first initialize gave
        # The real CLI sends session_state_changed only to SDKs that ask (TS >= 0.2, Python 0.2);
        # TS 0.1.76 (claude-mem 9.0.0) does not ask and would yield them to its caller.
        self.state_frames = os.environ.get("CLAUDE_CODE_SDK_READS_SESSION_STATE", "").lower() in (
            "1",
            "true",
            "yes",
            "on",
        )
        self.stdio_permissions = a.value("--permission-prompt-tool") == "stdio"
        max_turns = a.value("--max-turns") or ""
        digits = max_turns.isascii() and max_turns.isdigit()  # isdigit() alone takes "²"
        self.max_turns = int(max_turns) if digits and int(max_turns) > 0 else None
        self.max_budget = a.value("--max-budget-usd")  # as given: the real CLI's error quotes it
        try:
            budget_ok = self.max_budget is not None and float(self.max_budget) >= 0
        except ValueError:
            budget_ok = False
        self.max_budget = self.max_budget if budget_ok else None
        self.cost = 0.0  # the session's total cost so far, as its results report it
        self._permissions(a)
        self.hooks: dict = {}
        self.mcp: McpClients | None = None  # its MCP servers (the SDK's, stdio ones), if any
        self.server_sets: ServerSets | None = None  # what mcp_set_servers calls set
        self.pending: deque[dict] = deque()
        self.responses: dict[str, dict] = {}
        self.waiting: set[str] = set()  # our requests still waiting for an answer
        self.turns = 0
        self.context_tokens = 0  # prompts and replies so far, for get_context_usage
        self.last_error = False
        self.eof = False
        self.seen_input = False
        self.in_turn = False
        self.req_counter = 0
        sc = ctx.scenario
        self.latency = sc.num("slow", "latency", 0.05) if sc.has("slow") else 0.0
        self.jitter = sc.num("slow", "jitter", 0.05) if sc.has("slow") else 0.0
        self.first_delay = sc.num("slow", "first", 0.2) if sc.has("slow") else 0.0
        # slow:turn=K limits the per-message latency to turn K (default: every turn).
        self.slow_turn = sc.param("slow", "turn", "0")
        # Started up: its stdio MCP servers started (connected before a turn), as the real CLI
        # does at once, or under --await-initialize once the first initialize request (which may
        # hold more of its launch settings: delivery.py) or a prompt has come.
        self.started = False
        if a.has("--initialize-fields", "--managed-settings-in-initialize"):
            from fake_claude.delivery import launch_error

            refused = launch_error(a)
            if refused is not None:
                sys.stderr.write(refused + "\n")
                exit_now(ctx.ledger, 1)
        if not a.has("--await-initialize"):
            self._start_up(None)

    def _permissions(self, a: Args) -> None:
        """The permission rules, mode and offered tools that the settings layers and flags of
        `a` add up to: argv's, or argv's with initialize fields in place of flags."""
        allowed, denied, default_mode = settings.permissions(
            settings.layers(a, os.getcwd(), os.environ)
        )  # what the settings files and --settings say: the flags below add to it
        self.permission_mode, self.bypass_available = permissions.launch_mode(
            a.value("--permission-mode"),
            default_mode,
            a.has("--dangerously-skip-permissions"),
            a.has("--allow-dangerously-skip-permissions"),
        )
        self.allow_rules = allowed + permissions.parse_rules(
            a.value("--allowedTools", "--allowed-tools")
        )
        self.deny_rules = denied + permissions.parse_rules(
            a.value("--disallowedTools", "--disallowed-tools")
        )
        self.denied_tools = {t for r in self.deny_rules if (t := permissions.whole_tool(r))}
        self.tools = [t for t in m.TOOLS if t not in self.denied_tools]
        listed = a.value("--tools")  # the built-in tools offered ("" none, "default" all)
        if listed is not None and listed.strip() != "default":
            offered = set(permissions.parse_rules(listed))
            self.tools = [t for t in self.tools if t in offered]

    def _start_up(self, delivered: dict | None) -> None:
        """Start the stdio MCP servers of the MCP configs and of `delivered` (the initialize
        request's mcpServers, which win a name both use)."""
        self.started = True
        if any(self.ctx.mcp_configs()) or delivered:
            from fake_claude.mcp import mcp_timeout
            from fake_claude.mcp_stdio import start_configured

            start_configured(self.ctx, self._clients(), mcp_timeout(), delivered)

    # ---- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        while True:
            if self.pending:
                self.turn(self.pending.popleft())
                continue
            if self.eof:
                return self.finish()
            self.dispatch(self.reader.readline(None))

    def finish(self) -> int:
        if self.ctx.scenario.has("ignore-eof"):
            # The #603 observer: stdin is gone but the process stays.
            self.ctx.ledger.write("misbehave", what="ignore-eof", at="stdin-eof")
            idle_forever()
        code = 1 if self.last_error else 0
        exit_now(self.ctx.ledger, code)
        return code  # pragma: no cover

    def dispatch(self, line: bytes | None | object) -> None:
        """Handle one stdin line (None = EOF). Raises Interrupted on an interrupt mid-turn."""
        if line is TIMEOUT:
            return
        if line is None:
            if not self.eof:
                self.eof = True
                self.ctx.ledger.write("stdin_eof")
            return
        assert isinstance(line, bytes)
        if not line.strip():
            return
        if not self.seen_input:
            self.seen_input = True
            if self.first_delay:
                time.sleep(self.first_delay)  # first-byte delay
            at_point(self.ctx, "before-init", 0, self.session_id)
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            shown = line[:200].decode("utf-8", "replace")
            sys.stderr.write(f"Error parsing streaming input line: {shown}: {exc}\n")
            exit_now(self.ctx.ledger, 1)
            return
        kind = msg.get("type")
        if kind == "user":
            self.pending.append(msg)
        elif kind == "control_request":
            self.control(msg)
        elif kind == "control_response":
            resp = msg.get("response") or {}
            rid = str(resp.get("request_id"))
            if rid in self.waiting:  # a late answer to a request given up on is dropped
                self.responses[rid] = resp
        # Anything else (keep_alive, environment updates) is accepted and ignored.

    # ---- control requests from the SDK ------------------------------------------------------
    def control(self, msg: dict) -> None:
        rid = str(msg.get("request_id"))
        req = msg.get("request") or {}
        sub = req.get("subtype")
        if sub == "initialize":
            confirmations, delivered = self._delivered(req)
            if not self.started:
                self._start_up(delivered)
            self.hooks = req.get("hooks") or {}
            agents = req.get("agents")
            if isinstance(agents, dict):
                self.agents = [
                    {"name": str(name), "description": str((spec or {}).get("description", ""))}
                    for name, spec in agents.items()
                    if isinstance(spec, dict) or spec is None
                ]
            if self.ctx.schema is None and isinstance(req.get("jsonSchema"), dict):
                self.ctx.schema = req["jsonSchema"]  # TS SDK >= 0.3 sends it here too
            self._sdk_mcp_servers(req, delivered)
            carried = req.get("hooks") is not None
            answer = m.initialize_response(self.model, self.ctx.version, self.agents, carried)
            send(m.control_success(rid, {**answer, **confirmations}))
            at_point(self.ctx, "after-init", 0, self.session_id)
        elif sub == "interrupt":
            send(m.control_success(rid))
            if self.in_turn:
                raise Interrupted()
        elif sub == "set_permission_mode":
            mode = str(req.get("mode", self.permission_mode))
            if mode == permissions.BYPASS and not self.bypass_available:
                send(m.control_error(rid, permissions.BYPASS_REFUSED))
            elif mode in permissions.MODES:
                self.permission_mode = mode
                send(m.control_success(rid, {"mode": self.permission_mode}))
            else:
                send(m.control_error(rid, f"Invalid permission mode: {mode}"))
        elif sub == "set_model":
            self.model = str(req.get("model") or "claude-sonnet-4-5")
            send(m.control_success(rid))
        elif sub == "mcp_status":
            servers = self.mcp.mcp_status() if self.mcp is not None else []
            send(m.control_success(rid, {"mcpServers": servers}))
        elif sub == "get_context_usage":
            send(m.control_success(rid, m.context_usage(self.model, self.context_tokens)))
        elif sub in ("set_max_thinking_tokens", "apply_flag_settings", "update_settings"):
            send(m.control_success(rid))  # accepted; nothing the fake does depends on them
        elif sub == "rewind_files":
            # The fake keeps no file checkpoints: no message can be rewound to.
            error = f"No file checkpoint found for {req.get('user_message_id')}"
            send(m.control_success(rid, {"canRewind": False, "error": error}))
        elif sub in ("mcp_reconnect", "mcp_toggle"):
            name = str(req.get("serverName"))
            if self.mcp is None or not self.mcp.has(name):
                send(m.control_error(rid, f"Server not found: {name}"))
            elif sub == "mcp_toggle" and not req.get("enabled", True):
                self.mcp.toggle(name, False)
                if self.mcp.kind(name) == "stdio":
                    self.mcp.stop(name)  # disconnected: the real CLI's stdio transport ends it
                send(m.control_success(rid))
            else:
                if sub == "mcp_toggle":
                    self.mcp.toggle(name, True)
                try:
                    failed = self._reconnect(name)
                except Interrupted:  # read while an SDK server's handshake waited: answer first
                    send(m.control_error(rid, f"Reconnecting {name} was interrupted"))
                    raise
                send(m.control_error(rid, failed) if failed else m.control_success(rid))
        elif sub == "mcp_set_servers":
            wanted = req.get("servers")
            if not isinstance(wanted, dict):
                send(m.control_error(rid, "mcp_set_servers: servers must be an object"))
            else:
                from fake_claude.mcp import mcp_timeout

                answer = self._server_sets().apply(
                    self._clients(), wanted, self._sdk_requester(), self.ctx.ledger, mcp_timeout()
                )
                send(m.control_success(rid, answer))
        elif sub == "stop_task":
            send(m.control_error(rid, f"No task found with ID: {req.get('task_id')}"))  # none run
        else:
            send(m.control_error(rid, f"Unsupported control request subtype: {sub}"))

    def _server_sets(self) -> ServerSets:
        if self.server_sets is None:
            from fake_claude.mcp_set import ServerSets

            self.server_sets = ServerSets()
        return self.server_sets

    def _reconnect(self, name: str) -> str | None:
        """mcp_reconnect, mcp_toggle on: a server that is not connected, or a stdio one whose
        process is gone, is connected again (a stdio one started anew, as the real CLI's
        reconnect does); the error if that fails."""
        clients = self._clients()
        if name in clients.disabled or not clients.needs_reconnect(name):
            return None
        entry = clients.entry(name)
        if clients.kind(name) == "stdio" and entry is not None:
            from fake_claude.mcp import mcp_timeout

            clients.remove(name)  # ends what is left of it
            self._server_sets().start(clients, name, entry, self.ctx.ledger, mcp_timeout())
        elif clients.kind(name) == "sdk":
            clients.status.pop(name, None)
        clients.connect(only=[name])
        return clients.error(name)

    def _clients(self) -> McpClients:
        if self.mcp is None:
            from fake_claude.mcp import McpClients

            self.mcp = McpClients(self.ctx.version or m.DEFAULT_VERSION)
            self.mcp.idle = self._idle
        return self.mcp

    def _sdk_requester(self):
        """How a message reaches an SDK MCP server: an mcp_message control request."""
        from fake_claude.mcp import mcp_timeout

        wait = mcp_timeout()

        def ask(
            body: dict, timeout: float | None = None, idle: object = None, post: bool = False
        ) -> dict:
            if post:  # a notification the real CLI does not wait on (a cancellation)
                self.post(body)
                return {}
            return self.request(body, wait if timeout is None else timeout)

        return ask

    def _idle(self, seconds: float) -> bool:
        """Read stdin for up to `seconds` while a stdio MCP server works (so an interrupt
        ends a tool call, as in the real CLI); False when stdin has ended."""
        line = TIMEOUT if self.eof else self.reader.readline(seconds)
        while line is not TIMEOUT:  # every line already written, then back to the server
            self.dispatch(line)
            line = TIMEOUT if self.eof else self.reader.readline(0)
        return not self.eof

    def _delivered(self, req: dict) -> tuple[dict[str, bool], dict | None]:
        """Apply the launch settings the initialize request delivers (delivery.py): (the
        response's confirmations, the MCP servers it delivers). Exits 1 on an unusable one."""
        first = not self.started
        if not any(field in req for field in DELIVERABLE) and not (
            first and self.ctx.args.has("--await-initialize")
        ):
            return {}, None  # the common case: no import, no cost
        from fake_claude import delivery

        try:
            got = delivery.read(req, self.ctx.args, first, self.launched)
        except delivery.Unusable as exc:
            sys.stderr.write(f"{exc}\n")
            exit_now(self.ctx.ledger, 1)
            raise  # pragma: no cover (exit_now does not return)
        if first:
            self.launched = dict(got.taken)
        if got.flags:
            self._permissions(self.ctx.args.overlaid(got.flags))
        return got.confirmations, got.mcp_servers

    def _sdk_mcp_servers(self, init_request: dict, delivered: dict | None) -> None:
        config = self.ctx.args.value("--mcp-config")
        if not config and not init_request.get("sdkMcpServers") and not delivered:
            return  # the common case: no import, no cost
        from fake_claude.mcp import sdk_server_names

        ask = self._sdk_requester()
        for name in sdk_server_names(config, init_request, delivered):
            self._clients().add(name, ask, {"type": "sdk", "name": name}, retry=True)

    def request(self, body: dict, timeout: float | None = None) -> dict:
        """Send a CLI-initiated control request and wait for the SDK's answer (or, with a
        timeout, {"_error": ...} once it has passed)."""
        return self.request_all([(body, timeout)])[0]

    def post(self, body: dict) -> str:
        """Send a control request; its request_id. Alone, one whose answer nobody waits for (one
        that comes is dropped); request_all waits for the ones it posts."""
        self.req_counter += 1
        rid = f"req_{self.req_counter}_{os.urandom(4).hex()}"
        send({"type": "control_request", "request_id": rid, "request": body})
        return rid

    def request_all(self, asks: list[tuple[dict, float | None]]) -> list[dict]:
        """Several control requests in flight at once (the real CLI runs the hooks that match
        an event side by side), each with its own timeout; their answers in order. One not
        answered in time is cancelled (control_cancel_request, as the real CLI tells the SDK
        to stop working on it), and so is every open one when an interrupt ends the turn."""
        start = time.monotonic()
        timeouts: dict[str, float | None] = {}
        for body, timeout in asks:
            rid = self.post(body)
            timeouts[rid] = timeout
            self.waiting.add(rid)
        rids = list(timeouts)
        late: dict[str, dict] = {}
        try:
            while pending := [r for r in rids if r not in self.responses and r not in late]:
                if self.eof:
                    raise InputClosed()
                now = time.monotonic()
                dues = []
                for rid in pending:
                    timeout = timeouts[rid]
                    if timeout is None:
                        continue
                    if start + timeout <= now:
                        send({"type": "control_cancel_request", "request_id": rid})
                        late[rid] = {"_error": f"no answer within {timeout:g} s",
                                     "_cancelled": True}  # fmt: skip
                    else:
                        dues.append(start + timeout - now)
                if all(rid in late for rid in pending):
                    break
                try:
                    self.dispatch(self.reader.readline(min(dues) if dues else None))
                except Interrupted:
                    for rid in pending:
                        if rid not in late:
                            send({"type": "control_cancel_request", "request_id": rid})
                    raise
        finally:
            self.waiting.difference_update(rids)
            for rid in late:  # an answer that came after all is dropped
                self.responses.pop(rid, None)
        return [late[rid] if rid in late else self._answer(self.responses.pop(rid)) for rid in rids]

    @staticmethod
    def _answer(resp: dict) -> dict:
        if resp.get("subtype") == "error":
            return {"_error": str(resp.get("error", "error"))}
        return resp.get("response") or {}

    def pause(self, seconds: float) -> None:
        """Wait, while still answering control requests (an interrupt ends the turn)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.eof:
                time.sleep(left)
                return
            self.dispatch(self.reader.readline(left))

    def emit(self, msg: dict) -> None:
        if (self.latency or self.jitter) and self.slow_turn in ("0", str(self.turns)):
            extra = self.ctx.rng().uniform(0, self.jitter) if self.jitter else 0.0
            self.pause(self.latency + extra)
        send(msg)

    # ---- a turn ---------------------------------------------------------------------------
    def turn(self, user_msg: dict) -> None:
        if not self.started:  # a prompt before any initialize: start up with argv's settings
            self._start_up(None)
        self.turns += 1
        n = self.turns
        started = time.monotonic()
        message = user_msg.get("message") or {}
        prompt = content_text(message.get("content"))
        self.in_turn = True
        interrupted = False
        subtype = "error_during_execution"  # the result's subtype, for the ledger
        in_tokens = max(1, len(prompt.split()))
        try:
            if self.state_frames:
                send(m.session_state(self.session_id, "running"))
            tools, servers = self.tools, None
            if self.mcp is not None:
                # As the real CLI: the SDK's servers are connected before the first turn's init;
                # one whose handshake failed is tried again at each turn.
                self.mcp.connect()
                mcp_tools = [t for t in self.mcp.tool_names() if t not in self.denied_tools]
                tools, servers = tools + mcp_tools, self.mcp.server_list()
            # Saved as the turn starts, as the real CLI does: a session id the SDK has seen
            # (in the init below) can be resumed, even if this process dies mid-turn.
            self.ctx.remember(
                "user", {"role": "user", "content": message.get("content")}, user_msg.get("uuid")
            )
            if self.replay:  # the prompt back, with the uuid a rewind_files names it by
                send({**user_msg, "session_id": self.session_id,
                      "uuid": user_msg.get("uuid") or m.new_uuid(), "isReplay": True})  # fmt: skip
            send(
                m.system_init(
                    self.session_id, self.model, self.permission_mode, self.ctx.version, tools,
                    servers, [a["name"] for a in self.agents],
                )
            )  # fmt: skip
            verdict = hookout.prompt_verdict(
                self.run_hooks("UserPromptSubmit", None, None, {"prompt": prompt})
            )
            if verdict is not None:
                raise PromptEnded(*verdict)
            at_point(self.ctx, "mid-turn", n, self.session_id)
            text = observation(prompt)
            denials: list[dict] = []
            api_turns = 1
            tool = self.ctx.scenario.param("ok", "tool", "")
            if tool:
                try:
                    denials = self.tool_round(tool, prompt)
                except Interrupted as exc:
                    exc.reason = "aborted_tools"
                    raise
                api_turns = 2
                if self.max_turns is not None and self.max_turns < api_turns:
                    # The reply after the tool would be one round trip too many.
                    raise MaxTurns(api_turns)
            self._reply(text)
            text, api_turns, ended = self._stop_hooks(text, api_turns)
            out_tokens = max(1, len(text) // 4)
            self.context_tokens += in_tokens + out_tokens
            self.cost += m.cost_usd(in_tokens * api_turns, out_tokens)
            if self.max_budget is not None and self.cost >= float(self.max_budget):
                raise BudgetExhausted()  # as the real CLI: checked once a reply is in
            self.emit(
                m.result(
                    self.session_id,
                    subtype="success",
                    is_error=False,
                    text=text,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    num_turns=api_turns,
                    model=self.model,
                    input_tokens=in_tokens,
                    output_tokens=out_tokens,
                    permission_denials=denials,
                    structured_output=self.ctx.structured(text),
                    total_cost_usd=self.cost,
                    terminal_reason=ended,
                )
            )
            self.last_error = False
            subtype = "success"
        except PromptEnded as exc:
            # As the real CLI: no model call; a warning that says why, then a success result
            # with its text, no turns and no stop_reason.
            text = hookout.ended_text(exc.kind, exc.reason, prompt)
            kept = exc.kind != "blocked_by_hook"
            send(hookout.informational(self.session_id, text, kind=exc.kind, kept=kept,
                                       reason=exc.reason))  # fmt: skip
            send(self._ended_result(started, text, 0, 0, stop_reason=None))
            self.last_error = False
            subtype = "success"
        except HookStopped as exc:
            # A tool hook's continue: false: the tool's result is the turn's last message, so
            # the result has no text and the tool use's stop_reason.
            self.cost += m.cost_usd(in_tokens, 1)
            res = self._ended_result(
                started, "", 2, in_tokens, stop_reason="tool_use", terminal_reason="hook_stopped",
                denials=exc.denials,
            )  # fmt: skip
            send(res)
            self.last_error = False
            subtype = "success"
        except Interrupted as exc:
            interrupted = True
            text = str(exc) or INTERRUPTED_TEXT
            send(m.user(self.session_id, [{"type": "text", "text": text}]))
            # As the real CLI 2.1.335: the Interrupt hooks (matched on who stopped the turn)
            # are called as the turn ends, before its result, and not waited for.
            self.fire_hooks("Interrupt", exc.who, exc.who["source"])
            res = self._error_result(
                started, in_tokens, "error_during_execution", [], denials=exc.denials
            )
            res["terminal_reason"] = exc.reason
            send(res)
            self.last_error = True
        except InputClosed:
            send(self._error_result(started, in_tokens, "error_during_execution", ["stdin closed"]))
            self.last_error = True
        except MaxTurns as exc:
            # As the real CLI: num_turns one past the limit, is_error, no errors text.
            res = self._error_result(
                started, in_tokens, "error_max_turns", [], num_turns=exc.num_turns
            )
            res["terminal_reason"] = "max_turns"
            send(res)
            subtype = "error_max_turns"
            self.last_error = True
        except BudgetExhausted:
            # The reply stands; the result says why the turn went no further.
            errors = [f"Reached maximum budget (${self.max_budget})"]
            res = self._error_result(started, in_tokens, "error_max_budget_usd", errors)
            res["terminal_reason"] = "budget_exhausted"
            send(res)
            subtype = "error_max_budget_usd"
            self.last_error = True
        finally:
            self.in_turn = False
        # "idle" is the SDKs' sign that the run is over (they may close stdin on it): as the
        # real CLI, which reads stdin while it works, not while prompts already sent wait.
        self.take_written()
        if self.state_frames and not self.pending:
            send(m.session_state(self.session_id, "idle"))
        self.ctx.ledger.write(
            "turn", n=n, session_id=self.session_id, interrupted=interrupted, result=subtype
        )
        at_point(self.ctx, "after-result", n, self.session_id)

    def _reply(self, text: str) -> None:
        """The model's text reply (streamed first with --include-partial-messages)."""
        msg_id = m.new_id("msg_")
        if self.partial:
            for event in m.stream_events(self.model, msg_id, {"type": "text", "text": text}):
                self.emit(m.stream_event(self.session_id, event))
        reply = m.assistant(self.session_id, self.model, [{"type": "text", "text": text}], msg_id)
        self.emit(reply)
        self.ctx.remember("assistant", reply["message"], reply.get("uuid"))

    def _stop_hooks(self, text: str, api_turns: int) -> tuple[str, int, str | None]:
        """The Stop hooks, as the real CLI acts on them: continue: false ends the turn (the
        reply stands; terminal_reason stop_hook_prevented); a block feeds its reason back as a
        synthetic user message and the model goes on (stop_hook_active then true), until the
        block cap, past which a warning ends the turn. The last reply, the round trips, and
        the terminal reason if a hook set one."""
        blocks = 0
        while True:
            outs = self.run_hooks(
                "Stop", None, None,
                {"stop_hook_active": blocks > 0, "last_assistant_message": text},
            )  # fmt: skip
            if hookout.stop_of(outs) is not None:  # checked before any block, as the real CLI
                return text, api_turns, "stop_hook_prevented"
            reason = hookout.block_of(outs)
            if reason is None:
                return text, api_turns, None
            blocks += 1
            if self.max_turns is not None and self.max_turns < api_turns + 1:
                raise MaxTurns(api_turns + 1)
            cap = hookout.block_cap()
            if cap > 0 and blocks > cap:
                send(hookout.informational(self.session_id, hookout.cap_text(blocks)))
                return text, api_turns, None
            feedback = hookout.STOP_FEEDBACK + reason
            self.emit(hookout.synthetic_user(self.session_id, feedback))
            self.ctx.remember("user", {"role": "user", "content": feedback})
            api_turns += 1
            text = observation(feedback)
            self._reply(text)

    def take_written(self) -> None:
        """Handle every line already written to stdin, without waiting for more."""
        while not self.eof:
            line = self.reader.readline(0)
            if line is TIMEOUT:
                return
            self.dispatch(line)

    def _ended_result(
        self, started: float, text: str, num_turns: int, in_tokens: int, *,
        stop_reason: str | None, terminal_reason: str | None = None,
        denials: list | None = None,
    ) -> dict:  # fmt: skip
        """The success result of a turn a hook ended before its reply."""
        return m.result(
            self.session_id, subtype="success", is_error=False, text=text,
            duration_ms=int((time.monotonic() - started) * 1000), num_turns=num_turns,
            model=self.model, input_tokens=in_tokens, output_tokens=0,
            permission_denials=denials, total_cost_usd=self.cost, stop_reason=stop_reason,
            terminal_reason=terminal_reason,
        )  # fmt: skip

    def _error_result(
        self,
        started: float,
        in_tokens: int,
        subtype: str,
        errors: list,
        num_turns: int = 1,
        denials: list | None = None,
    ) -> dict:
        return m.result(
            self.session_id,
            subtype=subtype,
            is_error=True,
            text=None,
            duration_ms=int((time.monotonic() - started) * 1000),
            num_turns=num_turns,
            model=self.model,
            input_tokens=in_tokens,
            output_tokens=0,
            errors=errors,
            permission_denials=denials,
            total_cost_usd=self.cost,
        )


def run_session(ctx: Context, session_id: str) -> int:
    session = Session(ctx, session_id)
    try:
        return session.run()
    except StdoutClosed:
        # Our reader is gone: like EOF, unless this fake is built to linger.
        ctx.ledger.write("stdin_eof")
        if ctx.scenario.has("ignore-eof"):
            idle_forever()
        exit_now(ctx.ledger, 1)
        return 1  # pragma: no cover
