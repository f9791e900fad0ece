"""Stdio MCP servers in `--mcp-config`: the fake starts each as its child (the ledger names it),
connects, calls its tools, and ends it when it leaves in order; a fake killed outright leaves it
behind, where only a server that exits at stdin EOF goes by itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import psutil
import pytest
from fake_helpers import SDK_ARGV, alive, wait_for

import proctree
from fake_claude.ledger import read_ledger
from fake_claude.mcp_server import mcp_config
from fake_claude.shim import write_shim

SERVER = [sys.executable, "-m", "fake_claude.mcp_server"]
POSIX = sys.platform != "win32"


def config(**servers: list[str]) -> str:
    """--mcp-config text: one stdio server per name, with these extra server flags."""
    return json.dumps({"mcpServers": {
        name: {"command": SERVER[0], "args": [*SERVER[1:], *flags]}
        for name, flags in servers.items()}})  # fmt: skip


def server_pids(fake, count: int) -> dict[str, int]:
    """{server name: pid} from the fake's ledger, once all `count` are recorded."""
    # The fakes of one test share a ledger: this one's servers are those it is the parent of.
    records = wait_for(
        lambda: (
            (r := fake.records("start", role="mcp-server", parent_pid=fake.pid))
            and len(r) >= count
            and r
        ),
        f"{count} mcp-server start records",
    )
    return {r["scenario"].removeprefix("mcp-server:"): r["pid"] for r in records}


def turn_init(fake, prompt: str) -> tuple[dict, list[dict]]:
    """One turn: (its system/init message, all its messages)."""
    out = fake.turn(prompt)
    return next(m for m in out if m.get("subtype") == "init"), out


def end_ok(fake) -> None:
    """Close the fake's stdin: it leaves in order, with exit code 0."""
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_a_server_is_started_connected_called_and_ended(spawn) -> None:
    fake = spawn(
        "ok:tool=mcp__echo__pid",
        args=[*SDK_ARGV, "--allowedTools", "mcp__echo__pid", "--mcp-config", config(echo=[])],
    )
    server_pids(fake, 1)
    (record,) = fake.records("start", role="mcp-server")
    proc = psutil.Process(record["pid"])
    # The census's identity: the fake wrote its child's (pid, create_time) as psutil sees them.
    assert proc.create_time() == pytest.approx(record["create_time"], abs=0.02)
    assert proc.ppid() == fake.pid and record["parent_pid"] == fake.pid
    fake.initialize()
    init, out = turn_init(fake, "which process are you")
    assert init["mcp_servers"] == [{"name": "echo", "status": "connected"}]
    assert {"mcp__echo__echo", "mcp__echo__pid"} <= set(init["tools"])
    (block,) = [b for m in out if m["type"] == "user" for b in m["message"]["content"]]
    assert block["content"] == str(record["pid"]) and block["is_error"] is False
    end_ok(fake)
    assert not alive(record["pid"]), "the fake left its MCP server running"


def test_a_stubborn_server_is_ended_in_stages(spawn) -> None:
    flags = ["--ignore-eof", "--ignore-sigterm"]
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config", config(stubborn=flags, polite=[])])
    pids = server_pids(fake, 2)
    fake.initialize()
    fake.turn("hello")
    end_ok(fake)
    # EOF, then SIGTERM, then SIGKILL: both are gone by the time the fake has exited.
    assert [p for p in pids.values() if alive(p)] == []


@pytest.mark.skipif(not POSIX, reason="SIGTERM is TerminateProcess on Windows")
def test_sigterm_to_the_fake_ends_its_servers(spawn) -> None:
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config", config(echo=["--ignore-eof"])])
    pids = server_pids(fake, 1)
    fake.initialize()
    fake.signal(signal.SIGTERM)
    assert fake.wait_exit() == 128 + signal.SIGTERM
    assert not alive(pids["echo"])


@pytest.mark.skipif(not POSIX, reason="orphans are reparented on POSIX")
def test_a_fake_killed_outright_leaves_a_server_that_ignores_eof(spawn) -> None:
    # The bug reports' orphans: the CLI dies without ending its servers. One that exits at
    # stdin EOF goes by itself; one that does not is left running, reparented.
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config",
                             config(polite=[], deaf=["--ignore-eof"])])  # fmt: skip
    pids = server_pids(fake, 2)
    deaf = psutil.Process(pids["deaf"])
    fake.signal(signal.SIGKILL)
    fake.wait_exit()
    wait_for(lambda: not alive(pids["polite"]), "the polite server to exit at EOF")
    wait_for(lambda: deaf.ppid() != fake.pid, "the deaf server to be reparented")
    assert deaf.is_running() and deaf.status() != psutil.STATUS_ZOMBIE
    # (The spawn fixture's group kill ends it: it stayed in the fake's process group.)


