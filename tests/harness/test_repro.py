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
    # Each prompt's table lists the new leaks only, said so; the end lists them all.
    assert text.count("newly leaked:") == prompts - 1
    final = text.split("leaky worker, all leaked:")[1]
    # Named as the worker started them, as #603's table: the first prompt's observer, then
    # those resuming its conversation (each row the whole command, not a cut of the fake's
    # interpreter path alike in every row).
    rows = [line for line in final.splitlines() if " claude --output-format stream-json" in line]
    assert len(rows) == prompts, text
    assert sum(" --resume " in row for row in rows) == prompts - 1, text
    assert all(row.rstrip().endswith("--permission-mode default") for row in rows), text


def test_repro_with_mcp_servers_leaks_each_observers_servers_too():
    # 9.0.0's observers load the user's MCP servers: every leaked observer holds its servers.
    prompts, servers = 2, 2
    out = io.StringIO()
    result = asyncio.run(
        run_repro(prompts, seed=1, grace=2.0, worker_grace=0.5, out=out, mcp_servers=servers)
    )
    per_prompt = 1 + servers
    assert result["leaky_history"] == [0, per_prompt], out.getvalue()
    assert result["leaky_leaked"] == prompts * per_prompt
    leaked = result["leaked"]
    assert sum("mcp_server.py" in " ".join(leak["cmdline"]) for leak in leaked) == 4, leaked
    assert result["fixed_leaked"] == 0 and result["fixed_max_live"] <= 1
    assert result["reproduced"] and result["fix_held"]
    assert "(+2 MCP)" in out.getvalue()
