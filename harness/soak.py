"""`python -m harness soak`: many sessions through a worker, an exact census, a verdict, a report.

`run_soak(config, target)` is the library entry point (used by repro, bench and other targets);
`run(args)` is the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

import proctree
from cliargs import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, float_at_least, run_id_arg
from harness.census import Census, ProcRecord
from harness.cleanup import end_live_runs, live_run, run_over, sweep_run, wait_unjudged_gone
from harness.interrupts import shielded
from harness.progress import Progress
from harness.report import (
    begin_report,
    facts_text,
    latency_text,
    leak_entry,
    leaks_table,
    peak_text,
    slopes_text,
    swept_leak_entry,
    write_json,
    write_report,
    zombies_text,
)
from harness.target import RunContext, Target
from harness.text import describe, printable
from harness.verdict import (
    DEFAULT_MIN_SLOPE_SPAN,
    DEFAULT_SLOPE_BUDGET_MB,
    ERROR,
    EXIT_CODES,
    FAIL,
    INTERRUPTED,
    judge,
    slope_per_100_sessions,
    slopes_judged,
)
from harness.workload import make_session

# A session in flight this long is named on the progress display (see _stage).
SLOW_SESSION_S = 15.0
HTTP_TIMEOUT_S = 60.0  # per request; a loaded 2-core machine is slow, a hung worker is not
FAILURE_MESSAGES_KEPT = 20
# In each work folder: what tells a soak's folder from a user's of the same name (REPORT/work).
WORK_MARK = ".leakproof-soak-work"


def default_concurrency() -> int:
    # Sessions mostly wait on HTTP and on the fake; two per core keeps the cores busy.
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


# How long a run with failed sessions waits for the worker's exit status (see run_soak).
WORKER_EXIT_WAIT_S = 2.0
# A worker stopped this long cuts the run short (see _watch_worker); a short stop is survived.
WORKER_STOPPED_LIMIT_S = 20.0
CUT_END_TIMEOUT_S = 10.0  # for the end of each session in flight when the run is cut short

# Default peak budget for worker + descendants, MB. Why: at the default concurrency a fixed worker
# holds at most ~concurrency observers (a fake plus its grandchildren, each a small interpreter)
# plus itself; 1 GB is several times that, yet 40x under the 44 GB of issue #603.
DEFAULT_PEAK_BUDGET_MB = 1024.0


@dataclass
class SoakConfig:
    target: str = "reference"
    mode: str = "fixed"
    sessions: int = 300
    concurrency: int = field(default_factory=default_concurrency)
    prompts: int = 2
    observations: int = 3
    scenarios: str = "mix"  # FAKE_CLAUDE_SCENARIO: the fake's default mix of every fault
    seed: int = 1
    grace: float = 5.0  # a survivor this long after its session's end is leaked
    duration: float | None = None  # time-boxed soak instead of N sessions
    rss_budget: float = DEFAULT_SLOPE_BUDGET_MB  # MB per 100 sessions (2nd-half slope)
    rss_peak: float | None = DEFAULT_PEAK_BUDGET_MB  # MB, worker + descendants
    # MB, worker + descendants: no new session past it (None: twice rss_peak; 0: never)
    rss_stop: float | None = None
    rss_min_span: int = DEFAULT_MIN_SLOPE_SPAN  # sessions in the 2nd half before slopes count
    report: Path | None = None
    worker_grace: float = 0.5  # the worker's own escalation step (--grace of the worker)
    reap_interval: float = 1.0
    sample_hz: float = 4.0
    progress: str = "auto"  # auto | rich | plain | none
    run_id: str | None = None
    keep_work_dir: bool = False
    plot: bool = True
    target_options: dict[str, Any] = field(default_factory=dict)
    # The user's own `claude` executable instead of the fake (no ledger, no run token): the
    # census then counts the worker's new descendants (targets that allow it, e.g. reference).
    claude: Path | None = None
    # Make the harness process a subreaper (Linux) so orphans of the worker's tree stay
    # countable; the command does this with --claude (it is a process of its own), a library
    # caller (e.g. inside a test runner) decides.
    adopt_orphans: bool = False
    # Stdio MCP servers every fake starts as its children, standing in for the user's own MCP
    # config that a real `claude` loads unless given --strict-mcp-config (claude-mem < 13 did
    # not give it): each leaked observer then leaks these too. `stubborn` ones ignore stdin EOF
    # and SIGTERM, so only a tree kill ends them once their fake is gone.
    mcp_servers: int = 0
    mcp_server_mode: str = "polite"  # polite | stubborn

    def rss_stop_mb(self) -> float | None:
        """Past this RSS (worker + descendants) no new session starts: a leaking worker would
        otherwise take the machine's memory (the leaky worker: 3 GB by session 107 of 300)."""
        if self.rss_stop is None:
            return None if self.rss_peak is None else 2 * self.rss_peak
        return self.rss_stop or None

    def target_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"mode": self.mode}
        if self.target == "reference":
            kw.update(worker_grace=self.worker_grace, reap_interval=self.reap_interval)
        kw.update(self.target_options)
        return kw


