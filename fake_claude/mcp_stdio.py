"""Stdio MCP servers from `--mcp-config`: children of the fake, as they are of the real CLI.

The real CLI starts every stdio server of its MCP config (`command`, `args`, `env`) as its own
child and speaks MCP to it over the child's stdin/stdout, one JSON-RPC message per line. So a
daemon that leaks its `claude` leaks the servers under it too, and the fake does the same: it
starts each server at its start, records it in the ledger (role `mcp-server`, so a census counts
it), connects before the first turn, and ends it when the fake leaves in order (exit_now): stdin
closed, then SIGTERM, then SIGKILL. A fake that dies (a crash, SIGKILL) leaves them to their own
devices; one that ignores stdin EOF keeps them, as the real CLI would.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fake_claude.ledger import Ledger

if TYPE_CHECKING:
    from fake_claude.context import Context
    from fake_claude.mcp import McpClients

# Each stage of the ending: a server that ignores its stdin's EOF gets SIGTERM after this, one
# that ignores SIGTERM gets SIGKILL after as long again.
END_STAGE_S = 0.5
METHOD_NOT_FOUND = -32601
IDLE_SLICE_S = 0.01  # how often stdin is looked at while a server works
MAX_LINE = 16 * 1024 * 1024  # a longer line is dropped: a flooding server cannot grow the fake


class StdioServer:
    """One stdio MCP server: its process, a reader thread, and JSON-RPC over its pipes."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Its log would fill a pipe nobody reads; the real CLI keeps it in its debug log.
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._answers: dict[Any, dict] = {}
        self._waiting: set[Any] = set()  # ids of requests sent and not given up on
        self._cond = threading.Condition()
        self._closed = False  # its stdout reached EOF
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read, name=f"mcp-{name}", daemon=True).start()

    # -- the Requester of McpClients ----------------------------------------------------------
    def request(
        self,
        body: dict,
        timeout: float | None = None,
        idle: Callable[[float], bool] | None = None,
        post: bool = False,
    ) -> dict:
        """{"mcp_response": reply} for a request, {} once a notification is sent, or
        {"_error": text}: the shape the SDK's answer to an `mcp_message` has. `timeout`:
        seconds (None: the connection timeout it was started with); `idle`: called (with 0:
        do not wait) every IDLE_SLICE_S while the answer is not in (the session handles what
        stdin holds there, and an interrupt raises out of it); `post`: send and never wait."""
        message = body.get("message") or {}
        if not self._send(message):
            return {"_error": f"server {self.name} is gone{self._exit_text()}"}
        if post or "id" not in message:
            return {}
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            try:
                while message["id"] not in self._answers:
                    left = deadline - time.monotonic()
                    if self._closed:
                        return {"_error": f"server {self.name} closed its stdout"
                                          f"{self._exit_text()}"}  # fmt: skip
                    if left <= 0:
                        return {"_error": f"no answer within {limit:g} s"}
                    if idle is not None:
                        self._cond.release()  # the reader thread may store the answer meanwhile
                        try:
                            reading = idle(0)  # what stdin holds now, without waiting
                        finally:
                            self._cond.acquire()
                        if not reading:  # stdin has ended: nothing can interrupt the wait now
                            idle = None
                        if message["id"] in self._answers:
                            break
                    # The answer wakes this at once; stdin is looked at again within a slice.
                    self._cond.wait(left if idle is None else min(left, IDLE_SLICE_S))
                return {"mcp_response": self._answers.pop(message["id"])}
            finally:
                self._waiting.discard(message["id"])

    def _send(self, message: dict) -> bool:
        data = (json.dumps(message) + "\n").encode()
        if "id" in message and "method" in message:
            with self._cond:  # before it goes out: the answer may come back at once
                self._waiting.add(message["id"])
        with self._write_lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):  # a broken pipe, or stdin already closed
                return False
        return True

    def _lines(self) -> Iterator[bytes]:
        """Its stdout's lines, each at most MAX_LINE (the rest of a longer one is dropped)."""
        assert self.proc.stdout is not None
        skipping = False
        while line := self.proc.stdout.readline(MAX_LINE):
            whole = line.endswith(b"\n")
            if not skipping:
                yield line
            skipping = not whole

    def _read(self) -> None:
        try:
            for line in self._lines():
                try:
                    msg = json.loads(line)
                except (ValueError, RecursionError):  # RecursionError: nested too deep
                    continue  # a server's stray print: the real CLI skips it too
                if not isinstance(msg, dict):
                    continue
                if "method" in msg and "id" in msg:
                    # The server asks us (sampling, roots...): the fake offers none of that.
                    self._send({"jsonrpc": "2.0", "id": msg["id"], "error": {
                        "code": METHOD_NOT_FOUND, "message": "Method not found"}})  # fmt: skip
                elif "id" in msg:
                    with self._cond:
                        rid = msg["id"]
                        # A late or unasked answer (or an id no request has) is dropped.
                        if isinstance(rid, (int, str)) and rid in self._waiting:
                            self._answers[rid] = msg
                            self._cond.notify_all()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _exit_text(self) -> str:
        code = self.proc.poll()
        return "" if code is None else f" (exit code {code})"

    # -- ending --------------------------------------------------------------------------------
    def end(self) -> None:
        """stdin EOF, then SIGTERM, then SIGKILL, END_STAGE_S apart, until it has exited."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass
        for stage in (self.proc.terminate, self.proc.kill, None):
            try:
                self.proc.wait(END_STAGE_S)
                return
            except subprocess.TimeoutExpired:
                if stage is None:
                    return  # unkillable (a process in uninterruptible sleep): let it be
                try:
                    stage()
                except OSError:
                    return


def stdio_entries(servers: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """({name: entry} of the stdio servers, {name: error} of entries the fake cannot start)."""
    entries: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            continue
        kind = entry.get("type", "stdio")
        if kind == "sdk":
            continue  # the SDK's own: reached over the control channel (mcp.py)
        if kind != "stdio":
            errors[str(name)] = f"the fake does not connect to {kind} MCP servers"
            continue
        command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
        if not isinstance(command, str) or not command:
            errors[str(name)] = "no command"
        elif not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            errors[str(name)] = "args must be a list of strings"
        elif not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            errors[str(name)] = "env must map names to strings"
        else:
            entries[str(name)] = entry
    return entries, errors


def start(name: str, entry: dict, ledger: Ledger, timeout: float) -> StdioServer:
    """Start one server (OSError if it cannot be) and record it in the ledger."""
    argv = [entry["command"], *entry.get("args", [])]
    env = {**os.environ, **entry.get("env", {})}
    server = StdioServer(name, argv, env, timeout)
    if ledger.path:
        from fake_claude.identity import ledger_fields

        ledger.write(
            "start",
            pid=server.proc.pid,  # written for it: the server is not a fake and keeps no ledger
            ppid=os.getpid(),
            **ledger_fields(server.proc.pid),
            argv=argv,
            scenario=f"mcp-server:{name}",
            role="mcp-server",
            parent_pid=os.getpid(),
        )
    return server


def start_configured(
    ctx: Context, clients: McpClients, timeout: float, delivered: dict | None = None
) -> None:
    """Start the stdio servers of the user's config, of --mcp-config and of `delivered` (the
    initialize request's mcpServers in place of one more --mcp-config: delivery.py), each
    winning a name it shares with those before it, as clients of `clients`; they are ended
    when the fake leaves in order."""
    from fake_claude.lifecycle import at_exit
    from fake_claude.mcp import config_servers

    config, user_config = ctx.mcp_configs()
    servers = {**config_servers(user_config), **config_servers(config), **(delivered or {})}
    entries, errors = stdio_entries(servers)
    started: list[StdioServer] = []
    if entries:
        # Before the first start: a SIGTERM half-way through ends those started so far.
        at_exit(lambda: end_all(started))
    for name, entry in entries.items():
        server = start_into(clients, name, entry, ctx.ledger, timeout)
        if server is not None:
            started.append(server)
    for name, error in errors.items():
        clients.add_failed(name, {"name": name}, error)


def start_into(
    clients: McpClients, name: str, entry: dict, ledger: Any, timeout: float
) -> StdioServer | None:
    """Start one stdio server as a client of `clients`; None if it could not be started (it
    is then a failed server, as the CLI's: not found, not executable)."""
    shown = {"type": "stdio", "command": entry["command"], "args": entry.get("args", [])}
    try:
        server = start(name, entry, ledger, timeout)
    except OSError as exc:
        clients.add_failed(name, shown, f"spawn {entry['command']}: {exc}", entry=entry)
        return None
    clients.add(name, server.request, shown, retry=False, process=server, entry=entry)
    return server


def end_all(servers: list[StdioServer]) -> None:
    """End every server at once: each stage waits for all of them, not one after another."""
    threads = [threading.Thread(target=s.end, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * END_STAGE_S)
