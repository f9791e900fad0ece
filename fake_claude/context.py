"""Everything a fake main process knows about its run: argv, settings, scenario, ledger, seed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fake_claude.args import Args
from fake_claude.ledger import Ledger
from fake_claude.scenario import Scenario

if TYPE_CHECKING:
    from fake_claude.transcripts import Transcript

USER_MCP_ENV = "FAKE_CLAUDE_USER_MCP_CONFIG"


class Context:
    __slots__ = (
        "args", "scenario", "ledger", "seed", "version", "run_id", "draw", "schema", "transcript",
        "_rng",
    )  # fmt: skip

    def __init__(
        self, args: Args, scenario: Scenario, ledger: Ledger, seed: str, draw: int
    ) -> None:
        self.args = args
        self.scenario = scenario
        self.ledger = ledger
        self.seed = seed
        self.draw = draw
        self.version = os.environ.get("FAKE_CLAUDE_VERSION") or None
        self.run_id = ledger.run_id
        self.schema: dict | None = None  # --json-schema, parsed (cli.run_main_process)
        self.transcript: Transcript | None = None  # the conversation on disk (cli)
        self._rng = None

    def remember(self, kind: str, message: dict, uuid: str | None = None) -> None:
        """Add a prompt ("user") or a reply ("assistant") to the session's transcript."""
        if self.transcript is not None:
            from fake_claude.messages import DEFAULT_VERSION, new_uuid

            self.transcript.add(kind, message, uuid or new_uuid(), self.version or DEFAULT_VERSION)

    def transcript_path(self) -> str:
        return "" if self.transcript is None else self.transcript.path

    def structured(self, text: str):
        """The result's structured_output for this reply: a value of the --json-schema, or
        messages.ABSENT without one."""
        from fake_claude.messages import ABSENT

        if self.schema is None:
            return ABSENT
        from fake_claude.schema import instance

        return instance(self.schema, text)

    def mcp_configs(self) -> tuple[str | None, str | None]:
        """(--mcp-config, the user's own MCP config) as JSON text or file paths. The user's is
        FAKE_CLAUDE_USER_MCP_CONFIG, the fake's stand-in for ~/.claude.json (never read): the
        real CLI loads it, even with --setting-sources "", unless --strict-mcp-config."""
        a = self.args
        user = None if a.has("--strict-mcp-config") else os.environ.get(USER_MCP_ENV)
        return a.value("--mcp-config"), user or None

    def rng(self):
        """A random.Random seeded from the run seed and this process's draw (lazy: import cost)."""
        if self._rng is None:
            import random

            resume = self.args.value("--resume", "-r", "--session-id") or ""
            self._rng = random.Random(f"proc:{self.seed}:{self.draw}:{resume}")
        return self._rng