def _cleanup_latency(census: Census) -> dict[str, Any]:
    """Percentiles over the sessions whose processes were all gone while the run was judged;
    `not_measured`: the other sessions that ended (a process leaked or outlived the run, or
    none was seen)."""
    latencies = census.session_latencies()
    return {**_percentiles(latencies), "not_measured": census.ended_sessions() - len(latencies)}


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 1)

    return {
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


def scenario_spec(scenarios: str) -> str:
    """Bare weights (`ok=4,escape=1`) mean a mix of those; anything else is a fake spec."""
    if "=" in scenarios and ":" not in scenarios:
        return "mix:" + scenarios
    return scenarios


MCP_SERVER_FLAGS = {"polite": (), "stubborn": ("--ignore-eof", "--ignore-sigterm")}


def _write_shim(work_dir: Path, run_id: str, config: SoakConfig, ledger: Path) -> Path:
    from fake_claude.shim import write_shim

    settings = {
        "FAKE_CLAUDE_SCENARIO": scenario_spec(config.scenarios),
        "FAKE_CLAUDE_SEED": str(config.seed),
        "FAKE_CLAUDE_LEDGER": str(ledger),
        "FAKE_CLAUDE_RUN_ID": run_id,
    }
    if config.mcp_servers:
        from fake_claude.mcp_server import mcp_config

        flags = MCP_SERVER_FLAGS[config.mcp_server_mode]
        path = work_dir / "user-mcp.json"
        path.write_text(json.dumps(mcp_config(config.mcp_servers, *flags)), encoding="utf-8")
        settings["FAKE_CLAUDE_USER_MCP_CONFIG"] = str(path)
    return write_shim(work_dir / "bin", settings)


class _Run:
    """Mutable state of one soak run, shared by its tasks."""

    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.next_index = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.failures: list[str] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.t0 = time.monotonic()
        self.drive_end: float | None = None
        self.pending: set[asyncio.Future[None]] = set()
        self.no_more = False  # every session that will run has started
        self.cut_short: str | None = None  # why no more sessions are driven (see _watch_worker)
        self.stopped_early: str | None = None  # why no new session starts (see _watch_rss)
        self.driving: set[asyncio.Future[None]] = set()
        self.in_flight: dict[int, float] = {}  # session index -> its start (monotonic)
        self.drain_timeout: float | None = None  # the target's, when it has one (for _stage)

    def take(self) -> int | None:
        cfg = self.config
        if self.cut_short is not None or self.stopped_early is not None:
            self.no_more = True
            return None
        if cfg.duration is not None:
            if time.monotonic() - self.t0 >= cfg.duration:
                self.no_more = True
                return None
        elif self.next_index >= cfg.sessions:
            self.no_more = True
            return None
        index = self.next_index
        self.next_index += 1
        return index


async def _session_loop(run: _Run, target: Target, census: Census, http: Any, run_id: str) -> None:
    cfg = run.config
    while (index := run.take()) is not None:
        spec = make_session(index, run_id, cfg.seed, cfg.prompts, cfg.observations)
        key = spec.content_session_id
        census.session_started(key)
        run.started += 1
        run.starts.append(time.time())
        run.in_flight[index] = time.monotonic()
        ok = False
        try:
            drive = asyncio.ensure_future(target.drive_session(spec, http))
            run.driving.add(drive)
            try:
                await drive
            finally:
                run.driving.discard(drive)
            ok = True
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError) as exc:
            run.failed += 1
            if len(run.failures) < FAILURE_MESSAGES_KEPT:
                run.failures.append(f"session {index}: {describe(exc)}"[:500])
        except asyncio.CancelledError:
            if run.cut_short is None:
                raise  # an interrupt
            run.failed += 1
            if len(run.failures) < FAILURE_MESSAGES_KEPT:
                run.failures.append(f"session {index}: cut short ({run.cut_short})"[:500])
            # As the hooks would at the session's end: else its observer waits for more work
            # (as claude-mem's do) and counts as leaked, the harness's doing, not the worker's.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(target.end_session(spec, http), CUT_END_TIMEOUT_S)
        finally:
            run.in_flight.pop(index, None)
            census.session_ended(key, ok=ok)
            run.ends.append(time.time())
        if ok:
            run.completed += 1
        # Attribution runs beside the next session: a target may batch its registry look-ups.
        task = asyncio.ensure_future(_attribute(target, census, spec, http))
        run.pending.add(task)
        task.add_done_callback(run.pending.discard)


async def _attribute(target: Target, census: Census, spec: Any, http: Any) -> None:
    try:
        ids = await target.session_processes(spec, http)
    except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError):
        ids = []
    census.attribute(spec.content_session_id, ids)


def _stage(run: _Run) -> str:
    """What the run is doing now, for the progress display: a time-boxed run goes on after
    its time is up until the sessions in flight end, then waits for their processes; and a
    session that has been in flight long says so (else a queue that never drains, as the
    leaky worker's hung observers make, looks like a stalled harness)."""
    slow = _slow_session(run)
    if not run.no_more:
        return slow
    in_flight = run.started - run.completed - run.failed
    if in_flight > 0:
        why = "time is up" if run.config.duration is not None else "all started"
        return f"{why}: finishing {in_flight} session(s) in flight" + (f"; {slow}" if slow else "")
    return f"settling: up to {run.config.grace:g} s for the last processes to go"


def _slow_session(run: _Run) -> str:
    if not run.in_flight:
        return ""
    index, since = min(run.in_flight.items(), key=lambda item: item[1])
    age = time.monotonic() - since
    if age < SLOW_SESSION_S:
        return ""
    limit = (
        f" (one whose queue does not drain is given up at {run.drain_timeout:g} s)"
        if run.drain_timeout
        else ""
    )
    return f"session {index} in flight for {age:.0f} s{limit}"


