"""Launch settings delivered in the initialize request instead of on argv, as the real CLI
(2.1.326+) reads them: what the TS SDK sends with `mcpServersDelivery` (its default since
0.3.333), `settingsDelivery`, `disallowedToolsDelivery`, `managedSettingsDelivery` and
`pluginDelivery` set to 'initialize'.

A field is read only from the first initialize, and only when the launch said it would be:
`mcpServers` and `plugins` under `--await-initialize`; `settings` and `disallowedTools` when
`--initialize-fields` also names them; `managedSettings` with `--managed-settings-in-initialize`
too. A field read stands in for its flag, through the same code as the flag: `settings` for
`--settings` (an object, or JSON text or a file as the flag takes), `disallowedTools` for
`--disallowedTools` (its entries joined by commas), `managedSettings` for `--managed-settings`,
and `mcpServers` is one more `--mcp-config` item, after those on argv (so it wins a name both
use). A field not read sets nothing. The answer confirms each field the request held:
`<field>_applied` true when it was read, false when not, so an SDK that needs it ends the
session, or warns (mcpServers, plugins). A later initialize (the TS SDK's `reinitialize()`)
reads nothing, but confirms a field that holds what the launch read from the first one, as
the SDK's own types say of `mcp_servers_applied` ("a re-sent initialize naming the same set
also reads true"): the TS SDK checks the confirmations on every initialize, so a false there
would end the session. A field the launch named that the request lacks, or
that cannot be used, ends the process with exit code 1, as the real CLI does.

The fake loads no plugin, from `--plugin-dir` or from here: `plugins_applied` is always false.

Sources: the TS SDK 0.3.333's sdk.mjs (what it sends, what it checks in the answer) and the
real CLI's own descriptions of these request fields and flags (2.1.332, the `claude` bundled in
the claude-agent-sdk 0.2.189 wheel).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from fake_claude.args import Args

# request field -> the confirmation in the initialize response
CONFIRMATIONS = {
    "settings": "settings_applied",
    "disallowedTools": "disallowed_tools_applied",
    "managedSettings": "managed_settings_applied",
    "mcpServers": "mcp_servers_applied",
    "plugins": "plugins_applied",
}
# request field -> the flag it stands in for
FLAGS = {
    "settings": "--settings",
    "disallowedTools": "--disallowedTools",
    "managedSettings": "--managed-settings",
}
LAUNCH_FLAGS = ("--initialize-fields", "--managed-settings-in-initialize")


class Delivered(NamedTuple):
    flags: dict[str, str]  # flag -> the value the request gave it in place of argv's
    mcp_servers: dict | None  # the servers read (None: none)
    confirmations: dict[str, bool]
    taken: dict[str, object] = {}  # field -> the value read from this request


class Unusable(Exception):
    """A field the launch named is missing from the request or cannot be used."""


def launch_error(args: Args) -> str | None:
    """Why the real CLI refuses this command line before it starts, if it does."""
    for flag in LAUNCH_FLAGS:
        if args.has(flag) and not args.has("--await-initialize"):
            return f"Error: {flag} needs --await-initialize (the fake's words)"
    return None


def awaited(args: Args) -> set[str]:
    """The fields the launch reads from its first initialize request."""
    if not args.has("--await-initialize"):
        return set()
    named = {n.strip() for n in (args.value("--initialize-fields") or "").split(",")}
    fields = {"mcpServers", "plugins"} | (named & {"settings", "disallowedTools"})
    if args.has("--managed-settings-in-initialize"):
        fields.add("managedSettings")
    return fields


def read(
    request: dict, args: Args, first: bool, launched: dict[str, object] | None = None
) -> Delivered:
    """What the initialize request delivers (raises Unusable). `launched`: what the first
    initialize delivered (its `taken`), against which a later one's fields are confirmed."""
    fields = awaited(args) if first else set()
    flags: dict[str, str] = {}
    servers = None
    confirmations: dict[str, bool] = {}
    read_now: dict[str, object] = {}
    for field, confirmation in CONFIRMATIONS.items():
        value = request.get(field)
        if not first:  # nothing is read again; the launch's own set is confirmed
            if value is not None:
                same = launched is not None and field in launched and launched[field] == value
                confirmations[confirmation] = same and field != "plugins"
            continue
        taken = field in fields
        if taken and field in FLAGS:
            flags[FLAGS[field]] = _flag_value(field, value)  # raises if missing or unusable
        elif value is None:
            continue  # not in the request: nothing to confirm
        elif taken and field == "mcpServers":
            if isinstance(value, dict):
                servers = value
            else:
                taken = False  # not a set of servers: nothing loaded
        if taken:
            read_now[field] = value
        confirmations[confirmation] = taken and field != "plugins"
    return Delivered(flags, servers, confirmations, read_now)


def _flag_value(field: str, value: object) -> str:
    """The field's value as its flag's text."""
    if field == "disallowedTools":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    elif isinstance(value, dict):
        return json.dumps(value)
    elif isinstance(value, str) and field == "settings":
        return value  # JSON text or a file, as --settings takes
    shown = "missing" if value is None else f"a {type(value).__name__}"
    raise Unusable(f"Error: the initialize request's {field} cannot be used ({shown})")
