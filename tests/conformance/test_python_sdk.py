"""The real Python claude-agent-sdk drives the fake claude through its shim (cli_path).

Only the tox `conformance` env installs the SDK (from its sdist); elsewhere these tests skip.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

sdk = pytest.importorskip(
    "claude_agent_sdk",
    reason="claude-agent-sdk is not installed (the tox `conformance` env installs it)",
)
anyio = pytest.importorskip("anyio", reason="anyio comes with claude-agent-sdk")

from conformance_support import never_answering_server, run_processes, wait_for  # noqa: E402

import proctree  # noqa: E402
from fake_claude.ledger import read_ledger  # noqa: E402
from fake_claude.shim import write_shim  # noqa: E402

pytestmark = pytest.mark.conformance
DEADLINE = float(os.environ.get("CONFORMANCE_DEADLINE", "90"))


class Fake:
    def __init__(self, tmp: Path, scenario: str) -> None:
        self.run_id = secrets.token_hex(6)
        self.ledger = tmp / "ledger.jsonl"
        self.shim = write_shim(
            tmp / "bin",
            {"scenario": scenario, "ledger": str(self.ledger), "run_id": self.run_id, "seed": "1"},
        )

    def records(self, event: str) -> list[dict]:
        if not self.ledger.exists():
            return []
        return [r for r in read_ledger(self.ledger) if r["event"] == event]

    def options(self, **kw):
        return sdk.ClaudeAgentOptions(cli_path=str(self.shim), **kw)

    def cleanup(self) -> None:
        for proc in run_processes(self.run_id):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        wait_for(lambda: not run_processes(self.run_id), "fake processes to end")


@pytest.fixture
def fake_factory(tmp_path: Path) -> Iterator:
    made: list[Fake] = []

    def make(scenario: str = "ok") -> Fake:
        fake = Fake(tmp_path / f"f{len(made)}", scenario)
        made.append(fake)
        return fake

    try:
        yield make
    finally:
        for fake in made:
            fake.cleanup()


def run_async(fn):
    async def bounded():
        with anyio.fail_after(DEADLINE):
            return await fn()

    return anyio.run(bounded)


def test_plain_query(fake_factory):
    fake = fake_factory()

    async def go():
        return [m async for m in sdk.query(prompt="index the repo layout", options=fake.options())]

    msgs = run_async(go)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["SystemMessage", "AssistantMessage", "ResultMessage"]
    result = msgs[-1]
    assert result.subtype == "success" and result.is_error is False
    assert "index the repo layout" in msgs[1].content[0].text
    assert result.session_id == msgs[0].data["session_id"]
    # The SDK closed stdin after the result; the fake finished and exited 0.
    wait_for(lambda: fake.records("exit"), "the fake to exit")
    assert fake.records("exit")[0]["code"] == 0


def test_multi_turn_client_with_interrupt(fake_factory):
    # Turn 2 is slow (30 s per message) unless interrupted; turns 1 and 3 are quick.
    fake = fake_factory("slow:latency=30,jitter=0,first=0,turn=2")

    async def go():
        out = {}
        async with sdk.ClaudeSDKClient(options=fake.options()) as client:
            await client.query("first question")
            out[1] = [m async for m in client.receive_response()]
            await client.query("a long question")
            got = []
            async for m in client.receive_response():
                got.append(m)
                if isinstance(m, sdk.SystemMessage) and m.subtype == "init":
                    await client.interrupt()
            out[2] = got
            await client.query("third question")
            out[3] = [m async for m in client.receive_response()]
        return out

    out = run_async(go)
    assert out[1][-1].subtype == "success"
    interrupted = out[2]
    assert any(
        isinstance(m, sdk.UserMessage)
        and any(getattr(b, "text", "") == "[Request interrupted by user]" for b in m.content)
        for m in interrupted
    )
    assert interrupted[-1].is_error is True
    assert interrupted[-1].subtype == "error_during_execution"
    assert out[3][-1].subtype == "success"
    assert "third question" in out[3][-1].result
    assert {m.session_id for m in (out[1][-1], out[2][-1], out[3][-1])} == {out[1][-1].session_id}
    turns = wait_for(lambda: len(fake.records("turn")) == 3 and fake.records("turn"), "3 turns")
    assert [t["interrupted"] for t in turns] == [False, True, False]


def test_client_status_calls_answer_in_the_documented_shape(fake_factory):
    # A caller reading the documented fields (the SDK's own examples) must get values, not
    # a KeyError; the usage grows with the conversation.
    fake = fake_factory()

    async def go():
        async with sdk.ClaudeSDKClient(options=fake.options()) as client:
            before = await client.get_context_usage()
            await client.query("count the words in this question please")
            _ = [m async for m in client.receive_response()]
            after = await client.get_context_usage()
            status = await client.get_mcp_status()
            await client.set_model("claude-opus-4")
            await client.set_permission_mode("acceptEdits")
            info = await client.get_server_info()
        return before, after, status, info

    before, after, status, info = run_async(go)
    for usage in (before, after):
        assert 0 <= usage["percentage"] <= 100
        assert usage["totalTokens"] == sum(c["tokens"] for c in usage["categories"] if
                                           c["kind"] == "used")  # fmt: skip
        assert usage["maxTokens"] >= usage["totalTokens"]
        assert all(isinstance(c["name"], str) for c in usage["categories"])
    assert after["totalTokens"] > before["totalTokens"]
    assert status["mcpServers"] == []
    assert info is not None and "commands" in info


@pytest.mark.parametrize("allow", [False, True], ids=["launched-without", "allowed"])
def test_set_permission_mode_to_bypass_needs_it_allowed_at_launch(fake_factory, allow):
    # The Python SDK has no option for it: a caller passes the flag through extra_args.
    fake = fake_factory()
    extra = {"allow-dangerously-skip-permissions": None} if allow else {}

    async def go():
        async with sdk.ClaudeSDKClient(options=fake.options(extra_args=extra)) as client:
            try:
                await client.set_permission_mode("bypassPermissions")
            except Exception as exc:  # the SDK raises the CLI's error text as an Exception
                refused: str | None = str(exc)
            else:
                refused = None
            await client.query("which mode now")
            init = [m async for m in client.receive_response()][0]
        return refused, init.data["permissionMode"]

    refused, mode = run_async(go)
    if allow:
        assert (refused, mode) == (None, "bypassPermissions")
    else:
        assert refused and "not launched with --dangerously-skip-permissions" in refused
        assert mode == "default"


def test_structured_output(fake_factory):
    jsonschema = pytest.importorskip("jsonschema")
    fake = fake_factory()
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "score": {"type": "integer", "minimum": 1}},
        "required": ["summary", "score"],
    }

    async def go():
        opts = fake.options(output_format={"type": "json_schema", "schema": schema})
        return [m async for m in sdk.query(prompt="rate this change", options=opts)]

    result = run_async(go)[-1]
    assert isinstance(result, sdk.ResultMessage) and result.subtype == "success"
    jsonschema.validate(result.structured_output, schema)
    assert "rate this change" in result.structured_output["summary"]


def query_then_mcp_status(opts, prompt: str) -> tuple[list, dict]:
    """One turn through ClaudeSDKClient, then its get_mcp_status(): (messages, status)."""

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query(prompt)
            msgs = [m async for m in client.receive_response()]
            status = await client.get_mcp_status()
        return msgs, status

    return run_async(go)


def test_sdk_mcp_server_tool_is_called_through_the_control_channel(fake_factory):
    # An in-process tool of the SDK's host: the fake connects to its server (handshake and
    # tools/list over mcp_message) and a turn using it runs the host's own code.
    fake = fake_factory("ok:tool=mcp__calc__add")
    calls = []

    @sdk.tool("add", "Add two integers", {"a": int, "b": int})
    async def add(args):
        calls.append(args)
        return {"content": [{"type": "text", "text": f"sum={args['a'] + args['b']}"}]}

    server = sdk.create_sdk_mcp_server(name="calc", version="1.0.0", tools=[add])

    opts = fake.options(mcp_servers={"calc": server}, allowed_tools=["mcp__calc__add"])
    msgs, status = query_then_mcp_status(opts, "add some numbers")
    assert calls and set(calls[0]) == {"a", "b"}
    init = next(m for m in msgs if isinstance(m, sdk.SystemMessage) and m.subtype == "init")
    assert {"name": "calc", "status": "connected"} in init.data["mcp_servers"]
    assert "mcp__calc__add" in init.data["tools"]
    results = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
               if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert len(results) == 1 and results[0].content == "sum=0" and not results[0].is_error
    assert msgs[-1].subtype == "success"
    (calc,) = status["mcpServers"]
    assert calc["name"] == "calc" and calc["status"] == "connected"
    assert [t["name"] for t in calc["tools"]] == ["add"]


def test_an_sdk_mcp_tool_returning_an_image_gives_an_image_block(fake_factory):
    # A screenshot-like tool: the real CLI hands the image on as an image block of the tool
    # result. The fake kept only the text parts, the image as an empty line before the text.
    fake = fake_factory("ok:tool=mcp__shot__snap")

    @sdk.tool("snap", "Take a screenshot", {})
    async def snap(args):
        image = {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
        return {"content": [image, {"type": "text", "text": "the screen"}]}

    server = sdk.create_sdk_mcp_server(name="shot", tools=[snap])
    opts = fake.options(mcp_servers={"shot": server}, allowed_tools=["mcp__shot__snap"])
    msgs, _ = query_then_mcp_status(opts, "look at the screen")
    (result,) = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
                 if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert not result.is_error
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert result.content == [
        {"type": "image", "source": source}, {"type": "text", "text": "the screen"},
    ]  # fmt: skip
    assert msgs[-1].subtype == "success"


def test_a_failing_tool_runs_the_post_tool_use_failure_hooks(fake_factory):
    # A tool that fails (an SDK MCP tool that raises) is followed by the PostToolUseFailure
    # hooks, with the error, as in the real CLI; the fake ran PostToolUse as for a success.
    fake = fake_factory("ok:tool=mcp__calc__div")
    seen = []

    @sdk.tool("div", "Divide", {"a": int, "b": int})
    async def div(args):
        raise ZeroDivisionError("cannot divide by zero")

    async def record(hook_input, tool_use_id, context):
        seen.append(hook_input)
        return {}

    hooks = {event: [sdk.HookMatcher(matcher="mcp__calc__div", hooks=[record])]
             for event in ("PostToolUse", "PostToolUseFailure")}  # fmt: skip
    server = sdk.create_sdk_mcp_server(name="calc", tools=[div])
    opts = fake.options(mcp_servers={"calc": server}, allowed_tools=["mcp__calc"], hooks=hooks)
    msgs, _ = query_then_mcp_status(opts, "divide")
    results = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
               if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert len(results) == 1 and results[0].is_error
    (failure,) = seen
    assert failure["hook_event_name"] == "PostToolUseFailure"
    assert failure["tool_name"] == "mcp__calc__div" and "divide by zero" in failure["error"]
    assert failure["tool_use_id"] == results[0].tool_use_id and not failure["is_interrupt"]


def test_stdio_mcp_server_is_the_fakes_child_and_ends_with_it(fake_factory):
    # A stdio server in the SDK's options: the SDK passes it in --mcp-config, the fake starts
    # it as its child (as the real CLI does), calls its tool, and ends it when the SDK is done.
    fake = fake_factory("ok:tool=mcp__echo__pid")
    server = {"command": sys.executable, "args": ["-m", "fake_claude.mcp_server"]}

    opts = fake.options(mcp_servers={"echo": server}, allowed_tools=["mcp__echo__pid"])
    msgs, status = query_then_mcp_status(opts, "which process serves you")
    (started,) = [r for r in fake.records("start") if r.get("role") == "mcp-server"]
    init = next(m for m in msgs if isinstance(m, sdk.SystemMessage) and m.subtype == "init")
    assert {"name": "echo", "status": "connected"} in init.data["mcp_servers"]
    results = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
               if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert [r.content for r in results] == [str(started["pid"])]
    (echo,) = status["mcpServers"]
    assert echo["status"] == "connected" and echo["config"]["type"] == "stdio"
    assert {t["name"] for t in echo["tools"]} == {"echo", "pid"}
    # The SDK closed the fake's stdin; the fake ended its server as it left.
    server = proctree.ProcId(started["pid"], started["create_time"])
    wait_for(lambda: not proctree.is_alive(server), "the MCP server to be gone")


def test_an_sdk_mcp_tool_may_run_longer_than_mcp_timeout(fake_factory):
    # MCP_TIMEOUT bounds a server's connection in the real CLI; a tool call has its own,
    # MCP_TOOL_TIMEOUT (effectively infinite unless set). The fake failed every call that ran
    # past MCP_TIMEOUT ("no answer within 0.5 s").
    fake = fake_factory("ok:tool=mcp__slow__nap")

    @sdk.tool("nap", "Take a short nap", {})
    async def nap(args):
        await anyio.sleep(1.5)
        return {"content": [{"type": "text", "text": "rested"}]}

    server = sdk.create_sdk_mcp_server(name="slow", tools=[nap])
    opts = fake.options(
        mcp_servers={"slow": server}, allowed_tools=["mcp__slow"], env={"MCP_TIMEOUT": "500"}
    )
    msgs, _ = query_then_mcp_status(opts, "rest a while")
    (result,) = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
                 if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert (result.content, result.is_error) == ("rested", False)
    assert msgs[-1].subtype == "success"


def test_an_interrupt_cancels_a_running_sdk_mcp_tool(fake_factory):
    # interrupt() while an SDK MCP tool runs: as the real CLI's MCP client on its abort
    # signal, the fake sends the server notifications/cancelled for the call, so the host's
    # tool is cancelled. Before, the turn ended but the tool ran on in the host.
    fake = fake_factory("ok:tool=mcp__slow__wait")
    started, cancelled = anyio.Event(), anyio.Event()

    @sdk.tool("wait", "Wait for ever", {})
    async def wait(args):
        started.set()
        try:
            await anyio.Event().wait()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return {"content": []}

    server = sdk.create_sdk_mcp_server(name="slow", tools=[wait])
    opts = fake.options(mcp_servers={"slow": server}, allowed_tools=["mcp__slow"])

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("wait for it")
            await started.wait()
            await client.interrupt()
            msgs = [m async for m in client.receive_response()]
            # While the client is open: its own teardown would cancel the tool too.
            with anyio.fail_after(10):
                await cancelled.wait()
            return msgs

    msgs = run_async(go)
    assert msgs[-1].subtype == "error_during_execution" and msgs[-1].is_error


def test_an_interrupt_ends_a_running_stdio_mcp_tool_and_cancels_it(fake_factory, tmp_path):
    # interrupt() while a stdio MCP server's tool runs is answered at once and ends the turn,
    # and the server gets notifications/cancelled for the call, as from the real CLI. The fake
    # read no stdin while it waited for the server: interrupt() hung until the call timed out
    # (MCP_TIMEOUT, 30 s), and the turn then went on as if never interrupted.
    fake = fake_factory("ok:tool=mcp__never__wait")
    server, said = never_answering_server(tmp_path)
    opts = fake.options(mcp_servers={"never": server}, allowed_tools=["mcp__never"])

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("wait for it")
            with anyio.fail_after(60):  # the tool call reaches the server, or the test fails
                while not any(m.get("method") == "tools/call" for m in said()):
                    await anyio.sleep(0.02)
            with anyio.fail_after(10):
                await client.interrupt()
                return [m async for m in client.receive_response()]

    msgs = run_async(go)
    assert msgs[-1].subtype == "error_during_execution" and msgs[-1].is_error
    (call,) = [m for m in said() if m.get("method") == "tools/call"]
    (cancel,) = [m for m in said() if m.get("method") == "notifications/cancelled"]
    assert cancel["params"]["requestId"] == call["id"]
    turns = wait_for(lambda: fake.records("turn"), "the turn's ledger line")
    assert [(t["n"], t["interrupted"]) for t in turns] == [(1, True)]


def test_a_stdio_mcp_server_that_died_is_started_anew_by_reconnect(fake_factory):
    # The SDK documents reconnect_mcp_server for a server get_mcp_status reads "failed", and
    # toggle_mcp_server(False) as disconnecting it. The fake went on reading a dead server
    # "connected", its reconnect did nothing (the next call failed: "server echo is gone"),
    # and a server toggled off kept running.
    fake = fake_factory("ok:tool=mcp__echo__pid")
    server = {"command": sys.executable, "args": ["-m", "fake_claude.mcp_server"]}
    opts = fake.options(mcp_servers={"echo": server}, allowed_tools=["mcp__echo"])

    def server_pids() -> list[int]:
        return [r["pid"] for r in fake.records("start") if r.get("role") == "mcp-server"]

    async def pid_served(client) -> str:
        await client.query("which process serves you")
        msgs = [m async for m in client.receive_response()]
        (result,) = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
                     if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
        assert not result.is_error, result.content
        return result.content

    async def status(client) -> str:
        (echo,) = (await client.get_mcp_status())["mcpServers"]
        return echo["status"]

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            first = int(await pid_served(client))
            psutil.Process(first).kill()  # the fake's child, found through its ledger line
            wait_for(lambda: not psutil.pid_exists(first) or is_zombie(first), "it to die")
            assert await status(client) == "failed"
            await client.reconnect_mcp_server("echo")
            assert await status(client) == "connected"
            second = int(await pid_served(client))
            assert second != first and server_pids() == [first, second]
            await client.toggle_mcp_server("echo", False)
            assert await status(client) == "disabled"
            wait_for(lambda: not psutil.pid_exists(second) or is_zombie(second), "it to end")
            await client.toggle_mcp_server("echo", True)
            assert await status(client) == "connected"
            third = int(await pid_served(client))
            assert server_pids() == [first, second, third]

    run_async(go)


def is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_max_turns_ends_a_tool_turn_with_error_max_turns(fake_factory):
    fake = fake_factory("ok:tool=Bash")

    async def go():
        opts = fake.options(max_turns=1, permission_mode="bypassPermissions")
        got = []
        # The CLI exits 1 after an error result; the SDK then raises ResultError, which
        # carries why (SDK >= 0.2): the same shape as the real CLI's run out of turns.
        with pytest.raises(sdk.ResultError) as failed:
            async for m in sdk.query(prompt="run something", options=opts):
                got.append(m)
        return got, failed.value

    msgs, error = run_async(go)
    result = msgs[-1]
    assert isinstance(result, sdk.ResultMessage)
    assert result.subtype == "error_max_turns" and result.is_error and result.num_turns == 2
    assert error.subtype == "error_max_turns" and error.terminal_reason == "max_turns"


def test_max_budget_usd_ends_the_session_with_error_max_budget_usd(fake_factory):
    # The fake's results cost nothing and --max-budget-usd did nothing: a caller could not
    # see the real CLI's error_max_budget_usd (and the SDK's ResultError) with it.
    fake = fake_factory()

    async def go(budget: float):
        got = []
        try:
            async for m in sdk.query(prompt="hi", options=fake.options(max_budget_usd=budget)):
                got.append(m)
        except sdk.ResultError as exc:
            return got, exc
        return got, None

    msgs, error = run_async(lambda: go(0.5))
    assert error is None and msgs[-1].subtype == "success" and msgs[-1].total_cost_usd > 0
    msgs, error = run_async(lambda: go(1e-9))
    result = msgs[-1]
    assert isinstance(msgs[-2], sdk.AssistantMessage)  # the reply stands
    assert result.subtype == "error_max_budget_usd" and result.is_error
    assert result.errors == ["Reached maximum budget ($1e-09)"] and result.total_cost_usd > 1e-9
    assert error is not None and error.subtype == "error_max_budget_usd"
    assert [r["code"] for r in fake.records("exit")] == [0, 1]


def test_can_use_tool_and_pre_tool_use_hook(fake_factory):
    fake = fake_factory("ok:tool=Bash")
    calls: list[tuple[str, str]] = []

    async def can_use_tool(name, tool_input, context):
        calls.append(("can_use_tool", name))
        return sdk.PermissionResultAllow(updated_input={**tool_input, "command": "echo allowed"})

    async def pre_tool_use(hook_input, tool_use_id, context):
        calls.append(("PreToolUse", hook_input["tool_name"]))
        return {}

    opts = fake.options(
        can_use_tool=can_use_tool,
        hooks={"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[pre_tool_use])]},
    )

    async def go():
        async def prompt():
            yield {"type": "user", "message": {"role": "user", "content": "list files"}}

        return [m async for m in sdk.query(prompt=prompt(), options=opts)]

    msgs = run_async(go)
    assert calls == [("PreToolUse", "Bash"), ("can_use_tool", "Bash")]
    tool_use = [
        b
        for m in msgs
        if isinstance(m, sdk.AssistantMessage)
        for b in m.content
        if isinstance(b, sdk.ToolUseBlock)
    ]
    assert tool_use and tool_use[0].name == "Bash"
    results = [
        b
        for m in msgs
        if isinstance(m, sdk.UserMessage) and isinstance(m.content, list)
        for b in m.content
        if isinstance(b, sdk.ToolResultBlock)
    ]
    assert results and "echo allowed" in results[0].content
    assert msgs[-1].subtype == "success" and not msgs[-1].permission_denials


async def _allow_by_hook(hook_input, tool_use_id, context):
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"}}


# (options, callback?, expected: "ran" / "denied" / "no such tool", callback asked?)
PERMISSION_CASES = {
    "allowed_tools shadows the callback": ({"allowed_tools": ["Bash"]}, True, "ran", False),
    "a hook's allow skips the callback": (
        {"hooks": {"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[_allow_by_hook])]}},
        True,
        "ran",
        False,
    ),  # fmt: skip
    "nothing decides: the callback": ({}, True, "ran", True),
    "nobody to ask: denied": ({}, False, "denied", False),
    "dontAsk never asks": ({"permission_mode": "dontAsk"}, True, "denied", False),
    "a deny rule beats bypassPermissions": (
        {"permission_mode": "bypassPermissions", "disallowed_tools": ["Bash(touch *)"]},
        False,
        "denied",
        False,
    ),  # fmt: skip
    "a tool denied by name is not there": (
        {"disallowed_tools": ["Bash"]},
        True,
        "no such tool",
        False,
    ),  # fmt: skip
}


@pytest.mark.filterwarnings("ignore:can_use_tool will not be invoked")  # the SDK's, as meant
@pytest.mark.parametrize("case", list(PERMISSION_CASES))
def test_permissions_follow_the_documented_order(fake_factory, case):
    """Before, only bypassPermissions and the presence of a callback counted: the callback was
    asked despite allowed_tools or a hook's allow, dontAsk asked, and a denied tool ran."""
    options, with_callback, expected, asked_expected = PERMISSION_CASES[case]
    fake = fake_factory("ok:tool=Bash")
    asked: list[str] = []

    async def can_use_tool(tool_name, tool_input, context):
        asked.append(tool_name)
        return sdk.PermissionResultAllow()

    callback = {"can_use_tool": can_use_tool} if with_callback else {}
    opts = fake.options(**options, **callback)

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("list the files")
            return [m async for m in client.receive_response()]

    msgs = run_async(go)
    init = msgs[0]
    (block,) = [b for m in msgs if isinstance(m, sdk.UserMessage) and isinstance(m.content, list)
                for b in m.content if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    result = msgs[-1]
    assert result.subtype == "success", result
    assert bool(asked) is asked_expected, asked
    if expected == "ran":
        assert block.is_error is False and not result.permission_denials
    elif expected == "denied":
        assert block.is_error is True
        assert [d["tool_name"] for d in result.permission_denials] == ["Bash"]
    else:
        assert "Bash" not in init.data["tools"]
        assert block.is_error is True and "No such tool available: Bash" in block.content
        assert not result.permission_denials


@pytest.mark.parametrize(
    ("where", "sources", "runs"),
    [("flag", None, True), ("project", ["project"], True), ("project", [], False)],
)
def test_settings_permissions_are_applied(fake_factory, tmp_path, where, sources, runs):
    """`settings` (--settings) and a project's .claude/settings.json, when its source is
    loaded, allow a tool as the real CLI does; the fake read neither and denied it."""
    fake = fake_factory("ok:tool=Bash")
    rules = {"permissions": {"allow": ["Bash(touch:*)"]}}
    cwd = tmp_path / "project"
    (cwd / ".claude").mkdir(parents=True)
    kw: dict = {"cwd": str(cwd), "setting_sources": sources}
    if where == "flag":
        kw["settings"] = json.dumps(rules)
    else:
        (cwd / ".claude" / "settings.json").write_text(json.dumps(rules))

    async def go():
        return [m async for m in sdk.query(prompt="make a file", options=fake.options(**kw))]

    msgs = run_async(go)
    (block,) = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
                if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert block.is_error is not runs
    assert bool(msgs[-1].permission_denials) is not runs


def test_the_hooks_of_an_event_run_side_by_side(fake_factory):
    """Each of two PreToolUse hooks waits until the other has started: together they finish;
    one after the other (as the fake ran them), the first waited out its 10 s and failed."""
    fake = fake_factory("ok:tool=Bash")
    started: list[str] = []
    both = anyio.Event()
    met: list[str] = []

    def hook(name: str):
        async def run(hook_input, tool_use_id, context):
            started.append(name)
            if len(started) == 2:
                both.set()
            with anyio.fail_after(10):
                await both.wait()
            met.append(name)
            return {}

        return run

    hooks = {"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[hook("a"), hook("b")])]}
    opts = fake.options(permission_mode="bypassPermissions", hooks=hooks)

    async def go():
        return [m async for m in sdk.query(prompt="run it", options=opts)]

    msgs = run_async(go)
    assert sorted(met) == ["a", "b"] and msgs[-1].subtype == "success"


def test_always_allow_with_the_offered_suggestions_asks_once(fake_factory):
    """The usual "always allow" button: answer with the suggestions the CLI offered. The fake
    offered none and applied no update, so it asked again at every turn."""
    fake = fake_factory("ok:tool=Bash")
    offered: list[list] = []

    async def can_use_tool(tool_name, tool_input, context):
        offered.append(context.suggestions)
        return sdk.PermissionResultAllow(updated_permissions=context.suggestions)

    async def go():
        async with sdk.ClaudeSDKClient(options=fake.options(can_use_tool=can_use_tool)) as client:
            got = []
            for prompt in ("make a file", "make another"):
                await client.query(prompt)
                got.append([m async for m in client.receive_response()])
            return got

    first, second = run_async(go)
    assert len(offered) == 1, offered  # the second turn's call was allowed by the new rule
    ((update,),) = offered
    (rule,) = update.rules
    assert (update.type, rule.tool_name, rule.rule_content) == ("addRules", "Bash", "touch:*")
    for msgs in (first, second):
        blocks = [b for m in msgs if isinstance(m, sdk.UserMessage) and isinstance(m.content, list)
                  for b in m.content if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
        assert [b.is_error for b in blocks] == [False] and msgs[-1].subtype == "success"


def test_a_hook_past_its_timeout_is_cancelled_and_the_turn_goes_on(fake_factory):
    """HookMatcher(timeout=1): the fake waited for ever for a hook that never answers."""
    fake = fake_factory("ok:tool=Bash")
    cancelled = anyio.Event()

    async def never(hook_input, tool_use_id, context):
        try:
            await anyio.Event().wait()  # never set
        except anyio.get_cancelled_exc_class():
            cancelled.set()  # by the CLI's control_cancel_request
            raise
        return {}

    hooks = {"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[never], timeout=1)]}
    opts = fake.options(permission_mode="bypassPermissions", hooks=hooks)

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("run it")
            msgs = [m async for m in client.receive_response()]
            # While the client is open: its own teardown would cancel a pending hook too.
            with anyio.fail_after(10):
                await cancelled.wait()
            return msgs

    msgs = run_async(go)
    assert msgs[-1].subtype == "success" and not msgs[-1].is_error


def test_an_interrupt_cancels_a_pending_permission_question(fake_factory):
    """interrupt() while can_use_tool waits: the turn ends interrupted and the SDK is told to
    drop the question (before, the callback ran on, unanswered)."""
    fake = fake_factory("ok:tool=Bash")
    asked, cancelled = anyio.Event(), anyio.Event()

    async def can_use_tool(tool_name, tool_input, context):
        asked.set()
        try:
            await anyio.Event().wait()  # the user never answers
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return sdk.PermissionResultAllow()

    async def go():
        async with sdk.ClaudeSDKClient(options=fake.options(can_use_tool=can_use_tool)) as client:
            await client.query("run something")
            await asked.wait()
            await client.interrupt()
            msgs = [m async for m in client.receive_response()]
            # While the client is open: its own teardown would cancel the question too.
            with anyio.fail_after(10):
                await cancelled.wait()
            return msgs

    msgs = run_async(go)
    assert msgs[-1].subtype == "error_during_execution" and msgs[-1].is_error
    turns = wait_for(lambda: fake.records("turn"), "the turn's ledger line")
    assert [(t["n"], t["interrupted"]) for t in turns] == [(1, True)]


def test_agents_hook_events_and_replayed_prompts(fake_factory):
    """Options that did nothing with the fake: the SDK's own agents (sent in the initialize
    request) were not listed, include_hook_events sent no hook_started/hook_response, and
    --replay-user-messages echoed no prompt (the uuid rewind_files names a checkpoint by)."""
    fake = fake_factory()

    async def stop_hook(hook_input, tool_use_id, context):
        return {}

    opts = fake.options(
        agents={"reviewer": sdk.AgentDefinition(description="Reviews code", prompt="Review.")},
        hooks={"Stop": [sdk.HookMatcher(hooks=[stop_hook])]},
        include_hook_events=True,
        extra_args={"replay-user-messages": None},
    )

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            info = await client.get_server_info()
            await client.query("review the diff")
            return info, [m async for m in client.receive_response()]

    info, msgs = run_async(go)
    assert "reviewer" in [a["name"] for a in info["agents"]]
    init = next(m for m in msgs if isinstance(m, sdk.SystemMessage) and m.subtype == "init")
    assert init.data["agents"] == ["general-purpose", "reviewer"]
    events = [(m.subtype, m.data["hook_event"]) for m in msgs
              if isinstance(m, sdk.SystemMessage) and m.subtype.startswith("hook_")]  # fmt: skip
    assert events == [("hook_started", "Stop"), ("hook_response", "Stop")]
    (replayed,) = [m for m in msgs if isinstance(m, sdk.UserMessage)]
    assert replayed.content == "review the diff" and replayed.uuid
    assert msgs[-1].subtype == "success"


def test_prompt_and_stop_hooks_run_in_order(fake_factory):
    fake = fake_factory("ok:tool=Bash")
    seen: list[dict] = []

    async def record(hook_input, tool_use_id, context):
        seen.append(dict(hook_input))
        return {}

    events = ("UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop")
    opts = fake.options(
        permission_mode="bypassPermissions",
        hooks={e: [sdk.HookMatcher(matcher=None, hooks=[record])] for e in events},
    )

    async def go():
        return [m async for m in sdk.query(prompt="tidy the imports", options=opts)]

    msgs = run_async(go)
    assert [h["hook_event_name"] for h in seen] == list(events)
    prompt, _, _, stop = seen
    assert prompt["prompt"] == "tidy the imports" and "tool_name" not in prompt
    assert stop["stop_hook_active"] is False and stop["last_assistant_message"] == msgs[-1].result
    assert {h["session_id"] for h in seen} == {msgs[-1].session_id}


def test_prompts_sent_together_each_get_a_turn_with_hooks(fake_factory):
    """With a hook the SDK keeps stdin open until the CLI says "idle". The fake said it after
    every turn, also with the next prompt waiting: the SDK closed stdin and the second turn
    failed ("stdin closed"). Turn 1 is slowed so that prompt 2 is written during it."""
    fake = fake_factory("ok+slow:first=0,latency=0.2,jitter=0,turn=1")
    prompts_seen: list[str] = []

    async def record(hook_input, tool_use_id, context):
        prompts_seen.append(hook_input["prompt"])
        return {}

    async def prompts():
        for text in ("first prompt", "second prompt"):
            yield {"type": "user", "message": {"role": "user", "content": text},
                   "parent_tool_use_id": None, "session_id": ""}  # fmt: skip

    opts = fake.options(hooks={"UserPromptSubmit": [sdk.HookMatcher(hooks=[record])]})

    async def go():
        return [m async for m in sdk.query(prompt=prompts(), options=opts)]

    results = [m for m in run_async(go) if isinstance(m, sdk.ResultMessage)]
    assert [(r.subtype, r.is_error) for r in results] == [("success", False)] * 2, results
    assert prompts_seen == ["first prompt", "second prompt"]
    turns = wait_for(lambda: len(fake.records("turn")) == 2 and fake.records("turn"), "2 turns")
    assert [(t["n"], t["result"]) for t in turns] == [(1, "success"), (2, "success")]


def test_post_tool_use_hook_gets_the_tools_output_object(fake_factory):
    # A PostToolUse hook that logs a command's output reads tool_response["stdout"], as the
    # real CLI gives Bash's output object; the fake gave a string (a TypeError in the hook).
    fake = fake_factory("ok:tool=Bash")
    seen = []

    async def post(hook_input, tool_use_id, context):
        seen.append(hook_input["tool_response"]["stdout"])
        return {}

    async def go():
        opts = fake.options(
            permission_mode="bypassPermissions",
            hooks={"PostToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[post])]},
        )
        return [m async for m in sdk.query(prompt="list the files", options=opts)]

    msgs = run_async(go)
    assert msgs[-1].subtype == "success"
    (result,) = [b for m in msgs if isinstance(m, sdk.UserMessage) for b in m.content
                 if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    assert seen == [result.content] and "touch" in seen[0]


def test_hook_can_deny_the_tool(fake_factory):
    fake = fake_factory("ok:tool=Bash")

    async def deny(hook_input, tool_use_id, context):
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "blocked by test",
            }
        }

    opts = fake.options(hooks={"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[deny])]})

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("delete everything")
            return [m async for m in client.receive_response()]

    msgs = run_async(go)
    assert msgs[-1].permission_denials
    blocks = [
        b
        for m in msgs
        if isinstance(m, sdk.UserMessage) and isinstance(m.content, list)
        for b in m.content
        if isinstance(b, sdk.ToolResultBlock)
    ]
    assert blocks[0].is_error is True and blocks[0].content == "blocked by test"


def test_partial_messages(fake_factory):
    fake = fake_factory()

    async def go():
        opts = fake.options(include_partial_messages=True)
        return [m async for m in sdk.query(prompt="stream me", options=opts)]

    msgs = run_async(go)
    events = [m.event for m in msgs if isinstance(m, sdk.StreamEvent)]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    final = [m for m in msgs if isinstance(m, sdk.AssistantMessage)][0]
    assert text == final.content[0].text


def test_partial_messages_stream_a_tool_input(fake_factory):
    fake = fake_factory("ok:tool=Bash")

    async def go():
        opts = fake.options(include_partial_messages=True, permission_mode="bypassPermissions")
        return [m async for m in sdk.query(prompt="run the tests", options=opts)]

    msgs = run_async(go)
    deltas = [m.event["delta"] for m in msgs if isinstance(m, sdk.StreamEvent)
              and m.event["type"] == "content_block_delta"]  # fmt: skip
    streamed = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    (use,) = [b for m in msgs if isinstance(m, sdk.AssistantMessage) for b in m.content
              if isinstance(b, sdk.ToolUseBlock)]  # fmt: skip
    assert json.loads(streamed) == use.input


ORPHAN_DRIVER = textwrap.dedent(
    """
    import sys, anyio
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

    async def main():
        client = ClaudeSDKClient(options=ClaudeAgentOptions(cli_path=sys.argv[1]))
        await client.connect()
        await client.query("observe")
        async for m in client.receive_response():
            pass
        print("done", flush=True)
        # The script ends without disconnect(): the SDK's own exit path is all that runs.

    anyio.run(main)
    """
)


def _drive_and_exit(fake: Fake) -> None:
    # Files, not pipes: the orphan inherits the driver's stderr (the Python SDK passes it
    # through), and a pipe it holds open would never reach EOF.
    log = fake.ledger.parent / "driver.log"
    with open(log, "wb") as sink:
        driver = subprocess.Popen(
            [sys.executable, "-c", ORPHAN_DRIVER, str(fake.shim)], stdout=sink, stderr=sink
        )
        try:
            assert driver.wait(timeout=DEADLINE) == 0, log.read_text()
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert "done" in log.read_text()


def test_control_a_well_behaved_fake_dies_with_the_driver(fake_factory):
    # The control for the test below: the same driver, a fake that honours EOF and SIGTERM.
    fake = fake_factory("ok")
    _drive_and_exit(fake)
    wait_for(lambda: not run_processes(fake.run_id), "the fake to end with its driver")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_leak_mechanism_fake_outlives_sdk_cleanup(fake_factory):
    fake = fake_factory("ignore-eof+ignore-sigterm")
    _drive_and_exit(fake)
    start = [r for r in fake.records("start") if r["role"] == "main"][0]
    # The driver is gone; the fake is not. It was orphaned, not ended.
    proc = psutil.Process(start["pid"])
    assert abs(proc.create_time() - start["create_time"]) <= 0.01
    assert proc.status() != psutil.STATUS_ZOMBIE
    assert proc.ppid() != start["ppid"]
    assert [p.pid for p in run_processes(fake.run_id)] == [proc.pid]
    proc.kill()  # ended by PID, as found through the ledger
    wait_for(lambda: not run_processes(fake.run_id), "the orphan to die")


OPTION_CASES = {
    "system-prompt": {"system_prompt": "-terse-"},
    "preset-prompt": {"system_prompt": {"type": "preset", "preset": "claude_code", "append": "-x"}},
    "tools": {"tools": ["Read"], "allowed_tools": ["Bash(git:*)"], "disallowed_tools": ["Write"]},
    "no-tools": {"tools": []},
    "limits": {"max_turns": 3, "max_budget_usd": 0.5, "fallback_model": "claude-haiku-4-5"},
    "settings": {"settings": '{"permissions": {"allow": ["Read"]}}', "setting_sources": []},
    "thinking": {"thinking": {"type": "enabled", "budget_tokens": 2048}, "effort": "high"},
    "extra-args": {"extra_args": {"replay-user-messages": None}, "env": {"FOO": "-x"}},
    "session-id": {"session_id": "11111111-2222-3333-4444-666666666666"},
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_options_the_sdk_turns_into_flags(fake_factory, case):
    fake = fake_factory()

    async def go():
        opts = fake.options(**OPTION_CASES[case])
        return [m async for m in sdk.query(prompt="hello", options=opts)]

    result = run_async(go)[-1]
    assert isinstance(result, sdk.ResultMessage) and result.subtype == "success"
    if case == "session-id":
        assert result.session_id == OPTION_CASES[case]["session_id"]


def _project_asker(fake, tmp_path, monkeypatch):  # noqa: ANN001, ANN202 - test helper
    """A project folder, and `ask(prompt, **options)` running one query there; conversations
    kept under a CLAUDE_CONFIG_DIR of the test's own, where the SDK's session listing looks."""
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    cwd = tmp_path / "project"
    cwd.mkdir()

    async def ask(prompt: str, **kw):
        options = fake.options(cwd=str(cwd), **kw)
        return [m async for m in sdk.query(prompt=prompt, options=options)]

    return cwd, ask


def test_the_sdks_session_listing_reads_the_fakes_conversations(
    fake_factory, tmp_path, monkeypatch
):
    # The fake keeps conversations where the real CLI does (under CLAUDE_CONFIG_DIR, here one of
    # the test's own): the SDK's list_sessions and get_session_messages read them back, and a
    # resume goes on with the same one.
    cwd, ask = _project_asker(fake_factory(), tmp_path, monkeypatch)
    first = run_async(lambda: ask("index the repo layout"))
    sid = first[-1].session_id
    again = run_async(lambda: ask("and now the tests", resume=sid))
    assert again[-1].session_id == sid and again[-1].subtype == "success"
    (info,) = sdk.list_sessions(directory=str(cwd))
    assert info.session_id == sid
    said = [m for m in sdk.get_session_messages(sid, directory=str(cwd)) if m.type == "user"]
    assert [m.message["content"] for m in said] == ["index the repo layout", "and now the tests"]


def test_a_forked_session_resumed_keeps_its_history(fake_factory, tmp_path, monkeypatch):
    # The SDK's fork_session copies a conversation under a new id and ends it with a
    # `custom-title` line carrying a uuid. Resumed, the fake chained the new prompt to that line
    # (no message), so get_session_messages on the fork showed only the last exchange.
    cwd, ask = _project_asker(fake_factory(), tmp_path, monkeypatch)
    sid = run_async(lambda: ask("index the repo layout"))[-1].session_id
    fork = sdk.fork_session(sid, directory=str(cwd)).session_id
    again = run_async(lambda: ask("and now the tests", resume=fork))
    assert again[-1].session_id == fork and again[-1].subtype == "success"
    said = [m for m in sdk.get_session_messages(fork, directory=str(cwd)) if m.type == "user"]
    assert [m.message["content"] for m in said] == ["index the repo layout", "and now the tests"]


def test_a_session_store_gets_the_conversation_and_resumes_it(fake_factory, tmp_path, monkeypatch):
    # With `session_store` the SDK passes --session-mirror and fills the store from the
    # CLI's transcript_mirror frames, keyed by the file the real CLI writes (under
    # ~/.claude/projects here: no CLAUDE_CONFIG_DIR; the fake writes its own file elsewhere).
    # The fake took the flag and sent no frame: the user's store stayed empty.
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the SDK's ~ too: not the user's
    fake = fake_factory()
    store = sdk.InMemorySessionStore()
    cwd = tmp_path / "project"
    cwd.mkdir()

    async def ask(prompt: str, **kw):
        options = fake.options(cwd=str(cwd), session_store=store, **kw)
        return [m async for m in sdk.query(prompt=prompt, options=options)]

    async def stored(sid: str) -> tuple[list, list]:
        listed = await sdk.list_sessions_from_store(store, directory=str(cwd))
        said = await sdk.get_session_messages_from_store(store, sid, directory=str(cwd))
        return listed, [m.message["content"] for m in said if m.type == "user"]

    sid = run_async(lambda: ask("index the repo layout"))[-1].session_id
    listed, said = run_async(lambda: stored(sid))
    assert [info.session_id for info in listed] == [sid]
    assert said == ["index the repo layout"]
    # Resumed from the store (the SDK lays it out for the CLI in a folder of its own).
    again = run_async(lambda: ask("and now the tests", resume=sid))
    assert again[-1].session_id == sid and again[-1].subtype == "success"
    assert run_async(lambda: stored(sid))[1] == ["index the repo layout", "and now the tests"]


def _run_with_hooks(fake, answers: dict, **kw) -> tuple[list, list[dict]]:
    """One query with a hook for each event in `answers` (what it returns); the inputs the
    hooks were called with, in order."""
    seen: list[dict] = []

    def hook(answer: dict):
        async def run(hook_input, tool_use_id, context):
            seen.append(dict(hook_input))
            return answer

        return run

    hooks = {e: [sdk.HookMatcher(matcher=None, hooks=[hook(a)])] for e, a in answers.items()}
    opts = fake.options(permission_mode="bypassPermissions", hooks=hooks, **kw)

    async def go():
        return [m async for m in sdk.query(prompt="tidy the imports", options=opts)]

    return run_async(go), seen


@pytest.mark.parametrize("event", ["PreToolUse", "PostToolUse"])
def test_a_tool_hooks_continue_false_ends_the_turn_after_the_tool(fake_factory, event):
    # The real CLI (2.1.x): the call goes on (a PreToolUse stop is no deny), its result
    # stands, then the turn ends with no reply and no Stop hooks: success, terminal_reason
    # hook_stopped. The fake went on to its reply and the Stop hooks.
    fake = fake_factory("ok:tool=Bash")
    answers = {event: {"continue_": False, "stopReason": "enough for now"}, "Stop": {}}
    msgs, seen = _run_with_hooks(fake, answers)
    assert [h["hook_event_name"] for h in seen] == [event]
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["SystemMessage", "AssistantMessage", "UserMessage", "ResultMessage"], kinds
    (tool_result,) = msgs[2].content
    assert isinstance(tool_result, sdk.ToolResultBlock) and not tool_result.is_error
    assert "fake Bash ran" in str(tool_result.content)
    result = msgs[-1]
    assert (result.subtype, result.is_error, result.terminal_reason) == (
        "success", False, "hook_stopped",
    )  # fmt: skip
    assert result.result == "" and result.stop_reason == "tool_use" and result.num_turns == 2


def test_a_prompt_hooks_continue_false_ends_the_turn_before_the_model(fake_factory):
    # The real CLI does not query the model: an informational warning "Operation stopped by
    # hook: REASON" (prompt_submit_outcome stopped_by_hook), then a success result with that
    # text and no turns. The fake answered the prompt.
    fake = fake_factory()
    answers = {"UserPromptSubmit": {"continue_": False, "stopReason": "not today"}, "Stop": {}}
    msgs, seen = _run_with_hooks(fake, answers)
    assert [h["hook_event_name"] for h in seen] == ["UserPromptSubmit"]
    assert not [m for m in msgs if isinstance(m, sdk.AssistantMessage)], msgs
    (warning,) = [m for m in msgs if isinstance(m, sdk.SystemMessage)
                  and m.subtype == "informational"]  # fmt: skip
    assert warning.data["content"] == "Operation stopped by hook: not today"
    assert warning.data["level"] == "warning" and warning.data["prevent_continuation"] is True
    outcome = warning.data["prompt_submit_outcome"]
    assert outcome == {"kind": "stopped_by_hook", "prompt_kept": True, "reason": "not today"}
    result = msgs[-1]
    assert (result.subtype, result.is_error, result.num_turns) == ("success", False, 0)
    assert result.result == warning.data["content"] and result.stop_reason is None


def test_a_stop_hooks_continue_false_is_the_results_terminal_reason(fake_factory):
    # The real CLI ends the turn with terminal_reason stop_hook_prevented; the reply stands.
    fake = fake_factory()
    msgs, seen = _run_with_hooks(fake, {"Stop": {"continue_": False, "stopReason": "done"}})
    assert [h["hook_event_name"] for h in seen] == ["Stop"]
    result = msgs[-1]
    assert (result.subtype, result.is_error) == ("success", False)
    assert result.terminal_reason == "stop_hook_prevented"
    assert result.result == msgs[-2].content[0].text


def test_a_prompt_hooks_block_keeps_the_prompt_from_the_model(fake_factory):
    # The real CLI: no model call; an informational warning "UserPromptSubmit operation
    # blocked by hook:\nREASON\nOriginal prompt: PROMPT" (prompt_submit_outcome
    # blocked_by_hook, prompt_kept false), a success result with that text and no turns.
    # The fake answered the prompt (README: "not acted on").
    fake = fake_factory()
    block = {"decision": "block", "reason": "no secrets"}
    msgs, seen = _run_with_hooks(fake, {"UserPromptSubmit": block, "Stop": {}})
    assert [h["hook_event_name"] for h in seen] == ["UserPromptSubmit"]
    assert not [m for m in msgs if isinstance(m, sdk.AssistantMessage)], msgs
    (warning,) = [m for m in msgs if isinstance(m, sdk.SystemMessage)
                  and m.subtype == "informational"]  # fmt: skip
    text = "UserPromptSubmit operation blocked by hook:\nno secrets\nOriginal prompt: "
    text += "tidy the imports"
    assert warning.data["content"] == text and warning.data["prevent_continuation"] is True
    outcome = warning.data["prompt_submit_outcome"]
    assert outcome == {"kind": "blocked_by_hook", "prompt_kept": False, "reason": "no secrets"}
    result = msgs[-1]
    assert (result.subtype, result.is_error, result.num_turns) == ("success", False, 0)
    assert result.result == text and result.stop_reason is None


def test_a_stop_hooks_block_makes_the_turn_go_on_with_its_reason(fake_factory):
    # The real CLI feeds the reason back ("Stop hook feedback:\nREASON", a synthetic user
    # message), the model replies again and the Stop hooks run again with stop_hook_active.
    # The fake ended the turn at once (README: "not acted on").
    fake = fake_factory()
    calls: list[bool] = []

    async def stop(hook_input, tool_use_id, context):
        calls.append(hook_input["stop_hook_active"])
        if hook_input["stop_hook_active"]:
            return {}
        return {"decision": "block", "reason": "add the tests too"}

    opts = fake.options(hooks={"Stop": [sdk.HookMatcher(hooks=[stop])]})

    async def go():
        return [m async for m in sdk.query(prompt="tidy the imports", options=opts)]

    msgs = run_async(go)
    assert calls == [False, True]
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["SystemMessage", "AssistantMessage", "UserMessage", "AssistantMessage",
                     "ResultMessage"], kinds  # fmt: skip
    assert msgs[2].content == "Stop hook feedback:\nadd the tests too"
    assert "add the tests too" in msgs[3].content[0].text
    result = msgs[-1]
    assert (result.subtype, result.is_error, result.num_turns) == ("success", False, 2)
    assert result.result == msgs[3].content[0].text


def test_stop_hook_blocks_past_the_cap_end_the_turn_with_a_warning(fake_factory):
    # A hook that always blocks: the real CLI heeds CLAUDE_CODE_STOP_HOOK_BLOCK_CAP blocks in a
    # row (8 by default), then warns and ends the turn. The fake never went on.
    fake = fake_factory()
    calls: list[bool] = []

    async def stop(hook_input, tool_use_id, context):
        calls.append(hook_input["stop_hook_active"])
        return {"decision": "block", "reason": "again"}

    opts = fake.options(
        hooks={"Stop": [sdk.HookMatcher(hooks=[stop])]},
        env={"CLAUDE_CODE_STOP_HOOK_BLOCK_CAP": "2"},
    )

    async def go():
        return [m async for m in sdk.query(prompt="tidy the imports", options=opts)]

    msgs = run_async(go)
    assert calls == [False, True, True]
    assert len([m for m in msgs if isinstance(m, sdk.AssistantMessage)]) == 3
    (warning,) = [m for m in msgs if isinstance(m, sdk.SystemMessage)
                  and m.subtype == "informational"]  # fmt: skip
    assert warning.data["content"].startswith("A hook blocked the turn from ending 3 consecutive")
    assert (msgs[-1].subtype, msgs[-1].is_error, msgs[-1].num_turns) == ("success", False, 3)


# (the hook's decision, the can_use_tool callback's answer or None without one, what the call
# did: "ran: TEXT in its result" / "denied: TEXT", whether the callback was asked)
PERMISSION_REQUEST_CASES = {
    "a hook's allow answers for the prompt": (
        {"behavior": "allow", "updatedInput": {"command": "touch by-hook.txt"}},
        "allow", "ran: touch by-hook.txt", False,
    ),
    "a hook's deny answers for the prompt": (
        {"behavior": "deny", "message": "not on a Friday"}, "allow", "denied: not on a Friday",
        False,
    ),
    "a deny without a message": ({"behavior": "deny"}, None, "denied: Permission denied by hook",
                                 False),
    "a hook that decides nothing: the callback": (None, "allow", "ran: touch", True),
    "nothing decides and nobody to ask": (None, None, "denied: you haven't granted it", False),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:can_use_tool will not be invoked")  # the SDK's, as meant
@pytest.mark.parametrize("case", list(PERMISSION_REQUEST_CASES))
def test_permission_request_hooks_decide_before_the_prompt(fake_factory, case):
    """A call that would prompt runs the PermissionRequest hooks first (real CLI 2.1.x, also in
    SDK sessions): an allow or deny from one answers for the prompt, can_use_tool is not asked.
    The fake never called them: the callback was asked, or with none the call was denied."""
    decision, answer, expected, asked_expected = PERMISSION_REQUEST_CASES[case]
    fake = fake_factory("ok:tool=Bash")
    seen: list[tuple[dict, str | None]] = []
    asked: list[str] = []

    async def permission_request(hook_input, tool_use_id, context):
        seen.append((dict(hook_input), tool_use_id))
        if decision is None:
            return {}
        return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}

    async def can_use_tool(tool_name, tool_input, context):
        asked.append(tool_name)
        return sdk.PermissionResultAllow()

    hooks = {"PermissionRequest": [sdk.HookMatcher(matcher="Bash", hooks=[permission_request])]}
    callback = {"can_use_tool": can_use_tool} if answer else {}
    opts = fake.options(hooks=hooks, **callback)

    async def go():
        async with sdk.ClaudeSDKClient(options=opts) as client:
            await client.query("list the files")
            return [m async for m in client.receive_response()]

    msgs = run_async(go)
    (use,) = [b for m in msgs if isinstance(m, sdk.AssistantMessage) for b in m.content
              if isinstance(b, sdk.ToolUseBlock)]  # fmt: skip
    (block,) = [b for m in msgs if isinstance(m, sdk.UserMessage) and isinstance(m.content, list)
                for b in m.content if isinstance(b, sdk.ToolResultBlock)]  # fmt: skip
    ((hook_input, tool_use_id),) = seen
    assert hook_input["hook_event_name"] == "PermissionRequest"
    assert hook_input["tool_name"] == "Bash" and hook_input["tool_input"] == use.input
    assert hook_input["permission_suggestions"][0]["type"] == "addRules"
    assert hook_input["session_id"] == msgs[-1].session_id and hook_input["transcript_path"]
    assert "tool_use_id" not in hook_input and tool_use_id == use.id  # the request names it
    assert bool(asked) is asked_expected, asked
    outcome, text = expected.split(": ", 1)
    assert text in str(block.content)
    if outcome == "ran":
        assert block.is_error is False and not msgs[-1].permission_denials
    else:
        assert block.is_error is True
        assert [d["tool_name"] for d in msgs[-1].permission_denials] == ["Bash"]


def test_permission_request_hooks_are_not_called_for_a_call_that_needs_no_prompt(fake_factory):
    # allowed_tools decides before any prompt: no PermissionRequest hook, as in the real CLI.
    fake = fake_factory("ok:tool=Bash")
    seen: list[str] = []

    async def permission_request(hook_input, tool_use_id, context):
        seen.append(hook_input["tool_name"])
        return {}

    opts = fake.options(
        allowed_tools=["Bash"],
        hooks={"PermissionRequest": [sdk.HookMatcher(hooks=[permission_request])]},
    )

    async def go():
        return [m async for m in sdk.query(prompt="list the files", options=opts)]

    msgs = run_async(go)
    assert msgs[-1].subtype == "success" and not msgs[-1].permission_denials
    assert seen == []


def test_a_task_call_runs_a_subagent_between_its_hooks(fake_factory):
    """The real CLI runs a subagent for a Task call: SubagentStart (matched on the agent type)
    before it, SubagentStop after it, between the call's PreToolUse and PostToolUse. The fake
    ran no subagent and called neither."""
    fake = fake_factory("ok:tool=Task")
    seen: list[tuple[dict, str | None]] = []

    async def record(hook_input, tool_use_id, context):
        seen.append((dict(hook_input), tool_use_id))
        return {}

    events = ("PreToolUse", "SubagentStart", "SubagentStop", "PostToolUse", "Stop")
    hooks = {e: [sdk.HookMatcher(hooks=[record])] for e in events}
    hooks["SubagentStart"].append(sdk.HookMatcher(matcher="Explore", hooks=[record]))  # not it
    opts = fake.options(permission_mode="bypassPermissions", hooks=hooks)

    async def go():
        return [m async for m in sdk.query(prompt="survey the tests", options=opts)]

    msgs = run_async(go)
    assert msgs[-1].subtype == "success"
    assert [h["hook_event_name"] for h, _ in seen] == list(events)
    (use,) = [b for m in msgs if isinstance(m, sdk.AssistantMessage) for b in m.content
              if isinstance(b, sdk.ToolUseBlock)]  # fmt: skip
    (start, start_id), (stop, stop_id) = seen[1], seen[2]
    assert start["agent_type"] == stop["agent_type"] == use.input["subagent_type"]
    assert start["agent_id"] == stop["agent_id"] and len(start["agent_id"]) == 7
    assert "permission_mode" not in start and stop["permission_mode"] == "bypassPermissions"
    assert start["session_id"] == stop["session_id"] == msgs[-1].session_id
    assert use.id not in (start_id, stop_id)  # each names an id of its own
    assert stop["stop_hook_active"] is False and stop["last_assistant_message"]
    path = Path(stop["agent_transcript_path"])
    assert path.name == f"agent-{stop['agent_id']}.jsonl"
    assert path.parent.parts[-2:] == (msgs[-1].session_id, "subagents")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(x["type"], x["isSidechain"], x["agentId"]) for x in lines] == [
        ("user", True, stop["agent_id"]), ("assistant", True, stop["agent_id"])
    ]  # fmt: skip
    assert lines[0]["message"]["content"] == use.input["prompt"]
    assert lines[1]["message"]["content"][0]["text"] == stop["last_assistant_message"]
