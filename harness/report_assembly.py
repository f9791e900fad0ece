"""A soak's report: assembled from the run and its census (verdict, warnings), printed as a
summary, and written to its folder with the run's work folder moved in (the files: report.py)."""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import proctree
from harness.census import Census, ProcRecord, Sample
from harness.report import (
    facts_text,
    kept_work_text,
    latency_text,
    leak_entry,
    leaks_table,
    peak_text,
    sessions_text,
    slopes_text,
    swept_leak_entry,
    write_json,
    write_report,
    zombies_text,
)
from harness.soak_config import SoakConfig
from harness.target import Target
from harness.text import printable
from harness.verdict import ERROR, EXIT_CODES, judge, slope_per_100_sessions, slopes_judged

if TYPE_CHECKING:
    from harness.soak import SoakRun


# In each work folder: what tells a soak's folder from a user's of the same name (REPORT/work).
WORK_MARK = ".leakproof-soak-work"


def driven_samples(
    samples: list[Sample], starts: list[float], drive_end: float | None, t_first: float
) -> list[Sample]:
    """The samples the RSS slopes are judged on: those taken from `t_first` (the first start)
    while sessions were being started. The drain after the last start has a constant session
    count and falling RSS, which would fake a negative slope; and one hung session given up
    60 s later made the drain the whole 2nd half by time (a 100-session soak's slope "spans 1
    sessions", not judged)."""
    t_last = starts[-1] if len(starts) > 1 else drive_end or proctree.now()
    return [s for s in samples if t_first <= s.t <= t_last]


def _cleanup_latency(census: Census) -> dict[str, Any]:
    """Percentiles over the sessions whose processes were all gone while the run was judged;
    `not_measured`: the other sessions that ended (a process leaked or outlived the run, or
    none was seen); `gone_by_end`: those measured whose processes were all gone by the time the
    session ended (0 ms: the fixed worker ends an observer before its SessionEnd call returns),
    so that a p50 of 0.0 reads as what it is, not as a missing figure."""
    latencies = census.session_latencies()
    return {
        **_percentiles(latencies),
        "not_measured": census.ended_sessions() - len(latencies),
        "gone_by_end": sum(1 for x in latencies if x <= 0.0),
    }


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


def write_report_or_error(directory: Path, report: dict[str, Any], plot: bool) -> None:
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


def clear_earlier_work(report_dir: Path) -> bool:
    """Remove the work folders earlier soaks left in `report_dir` (`work`, or `work-RUNID` beside
    a folder of the user's); True if `work` is free. A folder without our mark is the user's
    (`--report .` in a project with a `work/`): never touched."""
    for folder in [report_dir / "work", *report_dir.glob("work-*")]:
        if (folder / WORK_MARK).is_file():
            shutil.rmtree(folder, ignore_errors=True)
    return not (report_dir / "work").exists()


def move_work_dir(work_dir: Path, report_dir: Path, run_id: str) -> Path:
    dest = report_dir / "work"
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        if not clear_earlier_work(report_dir):
            dest = report_dir / f"work-{run_id}"  # beside a folder of the user's
        shutil.move(str(work_dir), str(dest))
    except OSError:
        return work_dir  # left where it was; the report names it
    return dest


def _still_there(rec: ProcRecord) -> bool:
    return not rec.reaped and proctree.ProcId(rec.pid, rec.create_time).process() is not None


