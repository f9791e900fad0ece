"""Contained spawn: the Popen/asyncio kwargs and the handle recorded right after spawn."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _platform
from ._identity import ProcId, identify

MARK_ENV = "LEAKPROOF_WORKER_MARK"


class SpawnOptions(Mapping[str, Any]):
    """Keyword arguments for subprocess.Popen and asyncio.create_subprocess_exec.

    Use as `Popen(argv, **opts, stdin=PIPE, ...)`; call `after_spawn(proc.pid)` at once
    (on Windows the child is created suspended and only after_spawn resumes it). Built with
    `argv=`, run `opts.argv` instead: it may be argv wrapped in a launcher (Linux: the
    parent-death signal without a preexec_fn, a much cheaper spawn).
    """

    def __init__(
        self,
        mark: str,
        popen_kwargs: dict[str, Any],
        env: dict[str, str],
        argv: list[str] | None = None,
    ) -> None:
        self.mark = mark
        self.popen_kwargs = dict(popen_kwargs)
        self.env = env
        self.argv = argv
        self.subreaper = False  # whether the child will be a child subreaper (spawn_options)
        # Linux: the prefix of the cgroup cell the child makes and enters itself: `<cell>-<pid>`
        self.cell: Path | None = None

    def cell_of(self, pid: int) -> Path | None:
        """The cell the launcher made for child `pid` (see _launcher: `<prefix>-<pid>`)."""
        return None if self.cell is None else self.cell.with_name(f"{self.cell.name}-{pid}")

    def _all(self) -> dict[str, Any]:
        return {**self.popen_kwargs, "env": self.env}

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.popen_kwargs))
        return f"SpawnOptions(mark={self.mark!r}, kwargs=[{keys}], env=<{len(self.env)} vars>)"


def spawn_options(
    mark: str,
    *,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    subreaper: bool = False,
) -> SpawnOptions:
    """Own session/process group (POSIX), pdeathsig (Linux), new group + job (Windows), marker.

    `env` is the child's environment (default: ours); the marker is added to it. On Linux the
    parent-death signal fires when the *spawning thread* dies: spawn from a long-lived thread.
    Give `argv` and run `opts.argv`: on Linux it then needs no preexec_fn (see SpawnOptions).
    `subreaper` (Linux): the child becomes a child subreaper, so its descendants' orphans
    (a daemon's double fork) stay in its tree; `opts.subreaper` says whether it will.
    """
    child_env = dict(os.environ if env is None else env)
    child_env[MARK_ENV] = mark
    command, kwargs, made, cell = _platform.spawn_plan(
        os.getpid(), None if argv is None else list(argv), child_env.get("PATH"), subreaper
    )
    opts = SpawnOptions(mark, kwargs, child_env, command)
    opts.subreaper = made
    opts.cell = cell
    return opts


@dataclass
class Containment:
    """What after_spawn recorded: the child's identity and its group (pgid or job)."""

    pid: int
    proc_id: ProcId | None
    group: Any
    mark: str | None = None
    cgroup: Path | None = None  # Linux: its cgroup cell, where enable_cgroups() made one
    closed: bool = field(default=False, repr=False)

    @property
    def pgid(self) -> int | None:
        return self.group if isinstance(self.group, int) else None

    def kill(self) -> bool:
        """Kill the whole group at once (POSIX: SIGKILL to the pgid; Windows: terminate the
        job). For the owner of the root's Popen while the root is unreaped, so that the group
        is still the one it started."""
        if self.closed:
            return False
        cell = self.cgroup is not None and _platform.kill_cell(self.cgroup)
        return _platform.kill_group(self.group) or cell

    def close(self) -> None:
        """Release the group handle (Windows: closing the job kills what is left in it; Linux:
        the cell's remaining members are killed and the cell removed)."""
        if not self.closed:
            self.closed = True
            _platform.close_group(self.group)
            if self.cgroup is not None:
                _platform.close_cell(self.cgroup)


def after_spawn(pid: int, options: SpawnOptions | None = None) -> Containment:
    """Record the child's identity and group; give it options from spawn_options, or it is
    moved into a cell of its own here, not by its launcher."""
    group = _platform.after_spawn(pid)
    proc_id = identify(pid)
    cell = options.cell_of(pid) if options is not None else None
    if cell is None:
        # Moved into its cell now, as soon as we can: what it forks before is outside it.
        name = f"{pid}-{proc_id.create_time:.2f}" if proc_id is not None else str(pid)
        cell = _platform.cgroup_cell(pid, name)
    return Containment(
        pid=pid,
        proc_id=proc_id,
        group=group,
        mark=options.mark if options is not None else None,
        cgroup=cell,
    )
