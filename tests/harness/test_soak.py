"""Whole soaks against the real reference worker: the fixed one passes, the leaky one fails."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
from pathlib import Path

import pytest
from soak_helpers import run_pids

import proctree
from fake_claude.ledger import read_ledger
from harness.census import run_id_token
from harness.hooks import HookClient
from harness.report import facts_text
from harness.report_assembly import print_summary, starts_warning
from harness.soak import run_soak
from harness.soak_config import SoakConfig
from harness.target import Target
from harness.targets import get_target
from harness.targets.reference import ReferenceTarget

pytest.importorskip("worker")


def _soak(tmp_path: Path, run_id: str, target: Target | None = None, **kw: object) -> dict:
    """A soak of the reference worker (or `target`) with these SoakConfig fields."""
    config = SoakConfig(run_id=run_id, report=tmp_path / "report", progress="none", seed=7, **kw)  # type: ignore[arg-type]
    if target is None:
        target = get_target("reference", **config.target_kwargs())
    return asyncio.run(run_soak(config, target))


def _small_leaky_soak(
    tmp_path: Path, run_id: str, scenarios: str, sessions: int = 2, **kw: object
) -> dict:
    """One-prompt sessions of the leaky worker (two), two at a time, with these scenarios."""
    return _soak(
        tmp_path,
        run_id,
        mode="leaky",
        sessions=sessions,
        prompts=1,
        concurrency=2,
        scenarios=scenarios,
        **kw,
    )


def test_leaky_worker_fails_and_names_every_leak(tmp_path, run_id, monkeypatch):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    sessions, prompts = 3, 2
    report = _soak(
        tmp_path,
        run_id,
        mode="leaky",
        sessions=sessions,
        prompts=prompts,
        observations=1,
        concurrency=2,
        scenarios="ok",
        grace=1.5,
    )
    assert report["verdict"] == "FAIL" and report["exit_code"] == 1
    # 9.0.0's mechanism: one observer per prompt, none ever ended.
    assert report["leaked_count"] == sessions * prompts
    # No session's processes were all gone: none measured, each said to be so.
    latency = report["cleanup_latency_ms"]
    assert latency["n"] == 0 and latency["not_measured"] == sessions, latency
    leaks_txt = (tmp_path / "report" / "leaks.txt").read_text()
    for leak in report["leaked"]:
        assert run_id_token(run_id) in leak["cmdline"]
        assert leak["session"] and leak["scenario"] == "ok", json.dumps(leak)
        assert str(leak["pid"]) in leaks_txt
    # RSS as sampled while they were leaking (a real observer's size, not a placeholder).
    assert max(leak["rss"] for leak in report["leaked"]) > 0
    assert any("leaked" in r for r in report["reasons"])
    assert report["descendants_end"] > report["descendants_baseline"]
    # The harness cleaned up after the leaky worker: nothing of the run survives.
    assert run_pids(run_id) == []
    on_disk = json.loads((tmp_path / "report" / "report.json").read_text())
    assert on_disk["leaked_count"] == report["leaked_count"]
    assert (tmp_path / "report" / "rss.png").stat().st_size > 0
    assert "<failure" in (tmp_path / "report" / "junit.xml").read_text()
    md = summary.read_text()
    assert "FAIL" in md and str(report["leaked"][0]["pid"]) in md
    # The report says what held the worker's children: nothing (9.0.0 had no containment).
    assert facts_text(report["target_facts"]) == "containment: none"
    assert "Target: containment: none." in md
    # The evidence is kept, in the report folder: no temp folder is left behind.
    work = tmp_path / "report" / "work"
    assert on_disk["work_dir"] == str(work)
    assert (work / "ledger.jsonl").stat().st_size > 0
    assert (work / "worker-leaky" / "worker.log").is_file()
    assert not list(Path(tempfile.gettempdir()).glob(f"leakproof-soak-{run_id}-*"))


@pytest.mark.parametrize(
    "scenarios",
    ["ok", "mix:ok=2,ignore-eof=1,ignore-sigterm=1,grandchild=1,escape=1,crash=1"],
)
def test_fixed_worker_passes(tmp_path, run_id, scenarios):
    report = _soak(
        tmp_path,
        run_id,
        mode="fixed",
        sessions=12,
        prompts=2,
        observations=2,
        concurrency=3,
        scenarios=scenarios,
        grace=5.0,
    )
    assert report["verdict"] == "PASS", (report["reasons"], report["leaked"])
    assert report["leaked_count"] == 0 and report["completed"] == 12
    assert report["processes_seen"] >= 12  # the census really saw the observers
    assert report["cleanup_latency_ms"]["n"] > 0
    assert report["descendants_end"] <= report["descendants_baseline"]
    assert run_pids(run_id) == []
    junit = (tmp_path / "report" / "junit.xml").read_text()
    assert "<failure" not in junit and "<error" not in junit
    # What held the children on this machine, as the worker said (cgroup cells need privileges).
    held = report["target_facts"]["containment"]
    if sys.platform.startswith("linux"):
        assert held["subreaper"] and held["pdeathsig"] and held["guardian"]["alive"], held
    out = io.StringIO()
    print_summary(report, out)
    assert f"  target: {facts_text(report['target_facts'])}\n" in out.getvalue()


class _RegistrySpy(ReferenceTarget):
    """The reference target, recording each registry look-up: its path and the rows answered."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.lookups: list[tuple[str, int]] = []

    def client(self, http: object) -> HookClient:
        lookups = self.lookups

        class Recording(HookClient):
            async def get(self, path: str) -> object:
                data = await super().get(path)
                if path.startswith("/api/processes"):
                    lookups.append((path, len(data.get("processes", []))))
                return data

        inner = super().client(http)
        return Recording(inner.http, inner.base_url)