def build_report(
    config: SoakConfig,
    target: Target,
    census: Census,
    run: SoakRun,
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
    duration = proctree.now() - t_start
    # The run as judged: not the harness's teardown after it (the worker stopped, its leaks swept),
    # whose samples read worker 0 MB and no descendants, as if the leaks had gone by themselves.
    stopped = census.judging_stopped_at
    samples = [s for s in census.samples if stopped is None or s.t <= stopped]
    t_first = run.starts[0] if run.starts else t_start
    driven = driven_samples(samples, run.starts, run.drive_end, t_first)
    # The throughput's window, unlike the slopes': from the first start to the last session's
    # end (every session counted must have run in it).
    t_last = run.drive_end or proctree.now()
    total_pts = [(s.t, s.sessions_done, s.total_rss, s.descendants) for s in driven]
    worker_pts = [(s.t, s.sessions_done, s.worker_rss, s.descendants) for s in driven]
    total_slope = slope_per_100_sessions(total_pts)
    worker_slope = slope_per_100_sessions(worker_pts)
    # Both series are judged, or neither: by the shorter span and the fewer points.
    slope_span = min(total_slope["sessions_span"], worker_slope["sessions_span"])
    slope_points = min(total_slope["points"], worker_slope["points"])
    # Every leak aged at one moment, the run's last judgement (not each at its own kill).
    judged_at = census.judging_stopped_at or proctree.now()
    leaked = [
        leak_entry(r, census.session_of(r), now=judged_at, exited_as="exited")
        for r in census.leaked
    ]
    # Processes of the run the census never saw, still there after the worker's stop and the
    # grace (a backstop for any blind spot: they were leaks all the same). Only after its last
    # judgement: an interrupt's or an error's sweep ends the sessions in flight, no leak.
    unseen = [k for k in swept if judged and not census.reported(k["pid"], k["create_time"])]
    leaked += [swept_leak_entry(k, now=judged_at) for k in unseen]
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
    if config.duration is not None:  # the time box ruled: a default of 300 read as the run's
        cfg["sessions"] = None
    if config.target == "reference":  # the limit the worker ran with, not "its default"
        cfg["turn_timeout"] = config.turn_timeout_s()
    return {
        "verdict": verdict.verdict,
        "exit_code": verdict.exit_code,
        "reasons": verdict.reasons,
        "interrupted": interrupted,
        "target": getattr(target, "name", config.target),
        "target_facts": target.facts(),  # e.g. what held the worker's children on this machine
        "mode": config.mode if config.target == "reference" else None,  # claude-mem has none
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
                messages_warning(messages, config),
                mcp_warning(config, census),
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
        # Of the fake's starts, those told --strict-mcp-config; and the MCP servers they started.
        "strict_mcp_starts": census.strict_mcp_starts if config.claude is None else None,
        "mcp_server_starts": census.mcp_server_starts if config.claude is None else None,
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


def messages_warning(messages: dict[str, int] | None, config: SoakConfig) -> str | None:
    """No queued message ever processed: the observers never worked (a claude that does not
    speak the protocol or answers too slowly, or one every scenario of which misbehaves). Leaks
    are still judged, but only of claudes that never answered, which a reader of a PASS should
    know."""
    if not messages or messages.get("processed") or not messages.get("failed"):
        return None
    why = (
        f"see the worker log: does the claude at {config.claude} speak the stream-json "
        f"protocol, and answer a turn within --turn-timeout ({config.turn_timeout_s():g} s)?"
        if config.claude
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


def mcp_warning(config: SoakConfig, census: Census) -> str | None:
    """--mcp-servers asked for, but no fake started an MCP server: no MCP server's leak was tested.

    The servers stand in for the user's own MCP config, which a claude told --strict-mcp-config
    (claude-mem 13.x) never loads; a PASS would otherwise read as if their ending were tested."""
    if not config.mcp_servers or config.claude is not None or census.mcp_server_starts:
        return None
    starts, strict = census.claude_starts, census.strict_mcp_starts
    if not starts:
        return None  # no claude started at all: the verdict's ERROR says so
    asked = f"--mcp-servers {config.mcp_servers} was asked for, but no MCP server was started"
    if strict:
        return (
            f"{asked}: the worker started claude with --strict-mcp-config in {strict} of its "
            f"{starts} start(s) (claude-mem 13.x does: its own MCP config only), which keeps the "
            f"user's MCP servers from loading, so no MCP server's leak was tested"
        )
    return (
        f"{asked} by any of the {starts} claude start(s), though none was given "
        f"--strict-mcp-config, so no MCP server's leak was tested (see the ledger's start lines "
        f"and the worker log)"
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


def print_summary(report: dict[str, Any], stream: Any = None) -> None:
    stream = stream or sys.stdout
    lat = report["cleanup_latency_ms"]
    rss = report["rss"]
    print(
        f"soak {report['verdict']}: target={report['target']}"
        f"{f' mode={mode}' if (mode := report['mode']) else ''} "
        f"sessions {sessions_text(report)} "
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
    reasons = report["reasons"]
    for reason in reasons:
        print(f"  - {reason}", file=stream)
    if report.get("failures"):
        first = printable(report["failures"][0])
        print(f"  failed sessions: {report['failed']}; the first: {first}", file=stream)
    if report["leaked"]:
        print(leaks_table(report["leaked"], limit=40), file=stream, end="")
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}", file=stream)
    # Those not among the reasons already (an interrupted run's are not).
    unsaid = [e for e in report.get("harness_errors", []) if f"harness error: {e}" not in reasons]
    if unsaid:
        print("harness errors:\n" + "\n".join(unsaid), file=stream)
    kept = report.get("work_dir")
    if kept and Path(kept).is_dir():
        print(f"  work folder kept ({kept_work_text(report)}): {kept}", file=stream)
