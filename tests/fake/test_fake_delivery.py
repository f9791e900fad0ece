"""Launch settings delivered in the initialize request (fake_claude/delivery.py), as the TS SDK
>= 0.3.333 sends MCP servers by default (and settings, denied tools, managed settings on
request): read under --await-initialize, through the same code as their flags, and confirmed in
the initialize response. The fake before answered none of them, so that SDK ended the session."""

from __future__ import annotations

import json

import psutil
import pytest
from fake_helpers import SDK_ARGV, alive, wait_for

from fake_claude import delivery
from fake_claude.args import parse
from fake_claude.mcp_server import server_argv
from fake_claude.session import DELIVERABLE

AWAIT = [*SDK_ARGV, "--await-initialize"]
DENY_BASH = {"permissions": {"deny": ["Bash"]}}
NO_SUCH_BASH = "No such tool available: Bash"


def server(*flags: str) -> dict:
    command, *args = server_argv(*flags)
    return {"command": command, "args": args}


def initialize(fake, **fields) -> dict:
    """Send an initialize request holding these fields; its answer's response."""
    answer = fake.control("init", {"subtype": "initialize", **fields})
    assert answer["subtype"] == "success", answer
    return answer["response"]


def servers_of(fake) -> list[dict]:
    return fake.records("start", role="mcp-server", parent_pid=fake.pid)


