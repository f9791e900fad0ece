"""The SDK's `mcp_set_servers` control request (TS `Query.setMcpServers`).

As the SDK documents it: the call replaces the servers named by earlier calls and all of the
SDK's own (in-process) servers with the given set. What it leaves out of those is disconnected
(a stdio server, the fake's child, is ended: stdin EOF, SIGTERM, SIGKILL); a stdio server from
`--mcp-config` stays unless an earlier call named it; a name given again with the same
configuration is kept as it is. New stdio servers are started and connected at once, the
SDK's own at the next turn (as at initialize: their handshake goes through the SDK). The
answer: `{"added": [...], "removed": [...], "errors": {name: text}}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fake_claude.mcp_stdio import StdioServer, end_all, start_into, stdio_entries

if TYPE_CHECKING:
    from fake_claude.mcp import McpClients, Requester


class ServerSets:
    """What earlier calls set, for one session."""

    def __init__(self) -> None:
        self.named: set[str] = set()  # every name the last call gave
        self.started: list[StdioServer] = []  # ended when the fake leaves in order
        self._exit_hook = False

    def apply(
        self,
        clients: McpClients,
        servers: dict[str, Any],
        sdk_requester: Requester,
        ledger: Any,
        timeout: float,
    ) -> dict[str, Any]:
        replaceable = self.named | {n for n in clients.names() if clients.kind(n) == "sdk"}
        removed = [n for n in sorted(replaceable - set(servers)) if clients.has(n)]
        for name in removed:
            clients.remove(name)
        entries, bad = stdio_entries({n: c for n, c in servers.items() if _kind(c) != "sdk"})
        added: list[str] = []
        errors: dict[str, str] = {}
        fresh_stdio: list[str] = []
        for name, config in servers.items():
            kind = _kind(config)
            if kind == "sdk":
                if clients.kind(name) == "sdk":
                    continue  # the same server: kept, connected or not
                clients.remove(name)
                clients.add(name, sdk_requester, {"type": "sdk", "name": name}, retry=True)
                added.append(name)
            elif name in entries:
                entry = entries[name]
                if clients.has(name) and clients.entry(name) == entry:
                    continue
                clients.remove(name)  # another configuration under that name: replaced
                self.start(clients, name, entry, ledger, timeout)
                added.append(name)
                fresh_stdio.append(name)
            else:
                errors[name] = bad.get(name, "not an MCP server configuration")
        self.named = set(servers)
        if fresh_stdio:
            clients.connect(only=fresh_stdio)
        for name in added:
            error = clients.error(name)
            if error is not None:
                errors[name] = error
        return {"added": added, "removed": removed, "errors": errors}

    def start(
        self, clients: McpClients, name: str, entry: dict, ledger: Any, timeout: float
    ) -> None:
        """Start one stdio server (also mcp_reconnect's fresh start of one), ended when the
        fake leaves in order."""
        if not self._exit_hook:  # before the first start, as start_configured does
            from fake_claude.lifecycle import at_exit

            at_exit(lambda: end_all(self.started))
            self._exit_hook = True
        server = start_into(clients, name, entry, ledger, timeout)
        if server is not None:
            self.started.append(server)


def _kind(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    kind = config.get("type", "stdio")
    return kind if isinstance(kind, str) else None
