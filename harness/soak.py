"""`python -m harness soak`: many sessions through a worker, an exact census, a verdict, a report.

`run_soak(config, target)` is the library entry point (used by repro, bench and other targets);
`run(args)` is the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import proctree
from cliargs import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    duration_arg,
    float_at_least,
    path_arg,
    run_id_arg,
)
from harness import report_lock
from harness.census import Census
from harness.cleanup import end_live_runs, live_run, run_over, sweep_run, wait_unjudged_gone
from harness.interrupts import shielded
from harness.progress import Progress
from harness.report_assembly import (
    WORK_MARK,
    build_report,
    clear_earlier_work,
    grace_warning,
    messages_warning,
    move_work_dir,
    print_summary,
    starts_warning,
    write_report_or_error,
)
from harness.soak_config import (
    CLAUDE_TURN_TIMEOUT_S,
    DEFAULT_PEAK_BUDGET_MB,
    FAKE_TURN_TIMEOUT_S,
    SoakConfig,
    add_grace_arguments,
    add_mcp_arguments,
    claude_path,
    config_problem,
    report_dir_problem,
    run_id_problem,
    write_run_shim,
)
from harness.target import RunContext, Target, TargetError
from harness.text import describe
from harness.verdict import ERROR, EXIT_CODES, FAIL, INTERRUPTED
from harness.workload import make_session

# A session in flight this long is named on the progress display (see _stage).
SLOW_SESSION_S = 15.0
HTTP_TIMEOUT_S = 60.0  # per request; a loaded 2-core machine is slow, a hung worker is not
FAILURE_MESSAGES_KEPT = 20

# How long a run with failed sessions waits for the worker's exit status (see run_soak).
WORKER_EXIT_WAIT_S = 2.0
# A worker stopped this long cuts the run short (see _watch_worker); a short stop is survived.
WORKER_STOPPED_LIMIT_S = 20.0
CUT_END_TIMEOUT_S = 10.0  # for the end of each session in flight when the run is cut short


class SoakRun:
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


async def _session_loop(
    run: SoakRun, target: Target, census: Census, http: Any, run_id: str
) -> None:
    cfg = run.config
    while (index := run.take()) is not None:
        spec = make_session(index, run_id, cfg.seed, cfg.prompts, cfg.observations)
        key = spec.content_session_id
        census.session_started(key)
        run.started += 1
        run.starts.append(proctree.now())
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
            run.ends.append(proctree.now())
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


def _stage(run: SoakRun) -> str:
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


def _slow_session(run: SoakRun) -> str:
    if not run.in_flight:
        return ""
    index, since = min(run.in_flight.items(), key=lambda item: item[1])
    age = time.monotonic() - since
    if age < SLOW_SESSION_S:
        return ""
    limit = ""
    if run.drain_timeout:
        # Its queue moves with each message done or failed: one whose observers hang takes
        # two turn limits per message (tried twice), and was read as stuck past the 60 s.
        turns = (
            f"; each message may take 2 turns of up to {run.config.turn_timeout_s():g} s"
            if run.config.target == "reference"
            else ""
        )
        limit = f" (one whose queue does not move for {run.drain_timeout:g} s is given up{turns})"
    return f"session {index} in flight for {age:.0f} s{limit}"


async def _watch_worker(run: SoakRun, census: Census) -> None:
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


async def _watch_rss(run: SoakRun, census: Census, limit_mb: float) -> None:
    """No new session once the run's RSS passes --rss-stop: the verdict is a FAIL already (the
    default is twice --rss-peak), and the sessions in flight end as they would."""
    while census.last_total_rss <= limit_mb * 1e6:
        await asyncio.sleep(0.5)
    run.stopped_early = (
        f"worker+descendants RSS reached {census.last_total_rss / 1e6:.0f} MB, past --rss-stop "
        f"{limit_mb:g} MB: no session was started after that ({run.started} had started)"
    )


async def _progress_loop(progress: Progress, census: Census, run: SoakRun) -> None:
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
    run = SoakRun(config)
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
    t_start = proctree.now()
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
                shim = write_run_shim(work_dir, run_id, config, ledger)
            ctx = RunContext(
                run_id=run_id,
                work_dir=work_dir,
                claude_path=shim,
                ledger_path=ledger,
                seed=config.seed,
            )
            census.start()
            handle = await target.start(ctx)
            census.set_worker(handle.pid, handle.create_time, handle.core)
            first = await asyncio.to_thread(census.sample)
            baseline, worker_rss_start = first.descendants, first.worker_rss
            if config.progress != "none":
                total = None if config.duration is not None else config.sessions
                progress = Progress(total, mode=config.progress, time_box=config.duration)
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
                run.drive_end = proctree.now()
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
            if not isinstance(exc, TargetError):  # its message says it all
                errors.append(traceback.format_exc(limit=5))
        finally:
            # A second Ctrl-C or SIGTERM from here on would cut the cleanup and the report short.
            shield.enter_context(shielded(judged and not interrupted))
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
            try:
                missed = await asyncio.to_thread(target.tidy)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"tidying after the target failed: {exc}")
            else:
                if missed:
                    errors.append(
                        f"{missed} of the worker's cgroup cells still held processes after the "
                        "sweep (the census missed them; they are ended now)"
                    )
            census.stop()
            run_over(run_id)
            if progress is not None:  # the last state seen with the worker up, not after its stop
                # The run's own counts: the census counts a session cancelled by an interrupt
                # as ended, which the summary does not.
                stage = "interrupted" if interrupted else ""
                progress.close({**snap_end, "sessions_done": run.completed + run.failed,
                                "failed": run.failed, "stage": stage})  # fmt: skip

        report = build_report(
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
            or bool(starts_warning(starts, run.completed) or messages_warning(messages, config))
        )
        if keep and config.report is not None:
            report["work_dir"] = str(move_work_dir(work_dir, Path(config.report), run_id))
        elif not keep:
            report["work_dir"] = None  # removed below: a report must not name a folder that is gone
            if config.report is not None:
                # An earlier run's evidence in this report folder would pass for this run's.
                clear_earlier_work(Path(config.report))
        try:
            if config.report is not None:
                write_report_or_error(Path(config.report), report, plot=config.plot)
        finally:
            if not keep and report["verdict"] == ERROR:
                report["work_dir"] = str(work_dir)  # an ERROR keeps it (left in the temp dir)
            elif not keep:
                shutil.rmtree(work_dir, ignore_errors=True)
    return report


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


async def _messages(target: Target, http: aiohttp.ClientSession) -> dict[str, int] | None:
    try:
        return await target.messages(http)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, TypeError):
        return None  # a figure for the report only: the verdict does not rest on it


# -- command line ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SoakConfig()
    parser.add_argument(
        "--target",
        default=d.target,
        help="worker under test: reference, or claude-mem (the real worker; its build from "
        "LEAKPROOF_CLAUDE_MEM=VERSION, from npm, or LEAKPROOF_CLAUDE_MEM_PLUGIN=PATH, a plugin "
        "folder or checkout; see docs/claude-mem.md)",
    )
    parser.add_argument(
        "--mode", default=d.mode, choices=("fixed", "leaky"), help="reference worker's mode"
    )
    parser.add_argument(
        "--claude-mem-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--target claude-mem: an entry of the run's ~/.claude-mem/settings.json, e.g. "
        "CLAUDE_MEM_MAX_CONCURRENT_AGENTS=8 (13.x starts 2 observers at a time by default)",
    )
    parser.add_argument(
        "--sessions",
        type=COUNT,
        default=None,  # None: not given (--duration then decides alone)
        help=f"sessions to run (default: {d.sessions})",
    )
    parser.add_argument(
        "--concurrency",
        type=COUNT,
        default=d.concurrency,
        help="sessions at once (default: two per core, 2 to 8)",
    )
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
    add_grace_arguments(parser, grace=d.grace)
    parser.add_argument(
        "--duration",
        type=duration_arg,
        default=None,
        help="time-boxed soak (seconds, or 90s, 10m, 1.5h) instead of --sessions: no session "
        "starts after it; those under way then end as they would (a hanging observer's session "
        "takes its timeouts)",
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
        default=None,
        help=f"max peak RSS of worker+descendants, MB (default: {d.rss_peak:g}; with --claude "
        "not judged, only reported: a real claude holds hundreds of MB, times --concurrency)",
    )
    parser.add_argument(
        "--rss-stop",
        type=NON_NEGATIVE,
        default=None,
        help="start no new session once worker+descendants RSS passes this (MB), to spare the "
        "machine (default: twice --rss-peak, or with --claude and no --rss-peak half the "
        "machine's memory; 0: never)",
    )
    parser.add_argument(
        "--turn-timeout",
        type=POSITIVE,
        default=None,
        help=f"the reference worker's limit on one observer turn, s (default: "
        f"{FAKE_TURN_TIMEOUT_S:g} with the fake, {CLAUDE_TURN_TIMEOUT_S:g} with --claude: a real "
        "claude's turn asks a model)",
    )
    parser.add_argument(
        "--rss-min-span",
        type=NON_NEGATIVE_INT,
        default=d.rss_min_span,
        help="judge RSS slopes only when the 2nd half spans at least this many sessions",
    )
    parser.add_argument(
        "--report", type=path_arg, default=None, help="write the report folder here"
    )
    add_grace_arguments(parser, worker_grace=d.worker_grace)
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
        rss_peak=_rss_peak(args),
        rss_stop=_rss_stop(args),
        turn_timeout=args.turn_timeout,
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
        # Always (the command is a process of its own): with the fake too, a program its tree
        # runs may daemonize between two samples with neither the run id nor a ledger line
        # (a fork-and-exit chain under the leaky worker, which has no subreaper), and such an
        # orphan went to init, unseen and still alive after the run.
        adopt_orphans=True,
        mcp_servers=args.mcp_servers,
        mcp_server_mode=args.mcp_server_mode,
        target_options=_claude_mem_settings(args.claude_mem_setting),
    )


def _rss_peak(args: argparse.Namespace) -> float | None:
    """--rss-peak, else the default budget, which is the fake's: with --claude (a real claude
    holds ~370 MB, and a clean fixed run of four at once passed 1 GB) the peak is reported only,
    as `compare` does; leaks and the RSS slopes are judged as ever."""
    if args.rss_peak is not None:
        return float(args.rss_peak)
    return None if args.claude is not None else DEFAULT_PEAK_BUDGET_MB


def _rss_stop(args: argparse.Namespace) -> float | None:
    """--rss-stop, else twice the peak budget (SoakConfig's), or with no budget to double (a
    real claude) half the machine's memory: a leaking worker must still not take it all."""
    if args.rss_stop is not None or _rss_peak(args) is not None:
        return args.rss_stop
    return psutil.virtual_memory().total / 2**20 / 2


