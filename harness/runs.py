"""The runs under way on this machine, on disk: what a harness killed outright leaves behind.

A Ctrl-C or SIGTERM ends a run in order (harness/cleanup.py). A SIGKILL, an OOM kill or a
crashed machine session does not: the worker dies with its lifeline, but what it had orphaned
(a leaky worker's observers that ignore EOF, a daemon that escaped) lives on, and so does the
run's work folder. Every run therefore writes a record here while it is under way: its id, its
owner (the harness process, by pid and create time) and its work folder. A record whose owner
is gone is stale; harness/sweep.py ends what such a run left.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

import proctree
from proctree._launcher import cache_dir

RUNS_DIR_ENV = "LEAKPROOF_RUNS_DIR"
# Work folders are made by tempfile.mkdtemp with these prefixes; a record naming any other
# folder (edited by hand, damaged) is not trusted with a removal.
WORK_DIR_PREFIX = "leakproof-"


def runs_dir() -> Path:
    if os.environ.get(RUNS_DIR_ENV):
        return Path(os.environ[RUNS_DIR_ENV])
    base = cache_dir()
    if base is not None:
        return base / "runs"
    # No home: per user all the same, as another user's runs are not ours to end.
    user = psutil.Process().username().replace("\\", "-")
    return Path(tempfile.gettempdir()) / f"leakproof-runs-{user}"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    owner_pid: int
    owner_create_time: float
    started: float
    work_dir: str | None
    command: list[str]
    # The run's live processes, (pid, create_time), as its census last wrote them (at most
    # once a second): those of `soak --claude` carry no run token to find them by.
    processes: tuple[tuple[int, float], ...] = ()
    other_boot: bool = False  # written before the machine last booted

    def owner_alive(self) -> bool:
        if self.other_boot:
            return False
        return proctree.is_alive(proctree.ProcId(self.owner_pid, self.owner_create_time))


def _path(run_id: str) -> Path:
    return runs_dir() / f"{run_id}.json"


# The records this process wrote, as written (note_processes rewrites them). The lock: a
# census thread's rewrite must not bring back a record that forget() has just removed.
_WRITTEN: dict[str, dict] = {}
_LOCK = threading.Lock()


def record(run_id: str, work_dir: Path | None) -> None:
    """Write the run's record (best effort: a read-only home must not stop a soak)."""
    me = psutil.Process()
    rec = {
        "run_id": run_id,
        "owner_pid": me.pid,
        "owner_create_time": proctree.create_time(me),
        # Read by a later harness, which may have read the boot time after a clock step.
        "boot": proctree.boot_stamp(),
        "started": time.time(),
        "work_dir": str(work_dir) if work_dir is not None else None,
        "command": me.cmdline(),
    }
    with _LOCK:
        _WRITTEN[run_id] = rec
        problem = _write(run_id, rec)
    if problem is not None:
        # Said once, at the start: the run goes on, but a harness killed outright (SIGKILL,
        # OOM) would leave its processes where `harness sweep` cannot find them.
        sys.stderr.write(
            f"warning: cannot write this run's record in {runs_dir()} ({problem}): if this "
            f"harness is killed outright, `python -m harness sweep` will not find what it left; "
            f"set {RUNS_DIR_ENV} to a writable folder\n"
        )


def note_processes(run_id: str, processes: Iterable[tuple[int, float]]) -> None:
    """Name the run's live processes in its record (a run without one: nothing to do)."""
    with _LOCK:
        rec = _WRITTEN.get(run_id)
        if rec is not None:
            _write(run_id, {**rec, "processes": sorted(processes)})


def _write(run_id: str, rec: dict) -> str | None:
    """Write the record; why it could not be, or None."""
    try:
        runs_dir().mkdir(parents=True, exist_ok=True)
        tmp = _path(run_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(_path(run_id))  # whole or not at all: a reader never sees half a record
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def forget(run_id: str) -> None:
    with _LOCK:
        _WRITTEN.pop(run_id, None)
        try:
            _path(run_id).unlink(missing_ok=True)
        except OSError:
            pass


def _load(path: Path) -> RunRecord | None:
    """The record, or None if it is not one (damaged, edited by hand)."""
    try:
        raw = json.loads(path.read_text())
        shift = proctree.clock_offset(raw.get("boot") or None)
        named = [(int(pid), float(ct)) for pid, ct in raw.get("processes") or []]
        rec = RunRecord(
            run_id=str(raw["run_id"]),
            owner_pid=int(raw["owner_pid"]),
            owner_create_time=float(raw["owner_create_time"]) + (shift or 0.0),
            started=float(raw["started"]),
            work_dir=str(raw["work_dir"]) if raw.get("work_dir") else None,
            command=[str(a) for a in raw.get("command") or []],
            # None: written during another boot, so none of them runs now.
            processes=() if shift is None else tuple((pid, ct + shift) for pid, ct in named),
            other_boot=shift is None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    ok = rec.run_id == path.stem and rec.owner_pid > 0 and math.isfinite(rec.started)
    ok = ok and all(pid > 0 and math.isfinite(ct) for pid, ct in named)
    return rec if ok else None


def under_way(run_id: str) -> RunRecord | None:
    """The record of a run with this id that another live harness has under way, else None.
    A second run with its id would take that run's processes for its own: its census would
    count them, and its exit sweep would kill them."""
    rec = _load(_path(run_id))
    if rec is None or rec.owner_pid == os.getpid() or not rec.owner_alive():
        return None
    return rec


def stale_runs() -> list[RunRecord]:
    """Records whose owner is gone, oldest first; records that are not records are removed."""
    out = []
    for path in runs_dir().glob("*.json"):
        rec = _load(path)
        if rec is None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            continue
        if not rec.owner_alive():
            out.append(rec)
    return sorted(out, key=lambda r: r.started)