async def _watch_worker(run: _Run, census: Census) -> None:
    """Cut the run short when the worker stays stopped (a SIGSTOP from one of its children, a
    debugger): each session would otherwise wait out its HTTP timeouts, one after the other,
    for as long as the run has sessions (419 s for 13 of 20 in a hostile soak)."""
    stops = 0
    while True:
        await asyncio.sleep(0.5)
        stopped = census.worker_stopped_for()
        # Once cut, a stop again (the same hostile child) is not waited for: the run already
        # fails for it, and the worker must be able to end its observers while the run settles.
        if stopped >= (WORKER_STOPPED_LIMIT_S if not stops else 0.5):
            stops += 1
            again = f", then {stops - 1} more time(s) once continued" if stops > 1 else ""
            run.cut_short = (
                f"the worker stayed stopped (SIGSTOP, or a debugger) for "
                f"{WORKER_STOPPED_LIMIT_S:g} s{again}: the run was cut short"
            )
            # Ours (we started it): continued, it can end the sessions cut short, and its
            # observers, while the run settles.
            await asyncio.to_thread(census.continue_worker)
            for drive in list(run.driving):
                drive.cancel()


async def _watch_rss(run: _Run, census: Census, limit_mb: float) -> None:
    """No new session once the run's RSS passes --rss-stop: the verdict is a FAIL already (the
    default is twice --rss-peak), and the sessions in flight end as they would."""
    while census.last_total_rss <= limit_mb * 1e6:
        await asyncio.sleep(0.5)
    run.stopped_early = (
        f"worker+descendants RSS reached {census.last_total_rss / 1e6:.0f} MB, past --rss-stop "
        f"{limit_mb:g} MB: no session was started after that"
    )


async def _progress_loop(progress: Progress, census: Census, run: _Run) -> None:
    while True:
        progress.update({**census.snapshot(), "failed": run.failed, "stage": _stage(run)})
        await asyncio.sleep(0.25)


async def _settle(census: Census, baseline: int, grace: float) -> None:
    """After the last session: wait (<= grace) for the run to end and the tree to idle.

    By samples taken here, not the census thread's last one: a run that drove its sessions
    between two of those (10 short sessions in 0.39 s) looked idle at once, and the final
    sample then found an observer still ending (a FAIL: descendants above the baseline)."""
    deadline = time.monotonic() + grace + 2 * census.sample_interval
    while True:
        # The last one also lets the deadlines of the last sessions pass: their judgement is final.
        await asyncio.to_thread(census.sample)
        snap = census.snapshot()
        idle = snap["live_run"] == 0 and snap["live_descendants"] <= baseline
        if idle or time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.1)


def claude_path(value: str) -> Path:
    """--claude: a bare name is looked up on PATH, as a shell would (`--claude claude`)."""
    path = Path(value)
    if path.name == value and not path.exists():
        found = shutil.which(value)
        if found:
            return Path(found)
    return path


def config_problem(config: SoakConfig) -> str | None:
    """What makes this configuration unable to test anything, found before anything starts."""
    if config.claude is None:
        from fake_claude.scenario import ScenarioError, validate_spec

        try:
            validate_spec(scenario_spec(config.scenarios))
        except ScenarioError as exc:
            return f"--scenarios {config.scenarios!r}: {exc}"
    else:
        if config.scenarios != SoakConfig.scenarios:
            return "--scenarios picks the fake's behaviour: it cannot be used with --claude"
        claude = Path(config.claude)
        where = claude.absolute()  # said in full: Path drops the "./" of "./claude"
        if shutil.which(str(where)) is None:  # an executable file, as a spawn tests it
            if len(claude.parts) == 1:  # a name: claude_path found it nowhere on PATH either
                return f"--claude {claude}: not a command on PATH, nor an executable file {where}"
            return f"--claude {where}: not an executable file (a path, or a command on PATH)"
        if config.mcp_servers:
            return "--mcp-servers gives the fake MCP servers: it cannot be used with --claude"
    if config.mcp_server_mode not in MCP_SERVER_FLAGS:
        return f"--mcp-server-mode {config.mcp_server_mode!r}: polite or stubborn"
    return None


