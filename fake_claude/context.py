"""Everything a fake main process knows about its run: argv, settings, scenario, ledger, seed."""

from __future__ import annotations

import os

from fake_claude.args import Args
from fake_claude.ledger import Ledger
from fake_claude.scenario import Scenario


class Context:
    __slots__ = ("args", "scenario", "ledger", "seed", "version", "run_id", "draw", "_rng")

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
        self._rng = None

    def rng(self):
        """A random.Random seeded from the run seed and this process's draw (lazy: import cost)."""
        if self._rng is None:
            import random

            resume = self.args.value("--resume", "-r", "--session-id") or ""
            self._rng = random.Random(f"proc:{self.seed}:{self.draw}:{resume}")
        return self._rng
