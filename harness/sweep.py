"""`python -m harness sweep`: end what runs killed outright left behind (harness/runs.py).

Every command that starts runs sweeps first, so a developer whose soak was SIGKILLed (or
OOM-killed) finds the orphans of that run ended at the next soak. Only the dead run's own
identity is acted on: a process is ended only if its argv carries that run's token
(cleanup.sweep_run) or the record names it by pid and create time (the census writes the run's
live processes there once a second; with `soak --claude` they carry no token), a folder removed
only if it is the one the run made. What a `--claude` run's processes started in the last second
before the kill, and no record names, a sweep cannot tell from anyone else's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import runs
from harness.cleanup import sweep_run


@dataclass
class SweepResult:
    record: runs.RunRecord
    ended: list[dict]
    removed: str | None  # the work folder removed (or, in a dry run, that would be)


def _removable(work_dir: str | None) -> Path | None:
    if not work_dir:
        return None
    path = Path(work_dir)
    if not path.is_absolute() or not path.name.startswith(runs.WORK_DIR_PREFIX):
        return None
    if path.is_symlink() or not path.is_dir():
        return None
    return path


def sweep_stale(dry_run: bool = False) -> list[SweepResult]:
    """End every stale run's processes and remove its work folder (dry_run: only list)."""
    results = []
    for rec in runs.stale_runs():
        folder = _removable(rec.work_dir)
        ended: list[dict] = []
        if not dry_run:
            ended = sweep_run(rec.run_id, recorded=rec.processes)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            runs.forget(rec.run_id)
        results.append(SweepResult(rec, ended, str(folder) if folder else None))
    return results


def describe(result: SweepResult, dry_run: bool = False) -> str:
    rec = result.record
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.started))
    what = " ".join(rec.command[1:4]) or "harness"
    head = f"run {rec.run_id} ({what}, started {when} by pid {rec.owner_pid}, which is gone)"
    if dry_run:
        folder = f" and remove {result.removed}" if result.removed else ""
        named = f" and the {len(rec.processes)} its record names" if rec.processes else ""
        return f"{head}: would end the processes carrying its run id{named}{folder}"
    ended = f"ended {len(result.ended)} process(es)"
    pids = ", ".join(str(k["pid"]) for k in result.ended[:10])
    if pids:
        ended += f" (pid {pids}{', ...' if len(result.ended) > 10 else ''})"
    folder = f", removed {result.removed}" if result.removed else ""
    return f"{head}: {ended}{folder}"


def sweep_before_start() -> None:
    """What a command that starts runs does first; silent when nothing was left. It cannot stop
    the command: a sweep that fails (a records folder we may not read) is only reported."""
    try:
        results = sweep_stale()
    except Exception as exc:  # noqa: BLE001 - the run asked for goes on
        print(
            f"harness: could not sweep earlier runs ({type(exc).__name__}: {exc})", file=sys.stderr
        )
        return
    for result in results:
        print(f"harness: an earlier {describe(result)}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be ended, end nothing"
    )


def run(args: argparse.Namespace) -> int:
    results = sweep_stale(dry_run=args.dry_run)
    for result in results:
        print(describe(result, dry_run=args.dry_run))
    if not results:
        print(f"nothing to sweep: no run whose harness is gone is recorded in {runs.runs_dir()}")
    return 0