async def run_soak(config: SoakConfig, target: Target) -> dict[str, Any]:
    """Run one soak and return its report (also written to config.report when set).
    A configuration that cannot test anything raises ValueError before anything starts."""
    problem = config_problem(config)
    if problem:
        raise ValueError(problem)
    run_id = config.run_id or secrets.token_hex(6)
    work_dir = Path(tempfile.mkdtemp(prefix=f"leakproof-soak-{run_id}-"))
    (work_dir / WORK_MARK).write_text(run_id + "\n")
    ledger = work_dir / "ledger.jsonl"
    census = Census(
        run_id,
        None if config.claude is not None else ledger,
        config.grace,
        sample_hz=config.sample_hz,
        track_descendants=target.descendants_are_run,
        adopt_orphans=config.adopt_orphans,
    )
    live_run(run_id, target.stop_now, None if config.keep_work_dir else work_dir, census)
    run = _Run(config)
    run.drain_timeout = getattr(target, "drain_timeout", None)
    progress: Progress | None = None
    interrupted = False
    errors: list[str] = []
    baseline = 0
    worker_alive = True
    worker_exit: int | None = None
    worker_rss_start = 0
    swept: list[dict] = []
    messages: dict[str, int] | None = None
    t_start = time.time()
    tasks: list[asyncio.Task[Any]] = []
    judged = False  # set once the census's last judgement is made (the run was not cut off)
    with contextlib.ExitStack() as shield:
        try:
            if config.claude is not None:
                if not target.descendants_are_run:
                    raise ValueError(
                        f"--claude needs a target whose new descendants are all the run's "
                        f"(reference); {target.name} cannot count them without the fake's run id"
                    )
                shim = Path(config.claude).resolve()
            else:
                shim = _write_shim(work_dir, run_id, config, ledger)
            ctx = RunContext(
                run_id=run_id,
                work_dir=work_dir,
                claude_path=shim,
                ledger_path=ledger,
                seed=config.seed,
            )
            census.start()
            handle = await target.start(ctx)
            census.set_worker(handle.pid, handle.create_time)
            first = await asyncio.to_thread(census.sample)
            baseline, worker_rss_start = first.descendants, first.worker_rss
            if config.progress != "none":
                total = None if config.duration is not None else config.sessions
                progress = Progress(total, mode=config.progress)
            timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
            connector = aiohttp.TCPConnector(limit=max(4, 2 * config.concurrency))
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                if progress is not None:
                    tasks.append(asyncio.ensure_future(_progress_loop(progress, census, run)))
                loops = [
                    asyncio.ensure_future(_session_loop(run, target, census, http, run_id))
                    for _ in range(max(1, config.concurrency))
                ]
                tasks += loops
                tasks.append(asyncio.ensure_future(_watch_worker(run, census)))
                if (limit := config.rss_stop_mb()) is not None:
                    tasks.append(asyncio.ensure_future(_watch_rss(run, census, limit)))
                await asyncio.gather(*loops)
                run.drive_end = time.time()
                if run.pending and run.cut_short is None:
                    # (after a cut, a worker stopped again would hold each for its timeout)
                    await asyncio.gather(*list(run.pending))
                # Failed sessions may mean a worker that is dying right now (its sockets close
                # before it exits): give it a moment to say how, rather than race its exit.
                worker_exit = await _exit_status(target, WORKER_EXIT_WAIT_S if run.failed else 0.0)
                worker_alive = worker_exit is None and _is_alive(census)
                await _settle(census, baseline, config.grace)
                if worker_alive and run.cut_short is None:
                    messages = await _messages(target, http)
            await asyncio.to_thread(census.finish)
            judged = True
        except (asyncio.CancelledError, KeyboardInterrupt):
            # KeyboardInterrupt: SIGTERM to a harness started with SIGINT ignored (interrupts).
            interrupted = True
        except Exception as exc:  # noqa: BLE001 - any harness failure becomes verdict ERROR
            errors.append(describe(exc))
            errors.append(traceback.format_exc(limit=5))
        finally:
            # A second Ctrl-C or SIGTERM from here on would cut the cleanup and the report short.
            shield.enter_context(shielded())
            for task in [*tasks, *run.pending]:
                task.cancel()
            await asyncio.gather(*tasks, *run.pending, return_exceptions=True)
            census.stop_judging()
            snap_end = census.snapshot()
            # A stopped worker cannot end its observers; it is ours (we started it): continue it.
            await asyncio.to_thread(census.continue_worker)
            try:
                await target.stop()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"stopping the target failed: {exc}")
            if judged:
                await asyncio.to_thread(wait_unjudged_gone, run_id, census, config.grace)
            swept = await asyncio.to_thread(sweep_run, run_id, census)
            census.stop()
            run_over(run_id)
            if progress is not None:  # the last state seen with the worker up, not after its stop
                # The run's own counts: the census counts a session cancelled by an interrupt
                # as ended, which the summary does not.
                stage = "interrupted" if interrupted else ""
                progress.close({**snap_end, "sessions_done": run.completed + run.failed,
                                "failed": run.failed, "stage": stage})  # fmt: skip

        report = _build_report(
            config,
            target,
            census,
            run,
            run_id=run_id,
            t_start=t_start,
            baseline=baseline,
            descendants_end=snap_end["live_descendants"],
            worker_alive=worker_alive,
            worker_exit=worker_exit,
            worker_rss_start=worker_rss_start,
            worker_rss_end=snap_end["worker_rss"],
            interrupted=interrupted,
            judged=judged,
            errors=errors + census.errors,
            swept=swept,
            work_dir=work_dir,
            messages=messages,
        )
        # A failed run's work folder (worker log and database, ledger) is the evidence: kept, and
        # moved into the report folder when there is one, so no run leaves a temp folder behind.
        # Kept too when a warning sends the reader to the worker log.
        starts = census.claude_starts if config.claude is None else None
        keep = (
            config.keep_work_dir
            or report["verdict"] in (FAIL, ERROR)
            or bool(
                starts_warning(starts, run.completed) or messages_warning(messages, config.claude)
            )
        )
        if keep and config.report is not None:
            report["work_dir"] = str(_move_work_dir(work_dir, Path(config.report), run_id))
        elif not keep:
            report["work_dir"] = None  # removed below: a report must not name a folder that is gone
            if config.report is not None:
                # An earlier run's evidence in this report folder would pass for this run's.
                _clear_earlier_work(Path(config.report))
        try:
            if config.report is not None:
                _write_report(Path(config.report), report, plot=config.plot)
        finally:
            if not keep and report["verdict"] == ERROR:
                report["work_dir"] = str(work_dir)  # an ERROR keeps it (left in the temp dir)
            elif not keep:
                shutil.rmtree(work_dir, ignore_errors=True)
    return report


