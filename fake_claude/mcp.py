"""MCP servers: SDK ones, tools that live in the SDK's host process, reached through the control
channel (`mcp_message` requests carrying JSON-RPC), as the real CLI reaches them; and stdio ones,
the fake's own children (mcp_stdio.py), reached over their pipes with the same JSON-RPC.

The servers are named in `--mcp-config` (`"type": "sdk"`), in the initialize request's
`mcpServers` when it stands in for `--mcp-config` (delivery.py) or, from the TS SDK, in its
`sdkMcpServers`. The fake connects to each before its first turn (the MCP
handshake, then `tools/list`), reports them in system/init and `mcp_status`, and a turn whose
tool is `mcp__SERVER__TOOL` (scenario `ok:tool=...`) calls it with `tools/call`, so the host's
own tool code runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection
from typing import Any

PROTOCOL_VERSION = "2025-06-18"
MCP_TIMEOUT_S = 30.0  # a silent MCP server counts as failed after this
MCP_TOOL_TIMEOUT_S = 1e5  # the real CLI's 1e8 ms: "effectively infinite"
CANCEL_REASON = "interrupted"  # the fake's own words: the real CLI's were not established


def _ms_variable(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return int(raw) / 1000 if raw.isascii() and raw.isdigit() and int(raw) > 0 else default


def mcp_timeout() -> float:
    """MCP_TIMEOUT (ms), as the real CLI's: how long a server may take to connect (its
    handshake and tool list)."""
    return _ms_variable("MCP_TIMEOUT", MCP_TIMEOUT_S)


def tool_timeout() -> float:
    """MCP_TOOL_TIMEOUT (ms), as the real CLI's: how long a tool call may run (MCP_TIMEOUT
    does not bound it)."""
    return _ms_variable("MCP_TOOL_TIMEOUT", MCP_TOOL_TIMEOUT_S)


# request(body, timeout=None, idle=None, post=False) -> the SDK's response body ({"_error":
# text} on an error response). `timeout`: seconds (None: the server's connection timeout);
# `idle(seconds)`: what to do while waiting (the session reads stdin, so an interrupt ends the
# wait by raising; False once there is no stdin to read); `post`: send without waiting.
Requester = Callable[..., dict]
Idle = Callable[[float], bool]


class McpError(Exception):
    pass


def sdk_server_names(
    mcp_config: str | None, init_request: dict | None = None, delivered: dict | None = None
) -> list[str]:
    """SDK server names from --mcp-config (JSON text or a file), the servers the initialize
    request delivers in its place (`delivered`, which win a name both use: delivery.py) and
    the initialize request's sdkMcpServers."""
    names: list[str] = []
    for name, entry in {**config_servers(mcp_config), **(delivered or {})}.items():
        if isinstance(entry, dict) and entry.get("type") == "sdk":
            names.append(str(name))
    listed = (init_request or {}).get("sdkMcpServers")
    if isinstance(listed, dict):
        listed = list(listed)
    if isinstance(listed, list):
        names += [str(n) for n in listed if isinstance(n, str) and n not in names]
    return names


