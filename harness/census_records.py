"""What the census keeps of each process, session and sample of a run (see harness/census.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from harness.text import printable

CT_TOLERANCE = 0.01  # docs/contracts.md: the fake may compute create_time without psutil
RUN_ID_FLAG = "--fake-claude-run-id="


def run_id_token(run_id: str) -> str:
    return RUN_ID_FLAG + run_id


@dataclass
class ProcRecord:
    pid: int
    create_time: float
    spawn_ts: float  # ledger start ts (exact) or first time seen
    cmdline: list[str] = field(default_factory=list)
    role: str | None = None
    scenario: str | None = None
    parent_pid: int | None = None  # the fake main that spawned it (ledger)
    ppid: int | None = None
    session: str | None = None  # attributed by the target
    held_at: float = 0.0  # when a look last found this very process at its pid
    leader: ProcRecord | None = None  # the run's process that leads its POSIX session
    proc: psutil.Process | None = None
    rss: int = 0
    status: str = ""
    exit_ts: float | None = None  # from the ledger's exit event
    exit_code: int | None = None
    exited_at: float | None = None  # exited (gone or zombie) as observed, or ledger exit
    reported_end: float | None = None  # the worker's registry: when it had ended this process
    zombie_since: float | None = None
    reaped: bool = False  # gone from the process table
    escaped: bool = False
    leaked_at: float | None = None
    leak_reason: str = ""
    signals: int = 0
    candidates: tuple[str, ...] | None = None  # sessions running at spawn (time attribution)
    # Known from the target's word alone (attribute) and not yet seen alive: the run's only
    # once a sample finds it descending from the worker (see _vouched).
    claimed: bool = False
    deadline_epoch: int = -1
    deadline_cache: float | None = None

    @property
    def identity(self) -> tuple[int, float]:
        return (self.pid, self.create_time)

    @property
    def alive(self) -> bool:
        return self.exited_at is None

    def command(self) -> str:
        return printable(" ".join(self.cmdline)) if self.cmdline else "?"


@dataclass
class SessionWindow:
    key: str
    start: float
    end: float | None = None
    ok: bool = True
    attributed: bool = False  # the target had its say (or cannot say)
    n_procs: int = 0
    last_exit: float | None = None
    leaked: bool = False


@dataclass
class Sample:
    t: float
    sessions_done: int
    total_rss: int  # worker + every descendant
    worker_rss: int
    descendants: int
    live_run: int  # live processes of the run (descendants or not)
    leaked: int