def _write_report(directory: Path, report: dict[str, Any], plot: bool) -> None:
    """A report folder that cannot be written makes the run a harness error (exit 2), said in
    the summary and, where it can still be written, in report.json."""
    try:
        write_report(directory, report, plot=plot)
    except OSError as exc:
        report["verdict"], report["exit_code"] = ERROR, EXIT_CODES[ERROR]
        report["reasons"] = [*report["reasons"], f"the report could not be written: {exc}"]
        # Every file that can be written says so too (junit.xml and rss.png said PASS before).
        write_report(directory, report, plot=plot, best_effort=True)
        try:
            write_json(directory / "report.json", report)
        except OSError as again:
            report["reasons"].append(f"nor report.json: {again}")
            report["report_json_written"] = False


def _clear_earlier_work(report_dir: Path) -> bool:
    """Remove the work folders earlier soaks left in `report_dir` (`work`, or `work-RUNID` beside
    a folder of the user's); True if `work` is free. A folder without our mark is the user's
    (`--report .` in a project with a `work/`): never touched."""
    for folder in [report_dir / "work", *report_dir.glob("work-*")]:
        if (folder / WORK_MARK).is_file():
            shutil.rmtree(folder, ignore_errors=True)
    return not (report_dir / "work").exists()


def _move_work_dir(work_dir: Path, report_dir: Path, run_id: str) -> Path:
    dest = report_dir / "work"
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        if not _clear_earlier_work(report_dir):
            dest = report_dir / f"work-{run_id}"  # beside a folder of the user's
        shutil.move(str(work_dir), str(dest))
    except OSError:
        return work_dir  # left where it was; the report names it
    return dest


async def _exit_status(target: Target, wait: float) -> int | None:
    """The worker's exit status if it has ended, waiting up to `wait` s for it to end."""
    deadline = time.monotonic() + wait
    while (status := target.exit_status()) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return status


def _is_alive(census: Census) -> bool:
    worker = census.worker
    try:
        return (
            worker is not None
            and worker.is_running()
            and not proctree.exited(worker)  # dead, waiting to be reaped
        )
    except Exception:  # noqa: BLE001
        return False


def _still_there(rec: ProcRecord) -> bool:
    return not rec.reaped and proctree.ProcId(rec.pid, rec.create_time).process() is not None


