"""`harness compare` off the happy path: reap waits cut by Ctrl-C, notes, plot, bad arguments."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from soak_helpers import wait_for

import proctree
from harness import compare

pytest.importorskip("worker")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return parser.parse_args(list(argv))


class _SelfReaping:
    """A target that measures its own reaping (as claude-mem's does): ReapWatch must ask it."""

    name = "self-reaping"

    def __init__(self, block: bool = False, fail_start: bool = False) -> None:
        self.block = block
        self.fail_start = fail_start
        self.waits: list[float] = []
        self.stopped = False
        self.stopped_now = False

    async def start(self, ctx: object) -> None:
        if self.fail_start:
            raise RuntimeError("not ready after 1s")

    async def wait_reaped(self, wait: float) -> dict:
        self.waits.append(wait)
        if self.block:  # never reaps: only Ctrl-C ends the wait
            await asyncio.Event().wait()
        return {"time_to_reap_s": {"p50": 0.5, "max": 1.5}, "not_reaped": 0}

    async def stop(self) -> None:
        self.stopped = True

    def stop_now(self) -> None:
        self.stopped_now = True


def test_reap_watch_asks_a_target_that_measures_its_own_reaping() -> None:
    inner = _SelfReaping()
    watch = compare.ReapWatch(inner, reap_wait=7.0)  # type: ignore[arg-type]
    assert not watch.own_tracking and watch.name == "self-reaping"
    asyncio.run(watch.start(None))  # type: ignore[arg-type]
    asyncio.run(watch.stop())
    assert inner.waits == [7.0] and inner.stopped
    assert watch.reap == {"time_to_reap_s": {"p50": 0.5, "max": 1.5}, "not_reaped": 0}
    assert watch.tracker is None
    watch.stop_now()
    assert inner.stopped_now


def test_a_worker_that_never_started_is_stopped_without_a_reap_wait(capsys) -> None:
    """Nothing was served, so nothing is waited for (it said "waiting up to 240 s for the worker
    to end their observers" under a start that had failed)."""
    inner = _SelfReaping(fail_start=True)
    watch = compare.ReapWatch(inner, reap_wait=240.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not ready"):
        asyncio.run(watch.start(None))  # type: ignore[arg-type]
    asyncio.run(watch.stop())
    assert inner.waits == [] and inner.stopped and watch.reap is None
    assert "waiting up to" not in capsys.readouterr().err


def test_ctrl_c_cuts_the_reap_wait_short_and_still_stops_the_worker() -> None:
    inner = _SelfReaping(block=True)
    watch = compare.ReapWatch(inner, reap_wait=3600.0)  # type: ignore[arg-type]

    async def scenario() -> float:
        await watch.start(None)  # type: ignore[arg-type]
        stopping = asyncio.ensure_future(watch.stop())

        async def waiting() -> None:
            while not inner.waits:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(waiting(), timeout=30)  # the reap wait has begun
        assert inner.waits == [3600.0] and not stopping.done()
        loop = asyncio.get_running_loop()
        started = loop.time()
        compare._on_sigint(asyncio.ensure_future(asyncio.Event().wait()))
        await asyncio.wait_for(stopping, timeout=30)
        return loop.time() - started

    try:
        assert asyncio.run(scenario()) < 30
    finally:
        compare._INTERRUPTED.clear()
    assert watch.reap == {"interrupted": True}
    assert inner.stopped


def test_on_sigint_marks_the_run_interrupted_and_cancels_it() -> None:
    async def scenario() -> bool:
        task = asyncio.ensure_future(asyncio.Event().wait())
        compare._on_sigint(task)
        await asyncio.gather(task, return_exceptions=True)
        return task.cancelled()

    try:
        assert asyncio.run(scenario())
        assert compare._INTERRUPTED.is_set()
    finally:
        compare._INTERRUPTED.clear()


def _report(leaked: int, **extra: object) -> dict:
    return {
        "verdict": "FAIL" if leaked else "PASS",
        "started": 2,
        "completed": 2,
        "leaked_count": leaked,
        "cleanup_latency_ms": {"p50": 12, "p99": 80},
        "peak_descendants": 3,
        "rss": {
            "peak_total_mb": 120.5,
            "session_marks": {"starts": [0.0, 1.0], "ends": [2.0, 4.0]},
        },
        **extra,
    }


def test_table_notes_isolation_early_exits_refusals_and_harness_errors() -> None:
    extra = {
        "isolation": "pid-namespace",
        "isolation_note": "unshare --pid (as root)",
        "worker_exit_before_stop": 1,
    }
    cm = compare.summarize(
        "claude-mem 10.6.3",
        _report(2, harness_errors=["", "census: sample failed", "x"]),
        {"time_to_reap_s": {"p50": 30.0, "max": 31.0}, "past_grace": 1, "not_reaped": 1},
        prompts=3,
        extra=extra,
    )
    assert cm["prompts"] == 6 and cm["leaked_per_100_prompts"] == 33.3
    assert cm["sessions_per_s"] == 0.5  # 2 sessions over the 4 s from first start to last end
    assert cm["outlived_per_100_prompts"] == 16.7
    assert cm["harness_errors"] == ["census: sample failed", "x"]
    refused = {"target": "claude-mem 9.0.0", "verdict": "REFUSED", "refused": "kills chroma-mcp"}
    plain = compare.summarize("reference fixed", _report(0), None, prompts=3)
    meta = dict.fromkeys(
        ("sessions", "prompts", "observations", "concurrency", "scenarios", "seed", "grace"), 1
    )
    meta.update(reap_wait=240, reference_reap_wait=15)
    md = compare.markdown_table([plain, cm, refused], meta)
    lines = md.splitlines()
    assert lines[0] == "# Worker comparison"
    assert (
        "| reference fixed | PASS | 6 | 0.0 | 12 | 80 | 3 | 120.5 | 0.5 | — | — | — | — |" in lines
    )
    assert "| claude-mem 9.0.0 | REFUSED | — | — |" in md
    assert "- claude-mem 9.0.0: not run: kills chroma-mcp" in lines
    assert "- claude-mem 10.6.3: isolation: pid-namespace (unshare --pid (as root))" in lines, md
    assert any(
        line.startswith("- claude-mem 10.6.3: the worker exited on its own (code 1)")
        for line in lines
    )
    assert "- claude-mem 10.6.3: census: sample failed; x" in lines
    assert not any(line.startswith("- reference fixed") for line in lines)


def test_outputs_with_a_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    fixed = compare.summarize("reference fixed", _report(0), {"time_to_reap_s": {"max": 0.2}}, 2)
    leaky = compare.summarize(
        "reference leaky", _report(4), {"not_reaped": 4, "not_reaped_age_s": 15.0}, 2
    )
    meta = dict.fromkeys(
        ("sessions", "prompts", "observations", "concurrency", "scenarios", "seed", "grace"), 2
    )
    meta.update(reap_wait=240, reference_reap_wait=15)
    paths = compare.write_outputs(tmp_path / "out", [fixed, leaky], meta, plot=True)
    assert set(paths) == {"json", "md", "png"}
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    data = json.loads(paths["json"].read_text())
    assert [r["target"] for r in data["rows"]] == ["reference fixed", "reference leaky"]
    assert data["workload"] == meta
    assert not (tmp_path / "out" / "compare.json.tmp").exists()
    # No rows: nothing to draw.
    assert "png" not in compare.write_outputs(tmp_path / "empty", [], meta, plot=True)
    # The same folder again without a plot: the earlier plot must not pass for this run's.
    assert "png" not in compare.write_outputs(tmp_path / "out", [fixed], meta, plot=False)
    assert not (tmp_path / "out" / "compare.png").exists()


def test_an_output_folder_used_again_loses_the_earlier_runs_target_folders(tmp_path: Path):
    """Before: a second compare with fewer targets left the first one's per-target reports
    beside its own, as if this run had made them. Only folders the earlier compare.json names
    (holding a report.json) go; anything else in the folder stays."""
    meta = dict.fromkeys(
        ("sessions", "prompts", "observations", "concurrency", "scenarios", "seed", "grace"), 2
    )
    meta.update(reap_wait=240, reference_reap_wait=15)
    out = tmp_path / "out"
    rows = []
    for label in ("reference fixed", "reference leaky"):
        row = compare.summarize(label, _report(0), None, 2)
        row["folder"] = compare._slug(label)
        (out / row["folder"]).mkdir(parents=True)
        (out / row["folder"] / "report.json").write_text("{}")
        rows.append(row)
    (out / "notes-of-mine").mkdir()
    (out / "notes-of-mine" / "report.json").write_text("{}")  # not named by compare.json
    compare.write_outputs(out, rows, meta, plot=False)
    compare.write_outputs(out, rows[:1], meta, plot=False)  # only the fixed worker this time
    assert (out / "reference-fixed" / "report.json").exists()
    assert not (out / "reference-leaky").exists()
    assert (out / "notes-of-mine" / "report.json").exists()
    # A compare.json naming a path outside the folder is not followed.
    (out / "compare.json").write_text(json.dumps({"rows": [{"folder": "../escape"}]}))
    (tmp_path / "escape").mkdir()
    (tmp_path / "escape" / "report.json").write_text("{}")
    compare.write_outputs(out, [], meta, plot=False)
    assert (tmp_path / "escape" / "report.json").exists()


def test_claude_mem_targets_are_built_with_the_settings_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LEAKPROOF_ALLOW_FOREIGN_KILL", raising=False)
    args = _args(
        "--no-reference",
        "--claude-mem=13.25.3",
        "--claude-mem-setting=CLAUDE_MEM_MAX_CONCURRENT_AGENTS=4",
        "--claude-mem-setting=CLAUDE_MEM_MODEL=a=b",
        "--isolation=none",
        "--reap-wait=99",
    )
    [(label, target, wait)] = compare.build_targets(args)
    assert (label, wait) == ("claude-mem 13.25.3", 99.0)
    assert target.settings_overrides == {  # type: ignore[attr-defined]
        "CLAUDE_MEM_MAX_CONCURRENT_AGENTS": "4",
        "CLAUDE_MEM_MODEL": "a=b",
    }
    assert target.isolation == "none"  # type: ignore[attr-defined]
    assert target.allow_foreign_kill is False  # type: ignore[attr-defined]
    monkeypatch.setenv("LEAKPROOF_ALLOW_FOREIGN_KILL", "1")
    [(_, target, _)] = compare.build_targets(args)
    assert target.allow_foreign_kill is True  # type: ignore[attr-defined]


def test_bad_setting_and_unavailable_claude_mem_run_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # On stderr, and an empty key or value refused too, as soak does ("=5" ran a whole compare
    # with a "" setting; the error went to stdout).
    for bad in ("NOEQUALS", "=5", "KEY="):
        args = _args(
            "--no-reference", "--claude-mem=13.25.3", f"--claude-mem-setting={bad}", f"--out={out}"
        )
        assert compare.run(args) == 2
        assert f"--claude-mem-setting needs KEY=VALUE, not {bad!r}" in capsys.readouterr().err

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    args = _args("--claude-mem=13.25.3", "--skip-if-unavailable", f"--out={out}")
    assert compare.run(args) == 0
    assert capsys.readouterr().out == (
        "SKIPPED harness compare: the real claude-mem cannot run here: node is not on PATH "
        "(claude-mem and bun come from npm).\n"
    )
    assert not out.exists()


def test_ctrl_c_during_a_compare_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("SIGINT to one process is POSIX")
    seen: dict[int, psutil.Process] = {}

    def descendants() -> list[psutil.Process]:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        for kid in kids:
            seen.setdefault(kid.pid, kid)
        return kids

    proc, err = _compare_proc(tmp_path, "--sessions=2000", "--concurrency=2", "--scenarios=ok")
    _interrupt_when(
        proc,
        err,
        signal.SIGINT,
        lambda: (
            "compare: reference fixed ..." in err.read_text(errors="replace")
            and len(descendants()) >= 2
        ),
        "the fixed worker and an observer",
    )
    text = err.read_text(errors="replace")
    assert "compare interrupted" in text
    assert "compare: reference leaky" not in text  # the remaining runs are skipped
    alive = [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running after Ctrl-C: {alive}"


def _compare_proc(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    err = tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "harness", "compare", "--grace=1", "--no-plot",
            f"--out={tmp_path / 'out'}", *extra]  # fmt: skip
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh
        )
    return proc, err


def _interrupt_when(
    proc: subprocess.Popen[bytes], err: Path, sig: int, ready: Any, what: str, timeout: float = 90
) -> None:
    """Once `ready()`, send `sig`; the compare must exit 130 (killed after all, if it does not)."""
    try:
        wait_for(ready, timeout=timeout, what=what)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 130, err.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_ctrl_c_during_a_reap_wait_keeps_the_runs_report(tmp_path: Path) -> None:
    """Ctrl-C in the reap wait (minutes for claude-mem 13.x: where a user presses it) said
    "writing its report first ... its verdict stands", but compare's handler cancelled the task
    inside the soak's shielded cleanup: the run's report folder was never written."""
    if sys.platform == "win32":
        pytest.skip("SIGINT to one process is POSIX")
    proc, err = _compare_proc(tmp_path, "--prompts=1", "--sessions=1", "--reference-reap-wait=600")
    _interrupt_when(
        proc,
        err,
        signal.SIGINT,
        lambda: err.read_text(errors="replace").count("waiting up to 600 s") >= 2,
        "the leaky worker's reap wait",
        timeout=120,
    )
    report = json.loads((tmp_path / "out" / "reference-leaky" / "report.json").read_text())
    assert report["verdict"] == "FAIL", report["verdict"]  # judged before the Ctrl-C: it stands


def test_sigterm_stops_a_compare_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (`timeout`, a cancelled CI job) called SIGINT's handler, a no-op once compare's
    loop had its own: the compare ran every session to the end and exited 0."""
    if sys.platform == "win32":
        pytest.skip("SIGTERM as an interrupt is POSIX")
    proc, err = _compare_proc(tmp_path, "--prompts=1", "--sessions=2000", "--scenarios=ok")
    _interrupt_when(
        proc,
        err,
        signal.SIGTERM,
        lambda: "compare: reference fixed ..." in err.read_text(errors="replace"),
        "the fixed worker's run",
    )
    assert "compare interrupted" in err.read_text(errors="replace")
    report = json.loads((tmp_path / "out" / "reference-fixed" / "report.json").read_text())
    assert report["interrupted"] is True


def test_a_second_compare_into_the_same_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two compares into one --out (reports/compare by default) each wrote there: the one that
    ended last replaced the other's report folder and table, and neither said a word."""
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = {"pid": other.pid, "create_time": proctree.create_time(psutil.Process(other.pid))}
        (out / compare.OUT_CLAIM).write_text(json.dumps(held))
        assert compare.run(_args("--sessions=1", "--no-plot", f"--out={out}")) == 2
        err = capsys.readouterr().err
        assert f"another compare (pid {other.pid}) is writing its reports there" in err
        assert sorted(p.name for p in out.iterdir()) == [compare.OUT_CLAIM]  # nothing run
    finally:
        other.kill()
        other.wait()
    # A claim whose compare is gone (killed outright) does not hold a later one back.
    assert compare._out_owner(out) is None


def test_claude_mem_json_names_the_private_home_where_it_is_now(tmp_path):
    """It named the HOME in the run's temp work folder, which is moved into the report folder
    when kept and removed when not: a folder that no longer existed."""
    moved = tmp_path / "report" / "work"
    gone = "/tmp/leakproof-soak-x/claude-mem-home"
    assert compare._home_now(gone, str(moved)) == str(moved / "claude-mem-home")
    assert compare._home_now(gone, None) is None  # the work folder was removed
    assert compare._home_now(None, str(moved)) is None
