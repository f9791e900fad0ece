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


def test_spawn_bench_prints_each_way_and_leaves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from proctree import bench_spawn

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = bench_spawn.main(["--spawns", "5", "--busy", "1"])
    out, err = capsys.readouterr()
    if code == 2:  # not Linux, no cells here, or no C compiler: it says so
        assert err.strip() and "Traceback" not in err
        pytest.skip(err.strip())
    assert code == 0
    for way in ("enters its cell", "parent moves it", "no cell"):
        assert re.search(rf"{way}.*\d+\.\d\d ms", out), out
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left
    from proctree import _cgroup

    assert _cgroup.jail() is None  # its cells and their parent were removed