def _build_report(
    config: SoakConfig,
    target: Target,
    census: Census,
    run: _Run,
    *,
    run_id: str,
    t_start: float,
    baseline: int,
    descendants_end: int,
    worker_alive: bool,
    worker_exit: int | None,
    worker_rss_start: int,
    worker_rss_end: int,
    interrupted: bool,
    judged: bool,
    errors: list[str],
    swept: list[dict],
    work_dir: Path,
    messages: dict[str, int] | None = None,
) -> dict[str, Any]:
    duration = time.time() - t_start
    samples = census.samples
    # Judge only while sessions were being driven: the drain after the last one has a constant
    # session count and falling RSS, which would fake a negative slope.
    t_first = run.starts[0] if run.starts else t_start
    t_last = run.drive_end or time.time()
    driven = [s for s in samples if t_first <= s.t <= t_last]
    total_pts = [(s.t, s.sessions_done, s.total_rss, s.descendants) for s in driven]
    worker_pts = [(s.t, s.sessions_done, s.worker_rss, s.descendants) for s in driven]
    total_slope = slope_per_100_sessions(total_pts)
    worker_slope = slope_per_100_sessions(worker_pts)
    # Both series are judged, or neither: by the shorter span and the fewer points.
    slope_span = min(total_slope["sessions_span"], worker_slope["sessions_span"])
    slope_points = min(total_slope["points"], worker_slope["points"])
    leaked = [leak_entry(r, census.session_of(r), exited_as="exited") for r in census.leaked]
    # Processes of the run the census never saw, still there after the worker's stop and the
    # grace (a backstop for any blind spot: they were leaks all the same). Only after its last
    # judgement: an interrupt's or an error's sweep ends the sessions in flight, no leak.
    unseen = [k for k in swept if judged and not census.reported(k["pid"], k["create_time"])]
    leaked += [swept_leak_entry(k) for k in unseen]
    # Each zombie seen, and whether it was reaped after all (only the others fail the run).
    zombies_end = [
        {**leak_entry(r, census.session_of(r)), "reaped": r.reaped} for r in census.zombies.values()
    ]
    # One last seen as a zombie and gone since (the harness's sweep ended it) reads "exited";
    # one still a zombie (held by a parent outside the run) keeps saying so.
    escaped = [
        leak_entry(r, census.session_of(r), exited_as="" if _still_there(r) else "exited")
        for r in census.escaped.values()
    ]
    peak_total_mb = census.peak_total_rss / 1e6
    # Only the fake writes the ledger: with the user's own claude, no figure (None).
    starts = census.claude_starts if config.claude is None else None
    verdict = judge(
        leaked_count=len(census.leaked),
        unseen_count=len(unseen),
        zombies_at_end=sum(1 for r in census.zombies.values() if not r.reaped),
        descendants_end=descendants_end,
        descendants_baseline=baseline,
        total_slope=total_slope["lower_bound_mb_per_100_sessions"],
        worker_slope=worker_slope["lower_bound_mb_per_100_sessions"],
        slope_budget=config.rss_budget,
        slope_span=slope_span,
        min_slope_span=config.rss_min_span,
        slope_points=slope_points,
        peak_total_mb=peak_total_mb,
        peak_budget_mb=config.rss_peak,
        completed=run.completed,
        claude_starts=starts,
        worker_alive=worker_alive,
        worker_exit=worker_exit,
        cut_short=run.cut_short or run.stopped_early,
        harness_errors=[e for e in errors if e],
        interrupted=interrupted,
    )
    scan_costs = sorted(census.scan_cost_s)
    cfg = asdict(config)
    cfg["report"] = str(config.report) if config.report else None
    return {
        "verdict": verdict.verdict,
        "exit_code": verdict.exit_code,
        "reasons": verdict.reasons,
        "interrupted": interrupted,
        "target": getattr(target, "name", config.target),
        "target_facts": target.facts(),  # e.g. what held the worker's children on this machine
        "mode": config.mode,
        "seed": config.seed if config.claude is None else None,  # the fake's only
        "run_id": run_id,
        "scenarios": config.scenarios if config.claude is None else None,
        "sessions": config.sessions if config.duration is None else run.started,
        "started": run.started,
        "completed": run.completed,
        "failed": run.failed,
        "failures": run.failures,
        "worker_alive": worker_alive,
        "worker_exit": worker_exit,  # Popen-style: negative = killed by that signal
        "grace_s": config.grace,
        # what makes the verdict weaker than it looks (not judged): settings the user chose,
        # sessions that ran no claude
        "warnings": [
            w
            for w in (
                grace_warning(config),
                starts_warning(starts, run.completed),
                messages_warning(messages, config.claude),
            )
            if w
        ],
        "messages": messages,  # how the worker's queued messages ended (None: not known)
        "leaked_count": len(leaked),
        "leaked": leaked,
        "zombies": zombies_end,
        # exited, awaiting a reaper outside the run (not the target's to reap): not judged
        "zombies_elsewhere": [
            leak_entry(r, census.session_of(r))
            for r in census.zombies_elsewhere.values()
            if not r.reaped
        ],
        "escaped": escaped,
        "processes_seen": census.total_procs,
        "claude_starts": starts,
        "peak_descendants": census.peak_descendants,
        "descendants_baseline": baseline,
        "descendants_end": descendants_end,
        "rss": {
            "samples": [
                {
                    "t": round(s.t, 3),
                    "sessions_done": s.sessions_done,
                    "total_mb": round(s.total_rss / 1e6, 2),
                    "worker_mb": round(s.worker_rss / 1e6, 2),
                    "descendants": s.descendants,
                    "leaked": s.leaked,
                }
                for s in samples
            ],
            "total_slope": total_slope,
            "worker_slope": worker_slope,
            "budget_mb_per_100_sessions": config.rss_budget,
            "min_sessions_span_judged": config.rss_min_span,
            "slopes_judged": slopes_judged(slope_span, slope_points, config.rss_min_span),
            "peak_total_mb": round(peak_total_mb, 1),
            "peak_budget_mb": config.rss_peak,
            "stop_mb": config.rss_stop_mb(),  # no new session past it
            "stopped_early": run.stopped_early,
            "session_marks": {
                "starts": [round(x, 3) for x in run.starts],
                "ends": [round(x, 3) for x in run.ends],
            },
        },
        "worker_rss_mb": {
            "start": round(worker_rss_start / 1e6, 1),
            "end": round(worker_rss_end / 1e6, 1),
            "peak": round(census.peak_worker_rss / 1e6, 1),
        },
        "cleanup_latency_ms": _cleanup_latency(census),
        "duration_s": round(duration, 2),
        "sessions_per_s": round(run.completed / duration, 3) if duration > 0 else 0.0,
        # Throughput while sessions were driven (excludes worker start-up and the final grace).
        "drive_s": round(t_last - t_first, 3),
        "sessions_per_s_driving": round(run.completed / (t_last - t_first), 3)
        if t_last > t_first
        else 0.0,
        "census": {
            "sample_hz": config.sample_hz,
            "sample_cost_ms_p50": round(scan_costs[len(scan_costs) // 2] * 1000, 2)
            if scan_costs
            else None,
            "sample_cost_ms_max": round(scan_costs[-1] * 1000, 2) if scan_costs else None,
        },
        "swept_at_exit": swept,
        "harness_errors": errors,
        "work_dir": str(work_dir),
        "config": cfg,
    }


# -- command line ------------------------------------------------------------------------------
def add_mcp_arguments(parser: argparse.ArgumentParser) -> None:
    """--mcp-servers and --mcp-server-mode (soak and compare): into SoakConfig's fields."""
    d = SoakConfig()
    parser.add_argument(
        "--mcp-servers",
        type=NON_NEGATIVE_INT,
        default=d.mcp_servers,
        metavar="N",
        help="every fake starts N stdio MCP servers as its children, as a real claude does with "
        "the user's MCP config (without --strict-mcp-config): a leaked observer leaks them too",
    )
    parser.add_argument(
        "--mcp-server-mode",
        choices=sorted(MCP_SERVER_FLAGS),
        default=d.mcp_server_mode,
        help="polite: they exit at stdin EOF; stubborn: they ignore it and SIGTERM",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SoakConfig()
    parser.add_argument("--target", default=d.target, help="worker under test (reference, ...)")
    parser.add_argument(
        "--mode", default=d.mode, choices=("fixed", "leaky"), help="reference worker's mode"
    )
    parser.add_argument(
        "--sessions",
        type=COUNT,
        default=None,  # None: not given (--duration then decides alone)
        help=f"sessions to run (default: {d.sessions})",
    )
    parser.add_argument("--concurrency", type=COUNT, default=d.concurrency, help="sessions at once")
    parser.add_argument("--prompts", type=COUNT, default=d.prompts, help="prompts per session")
    parser.add_argument(
        "--observations", type=NON_NEGATIVE_INT, default=d.observations, help="tool uses per prompt"
    )
    parser.add_argument(
        "--scenarios",
        default=d.scenarios,
        help="fake scenario spec or weights, e.g. 'mix' (default: every fault) or "
        "'mix:ok=4,hang=1,escape=1'",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="drives the scenario draws")
    parser.add_argument(
        "--claude",
        type=claude_path,
        default=None,
        help="soak with this claude executable (a path, or a command on PATH) instead of the "
        "fake (reference target; the census counts the worker's new descendants; --scenarios "
        "and --seed do not apply)",
    )
    add_mcp_arguments(parser)
    parser.add_argument(
        "--grace",
        type=NON_NEGATIVE,
        default=d.grace,
        help="seconds after a session's end before a survivor counts as leaked",
    )
    parser.add_argument(
        "--duration", type=POSITIVE, default=None, help="time-boxed soak (s) instead of --sessions"
    )
    parser.add_argument(
        "--rss-budget",
        type=NON_NEGATIVE,
        default=d.rss_budget,
        help="max RSS slope over the 2nd half, MB per 100 sessions",
    )
    parser.add_argument(
        "--rss-peak",
        type=POSITIVE,
        default=d.rss_peak,
        help="max peak RSS of worker+descendants, MB",
    )
    parser.add_argument(
        "--rss-stop",
        type=NON_NEGATIVE,
        default=None,
        help="start no new session once worker+descendants RSS passes this (MB), to spare the "
        "machine (default: twice --rss-peak; 0: never)",
    )
    parser.add_argument(
        "--rss-min-span",
        type=NON_NEGATIVE_INT,
        default=d.rss_min_span,
        help="judge RSS slopes only when the 2nd half spans at least this many sessions",
    )
    parser.add_argument("--report", type=Path, default=None, help="write the report folder here")
    parser.add_argument(
        "--worker-grace",
        type=NON_NEGATIVE,
        default=d.worker_grace,
        help="the fixed worker's wait between EOF, SIGTERM and SIGKILL",
    )
    parser.add_argument(
        "--reap-interval",
        type=POSITIVE,
        default=d.reap_interval,
        help="the fixed worker's sweep interval",
    )
    parser.add_argument(
        "--sample-hz", type=float_at_least(2.0), default=d.sample_hz, help="census samples/s"
    )
    parser.add_argument(
        "--progress",
        default="auto",
        choices=("auto", "rich", "plain", "none"),
        help="live display (auto: rich on a terminal, plain lines otherwise)",
    )
    parser.add_argument(
        "--run-id", type=run_id_arg, default=None, help="[a-z0-9]{12}; default: random"
    )
    parser.add_argument(
        "--keep-work-dir",
        action="store_true",
        help="keep the run's work folder (worker log and database, ledger) also when it passes; "
        "a FAIL or ERROR keeps it always, in REPORT/work when --report is given",
    )
    parser.add_argument("--no-plot", action="store_true", help="no rss.png")


def config_from_args(args: argparse.Namespace) -> SoakConfig:
    return SoakConfig(
        target=args.target,
        mode=args.mode,
        sessions=SoakConfig.sessions if args.sessions is None else args.sessions,
        concurrency=args.concurrency,
        prompts=args.prompts,
        observations=args.observations,
        scenarios=args.scenarios,
        seed=args.seed,
        grace=args.grace,
        duration=args.duration,
        rss_budget=args.rss_budget,
        rss_peak=args.rss_peak,
        rss_stop=args.rss_stop,
        rss_min_span=args.rss_min_span,
        report=args.report,
        worker_grace=args.worker_grace,
        reap_interval=args.reap_interval,
        sample_hz=args.sample_hz,
        progress=args.progress,
        run_id=args.run_id,
        keep_work_dir=args.keep_work_dir,
        plot=not args.no_plot,
        claude=args.claude,
        adopt_orphans=args.claude is not None,
        mcp_servers=args.mcp_servers,
        mcp_server_mode=args.mcp_server_mode,
    )


async def _messages(target: Target, http: aiohttp.ClientSession) -> dict[str, int] | None:
    try:
        return await target.messages(http)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, TypeError):
        return None  # a figure for the report only: the verdict does not rest on it


def messages_warning(messages: dict[str, int] | None, claude: Path | str | None) -> str | None:
    """No queued message ever processed: the observers never worked (a claude that does not
    speak the protocol, or one every scenario of which misbehaves). Leaks are still judged, but
    only of claudes that never answered, which a reader of a PASS should know."""
    if not messages or messages.get("processed") or not messages.get("failed"):
        return None
    why = (
        f"see the worker log: does the claude at {claude} speak the stream-json protocol?"
        if claude
        else "expected if every scenario misbehaves (hang, crash); otherwise see the worker log"
    )
    return (
        f"no queued message was processed ({messages['failed']} failed): every observer failed "
        f"before it answered, so only the ending of claudes that never worked was tested ({why})"
    )


def starts_warning(claude_starts: int | None, completed: int) -> str | None:
    """Fewer fake claudes started than sessions completed: some sessions tested nothing.

    Each session's observer is a claude of its own in both targets (none started at all is an
    ERROR, see judge); a worker that shares observers between sessions would trip this too, so it
    is said, not judged."""
    if claude_starts is None or claude_starts == 0 or claude_starts >= completed:
        return None
    return (
        f"only {claude_starts} claude start(s) for {completed} completed sessions: at least "
        f"{completed - claude_starts} session(s) never ran one, so their cleanup was not tested "
        f"(their work still queued? a pool of observers kept full by live ones, as claude-mem "
        f"13.x's 2 slots; see the worker log)"
    )


def grace_warning(config: SoakConfig) -> str | None:
    """Why --grace is too short for the fixed reference worker to be judged fairly, if it is.

    That worker ends an observer by closing its stdin, then SIGTERM, then SIGKILL, --worker-grace
    apart: one that ignores EOF and SIGTERM lives 2 x --worker-grace past its session's end by
    design. A shorter --grace (plus a second for the kill and the census to see it) counts such
    observers as leaked while the worker is still ending them.
    """
    if config.target != "reference" or config.mode != "fixed":
        return None
    floor = 2 * config.worker_grace
    if config.grace >= floor + 1.0:
        return None
    return (
        f"--grace {config.grace:g} s is shorter than the fixed worker's own way of ending a "
        f"stubborn observer (stdin EOF, SIGTERM, then SIGKILL, "
        f"--worker-grace {config.worker_grace:g} s apart: up to {floor:g} s): observers that "
        f"ignore EOF and SIGTERM will count as leaked "
        f"while the worker is still ending them. Use --grace {math.ceil(floor + 1.0):d} or more, "
        f"or a smaller --worker-grace."
    )


def _report_dir_problem(report: Path | None, run_id: str) -> str | None:
    """Checked before the run: a report folder that cannot be made would otherwise fail only
    after the whole soak."""
    if report is None:
        return None
    try:
        Path(report).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--report {report}: cannot create the folder ({exc.strerror or exc})"
    if not os.access(report, os.W_OK):
        return f"--report {report}: the folder is not writable"
    try:
        begin_report(Path(report), run_id)
    except OSError as exc:
        return f"--report {report}: cannot write the report there ({exc.strerror or exc})"
    return None


def print_summary(report: dict[str, Any], stream: Any = None) -> None:
    stream = stream or sys.stdout
    lat = report["cleanup_latency_ms"]
    rss = report["rss"]
    print(
        f"soak {report['verdict']}: target={report['target']} mode={report['mode']} "
        f"sessions {report['completed']}/{report['sessions']} (failed {report['failed']}) "
        f"in {report['duration_s']} s ({report['sessions_per_s']} sessions/s)\n"
        f"  leaked {report['leaked_count']}, zombies {zombies_text(report['zombies'])}, escaped "
        f"{len(report['escaped'])}, peak descendants {report['peak_descendants']} "
        f"(baseline {report['descendants_baseline']}, end {report['descendants_end']})\n"
        f"  {'; '.join(filter(None, [slopes_text(rss), peak_text(rss)]))}\n"
        f"  cleanup latency ms: {latency_text(lat)}",
        file=stream,
    )
    facts = facts_text(report.get("target_facts") or {})
    if facts:
        print(f"  target: {facts}", file=stream)
    for reason in report["reasons"]:
        print(f"  - {reason}", file=stream)
    if report.get("failures"):
        first = printable(report["failures"][0])
        print(f"  failed sessions: {report['failed']}; the first: {first}", file=stream)
    if report["leaked"]:
        print(leaks_table(report["leaked"][:40]), file=stream, end="")
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}", file=stream)
    if report.get("harness_errors"):
        print("harness errors:\n" + "\n".join(report["harness_errors"]), file=stream)
    kept = report.get("work_dir")
    if kept and Path(kept).is_dir():
        print(f"  work folder kept (worker log, database, ledger): {kept}", file=stream)


def run(args: argparse.Namespace) -> int:
    from harness.targets import UnknownTarget, get_target

    config = config_from_args(args)
    config.run_id = config.run_id or secrets.token_hex(6)
    problem = config_problem(config) or _report_dir_problem(config.report, config.run_id)
    if problem:
        print(f"harness soak: {problem}", file=sys.stderr)
        return EXIT_CODES[ERROR]
    warning = grace_warning(config)
    if warning:
        print(f"harness soak: warning: {warning}", file=sys.stderr)
    if args.sessions is not None and config.duration is not None:
        print(f"harness soak: warning: --duration {config.duration:g} runs as many sessions as "
              f"fit in it; --sessions {args.sessions} is not used", file=sys.stderr)  # fmt: skip
    try:
        target = get_target(config.target, **config.target_kwargs())
    except (UnknownTarget, ValueError, TypeError) as exc:
        print(f"harness soak: {exc}", file=sys.stderr)
        return EXIT_CODES[ERROR]
    try:
        report = asyncio.run(run_soak(config, target))
    except KeyboardInterrupt:
        # An interrupt that reached past the run's own cleanup (SIGTERM with SIGINT ignored,
        # landing outside the run's task): last-resort synchronous stop and sweep.
        end_live_runs()
        print("soak interrupted", file=sys.stderr)
        return EXIT_CODES[INTERRUPTED]
    print_summary(report)
    if config.report is not None and report.get("report_json_written", True):
        others = [n for n in ("leaks.txt", "junit.xml", "rss.png") if (config.report / n).is_file()]
        print(f"report: {config.report}/report.json (beside it: {', '.join(others)})")
    return int(report["exit_code"])