def test_a_server_that_never_answers_fails_after_mcp_timeout(spawn, monkeypatch) -> None:
    monkeypatch.setenv("MCP_TIMEOUT", "300")
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config", config(mute=["--silent"])])
    pids = server_pids(fake, 1)
    fake.initialize()
    init, out = turn_init(fake, "anyone there")
    assert init["mcp_servers"] == [{"name": "mute", "status": "failed"}]
    assert out[-1]["subtype"] == "success"
    end_ok(fake)
    assert not alive(pids["mute"])


def test_entries_the_fake_cannot_start_are_failed_servers(spawn, tmp_path) -> None:
    servers = {
        "missing": {"command": str(tmp_path / "no-such-server")},
        "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp"},
        "bad-args": {"command": SERVER[0], "args": "-m fake_claude.mcp_server"},
    }
    fake = spawn("ok", args=[*SDK_ARGV, "--mcp-config", json.dumps({"mcpServers": servers})])
    fake.initialize()
    fake.send({"type": "control_request", "request_id": "s1",
               "request": {"subtype": "mcp_status"}})  # fmt: skip
    reply = fake.read_until(lambda m: m.get("type") == "control_response", "mcp_status")
    status = {s["name"]: s for s in reply["response"]["response"]["mcpServers"]}
    assert {s["status"] for s in status.values()} == {"failed"}
    assert "no-such-server" in status["missing"]["error"]
    assert "http" in status["remote"]["error"]
    assert "args" in status["bad-args"]["error"]
    assert fake.records("start", role="mcp-server") == []
    end_ok(fake)


def test_the_users_mcp_servers_unless_strict(spawn, tmp_path) -> None:
    # The fake's stand-in for ~/.claude.json: loaded as the real CLI loads the user's MCP
    # config, and left alone under --strict-mcp-config (what claude-mem 13.x passes).
    user = tmp_path / "user-mcp.json"
    user.write_text(json.dumps(mcp_config(2)))
    settings = {"user_mcp_config": str(user)}
    loose = spawn("ok", extra_settings=settings)
    assert sorted(server_pids(loose, 2)) == ["mcp1", "mcp2"]
    # --mcp-config's own servers come on top (and win a name both use).
    entry = {"command": SERVER[0], "args": SERVER[1:]}
    mine = json.dumps({"mcpServers": {"mcp2": entry, "extra": entry}})
    both = spawn("ok", args=[*SDK_ARGV, "--mcp-config", mine], extra_settings=settings)
    assert sorted(server_pids(both, 3)) == ["extra", "mcp1", "mcp2"]
    mcp = both.records("start", role="mcp-server", parent_pid=both.pid)
    argv = {r["scenario"]: r["argv"] for r in mcp}
    assert argv["mcp-server:mcp2"] == SERVER and argv["mcp-server:mcp1"] != SERVER
    strict = spawn("ok", args=[*SDK_ARGV, "--strict-mcp-config"], extra_settings=settings)
    strict.initialize()
    init, _ = turn_init(strict, "hi")
    assert init["mcp_servers"] == []
    assert strict.records("start", role="mcp-server", parent_pid=strict.pid) == []
    for fake in (loose, both, strict):
        end_ok(fake)


NOISY = r"""
import json, sys
from fake_claude.mcp_server import answer
for line in sys.stdin.buffer:
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        out = sys.stdout.buffer
        out.write(b"x" * (17 * 1024 * 1024) + b"\n")  # over the fake's line cap
        out.write(b"starting up...\n" + b"[" * 100000 + b"\n")  # a print; nested too deep
        out.write(json.dumps({"jsonrpc": "2.0", "id": [1], "result": {}}).encode() + b"\n")
        out.write(json.dumps({"jsonrpc": "2.0", "id": 999, "result": {}}).encode() + b"\n")
        out.write(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "roots/list"}).encode() + b"\n")
    reply = answer(msg)
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
"""


def test_a_noisy_server_still_connects(spawn, tmp_path) -> None:
    # Junk the fake must read past: an over-long line, a stray print, JSON nested too deep,
    # answers nobody asked for, and a request of its own (answered "method not found").
    script = tmp_path / "noisy_server.py"
    script.write_text(NOISY)
    config = json.dumps({"mcpServers": {"noisy": {"command": sys.executable,
                                                  "args": [str(script)]}}})  # fmt: skip
    fake = spawn("ok:tool=mcp__noisy__echo", args=[*SDK_ARGV, "--mcp-config", config])
    fake.initialize()
    init, out = turn_init(fake, "hello")
    assert init["mcp_servers"] == [{"name": "noisy", "status": "connected"}]
    assert out[-1]["subtype"] == "success"
    end_ok(fake)