def test_registry_lookups_ask_only_for_the_sessions_waiting(tmp_path, run_id):
    """Attribution asks the worker for the sessions that ended since the last look-up, each once:
    its cost per session stays flat however long the soak (it fetched every row ever, each time)."""
    config = SoakConfig(
        run_id=run_id,
        report=tmp_path / "report",
        progress="none",
        seed=7,
        sessions=16,
        prompts=1,
        observations=0,
        concurrency=4,
        scenarios="ok",
    )
    target = _RegistrySpy(**config.target_kwargs())
    report = asyncio.run(run_soak(config, target))
    assert report["verdict"] == "PASS", report["reasons"]
    asked: list[int] = []
    for path, _rows in target.lookups:
        assert path.startswith("/api/processes?sessions="), target.lookups
        asked += [int(x) for x in path.split("=", 1)[1].split(",")]
    assert len(asked) == len(set(asked)) == 16, target.lookups
    # One observer per session ("ok", one prompt), each answered once.
    assert sum(rows for _path, rows in target.lookups) == 16, target.lookups
    assert run_pids(run_id) == []


def test_a_run_past_its_rss_stop_starts_no_more_sessions(tmp_path, run_id):
    """The leaky worker keeps every observer: without a stop its default 300-session soak took
    3 GB by session 107. Past --rss-stop no session starts; the verdict says why."""
    report = _small_leaky_soak(
        tmp_path, run_id, "ok", sessions=500, observations=0, rss_peak=50.0, rss_stop=100.0
    )
    assert report["verdict"] == "FAIL"
    assert "past --rss-stop 100 MB" in report["rss"]["stopped_early"]
    assert any("--rss-stop" in r for r in report["reasons"])
    assert report["rss"]["stop_mb"] == 100.0 and report["rss"]["peak_total_mb"] > 100
    assert 0 < report["started"] < 100, report["started"]  # each leaked observer holds ~11 MB
    assert report["leaked_count"] >= 1
    assert run_pids(run_id) == []


