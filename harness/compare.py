"""`python -m harness compare`: one workload against several workers, one table.

Targets, one after the other (never at once, so they do not share the CPU): the reference worker
fixed, the reference worker leaky, then each real claude-mem given (`--claude-mem VERSION` from
npm, `--claude-mem-plugin PATH` from a folder). Each run is a full soak (same census, verdict and
report folder as `harness soak`); on top, after the workload, the worker is left alone for up to
`--reap-wait` seconds to see when it ends its observers by itself (time-to-reap).

Figures: leaked per 100 prompts (census, after --grace), cleanup latency p50/p99, peak
descendants, peak RSS (worker + descendants), sessions/s over the workload span (first session
start to last session end, so the reap wait does not count), time-to-reap p50/max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

import proctree
from cliargs import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, path_arg
from harness.cleanup import end_live_runs
from harness.interrupts import SIGNALS, shield_up
from harness.soak import run_soak
from harness.soak_config import SoakConfig, add_grace_arguments, add_mcp_arguments
from harness.target import RunContext, SessionSpec, SpawnedProcess, Target, WorkerHandle
from harness.targets.claude_mem_reap import ReapTracker

_INTERRUPTED = threading.Event()  # set by Ctrl-C: skip the remaining reap waits and runs
DEFAULT_SCENARIOS = "mix:ok=6,ignore-eof=1,grandchild=1"
DEFAULT_REAP_WAIT_S = 240.0  # longer than 13.x's 180 s idle timeout, so it can be measured
DEFAULT_REFERENCE_REAP_WAIT_S = 15.0  # ours reaps within its grace; leaky never does
COLUMNS = (
    ("target", "target"),
    ("verdict", "verdict"),
    ("prompts", "prompts"),
    ("leaked_per_100_prompts", "leaked (census) / 100 prompts"),
    ("cleanup_p50_ms", "cleanup p50 ms"),
    ("cleanup_p99_ms", "cleanup p99 ms"),
    ("peak_descendants", "peak descendants"),
    ("peak_rss_mb", "peak RSS MB"),
    ("sessions_per_s", "sessions/s"),
    ("outlived_per_100_prompts", "alive > grace / 100 prompts"),
    ("reap_p50_s", "time-to-reap p50 s"),
    ("reap_max_s", "time-to-reap max s"),
    ("not_reaped", "not reaped"),
)


def _seconds(value: float | None) -> str:
    return "— (none measured)" if value is None else f"{value:g} s"


class ReapWatch(Target):
    """Wraps a target: records session windows and, before stopping it, waits for its reaping.

    A target that measures this itself (`wait_reaped`, e.g. claude-mem's, which knows which
    observer serves which session) is asked; otherwise the run's processes are tracked here.
    """

    def __init__(self, inner: Target, reap_wait: float, grace: float = 5.0) -> None:
        self.inner = inner
        self.grace = grace
        self.name = getattr(inner, "name", "target")
        self.descendants_are_run = getattr(inner, "descendants_are_run", False)
        self.reap_wait = reap_wait
        self.tracker: ReapTracker | None = None
        self.reap: dict | None = None
        self.started = False  # a worker that never started has nothing to reap: no wait

    @property
    def own_tracking(self) -> bool:
        return not hasattr(self.inner, "wait_reaped")

    async def start(self, ctx: RunContext) -> WorkerHandle:
        if self.own_tracking:
            self.tracker = ReapTracker("--fake-claude-run-id=" + ctx.run_id)
            self.tracker.start()
        handle = await self.inner.start(ctx)
        self.started = True
        return handle

    async def drive_session(self, session: SessionSpec, http: Any) -> None:
        key = session.content_session_id
        if self.tracker is not None:
            self.tracker.session_started(key)
        try:
            await self.inner.drive_session(session, http)
        finally:
            if self.tracker is not None:
                self.tracker.session_ended(key)

    async def session_processes(self, session: SessionSpec, http: Any) -> list[SpawnedProcess]:
        fn = getattr(self.inner, "session_processes", None)
        return list(await fn(session, http)) if fn is not None else []

    # Passed through (as stop_now below): the soak asks any target these.
    def exit_status(self) -> int | None:
        fn = getattr(self.inner, "exit_status", None)
        return fn() if fn is not None else None

    def facts(self) -> dict[str, Any]:
        fn = getattr(self.inner, "facts", None)
        return fn() if fn is not None else {}

    async def stop(self) -> None:
        try:
            if self.reap is None and self.started:
                self.reap = await self._wait_unless_interrupted()
        finally:
            try:
                await self.inner.stop()
            finally:
                if self.tracker is not None:
                    self.tracker.stop()

    async def _wait_unless_interrupted(self) -> dict:
        """The reap wait, cut short by Ctrl-C: an interrupted run stops at once."""
        if _INTERRUPTED.is_set():
            return {"interrupted": True}
        if self.reap_wait > 0:  # minutes, maybe, with nothing else on the screen: say why
            print(f"compare: sessions over; waiting up to {self.reap_wait:g} s for the worker to "
                  "end their observers by itself", file=sys.stderr, flush=True)  # fmt: skip
        waiter = asyncio.ensure_future(self._wait_reaped())
        while not waiter.done():
            if _INTERRUPTED.is_set():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
                return {"interrupted": True}
            await asyncio.wait({waiter}, timeout=0.25)
        return waiter.result()

    async def _wait_reaped(self) -> dict:
        wait = getattr(self.inner, "wait_reaped", None)
        if wait is not None:
            return dict(await wait(self.reap_wait))
        assert self.tracker is not None
        started = time.monotonic()
        deadline = started + self.reap_wait
        while time.monotonic() < deadline and self.tracker.alive() > 0:
            await asyncio.sleep(0.25)
        self.tracker.sample()
        report = self.tracker.report(self.grace)
        report["waited_s"] = round(time.monotonic() - started, 2)
        return report

    def stop_now(self) -> None:
        fn = getattr(self.inner, "stop_now", None)
        if fn is not None:
            fn()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")


def summarize(
    label: str,
    report: dict[str, Any],
    reap: dict | None,
    prompts: int,
    extra: dict | None = None,
) -> dict:
    """One row of the table from a soak report and a time-to-reap report."""
    started = int(report.get("started") or 0)
    n_prompts = started * prompts
    marks = (report.get("rss") or {}).get("session_marks") or {}
    starts, ends = marks.get("starts") or [], marks.get("ends") or []
    span = (max(ends) - min(starts)) if starts and ends else 0.0
    completed = int(report.get("completed") or 0)
    lat = report.get("cleanup_latency_ms") or {}
    reap = reap or {}
    ttr = reap.get("time_to_reap_s") or {}
    return {
        "target": label,
        "verdict": report.get("verdict"),
        "sessions": started,
        "completed": completed,
        "failed": report.get("failed"),
        "prompts": n_prompts,
        "leaked": report.get("leaked_count"),
        "leaked_per_100_prompts": round(100 * report.get("leaked_count", 0) / n_prompts, 1)
        if n_prompts
        else None,
        "cleanup_p50_ms": lat.get("p50"),
        "cleanup_p99_ms": lat.get("p99"),
        "peak_descendants": report.get("peak_descendants"),
        "peak_rss_mb": (report.get("rss") or {}).get("peak_total_mb"),
        "sessions_per_s": round(completed / span, 3) if span > 0 else None,
        "workload_span_s": round(span, 2),
        "reap_p50_s": ttr.get("p50"),
        "reap_max_s": ttr.get("max"),
        "outlived_session": reap.get("outlived_session"),
        "outlived_per_100_prompts": round(100 * reap["past_grace"] / n_prompts, 1)
        if n_prompts and reap.get("past_grace") is not None
        else None,
        "not_reaped": reap.get("not_reaped"),
        "not_reaped_age_s": reap.get("not_reaped_age_s"),
        "reap_waited_s": reap.get("waited_s"),
        "worker_exit_before_stop": (extra or {}).get("worker_exit_before_stop"),
        "isolation": (extra or {}).get("isolation"),
        "isolation_note": (extra or {}).get("isolation_note"),
        "hook_flow": (extra or {}).get("hook_flow"),
        "reasons": report.get("reasons", []),
        "harness_errors": [e for e in report.get("harness_errors", []) if e][:3],
    }


def _mcp_words(meta: dict) -> str:
    n = meta.get("mcp_servers") or 0
    if not n:
        return ""
    return (
        f", {n} {meta.get('mcp_server_mode', 'polite')} MCP server(s) per observer (the user's "
        "own, which a claude started without --strict-mcp-config loads)"
    )


def markdown_table(rows: list[dict], meta: dict) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = [
        "| " + " | ".join("—" if r.get(k) is None else str(r.get(k)) for k, _ in COLUMNS) + " |"
        for r in rows
    ]
    lines = [
        "# Worker comparison",
        "",
        f"Workload: {meta['sessions']} sessions x {meta['prompts']} prompts x "
        f"{meta['observations']} tool uses, concurrency {meta['concurrency']}, fake scenarios "
        f"`{meta['scenarios']}`, seed {meta['seed']}{_mcp_words(meta)}; leaked = alive "
        f"{meta['grace']} s after its "
        f"session ended; time-to-reap = from session end until the worker ended the process by "
        f"itself (waited up to {meta['reap_wait']} s for claude-mem, "
        f'{meta["reference_reap_wait"]} s for the reference). "leaked" is the soak census, '
        f'judged when the workload ends; "alive > grace" counts every process that outlived '
        f"its session by more than the grace until the end of the wait, including observers the "
        f"worker only started after the workload (— = none measured).",
        "",
        head,
        rule,
        *body,
        "",
    ]
    for r in rows:
        if r.get("refused"):
            lines.append(f"- {r['target']}: not run: {r['refused']}")
        if r.get("hook_flow"):  # what its hooks post: "no session end" explains a lot
            lines.append(f"- {r['target']}: hooks driven as: {r['hook_flow']}")
        if r.get("isolation") == "pid-namespace" or r.get("isolation_note"):
            note = f" ({r['isolation_note']})" if r.get("isolation_note") else ""
            lines.append(f"- {r['target']}: isolation: {r.get('isolation')}{note}")
        if r.get("worker_exit_before_stop") is not None:
            lines.append(
                f"- {r['target']}: the worker exited on its own (code "
                f"{r['worker_exit_before_stop']}) before the harness stopped it; figures after "
                "that are not the worker's doing."
            )
        if r.get("harness_errors"):
            lines.append(f"- {r['target']}: " + "; ".join(r["harness_errors"])[:400])
    return "\n".join(lines) + "\n"


def plot_comparison(path: Path, rows: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display in CI
    import matplotlib.pyplot as plt

    panels = [
        ("leaked_per_100_prompts", "leaked (census) / 100 prompts"),
        ("cleanup_p99_ms", "cleanup p99 (ms)"),
        ("peak_descendants", "peak descendants"),
        ("peak_rss_mb", "peak RSS (MB)"),
        ("sessions_per_s", "sessions/s"),
        ("reap_max_s", "time-to-reap max (s)"),
    ]
    labels = [r["target"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        values, texts, hatches = [], [], []
        for r in rows:
            value, text, hatch = r.get(key), None, ""
            if key == "reap_max_s" and r.get("not_reaped"):
                # Never reaped within the wait: a lower bound, drawn hatched.
                value = max(value or 0, r.get("not_reaped_age_s") or 0)
                text, hatch = f"> {value:g} ({r['not_reaped']} never)", "//"
            values.append(value if value is not None else 0)
            texts.append(text or ("—" if value is None else f"{value:g}"))
            hatches.append(hatch)
        bars = ax.bar(range(len(rows)), values, color="tab:blue")
        for bar, text, hatch in zip(bars, texts, hatches, strict=True):
            bar.set_hatch(hatch)
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center")
        ax.set_title(title)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    fig.suptitle("One workload, several workers")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stale_folders(out: Path, rows: list[dict]) -> list[Path]:
    """Report folders an earlier compare wrote into `out` for targets this one did not run:
    left, they would pass for this run's. Only folders its compare.json names, holding a
    report.json, are counted (nothing else in `out` is touched)."""
    try:
        before = json.loads((out / "compare.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    now = {r.get("folder") for r in rows}
    stale = []
    for row in before if isinstance(before, list) else []:
        name = row.get("folder") if isinstance(row, dict) else None
        if isinstance(name, str) and name == _slug(name) and name and name not in now:
            if (out / name / "report.json").is_file():
                stale.append(out / name)
    return stale


OUT_CLAIM = ".compare-running.json"  # in --out while a compare writes there: {pid, create_time}


def _out_owner(out: Path) -> int | None:
    """The pid of another compare, still running, that writes its reports into `out`. Two at
    once (the default --out is shared) replaced each other's report folders, work folders and
    table, silently; a claim left by a compare killed outright names a pid that is gone."""
    try:
        held = json.loads((out / OUT_CLAIM).read_text(encoding="utf-8"))
        pid, create_time = int(held["pid"]), float(held["create_time"])
        # Written by another process of this boot, maybe after a clock step: translated.
        created = proctree.recorded(pid, create_time, held.get("boot"))
        if pid != os.getpid() and created is not None and proctree.is_alive(created):
            return pid
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        pass
    return None


def _claim_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        me = psutil.Process()
        claim = {
            "pid": me.pid,
            "create_time": proctree.create_time(me),
            "boot": proctree.boot_stamp(),
        }
        (out / OUT_CLAIM).write_text(json.dumps(claim), encoding="utf-8")
    except (OSError, psutil.Error):
        pass  # an --out that cannot be written is said by the run's own report


def _release_out(out: Path) -> None:
    try:
        if json.loads((out / OUT_CLAIM).read_text(encoding="utf-8")).get("pid") == os.getpid():
            (out / OUT_CLAIM).unlink()
    except (OSError, ValueError, AttributeError):
        pass


def write_outputs(out: Path, rows: list[dict], meta: dict, plot: bool = True) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    for folder in _stale_folders(out, rows):
        shutil.rmtree(folder, ignore_errors=True)
    paths = {"json": out / "compare.json", "md": out / "compare.md"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"workload": meta, "rows": rows}, indent=2, default=str))
    os.replace(tmp, paths["json"])
    paths["md"].write_text(markdown_table(rows, meta), encoding="utf-8")
    if plot and rows:
        paths["png"] = plot_comparison(out / "compare.png", rows)
    else:
        (out / "compare.png").unlink(missing_ok=True)  # an earlier run's, not this one's
    return paths


def build_targets(args: argparse.Namespace) -> list[tuple[str, Target, float]]:
    """(label, target, reap wait) in run order; claude-mem targets are prepared lazily."""
    from harness.targets import get_target

    out: list[tuple[str, Target, float]] = []
    if not args.no_reference:
        for mode in ("fixed", "leaky"):
            target = get_target("reference", mode=mode)
            out.append((f"reference {mode}", target, args.reference_reap_wait))
    settings = dict(kv.split("=", 1) for kv in args.claude_mem_setting)
    allow = args.allow_foreign_kill or os.environ.get("LEAKPROOF_ALLOW_FOREIGN_KILL") == "1"
    common = {"allow_foreign_kill": allow, "settings": settings, "isolation": args.isolation}
    for version in args.claude_mem:
        target = get_target("claude-mem", version=version, **common)
        out.append((f"claude-mem {version}", target, args.reap_wait))
    for plugin in args.claude_mem_plugin:
        target = get_target("claude-mem", plugin=plugin, **common)
        label = str(getattr(target, "label", f"claude-mem {plugin}"))  # the build's version
        out.append((f"claude-mem {label.split(' ', 1)[1]}", target, args.reap_wait))
    return _distinct(out)


def _distinct(targets: list[tuple[str, Target, float]]) -> list[tuple[str, Target, float]]:
    """Two claude-mem builds that declare one version (the docs' v9.0.0 checkout and a fix
    branch of it) are told apart by where they come from, then by their place: their rows read
    alike, and the second's report folder replaced the first's."""
    from harness.targets.claude_mem import ClaudeMemTarget

    for step in ("source", "place"):
        counts = Counter(label for label, _, _ in targets)
        for i, (label, target, wait) in enumerate(targets):
            if counts[label] > 1 and isinstance(target, ClaudeMemTarget):
                target.note = (
                    target.source_name() if step == "source" else f"{target.note} #{i + 1}"
                )
                targets[i] = (target.label, target, wait)
    return targets


def _home_now(home: str | None, work_dir: str | None) -> str | None:
    """The run's private HOME (a folder of its work folder) where it is now: the work folder
    is moved into the report folder when kept, removed otherwise (then None)."""
    if home is None or work_dir is None:
        return None
    return str(Path(work_dir) / Path(home).name)


def _out_busy(out: Path, pid: int) -> str:
    return (
        f"--out {out}: another compare (pid {pid}) is writing its reports there; wait for it, "
        "or give another --out"
    )


def _on_sigint(task: asyncio.Task[Any] | None) -> None:
    _INTERRUPTED.set()
    # Under a run's shield (its cleanup: the reap wait, the stop, the sweep, the report) the
    # flag is enough: the reap wait ends at once, and cancelling would cut the report short.
    if task is not None and not shield_up():
        task.cancel()


async def compare(args: argparse.Namespace) -> tuple[list[dict], dict]:
    _INTERRUPTED.clear()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    # Ctrl-C: cancel the run (run_soak stops its worker) and skip every reap wait. SIGTERM and
    # SIGHUP too: their handler (interrupts.term_as_interrupt) calls SIGINT's, which once the
    # loop has one of its own is a no-op, so they would be ignored. Not one ignored on purpose
    # (SIGHUP under nohup).
    for sig in SIGNALS:
        if sig != signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(sig, _on_sigint, task)
        except (NotImplementedError, RuntimeError):  # Windows: asyncio.run's own handling
            break
    base = SoakConfig(
        sessions=args.sessions,
        concurrency=args.concurrency,
        prompts=args.prompts,
        observations=args.observations,
        scenarios=args.scenarios,
        seed=args.seed,
        mcp_servers=args.mcp_servers,
        mcp_server_mode=args.mcp_server_mode,
        grace=args.grace,
        progress=args.progress,
        plot=not args.no_plot,
        rss_peak=None,  # a real observer is ~370 MB; the peak is reported, not judged here
        # A slope over a handful of sessions is noise: judged only when asked (--rss-budget).
        rss_budget=args.rss_budget,
    )
    meta = {
        "sessions": args.sessions,
        "prompts": args.prompts,
        "observations": args.observations,
        "concurrency": args.concurrency,
        "scenarios": args.scenarios,
        "seed": args.seed,
        "mcp_servers": args.mcp_servers,
        "mcp_server_mode": args.mcp_server_mode,
        "grace": args.grace,
        "reap_wait": args.reap_wait,
        "reference_reap_wait": args.reference_reap_wait,
    }
    from harness.targets.claude_mem import UnsafeVersionRefused

    targets = build_targets(args)
    rows: list[dict] = []
    refused: dict[str, dict] = {}
    for label, target, _wait in targets:
        prepare = getattr(target, "resolve", None)
        try:
            if prepare is not None:
                # Install and vet every build before any run (a refusal must not cost a soak).
                await asyncio.to_thread(prepare)
        except UnsafeVersionRefused as exc:
            if not args.skip_refused:
                raise
            print(f"compare: {label}: REFUSED: {exc}", file=sys.stderr, flush=True)
            refused[label] = {"target": label, "verdict": "REFUSED", "refused": str(exc)}
            continue
    other = _out_owner(args.out)  # looked at again: it may have started meanwhile
    if other is not None:
        raise ValueError(_out_busy(args.out, other))
    _claim_out(args.out)
    for label, target, reap_wait in targets:
        if label in refused:
            rows.append(refused[label])
            continue
        print(f"compare: {label} ...", file=sys.stderr, flush=True)
        if hasattr(target, "grace"):
            target.grace = args.grace
        watch = ReapWatch(target, reap_wait, args.grace)
        folder = _slug(label)
        config = replace(base, report=args.out / folder)
        report = await run_soak(config, watch)
        extra_fn = getattr(target, "extra_report", None)
        extra = extra_fn() if extra_fn is not None else None
        if extra is not None:
            extra["home"] = _home_now(extra.get("home"), report.get("work_dir"))
            (args.out / _slug(label)).mkdir(parents=True, exist_ok=True)
            (args.out / _slug(label) / "claude-mem.json").write_text(
                json.dumps(extra, indent=2, default=str)
            )
            label = getattr(target, "label", label)
        row = summarize(label, report, watch.reap, args.prompts, extra)
        row["folder"] = folder  # its soak report, under the output folder
        rows.append(row)
        if report.get("interrupted") or _INTERRUPTED.is_set():
            raise KeyboardInterrupt
        isolation = f", isolation: {row['isolation']}" if row.get("isolation") else ""
        never = (
            f", {row['not_reaped']} never reaped within {reap_wait:g} s"
            if row.get("not_reaped")
            else ""
        )
        print(
            f"compare: {label}: {row['verdict']}, leaked {row['leaked']}, "
            f"time-to-reap max {_seconds(row['reap_max_s'])}{never}{isolation}",
            file=sys.stderr,
            flush=True,
        )
    return rows, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--claude-mem", action="append", default=[], metavar="VERSION", help="npm version"
    )
    parser.add_argument(
        "--claude-mem-plugin",
        action="append",
        default=[],
        metavar="PATH",
        help="a claude-mem plugin folder or checkout (e.g. tag v9.0.0)",
    )
    parser.add_argument(
        "--allow-foreign-kill",
        "--allow-chroma-kill",
        action="store_true",
        help="run builds that kill processes not their own (9.0.0: every chroma-mcp; 10.6.3: "
        "orphaned claude-looking processes) even where no PID namespace can contain them; also "
        "LEAKPROOF_ALLOW_FOREIGN_KILL=1",
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "pid-namespace", "none"),
        default=None,
        help="auto (default): run a build that kills processes not its own in a PID namespace "
        "of its own (Linux, unshare), refuse it where none can be made; pid-namespace: every "
        "claude-mem build; none: never (also LEAKPROOF_CLAUDE_MEM_ISOLATION)",
    )
    parser.add_argument(
        "--skip-refused",
        action="store_true",
        help="list a refused build in the table instead of stopping (default: stop, exit 2)",
    )
    parser.add_argument(
        "--claude-mem-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra ~/.claude-mem/settings.json entry, e.g. CLAUDE_MEM_MAX_CONCURRENT_AGENTS=4",
    )
    parser.add_argument(
        "--skip-if-unavailable",
        action="store_true",
        help="exit 0 with the reason when claude-mem cannot run here (no node/npm)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the reference worker")
    parser.add_argument("--sessions", type=COUNT, default=6, help="sessions per worker")
    parser.add_argument("--prompts", type=COUNT, default=3, help="prompts per session")
    parser.add_argument(
        "--observations", type=NON_NEGATIVE_INT, default=2, help="tool uses per prompt"
    )
    parser.add_argument("--concurrency", type=COUNT, default=2, help="sessions at once")
    parser.add_argument(
        "--scenarios", default=DEFAULT_SCENARIOS, help="fake scenario spec or weights, as for soak"
    )
    # claude-mem 13.x passes --strict-mcp-config, so its observers start none of them.
    add_mcp_arguments(parser)
    parser.add_argument("--seed", type=int, default=1, help="drives the scenario draws")
    add_grace_arguments(parser, grace=5.0)
    parser.add_argument(
        "--rss-budget",
        type=float,
        default=float("inf"),
        help="judge the RSS slope (MB/100 sessions); off by default (few sessions)",
    )
    parser.add_argument(
        "--reap-wait",
        type=NON_NEGATIVE,
        default=DEFAULT_REAP_WAIT_S,
        help="seconds to wait after the workload for claude-mem to end its observers itself",
    )
    parser.add_argument(
        "--reference-reap-wait",
        type=NON_NEGATIVE,
        default=DEFAULT_REFERENCE_REAP_WAIT_S,
        help="the same for the reference workers",
    )
    parser.add_argument(
        "--out",
        type=path_arg,
        default=Path("reports/compare"),
        help="folder for compare.{md,json,png} and each run's report",
    )
    parser.add_argument(
        "--progress",
        default="none",
        choices=("auto", "rich", "plain", "none"),
        help="each run's live display, as for soak",
    )
    parser.add_argument("--no-plot", action="store_true", help="no rss.png or compare.png")


def run(args: argparse.Namespace) -> int:
    wants_claude_mem = bool(args.claude_mem or args.claude_mem_plugin)
    if wants_claude_mem and args.skip_if_unavailable:
        from harness.claude_mem_install import why_unavailable

        reason = why_unavailable()
        if reason:
            print(f"SKIPPED harness compare: the real claude-mem cannot run here: {reason}.")
            return 0
    for kv in args.claude_mem_setting:
        key, eq, value = kv.partition("=")
        if not (key and eq and value):  # as soak's check (soak_config.config_problem)
            print(f"harness compare: --claude-mem-setting needs KEY=VALUE, not {kv!r}",
                  file=sys.stderr)  # fmt: skip
            return 2
    owner = _out_owner(args.out)
    if owner is not None:
        print(f"harness compare: {_out_busy(args.out, owner)}", file=sys.stderr)
        return 2
    try:
        rows, meta = asyncio.run(compare(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        end_live_runs()  # an interrupt that got past a run's own cleanup
        _release_out(args.out)
        print("compare interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as exc:
        _release_out(args.out)
        print(f"harness compare: {exc}", file=sys.stderr)
        return 2
    try:
        paths = write_outputs(args.out, rows, meta, plot=not args.no_plot)
    finally:
        _release_out(args.out)
    print(markdown_table(rows, meta))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0 if all(r.get("verdict") in ("PASS", "FAIL", "REFUSED") for r in rows) else 2