def tool_result(out: list[dict]) -> dict:
    (block,) = [
        b for msg in out if msg["type"] == "user" for b in msg["message"]["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]  # fmt: skip
    return block


def end_ok(fake) -> None:
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_the_argv_parser_takes_the_launch_flags_bare_or_with_their_value() -> None:
    a = parse(["--await-initialize", "hello", "--managed-settings-in-initialize", "x",
               "--initialize-fields", "settings,disallowedTools",
               "--managed-settings", "{}"])  # fmt: skip
    assert a.flags["--await-initialize"] is True and a.flags["--managed-settings-in-initialize"]
    assert a.positional == ["hello", "x"]
    assert a.value("--initialize-fields") == "settings,disallowedTools"
    assert delivery.awaited(a) == {
        "mcpServers", "plugins", "settings", "disallowedTools", "managedSettings"
    }  # fmt: skip
    assert delivery.awaited(parse(["--initialize-fields=settings"])) == set()
    assert set(DELIVERABLE) == set(delivery.CONFIRMATIONS)


def test_what_a_request_delivers_and_confirms() -> None:
    launch = parse(["--await-initialize", "--initialize-fields=disallowedTools"])
    request = {"mcpServers": {"a": {}}, "disallowedTools": ["Bash", "Read(x)"],
               "settings": DENY_BASH, "plugins": [{"type": "local", "path": "/p"}]}  # fmt: skip
    got = delivery.read(request, launch, first=True)
    assert got.flags == {"--disallowedTools": "Bash,Read(x)"}  # settings not named: not read
    assert got.mcp_servers == {"a": {}}
    assert got.confirmations == {
        "mcp_servers_applied": True, "disallowed_tools_applied": True,
        "settings_applied": False, "plugins_applied": False,
    }  # fmt: skip
    # A repeated initialize reads nothing; neither does a launch without --await-initialize.
    for later in (delivery.read(request, launch, first=False),
                  delivery.read(request, parse([]), first=True)):  # fmt: skip
        assert later.flags == {} and later.mcp_servers is None
        assert set(later.confirmations.values()) == {False}
    assert delivery.read(
        {"mcpServers": ["a"]}, parse(["--await-initialize"]), True
    ).confirmations == {"mcp_servers_applied": False}
    with pytest.raises(delivery.Unusable, match="disallowedTools"):
        delivery.read({"disallowedTools": "Bash"}, launch, first=True)


def test_mcp_servers_delivered_are_the_fakes_children_as_from_mcp_config(spawn) -> None:
    fake = spawn("ok:tool=mcp__echo__pid", args=[*AWAIT, "--allowedTools", "mcp__echo__pid"])
    answer = initialize(fake, mcpServers={"echo": server()})
    assert answer["mcp_servers_applied"] is True
    assert "settings_applied" not in answer  # only what the request held is confirmed
    (record,) = wait_for(lambda: servers_of(fake), "the delivered server's start record")
    assert psutil.Process(record["pid"]).ppid() == fake.pid  # the fake's child, as from argv
    init, out = fake_turn(fake)
    assert init["mcp_servers"] == [{"name": "echo", "status": "connected"}]
    assert tool_result(out)["content"] == str(record["pid"])
    status = fake.control("st", {"subtype": "mcp_status"})["response"]["mcpServers"]
    assert [(s["name"], s["status"]) for s in status] == [("echo", "connected")]
    end_ok(fake)
    assert not alive(record["pid"]), "the fake left its MCP server running"


def fake_turn(fake, prompt: str = "which process are you") -> tuple[dict, list[dict]]:
    out = fake.turn(prompt)
    return next(m for m in out if m.get("subtype") == "init"), out


def test_a_name_in_both_is_the_delivered_server_s(spawn) -> None:
    # The request's servers are one more --mcp-config item, after argv's: they win a name.
    config = json.dumps({"mcpServers": {"shared": server(), "argv": server()}})
    fake = spawn("ok", args=[*AWAIT, "--mcp-config", config])
    assert initialize(fake, mcpServers={"shared": server("--ignore-sigterm")})[
        "mcp_servers_applied"
    ]
    records = wait_for(lambda: len(servers_of(fake)) == 2 and servers_of(fake), "two servers")
    argv = {r["scenario"].removeprefix("mcp-server:"): r["argv"] for r in records}
    assert argv["shared"][-1] == "--ignore-sigterm" and argv["argv"][-1] != "--ignore-sigterm"
    end_ok(fake)


def test_without_await_initialize_nothing_delivered_is_read(spawn) -> None:
    fake = spawn("ok:tool=Bash", args=[*SDK_ARGV, "--permission-mode", "bypassPermissions"])
    answer = initialize(fake, mcpServers={"echo": server()}, settings=DENY_BASH,
                        plugins=[{"type": "local", "path": "/nowhere"}])  # fmt: skip
    assert (answer["mcp_servers_applied"], answer["settings_applied"]) == (False, False)
    assert answer["plugins_applied"] is False
    init, out = fake_turn(fake)
    assert init["mcp_servers"] == [] and "Bash" in init["tools"]
    assert tool_result(out)["is_error"] is False
    assert servers_of(fake) == []
    end_ok(fake)


# field -> (its argv form, the launch flags that read it from initialize)
FIELDS = {
    "settings": (["--settings", json.dumps(DENY_BASH)], ["--initialize-fields=settings"]),
    "disallowedTools": (["--disallowedTools", "Bash"], ["--initialize-fields", "disallowedTools"]),
    "managedSettings": (["--managed-settings", json.dumps(DENY_BASH)],
                        ["--managed-settings-in-initialize"]),
}  # fmt: skip
VALUES = {"settings": DENY_BASH, "disallowedTools": ["Bash"], "managedSettings": DENY_BASH}


@pytest.mark.parametrize("how", ["argv", "initialize"])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_deny_rule_delivered_either_way_takes_the_tool_away(spawn, field, how) -> None:
    argv_form, launch = FIELDS[field]
    mode = ["--permission-mode", "bypassPermissions"]  # would run Bash but for the rule
    args = [*SDK_ARGV, *mode, *argv_form] if how == "argv" else [*AWAIT, *mode, *launch]
    fake = spawn("ok:tool=Bash", args=args)
    answer = initialize(fake, **({field: VALUES[field]} if how == "initialize" else {}))
    if how == "initialize":
        assert answer[delivery.CONFIRMATIONS[field]] is True
    init, out = fake_turn(fake, "make a file")
    assert "Bash" not in init["tools"]
    assert NO_SUCH_BASH in tool_result(out)["content"]
    end_ok(fake)


def test_managed_settings_win_the_mode_over_settings(spawn) -> None:
    launch = ["--initialize-fields=settings", "--managed-settings-in-initialize"]
    fake = spawn("ok", args=[*AWAIT, *launch])
    answer = initialize(
        fake,
        settings={"permissions": {"defaultMode": "acceptEdits", "allow": ["Bash"]}},
        managedSettings={"permissions": {"defaultMode": "plan"}},
    )
    assert answer["settings_applied"] and answer["managed_settings_applied"]
    init, _ = fake_turn(fake)
    assert init["permissionMode"] == "plan"
    end_ok(fake)


def test_a_named_field_the_request_lacks_ends_the_fake_with_code_1(spawn) -> None:
    fake = spawn("ok", args=[*AWAIT, "--initialize-fields=settings"])
    fake.send({"type": "control_request", "request_id": "init",
               "request": {"subtype": "initialize"}})  # fmt: skip
    assert fake.wait_exit() == 1
    wait_for(lambda: b"settings" in bytes(fake.stderr), "the reason on stderr")
    assert fake.read_message() is None  # no answer: the process is gone


def test_a_field_flag_without_await_initialize_is_refused_at_start(spawn) -> None:
    fake = spawn("ok", args=[*SDK_ARGV, "--managed-settings-in-initialize"])
    assert fake.wait_exit() == 1
    wait_for(lambda: b"--await-initialize" in bytes(fake.stderr), "the refusal on stderr")


def test_a_prompt_before_any_initialize_starts_argvs_servers(spawn) -> None:
    config = json.dumps({"mcpServers": {"echo": server()}})
    fake = spawn("ok", args=[*AWAIT, "--mcp-config", config])
    init, _ = fake_turn(fake)
    assert init["mcp_servers"] == [{"name": "echo", "status": "connected"}]
    # Started up already: a later initialize's servers are not read.
    assert initialize(fake, mcpServers={"more": server()})["mcp_servers_applied"] is False
    assert [r["scenario"] for r in servers_of(fake)] == ["mcp-server:echo"]
    end_ok(fake)


def test_a_repeated_initialize_confirms_the_launch_set_and_reads_nothing(spawn) -> None:
    # The TS SDK's reinitialize() sends the launch fields again and checks settings_applied
    # (and the others) on every answer: a false there ended a healthy session. Its types say a
    # re-sent initialize naming the launch set reads true, anything else false.
    fake = spawn("ok", args=[*AWAIT, "--initialize-fields=settings"])
    launch = {"settings": DENY_BASH, "mcpServers": {"echo": server()}}
    first = initialize(fake, **launch)
    assert (first["settings_applied"], first["mcp_servers_applied"]) == (True, True)
    wait_for(lambda: servers_of(fake), "the delivered server's start record")
    again = initialize(fake, **launch)
    assert (again["settings_applied"], again["mcp_servers_applied"]) == (True, True)
    other = initialize(fake, settings={}, mcpServers={"more": server()})
    assert (other["settings_applied"], other["mcp_servers_applied"]) == (False, False)
    assert "plugins_applied" not in again
    init, _ = fake_turn(fake)
    assert "Bash" not in init["tools"]  # still the launch's rules, not the later request's
    assert [r["scenario"] for r in servers_of(fake)] == ["mcp-server:echo"]  # none started again
    end_ok(fake)
