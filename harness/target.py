"""The interface between the soak harness and a worker under test.

A target knows how to start one worker for a run, how to drive a session through that worker's
HTTP API the way its hooks would, and how to stop it. The census and the verdict do not depend on
which target is used.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


class TargetError(RuntimeError):
    """A target could not be prepared, started or driven, for a reason its message gives in
    full (a refused build, a version npm does not have, a worker that never got ready, with
    its log): the run is a harness error, reported without a traceback."""


@dataclass(frozen=True)
class RunContext:
    """What every target gets from the harness for one run."""

    run_id: str
    work_dir: Path  # private temp folder for this run (data dirs, HOME, logs)
    claude_path: Path  # the fake shim (settings baked in) the worker must spawn
    ledger_path: Path
    seed: int


@dataclass(frozen=True)
class SessionSpec:
    """One session of the workload: what the hooks would post."""

    index: int
    content_session_id: str
    project: str
    prompts: list[str]
    observations_per_prompt: int
    extra: dict[str, str] = field(default_factory=dict)


class SpawnedProcess(NamedTuple):
    """A process the worker says it spawned for a session (its registry row)."""

    pid: int
    create_time: float
    # When the worker had ended it (and its tree), on create_time's clock (proctree.now());
    # None: not yet known.
    ended: float | None = None


@dataclass
class WorkerHandle:
    """A started worker: where it listens and which process is its root."""

    base_url: str
    pid: int
    create_time: float
    mode: str
    log_path: Path | None = None
    # The worker itself when `pid` is a wrapper (unshare and a PID namespace's init around
    # claude-mem's bun): its own RSS is the worker's RSS. None: `pid` is the worker.
    core: tuple[int, float] | None = None


class Target(abc.ABC):
    """A worker implementation the harness can soak."""

    name: str = "abstract"
    # True iff every process the worker starts after it is ready (apart from its own helpers,
    # which it starts before) belongs to the run: the census may then count new descendants of
    # the worker even without the fake's run id (e.g. `soak --claude PATH`).
    descendants_are_run: bool = False

    @abc.abstractmethod
    async def start(self, ctx: RunContext) -> WorkerHandle:
        """Start the worker and return once it is ready to serve requests."""

    @abc.abstractmethod
    async def drive_session(self, session: SessionSpec, http: object) -> None:
        """Drive one session to its end (`http` is an aiohttp.ClientSession)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the worker and everything it started; must be safe to call twice."""

    async def session_processes(self, session: SessionSpec, http: object) -> list[SpawnedProcess]:
        """Optional: the processes the worker spawned for `session`.

        Called once, right after `drive_session` returns. A target that cannot say returns [] and
        the census attributes the session's processes by time (sessions running at each spawn).
        The census also learns of processes it never sampled alive this way (a short-lived
        observer ended between two samples), so they are counted and their identity checked.
        """
        return []

    async def end_session(self, session: SessionSpec, http: object) -> None:  # noqa: B027
        """Optional: end a session as the hooks do at its end (`drive_session` does it too);
        for a session the run abandoned half-way (see soak._watch_worker)."""

    async def messages(self, http: object) -> dict[str, int] | None:
        """Optional: how the worker's queued messages ended, while it still runs: {"processed":
        n, "failed": m}. A run whose observers answered none of them tested only the spawn and
        ending of claudes that never worked (said in the report). None: cannot say."""
        return None

    def exit_status(self) -> int | None:
        """Optional: the worker's exit status if it has ended by itself (before stop()), else
        None; negative: killed by that signal (POSIX), as Popen.returncode."""
        return None

    def facts(self) -> dict[str, Any]:
        """Optional: what the target said about itself, for the report (small, JSON-ready): e.g.
        what held its children on this machine. Asked once the run is over."""
        return {}

    def stop_now(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Optional synchronous last resort at interpreter exit; `stop()` is the normal path."""

    def tidy(self) -> int:
        """Optional: once the run's processes are swept, remove what the stopped worker left on
        the machine besides processes (a worker killed outright leaves its cgroup cells); how
        many of those still held processes, which the sweep then missed (they are ended)."""
        return 0
