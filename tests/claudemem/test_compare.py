"""`python -m harness compare` end to end: the table tells a leaky worker from a fixed one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from claudemem_support import VERSION_13, require_cached

from harness import claude_mem_install as install
from harness import compare

pytest.importorskip("worker")


def _args(out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return parser.parse_args(
        [
            "--sessions=2",
            "--prompts=2",
            "--observations=1",
            "--concurrency=2",
            "--scenarios=ok",
            "--grace=2",
            "--reference-reap-wait=6",
            "--no-plot",
            f"--out={out}",
            *extra,
        ]
    )


def test_reference_fixed_and_leaky_side_by_side(tmp_path: Path) -> None:
    assert compare.run(_args(tmp_path)) == 0
    data = json.loads((tmp_path / "compare.json").read_text())
    rows = {r["target"]: r for r in data["rows"]}
    fixed, leaky = rows["reference fixed"], rows["reference leaky"]
    assert fixed["prompts"] == leaky["prompts"] == 4
    # Leaky (9.0.0's flow): one idle observer per prompt, never reaped; fixed: none left.
    assert leaky["leaked"] >= 4 and leaky["leaked_per_100_prompts"] >= 100
    assert leaky["not_reaped"] >= 4
    assert fixed["leaked"] == 0 and fixed["not_reaped"] == 0
    assert fixed["sessions_per_s"] and fixed["sessions_per_s"] > 0
    table = (tmp_path / "compare.md").read_text()
    assert "| reference leaky | FAIL |" in table and "| reference fixed | PASS |" in table
    # Each soak report, made through compare's wrapper, keeps what its target said of itself.
    for row in (fixed, leaky):
        report = json.loads((tmp_path / row["folder"] / "report.json").read_text())
        assert report["target_facts"]["containment"]["mark"], report["target_facts"]


def test_mcp_servers_leak_with_each_leaked_observer(tmp_path: Path) -> None:
    assert compare.run(_args(tmp_path, "--mcp-servers=2", "--mcp-server-mode=stubborn")) == 0
    data = json.loads((tmp_path / "compare.json").read_text())
    assert data["workload"]["mcp_servers"] == 2
    rows = {r["target"]: r for r in data["rows"]}
    fixed, leaky = rows["reference fixed"], rows["reference leaky"]
    # 4 prompts: each leaked observer leaves its 2 servers with it (3 processes per prompt).
    assert leaky["leaked"] >= 12
    assert fixed["leaked"] == 0 and fixed["not_reaped"] == 0
    assert "2 stubborn MCP server(s) per observer" in (tmp_path / "compare.md").read_text()


def test_refused_build_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKPROOF_ALLOW_FOREIGN_KILL", raising=False)
    plugin = tmp_path / "v9" / "plugin"
    (plugin / "scripts").mkdir(parents=True)
    (plugin / "scripts" / "worker-service.cjs").write_text(
        'log("Cleaning up orphaned chroma-mcp processes"); run("ps aux");'
    )
    out = tmp_path / "out"
    # --isolation none: as where no PID namespace can be made (macOS, Windows, no userns).
    args = _args(out, "--isolation=none", f"--claude-mem-plugin={plugin.parent}")
    assert compare.run(args) == 2
    assert not (out / "compare.json").exists()  # refused before the first soak


def test_skip_refused_lists_the_build_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEAKPROOF_ALLOW_FOREIGN_KILL", raising=False)
    plugin = tmp_path / "v9" / "plugin"
    (plugin / "scripts").mkdir(parents=True)
    (plugin / "scripts" / "worker-service.cjs").write_text(
        'log("Cleaning up orphaned chroma-mcp processes"); run("ps aux");'
    )
    out = tmp_path / "out"
    args = _args(
        out,
        "--no-reference",
        "--skip-refused",
        "--isolation=none",
        f"--claude-mem-plugin={plugin.parent}",
    )
    assert compare.run(args) == 0
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["verdict"] for r in rows] == ["REFUSED"]
    assert "chroma-mcp" in rows[0]["refused"]
    assert "not run:" in (out / "compare.md").read_text()


def test_two_builds_of_one_version_get_a_row_and_a_report_each(tmp_path: Path) -> None:
    """docs/claude-mem.md's "Check your fix" compares a v9.0.0 checkout with a fix branch of it,
    which declares 9.0.0 too: the two rows read alike and the second's report folder replaced
    the first's. The same build from npm and from its folder stands in for the two."""
    require_cached(VERSION_13)
    plugin = install.plugin_dir(VERSION_13)
    args = _args(
        tmp_path,
        "--no-reference",
        f"--claude-mem={VERSION_13}",
        f"--claude-mem-plugin={plugin}",
        "--sessions=1",
        "--prompts=1",
        "--reap-wait=0",
    )
    assert compare.run(args) == 0
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["target"] for r in rows] == [
        f"claude-mem {VERSION_13} (npm)",
        f"claude-mem {VERSION_13} (claude-mem)",  # its folder: node_modules/claude-mem/plugin
    ]
    assert len({r["folder"] for r in rows}) == 2
    for row in rows:
        report = json.loads((tmp_path / row["folder"] / "report.json").read_text())
        assert report["completed"] == 1
    table = (tmp_path / "compare.md").read_text()
    assert f"| claude-mem {VERSION_13} (npm) |" in table
    # Which calls its hooks make (10.6.3's: no session end) is said beside the figures.
    assert rows[0]["hook_flow"] == "single init, session-end"
    assert f"- claude-mem {VERSION_13} (npm): hooks driven as: single init, session-end" in table
