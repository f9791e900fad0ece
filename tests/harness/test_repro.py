"""`harness repro`: the leak grows prompt by prompt in the leaky worker, never in the fixed one."""

from __future__ import annotations

import asyncio
import io

import pytest

from harness.repro import run_repro

pytest.importorskip("worker")


def test_repro_shows_growth_and_the_fix():
    prompts = 3
    out = io.StringIO()
    result = asyncio.run(run_repro(prompts, seed=1, grace=2.0, worker_grace=0.5, out=out))
    assert result["leaky_history"] == list(range(prompts)), out.getvalue()
    assert result["leaky_leaked"] == prompts
    assert result["fixed_leaked"] == 0 and result["fixed_max_live"] <= 1
    assert result["reproduced"] and result["fix_held"]
    text = out.getvalue()
    assert text.count("after prompt") == prompts and "PID" in text and "ELAPSED" in text
