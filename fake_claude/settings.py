"""The permission part of the settings the real CLI reads: `permissions.allow`, `.deny` and
`.defaultMode` from each setting source the session loads, then from `--settings` (JSON text or
a file), then from `--managed-settings` (the policy tier a parent process supplies, JSON text),
which goes last and so wins a mode over every other layer.

Sources (`--setting-sources`, a comma-separated list; all of them when the flag is absent, none
when it is empty): `user` is `$CLAUDE_CONFIG_DIR/settings.json` (only with the variable set: the
fake never reads the user's own ~/.claude), `project` `<cwd>/.claude/settings.json`, `local`
`<cwd>/.claude/settings.local.json`. A file that is missing or not a JSON object counts as empty.
"""

from __future__ import annotations

import json
import os

from fake_claude.args import Args

SOURCES = ("user", "project", "local")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _flag(value: str) -> dict:
    if value.lstrip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return _read(value)


def layers(args: Args, cwd: str, env: os._Environ[str] | dict[str, str]) -> list[dict]:
    """The settings objects the session loads, lowest precedence first."""
    listed = args.value("--setting-sources")
    sources = SOURCES if listed is None else [s.strip() for s in listed.split(",")]
    paths = {
        "user": os.path.join(env["CLAUDE_CONFIG_DIR"], "settings.json")
        if env.get("CLAUDE_CONFIG_DIR")
        else None,
        "project": os.path.join(cwd, ".claude", "settings.json"),
        "local": os.path.join(cwd, ".claude", "settings.local.json"),
    }
    found = [_read(path) for name in SOURCES if name in sources and (path := paths[name])]
    for flag in ("--settings", "--managed-settings"):
        value = args.value(flag)
        if value:
            found.append(_flag(value))
    return found


def permissions(layers: list[dict]) -> tuple[list[str], list[str], str | None]:
    """(allow rules, deny rules, the default mode) the layers add up to."""
    allow: list[str] = []
    deny: list[str] = []
    mode: str | None = None
    for layer in layers:
        perms = layer.get("permissions")
        if not isinstance(perms, dict):
            continue
        allow += _rules(perms.get("allow"))
        deny += _rules(perms.get("deny"))
        if isinstance(perms.get("defaultMode"), str):
            mode = perms["defaultMode"]
    return allow, deny, mode


def _rules(value: object) -> list[str]:
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else []
