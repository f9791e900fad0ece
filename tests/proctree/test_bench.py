"""The benchmark runs, prints its figures and leaves nothing behind."""

from __future__ import annotations

import re

import psutil
import pytest

from proctree import bench


def test_bench_small_run_leaves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert bench.main(["-n", "12", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "identify()" in out and "descendants(root" in out and "terminate_tree" in out
    assert re.search(r"\b0 survivors", out)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left
