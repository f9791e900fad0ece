"""Fixtures for driving the real claude-mem worker with the project's fake `claude`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cleanup import sweep_run
from harness.target import RunContext


@pytest.fixture
def run_ctx(tmp_path: Path) -> Iterator[RunContext]:
    """A run with the fake (scenario ok); every process of the run ends with the test."""
    from fake_claude.shim import write_shim

    run_id = secrets.token_hex(6)
    ledger = tmp_path / "ledger.jsonl"
    shim = write_shim(
        tmp_path / "bin",
        {"scenario": "ok", "seed": "1", "ledger": str(ledger), "run_id": run_id},
    )
    ctx = RunContext(run_id=run_id, work_dir=tmp_path, claude_path=shim, ledger_path=ledger, seed=1)
    try:
        yield ctx
    finally:
        sweep_run(run_id)  # only this run's processes, by identity; normally finds none