def test_escapees_of_a_leaky_worker_are_flagged_and_swept(tmp_path, run_id):
    """Double-forked daemons leave the worker's tree: escaped, leaked, and still cleaned up."""
    report = _small_leaky_soak(tmp_path, run_id, "escape", observations=1, grace=1.5)
    assert report["verdict"] == "FAIL"
    escaped = report["escaped"]
    assert escaped and all(e["role"] == "escapee" for e in escaped)
    leaked_pids = {e["pid"] for e in report["leaked"]}
    assert {e["pid"] for e in escaped} <= leaked_pids
    # The leaky worker's shutdown does not reach them; the harness's sweep does.
    assert {e["pid"] for e in escaped} <= {k["pid"] for k in report["swept_at_exit"]}
    assert run_pids(run_id) == []


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("part", ["grandchild:n=1,ignore=1,linger=1", "escape"])
def test_lineages_that_fork_and_exit_are_swept_after_a_leaky_run(
    tmp_path, run_id, stops_growing, part
):
    """The leaky worker leaves children that fork and exit every 10 ms: no pid of them lives
    long enough to be found and killed from a list, yet the run leaves none of them behind."""
    scenarios = f"{part},hop=0.01" if ":" in part else f"{part}:hop=0.01"
    report = _small_leaky_soak(tmp_path, run_id, scenarios, observations=0, grace=1.0)
    assert report["verdict"] == "FAIL"
    ledger = tmp_path / "report" / "work" / "ledger.jsonl"  # a FAIL keeps the work folder
    assert '"hop"' in ledger.read_text(), "the children never hopped"
    assert stops_growing(ledger), "a lineage still hops after the run"
    assert run_pids(run_id) == []


class _NoRegistry(ReferenceTarget):
    """A target that cannot say which process belongs to which session (like a foreign worker)."""

    async def session_processes(self, session, http):  # type: ignore[override]
        return []


def test_leaks_are_found_without_the_workers_registry(tmp_path, run_id):
    """Attribution by time (sessions running at each spawn) still names every leak."""
    sessions, prompts = 3, 2
    report = _soak(
        tmp_path,
        run_id,
        _NoRegistry(mode="leaky", worker_grace=0.5),
        mode="leaky",
        sessions=sessions,
        prompts=prompts,
        observations=1,
        concurrency=2,
        scenarios="ok",
        grace=1.5,
        plot=False,
    )
    assert report["verdict"] == "FAIL"
    assert report["leaked_count"] == sessions * prompts
    assert all(leak["session"] is None for leak in report["leaked"])
    assert run_pids(run_id) == []


def test_time_attribution_invents_no_leak(tmp_path, run_id):
    sessions = 10
    report = _soak(
        tmp_path,
        run_id,
        _NoRegistry(mode="fixed", worker_grace=0.5),
        mode="fixed",
        sessions=sessions,
        prompts=2,
        observations=1,
        concurrency=3,
        scenarios="ok",
        grace=5.0,
        plot=False,
    )
    assert report["verdict"] == "PASS", (report["reasons"], report["leaked"])
    assert report["processes_seen"] >= sessions
    assert run_pids(run_id) == []


