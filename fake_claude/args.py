"""A tolerant command-line parser for the flags the real CLI takes (no argparse: start-up cost).

Unknown flags are accepted as `--flag=value`, `--flag value` (value may be empty) or bare.
"""

from __future__ import annotations

from fake_claude import RUN_ID_FLAG

# Flags whose next argv token is always their value, even when empty or dash-led.
VALUE_FLAGS = frozenset(
    {
        "--output-format",
        "--input-format",
        "--model",
        "--fallback-model",
        "--resume",
        "-r",
        "--session-id",
        "--permission-mode",
        "--permission-prompt-tool",
        "--max-turns",
        "--max-budget-usd",
        "--setting-sources",
        "--settings",
        "--disallowedTools",
        "--disallowed-tools",
        "--allowedTools",
        "--allowed-tools",
        "--tools",
        "--system-prompt",
        "--system-prompt-file",
        "--append-system-prompt",
        "--mcp-config",
        "--add-dir",
        "--betas",
        "--agents",
        "--plugin-dir",
        "--max-thinking-tokens",
        "--thinking",
        "--effort",
        "--json-schema",
        "--managed-settings",
        "--initialize-fields",
    }
)
BOOL_FLAGS = frozenset(
    {
        "-p",
        "--print",
        "-v",
        "--version",
        "-h",
        "--help",
        "--verbose",
        "--include-partial-messages",
        "--include-hook-events",
        "--strict-mcp-config",
        "--no-session-persistence",
        "--continue",
        "-c",
        "--fork-session",
        "--session-mirror",
        "--debug",
        "--dangerously-skip-permissions",
        "--allow-dangerously-skip-permissions",
        # What the TS SDK passes when it sends launch settings in the initialize request
        # (0.3.333 does for mcpServers by default): read that request before starting up
        # (delivery.py), and take the managed settings from it.
        "--await-initialize",
        "--managed-settings-in-initialize",
    }
)


class Args:
    """Parsed argv: `flags` maps a flag to its last value (True for bare flags)."""

    __slots__ = ("flags", "positional", "run_id")

    def __init__(self) -> None:
        self.flags: dict[str, str | bool] = {}
        self.positional: list[str] = []
        self.run_id: str | None = None

    def has(self, *names: str) -> bool:
        return any(n in self.flags for n in names)

    def value(self, *names: str, default: str | None = None) -> str | None:
        for n in names:
            v = self.flags.get(n)
            if isinstance(v, str):
                return v
        return default

    def overlaid(self, values: dict[str, str]) -> Args:
        """A copy in which these flags have these values, in place of what argv gave them."""
        copy = Args()
        copy.flags = {**self.flags, **values}
        copy.positional = list(self.positional)
        copy.run_id = self.run_id
        return copy


def parse(argv: list[str]) -> Args:
    args = Args()
    i = 0
    n = len(argv)
    while i < n:
        tok = argv[i]
        i += 1
        if tok == "--":
            args.positional.extend(argv[i:])
            break
        if not tok.startswith("-") or tok == "-":
            args.positional.append(tok)
            continue
        if tok.startswith("--") and "=" in tok:
            name, _, val = tok.partition("=")
            if name == RUN_ID_FLAG:
                args.run_id = val
            else:
                args.flags[name] = val
            continue
        if tok in BOOL_FLAGS:
            args.flags[tok] = True
        elif tok in VALUE_FLAGS:
            if i < n:
                args.flags[tok] = argv[i]
                i += 1
            else:
                args.flags[tok] = ""
        elif i < n and not argv[i].startswith("-"):
            # Unknown flag followed by a non-flag token: take it as the flag's value.
            args.flags[tok] = argv[i]
            i += 1
        else:
            args.flags[tok] = True
    return args