def test_print_mode_starts_connects_and_ends_its_servers(tmp_path, run_id) -> None:
    # `claude -p` in scripts and cron jobs: the bug reports' orphans of scripted runs. The fake
    # starts the servers, connects them before its turn, and ends them before it exits.
    ledger = tmp_path / "ledger.jsonl"
    shim = write_shim(tmp_path / "bin", {"run_id": run_id, "ledger": str(ledger),
                                         "user_mcp_config": json.dumps(mcp_config(1))})  # fmt: skip
    flags = ["--ignore-eof", "--ignore-sigterm"]
    mine = json.dumps({"mcpServers": {"stubborn": {"command": SERVER[0],
                                                   "args": [*SERVER[1:], *flags]}}})  # fmt: skip
    cmd = [str(shim), "-p", "--output-format", "stream-json", "--verbose", "--mcp-config", mine]
    try:
        done = subprocess.run([*cmd, "hello"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        init = json.loads(done.stdout.splitlines()[0])
        assert init["mcp_servers"] == [{"name": "mcp1", "status": "connected"},
                                       {"name": "stubborn", "status": "connected"}]  # fmt: skip
        assert {"mcp__mcp1__echo", "mcp__stubborn__pid"} <= set(init["tools"])
        assert len(_servers_in(ledger)) == 2
        alive = [r["scenario"] for r in _servers_in(ledger) if proctree.is_alive(_id(r))]
        assert alive == [], "the fake left these MCP servers running"
    finally:  # these carry no run id: end any that a failure left, by identity
        for r in _servers_in(ledger):
            if (proc := _id(r).process()) is not None:
                proc.kill()


def _servers_in(ledger) -> list[dict]:
    if not ledger.exists():
        return []
    return [
        r for r in read_ledger(ledger) if r["event"] == "start" and r.get("role") == "mcp-server"
    ]


def _id(record: dict) -> proctree.ProcId:
    return proctree.ProcId(record["pid"], record["create_time"])


def test_a_server_toggled_off_offers_no_tools_until_toggled_on(spawn) -> None:
    """mcp_toggle(enabled=false) answered success and changed nothing: its status stayed
    connected and its tools were still offered and called."""
    fake = spawn(
        "ok:tool=mcp__echo__pid",
        args=[*SDK_ARGV, "--allowedTools", "mcp__echo", "--mcp-config", config(echo=[])],
    )
    server_pids(fake, 1)
    fake.initialize()
    init, _ = turn_init(fake, "first")
    assert "mcp__echo__pid" in init["tools"]
    off = {"subtype": "mcp_toggle", "serverName": "echo", "enabled": False}
    assert fake.control("t1", off)["subtype"] == "success"
    (status,) = fake.control("s1", {"subtype": "mcp_status"})["response"]["mcpServers"]
    assert status["status"] == "disabled" and "tools" not in status
    init, out = turn_init(fake, "second")
    assert init["mcp_servers"] == [{"name": "echo", "status": "disabled"}]
    assert not [t for t in init["tools"] if t.startswith("mcp__echo__")]
    (block,) = [b for m in out if m["type"] == "user" for b in m["message"]["content"]]
    assert "No such tool available" in block["content"] and block["is_error"] is True
    on = {**off, "enabled": True}
    assert fake.control("t2", on)["subtype"] == "success"
    init, _ = turn_init(fake, "third")
    assert init["mcp_servers"] == [{"name": "echo", "status": "connected"}]
    end_ok(fake)


def test_set_mcp_servers_replaces_what_it_may_and_ends_what_it_drops(spawn) -> None:
    # TS Query.setMcpServers: the fake refused it ("Unsupported control request subtype").
    # A stdio server a call sets is the fake's child like any other, and one a later call
    # leaves out is ended at once; one from --mcp-config stays unless a call named it.
    fake = spawn(args=[*SDK_ARGV, "--mcp-config", config(base=[])])
    server_pids(fake, 1)
    fake.initialize()
    entry = {"command": SERVER[0], "args": SERVER[1:]}
    first = fake.control("s1", {"subtype": "mcp_set_servers", "servers": {"one": entry}})
    assert first["subtype"] == "success", first
    assert first["response"] == {"added": ["one"], "removed": [], "errors": {}}
    one = server_pids(fake, 2)["one"]
    assert psutil.Process(one).ppid() == fake.pid
    status = fake.control("st", {"subtype": "mcp_status"})["response"]["mcpServers"]
    assert {s["name"]: s["status"] for s in status} == {"base": "pending", "one": "connected"}
    bad = {"two": {"command": "/no/such/server"}, "three": {"type": "sse", "url": "http://x"}}
    second = fake.control("s2", {"subtype": "mcp_set_servers", "servers": {"one": entry, **bad}})
    answer = second["response"]
    assert answer["added"] == ["two"] and answer["removed"] == []
    assert set(answer["errors"]) == {"two", "three"}, answer
    assert alive(one), "a server given again as it was is kept"
    third = fake.control("s3", {"subtype": "mcp_set_servers", "servers": {}})
    assert third["response"]["removed"] == ["one", "two"], third
    wait_for(lambda: not alive(one), "the dropped server to be ended")
    init, _ = turn_init(fake, "what is left")
    assert [s["name"] for s in init["mcp_servers"]] == ["base"]
    end_ok(fake)