def test_a_leaky_workers_growing_rss_is_judged_too(tmp_path, run_id):
    """Beyond the census: the leaked observers raise the summed RSS, and the slope says so (the
    live count rises with the sessions, so the floor is judged)."""
    report = _soak(
        tmp_path,
        run_id,
        mode="leaky",
        sessions=120,
        prompts=1,
        observations=1,
        concurrency=2,
        # Each fake waits 40 ms before its first reply: the run then lasts for its sessions' sake,
        # not the CPU's, so its 2nd half holds enough census samples (>= 10 floor points of >= 3)
        # also when a loaded machine slows the census. Without the wait, 160 sessions gave 9
        # points in a full CI run (28 samples; 32 on an idle machine, 10 points, at the edge).
        scenarios="slow:first=0.04,latency=0",
        grace=1.0,
        sample_hz=20.0,
        rss_min_span=30,
        plot=False,
    )
    rss = report["rss"]
    assert rss["slopes_judged"], json.dumps([rss["total_slope"], rss["worker_slope"]])
    assert rss["total_slope"]["method"] == "floor", rss["total_slope"]
    # One fake observer (~10 MB) per session: far above the 16 MB/100 sessions budget.
    assert rss["total_slope"]["mb_per_100_sessions"] > 300, rss["total_slope"]
    assert any("RSS of worker+descendants grows" in r for r in report["reasons"]), report["reasons"]
    assert run_pids(run_id) == []


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX #! script that cannot start")
def test_a_worker_that_never_gets_claude_running_is_an_error(tmp_path, run_id):
    # The worker spawns this instead of the harness's fake (a later --claude wins): it passes
    # the worker's start-up check (an executable file; a relative interpreter is looked up
    # from the spawner's folder, unknown to the check), and every spawn of it fails at exec.
    # The hooks still answer and the queue still drains, so every session "completes".
    broken = tmp_path / "claude"
    broken.write_text("#!nonexistent/interpreter\n")
    broken.chmod(0o755)
    target = ReferenceTarget(mode="fixed", extra_args=["--claude", str(broken)])
    report = _soak(tmp_path, run_id, target, sessions=3, prompts=1, concurrency=2, plot=False)
    assert report["completed"] == 3 and report["claude_starts"] == 0
    assert report["verdict"] == "ERROR" and report["exit_code"] == 2, report["reasons"]
    assert "no claude ever started in 3 completed session(s)" in report["reasons"][0]
    assert run_pids(run_id) == []


def test_a_soak_counts_the_claudes_it_started(tmp_path, run_id):
    report = _soak(tmp_path, run_id, sessions=2, prompts=1, concurrency=2, plot=False)
    assert report["verdict"] == "PASS", report["reasons"]
    # One observer per session (its prompt and its summary in one process).
    assert report["claude_starts"] >= 2 and report["warnings"] == []


def test_sessions_that_ran_no_claude_are_called_out():
    assert "only 3 claude start(s) for 5 completed sessions" in (starts_warning(3, 5) or "")
    assert starts_warning(5, 5) is None and starts_warning(7, 5) is None
    assert starts_warning(None, 5) is None  # the user's own claude: no ledger to count
    assert starts_warning(0, 5) is None  # none at all is the verdict's ERROR, not a warning


def _gone(records: list[dict]) -> bool:
    """None of these (pid, create_time) is a live process any more (a reused pid is not it)."""
    return not any(proctree.is_alive(proctree.ProcId(r["pid"], r["create_time"])) for r in records)


def test_a_leaky_worker_leaks_its_observers_mcp_servers_too(tmp_path, run_id):
    # Each observer starts the user's MCP servers (no --strict-mcp-config, as claude-mem 9.0.0):
    # every observer the leaky worker never ends holds its servers too, and the census names
    # them, with their observer's session.
    report = _soak(tmp_path, run_id, mode="leaky", sessions=2, prompts=1, observations=0,
                   concurrency=2, scenarios="ok", grace=1.5, plot=False, mcp_servers=2)  # fmt: skip
    assert report["verdict"] == "FAIL"
    observers = {leak["pid"]: leak for leak in report["leaked"] if leak["scenario"] == "ok"}
    servers = [leak for leak in report["leaked"] if leak["scenario"].startswith("mcp-server:")]
    assert len(observers) == 2 and len(servers) == 4, report["leaked"]
    for server in servers:
        assert server["ppid"] in observers
        assert server["session"] == observers[server["ppid"]]["session"]
    assert _gone(report["leaked"])


def test_the_fixed_worker_ends_stubborn_mcp_servers_of_stubborn_observers(tmp_path, run_id):
    # Observers that ignore EOF and SIGTERM are SIGKILLed, which orphans their servers; these
    # ignore EOF and SIGTERM as well, so only the worker's tree ending can end them.
    report = _soak(tmp_path, run_id, mode="fixed", sessions=4, prompts=1, observations=0,
                   concurrency=2, scenarios="ignore-eof+ignore-sigterm", grace=5.0,
                   plot=False, mcp_servers=2, mcp_server_mode="stubborn",
                   keep_work_dir=True)  # fmt: skip
    assert report["verdict"] == "PASS", (report["reasons"], report["leaked"])
    ledger = read_ledger(Path(report["work_dir"]) / "ledger.jsonl")
    servers = [r for r in ledger if r["event"] == "start" and r.get("role") == "mcp-server"]
    killed = [r for r in ledger if r["event"] == "signal" and r.get("name") == "SIGTERM"]
    assert len(servers) == 8 and killed, "the scenario did not play out"
    assert report["processes_seen"] >= 12  # the census saw observers and servers
    assert _gone(servers)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP")