def config_servers(mcp_config: str | None) -> dict:
    if not mcp_config:
        return {}
    text = mcp_config
    if not mcp_config.lstrip().startswith("{") and os.path.isfile(mcp_config):
        try:
            with open(mcp_config, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return {}
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    servers = config.get("mcpServers") if isinstance(config, dict) else None
    return servers if isinstance(servers, dict) else {}


class McpClients:
    """The CLI's side of its MCP servers for one session: the SDK's (over the control channel)
    and stdio ones (mcp_stdio.py), each reached through its own Requester."""

    def __init__(self, version: str) -> None:
        self._version = version
        self._next_id = 0
        # name -> (request or None when it could not even start, config, tried again per turn)
        self._servers: dict[str, tuple[Requester | None, dict, bool]] = {}
        self._processes: dict[str, Any] = {}  # name -> its StdioServer (a child of ours)
        self._entries: dict[str, dict] = {}  # name -> the stdio entry it was started from
        self.status: dict[str, dict] = {}  # name -> {"status": ..., "error"?: ...}
        self.tools: dict[str, list[dict]] = {}  # name -> tools/list entries
        self.disabled: set[str] = set()  # turned off by mcp_toggle: no tools, status "disabled"
        # The session's stdin, read while a tool call runs (not in a handshake, which a control
        # request may start: its answer must not wait on an interrupt read inside it).
        self.idle: Idle | None = None

    def has(self, name: str) -> bool:
        return name in self._servers

    def toggle(self, name: str, enabled: bool) -> None:
        """mcp_toggle: a server off offers no tools and reads "disabled" until it is on."""
        if enabled:
            self.disabled.discard(name)
        elif self.has(name):
            self.disabled.add(name)

    def _status(self, name: str) -> dict:
        if name in self.disabled:
            return {"status": "disabled"}
        status = self.status.get(name, {"status": "pending"})
        process = self._processes.get(name)
        if status.get("status") == "connected" and process is not None:
            code = process.proc.poll()
            if code is not None:  # its process died: the real CLI sees the transport close
                return {"status": "failed", "error": f"server exited with code {code}"}
        return status

    def add(
        self,
        name: str,
        request: Requester | None,
        config: dict,
        *,
        retry: bool,
        process: Any = None,
        entry: dict | None = None,
    ) -> None:
        if name in self._servers:
            return  # the first one named wins
        self._servers[name] = (request, config, retry)
        if process is not None:
            self._processes[name] = process
        if entry is not None:
            self._entries[name] = entry

    def add_failed(self, name: str, config: dict, error: str, entry: dict | None = None) -> None:
        self.add(name, None, config, retry=False, entry=entry)
        self.status[name] = {"status": "failed", "error": error}

    def names(self) -> list[str]:
        return list(self._servers)

    def kind(self, name: str) -> str | None:
        """ "sdk", "stdio", or None for a name it does not have."""
        if name not in self._servers:
            return None
        return "sdk" if self._servers[name][1].get("type") == "sdk" else "stdio"

    def entry(self, name: str) -> dict | None:
        return self._entries.get(name)

    def error(self, name: str) -> str | None:
        status = self.status.get(name, {})
        return status.get("error") if status.get("status") == "failed" else None

    def remove(self, name: str) -> None:
        """Disconnect a server (mcp_set_servers); a stdio one, our child, is ended."""
        self._servers.pop(name, None)
        self._entries.pop(name, None)
        self.status.pop(name, None)
        self.tools.pop(name, None)
        self.disabled.discard(name)
        process = self._processes.pop(name, None)
        if process is not None:
            process.end()

    def stop(self, name: str) -> None:
        """Disconnect a stdio server (mcp_toggle off): its process is ended, its entry kept."""
        process = self._processes.pop(name, None)
        if process is not None:
            process.end()
        self.status[name] = {"status": "failed", "error": "disconnected"}

    def needs_reconnect(self, name: str) -> bool:
        """Not connected, or a stdio server whose process is gone (it died, or was stopped)."""
        if self._status(name).get("status") != "connected":
            return True
        return self.kind(name) == "stdio" and name not in self._processes

    def connect(self, only: Collection[str] | None = None) -> None:
        """Handshake and tools/list with every server not connected yet (an SDK server whose
        handshake failed is tried again at each turn, as the real CLI does); `only`: with
        those of these names."""
        for name, (request, _, retry) in self._servers.items():
            if only is not None and name not in only:
                continue
            status = self.status.get(name, {}).get("status")
            if request is None or name in self.disabled or status == "connected":
                continue
            if status == "failed" and not retry:
                continue
            try:
                self._call(name, "initialize", {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "claude-code", "version": self._version},
                })  # fmt: skip
                self._notify(name, "notifications/initialized")
                listed = self._call(name, "tools/list", {})
                tools = listed.get("tools") if isinstance(listed, dict) else None
                self.tools[name] = [t for t in tools or [] if isinstance(t, dict)]
                self.status[name] = {"status": "connected"}
            except McpError as exc:
                self.status[name] = {"status": "failed", "error": str(exc)}

    def tool_names(self) -> list[str]:
        return [
            f"mcp__{server}__{tool.get('name')}"
            for server, tools in self.tools.items()
            if server not in self.disabled
            for tool in tools
        ]

    def server_list(self) -> list[dict]:
        """For system/init: [{"name", "status"}]."""
        return [{"name": n, "status": self._status(n)["status"]} for n in self._servers]

    def mcp_status(self) -> list[dict]:
        """For the mcp_status control request."""
        out = []
        for name in self._servers:
            entry: dict[str, Any] = {"name": name, **self._status(name)}
            entry["config"] = self._servers[name][1]
            if entry["status"] == "connected":
                entry["tools"] = [{"name": t.get("name")} for t in self.tools.get(name, [])]
            out.append(entry)
        return out

    def find(self, qualified: str) -> tuple[str, dict] | None:
        """(server, tool entry) for `mcp__SERVER__TOOL`, if an SDK server offers it."""
        for server, tools in self.tools.items():
            prefix = f"mcp__{server}__"
            if qualified.startswith(prefix) and server not in self.disabled:
                name = qualified[len(prefix) :]
                for tool in tools:
                    if tool.get("name") == name:
                        return server, tool
        return None

    def call_tool(self, server: str, tool: str, arguments: dict) -> tuple[str | list[dict], bool]:
        """(the result's text, or its content blocks when it holds an image, which the real
        CLI passes on as one; is_error)."""
        params = {"name": tool, "arguments": arguments}
        call_id = self._next_id + 1  # the id _call gives it
        try:
            result = self._call(server, "tools/call", params, tool_timeout(), self.idle)
        except McpError as exc:
            return str(exc), True
        except Exception:
            # The turn ended while the tool ran (an interrupt): as the real CLI's MCP client
            # on its abort signal, tell the server to stop working on the call.
            self._cancel(server, call_id)
            raise
        parts = result.get("content") if isinstance(result, dict) else None
        blocks = [content_block(p) for p in parts or [] if isinstance(p, dict)]
        is_error = bool(result.get("isError")) if isinstance(result, dict) else True
        if any(b["type"] != "text" for b in blocks):
            return blocks, is_error
        return "\n".join(b["text"] for b in blocks), is_error

    # -- JSON-RPC over mcp_message ------------------------------------------------------------
    def _call(
        self,
        server: str,
        method: str,
        params: dict,
        timeout: float | None = None,
        idle: Idle | None = None,
    ) -> Any:
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        answer = self._send(server, message, timeout, idle)
        if "_error" in answer:
            raise McpError(f"{server}: {method}: {answer['_error']}")
        reply = answer.get("mcp_response")
        if not isinstance(reply, dict):
            raise McpError(f"{server}: {method}: no mcp_response")
        if "error" in reply:
            error = reply["error"]
            text = error.get("message") if isinstance(error, dict) else error
            raise McpError(f"{server}: {method}: {text}")
        return reply.get("result")

    def _notify(self, server: str, method: str) -> None:
        self._send(server, {"jsonrpc": "2.0", "method": method})

    def _cancel(self, server: str, request_id: int) -> None:
        """notifications/cancelled for a request given up on, sent without waiting."""
        params = {"requestId": request_id, "reason": CANCEL_REASON}
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}
        try:
            self._send(server, note, post=True)
        except Exception:  # a server or SDK already gone: nothing left to stop
            pass

    def _send(
        self,
        server: str,
        message: dict,
        timeout: float | None = None,
        idle: Idle | None = None,
        *,
        post: bool = False,
    ) -> dict:
        entry = self._servers.get(server)
        request = entry[0] if entry is not None else None
        if request is None:
            return {"_error": self.status.get(server, {}).get("error", "not started")}
        body = {"subtype": "mcp_message", "server_name": server, "message": message}
        return request(body, timeout=timeout, idle=idle, post=post)


def content_block(part: dict) -> dict:
    """An MCP result's content part as the Messages API block the real CLI makes of it: an
    image stays an image (base64, its media type), anything else is its text."""
    data = part.get("data")
    if part.get("type") == "image" and isinstance(data, str):
        media = part.get("mimeType")
        source = {"type": "base64", "media_type": media if isinstance(media, str) else "image/png",
                  "data": data}  # fmt: skip
        return {"type": "image", "source": source}
    text = part.get("text")
    return {"type": "text", "text": text if isinstance(text, str) else ""}
