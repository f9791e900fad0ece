"""Benchmark (Linux, with cgroup cells): how long a spawn holds the spawning thread.

    python -m proctree.bench_spawn [--spawns 200] [--busy 2]

Two ways into a child's cgroup cell, each timed from Popen to the end of after_spawn on the
spawning thread (in a daemon, its event loop): proctree's launcher entering the cell itself
before its exec (`-c`), and the parent moving the child after the spawn. A move waits for an
RCU grace period, which a busy machine lengthens: `--busy N` runs N CPU spinners meanwhile.
The launcher's own path is timed alike, without any cell, as the floor.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

import proctree
from cliargs import COUNT, NON_NEGATIVE_INT, HelpFormatter

SPINNER = "while True: pass"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spawn_times(
    spawns: int, how: Callable[[], tuple[subprocess.Popen[Any], object]]
) -> list[float]:
    out = []
    for _ in range(spawns):
        t = time.perf_counter()
        popen, handle = how()
        out.append(time.perf_counter() - t)
        popen.wait()
        handle.close()  # type: ignore[attr-defined]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m proctree.bench_spawn", description=__doc__, formatter_class=HelpFormatter
    )
    ap.add_argument("--spawns", type=COUNT, default=200, help="spawns per way")
    ap.add_argument("--busy", type=NON_NEGATIVE_INT, default=2, help="CPU spinners meanwhile")
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("cgroup cells are Linux's: nothing to measure here", file=sys.stderr)
        return 2
    from proctree import _cgroup, _linux

    true = shutil.which("true")
    token = secrets.token_hex(6)
    if true is None or not proctree.enable_cgroups(f"bench-{token}"):
        print("no cgroup v2 hierarchy this process may create cgroups in", file=sys.stderr)
        return 2
    spinners: list[subprocess.Popen[Any]] = []
    try:
        if not _linux.native_launcher_in_use():
            print("no native launcher here (no C compiler): nothing to compare", file=sys.stderr)
            return 2
        jail = _cgroup.jail()
        assert jail is not None
        mark = f"bench:{token}"

        def launcher_enters() -> tuple[subprocess.Popen[Any], object]:
            opts = proctree.spawn_options(mark, argv=[true])
            popen = subprocess.Popen(opts.argv or [true], **opts)
            return popen, proctree.after_spawn(popen.pid, opts)

        plain = _linux.pdeathsig_argv([true], os.getpid(), true)
        assert plain is not None

        def parent_moves() -> tuple[subprocess.Popen[Any], object]:
            opts = proctree.spawn_options(mark)
            popen = subprocess.Popen(plain, **{**opts, "preexec_fn": None})
            return popen, proctree.after_spawn(popen.pid)

        def no_cell() -> tuple[subprocess.Popen[Any], object]:
            popen = subprocess.Popen(plain, **{**proctree.spawn_options(mark), "preexec_fn": None})
            return popen, proctree.Containment(popen.pid, None, popen.pid)

        for _ in range(args.busy):
            # With the parent-death signal: a killed bench leaves no spinner behind.
            spinners.append(
                subprocess.Popen([sys.executable, "-c", SPINNER], **proctree.spawn_options(mark))
            )
        rows = [
            ("the launcher enters its cell (-c)", _spawn_times(args.spawns, launcher_enters)),
            ("the parent moves it after the spawn", _spawn_times(args.spawns, parent_moves)),
            ("no cell (the floor)", _spawn_times(args.spawns, no_cell)),
        ]
    finally:
        for s in spinners:
            s.kill()
            s.wait()
        proctree.disable_cgroups()
    table = Table(title=f"spawning thread held per spawn ({args.spawns} spawns, {args.busy} busy)")
    for col in ("way", "median", "p95", "max"):
        table.add_column(col, justify="left" if col == "way" else "right")
    for name, times in rows:
        table.add_row(
            name,
            *(
                f"{v * 1e3:.2f} ms"
                for v in (statistics.median(times), _percentile(times, 0.95), max(times))
            ),
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