@pytest.mark.parametrize("stops", ["once", "every-time"])
def test_a_worker_left_stopped_cuts_the_run_short(tmp_path, run_id, monkeypatch, stops):
    """A claude that SIGSTOPs the worker (its parent) and never continues it: every session
    waited out its HTTP timeouts, one after the other (419 s for 13 of 20 sessions). Now the run
    is cut short, said in the verdict, and the worker is continued so that it ends its
    observers when it is stopped."""
    import harness.soak as soak_mod

    monkeypatch.setattr(soak_mod, "WORKER_STOPPED_LIMIT_S", 2.0)
    marker = tmp_path / "stopped"
    claude = tmp_path / "claude"
    claude.write_text(
        f"""#!{sys.executable}
import os, signal, sys, time
# This claude's place in line, from its own append's end: two started at once both read a
# size of 4 afterwards, and then none stopped the worker (a CI failure: PASS).
count = os.open({str(marker)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(count, b".")
place = os.lseek(count, 0, os.SEEK_CUR)
os.close(count)
if place == 3:  # once some sessions are done
    worker = os.getppid()
    if {stops!r} == "every-time" and os.fork() == 0:  # a child that stops it again and again
        for _ in range(40):
            os.kill(worker, signal.SIGSTOP)
            time.sleep(0.25)
        os._exit(0)
    os.kill(worker, signal.SIGSTOP)
os.execv(sys.executable, [sys.executable, "-m", "fake_claude", *sys.argv[1:]])
"""
    )
    claude.chmod(0o755)
    report = _soak(tmp_path, run_id, sessions=6, concurrency=2, claude=str(claude), grace=5.0)
    assert marker.exists()
    assert report["verdict"] == "FAIL", report["reasons"]
    assert any("stayed stopped" in r for r in report["reasons"]), report["reasons"]
    assert report["completed"] < 6 and report["failed"] >= 1
    assert any("cut short" in f for f in report["failures"]), report["failures"]
    assert report["leaked_count"] == 0, report["leaked"]  # continued, it ended its observers
    # every-time: a later stop is continued at once (said when seen: "N more time(s)"; the
    # stopping child may be ended with its session first), so the worker still ends them all.
    assert run_pids(run_id) == []


def test_a_report_that_fails_at_the_end_keeps_the_work_folder(tmp_path, run_id, monkeypatch):
    """An ERROR keeps the run's work folder (its log is the evidence); when the ERROR came from
    the report's own writing, the folder had been removed already."""
    import harness.report_assembly as assembly

    real = assembly.write_report

    def failing(directory, report, plot=True, best_effort=False):
        if not best_effort:
            raise OSError(28, "No space left on device")
        return real(directory, report, plot=plot, best_effort=True)

    monkeypatch.setattr(assembly, "write_report", failing)
    report = _soak(tmp_path, run_id, sessions=2, concurrency=1, scenarios="ok", plot=False)
    assert report["verdict"] == "ERROR", report["reasons"]
    assert "the report could not be written" in report["reasons"][-1]
    kept = Path(report["work_dir"])
    try:
        assert (kept / "worker-fixed" / "worker.log").is_file()
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