def _claude_mem_settings(pairs: list[str]) -> dict[str, Any]:
    """--claude-mem-setting KEY=VALUE ... as the claude-mem target's `settings` option (a
    pair without `=` is refused by config_problem, which says so before the run)."""
    if not pairs:
        return {}
    return {"settings": dict(kv.partition("=")[::2] for kv in pairs)}


def run(args: argparse.Namespace) -> int:
    from harness.targets import UnknownTarget, get_target

    config = config_from_args(args)
    config.run_id = config.run_id or secrets.token_hex(6)
    problem = config_problem(config) or run_id_problem(config.run_id)
    if problem:
        print(f"harness soak: {problem}", file=sys.stderr)
        return EXIT_CODES[ERROR]
    try:
        target = get_target(config.target, **config.target_kwargs())
    except (UnknownTarget, ValueError, TypeError) as exc:
        print(f"harness soak: {exc}", file=sys.stderr)
        return EXIT_CODES[ERROR]
    # Only now: the report folder is marked "running" (begin_report), which a target that
    # cannot even be made would have left behind, in place of the folder's earlier verdict.
    problem = report_dir_problem(config.report, config.run_id)
    if problem:
        print(f"harness soak: {problem}", file=sys.stderr)
        return EXIT_CODES[ERROR]
    warning = grace_warning(config)
    if warning:
        print(f"harness soak: warning: {warning}", file=sys.stderr)
    if args.sessions is not None and config.duration is not None:
        print(f"harness soak: warning: --duration {config.duration:g} runs as many sessions as "
              f"fit in it; --sessions {args.sessions} is not used", file=sys.stderr)  # fmt: skip
    done: list[dict[str, Any]] = []

    async def soak() -> None:
        # Kept the moment it exists: SIGTERM with SIGINT ignored raises KeyboardInterrupt
        # wherever the loop is; asyncio.run then cancels run_soak, which ends the run and
        # writes its report, and re-raises the interrupt, which dropped that report.
        done.append(await run_soak(config, target))

    try:
        asyncio.run(soak())
    except KeyboardInterrupt:
        # Last-resort synchronous stop and sweep of what the run's own cleanup did not reach.
        end_live_runs()
        if not done:
            print("soak interrupted", file=sys.stderr)
            return EXIT_CODES[INTERRUPTED]
    finally:
        report_lock.release(config.report)
    report = done[0]
    print_summary(report)
    if config.report is not None and report.get("report_json_written", True):
        others = [n for n in ("leaks.txt", "junit.xml", "rss.png") if (config.report / n).is_file()]
        print(f"report: {config.report}/report.json (beside it: {', '.join(others)})")
    return int(report["exit_code"])