def test_scenarios_do_not_go_with_a_claude_of_ones_own(tmp_path) -> None:
    """They pick the fake's behaviour: with --claude they were taken, ignored and recorded."""
    import subprocess

    argv = [sys.executable, "-m", "harness", "soak", "--claude", sys.executable]
    argv += ["--scenarios", "hang", "--progress", "none"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--scenarios picks the fake's behaviour" in done.stderr


def test_a_time_boxed_soak_starts_sessions_until_its_time_is_up(tmp_path, run_id):
    """`--duration`: sessions start until the time is up, however many that is, and the report
    says how many ran; its `config` said `sessions: 300` (the unused default) beside them."""
    report = _soak(tmp_path, run_id, duration=3.0, scenarios="ok", concurrency=2, plot=False)
    assert report["verdict"] == "PASS", report["reasons"]
    assert report["started"] == report["sessions"] == report["completed"] > 0, report
    assert report["config"]["duration"] == 3.0 and report["config"]["sessions"] is None
    assert report["duration_s"] >= 3.0, report["duration_s"]
    assert run_pids(run_id) == []


def _one_drained_session(
    tmp_path: Path, run_id: str, drain_timeout: float, scenarios: str, **kw: object
) -> dict:
    """One session of the fixed worker whose queue the harness waits `drain_timeout` for."""
    target = ReferenceTarget(mode="fixed", drain_timeout=drain_timeout)
    return _soak(tmp_path, run_id, target, sessions=1, concurrency=1, scenarios=scenarios,
                 grace=1.0, plot=False, **kw)  # fmt: skip


def test_a_session_the_worker_cannot_drain_is_deleted_not_blamed(tmp_path, run_id):
    # Observers that never answer initialize: the fixed worker retries each queued message with
    # a new observer (10 s each), so the queue outlasts the harness's drain wait. The harness
    # then gives up on the session as a user would (DELETE), and the worker ends the observer.
    # Before, the session stayed live in the worker, whose next observer counted as leaked.
    report = _one_drained_session(tmp_path, run_id, 2.0, "hang:at=start", prompts=1)
    assert report["failed"] == 1 and report["leaked_count"] == 0, report["reasons"]
    assert "queue not drained" in report["failures"][0], report["failures"]
    assert report["failures"][0].endswith(", deleted"), report["failures"]
    assert report["verdict"] == "ERROR" and report["reasons"] == [
        "no session completed: nothing was tested"
    ]
    assert run_pids(run_id) == []


def test_a_long_session_whose_queue_still_moves_is_not_given_up(tmp_path, run_id):
    """`--prompts 20 --observations 20`: a session's 400+ queued messages outlasted the drain
    wait, counted from the hooks' end, while the worker still worked them off one by one; the
    harness deleted the session and counted it failed. The wait now runs from the queue's last
    progress: here ~24 messages of >= 0.4 s each take far longer than the 5 s wait, yet the
    queue moves every fraction of a second (a loaded machine's observer start-up included)."""
    scenario = "slow:first=0,latency=0.4,jitter=0"
    report = _one_drained_session(tmp_path, run_id, 5.0, scenario, prompts=2, observations=10)
    assert report["failed"] == 0 and report["completed"] == 1, report["failures"]
    assert report["duration_s"] > 5.0, report["duration_s"]  # it did outlast the wait
    assert report["verdict"] == "PASS", report["reasons"]
    assert run_pids(run_id) == []


def test_rss_samples_end_where_the_run_was_judged(tmp_path, run_id):
    """rss.samples (and rss.png) show the run, not the harness's teardown after it: samples taken
    while the worker was being stopped and its leaks swept read worker 0 MB and no descendants,
    and drew a leaky run's plot as if its leaks had gone (report.json's worker_rss_mb.end and
    descendants_end said otherwise)."""
    report = _small_leaky_soak(tmp_path, run_id, "escape", observations=1, grace=1.5)
    assert report["verdict"] == "FAIL" and report["worker_alive"]
    samples = report["rss"]["samples"]
    assert samples
    # The worker ran for the whole judged run: it is in every sample.
    assert all(s["worker_mb"] > 0 for s in samples), samples[-3:]
    # The last sample still holds the leaks the run ended with (the sweep came after it).
    assert samples[-1]["descendants"] >= report["descendants_end"] > 0, samples[-3:]
