"""Benchmark: cost of identify/is_alive/descendants over N live processes, and of ending them.

    python -m proctree.bench [-n 500] [--repeat 5]

POSIX: one contained root forks N sleeping children (cheap, copy-on-write).
Windows: N interpreters are started (slower to set up; same measurements).
"""

from __future__ import annotations

import argparse
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import proctree
from cliargs import COUNT, HelpFormatter, int_at_least

FORKER = """
import os, signal, sys
n = int(sys.argv[1])
for _ in range(n):
    if os.fork() == 0:
        while True:
            signal.pause()
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read()
"""
SLEEPER = "import sys, time\nwhile True: time.sleep(3600)"
GRACE_S = 0.2  # terminate_tree's grace per stage


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    runs = []
    result: object = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), result


def _start_posix(n: int, token: str, mark: str) -> subprocess.Popen[str]:
    opts = proctree.spawn_options(mark)
    argv = [sys.executable, "-c", FORKER, str(n), f"--bench-token={token}"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **opts)
    proctree.after_spawn(proc.pid, opts)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("forker failed")
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m proctree.bench", description=__doc__, formatter_class=HelpFormatter
    )
    ap.add_argument("-n", type=int_at_least(2), default=500, help="live processes in the tree")
    ap.add_argument("--repeat", type=COUNT, default=5, help="runs per figure (median shown)")
    args = ap.parse_args(argv)
    console = Console()
    token = secrets.token_hex(6)
    mark = f"bench:{token}"
    extra: list[subprocess.Popen[str]] = []
    root = None
    # Dogfood: forked children do not inherit pdeathsig, so a killed bench would leave them;
    # the guardian ends them, and SIGTERM becomes an exception so `finally` runs.
    guardian = proctree.start_guardian(mark)
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"starting {args.n} processes", total=None)
            if sys.platform == "win32":
                opts = proctree.spawn_options(mark)
                root = subprocess.Popen(
                    [sys.executable, "-c", SLEEPER, f"--bench-token={token}"], text=True, **opts
                )
                containment = proctree.after_spawn(root.pid, opts)
                for _ in range(args.n - 1):
                    p = subprocess.Popen(
                        [sys.executable, "-c", SLEEPER, f"--bench-token={token}"], text=True, **opts
                    )
                    proctree.after_spawn(p.pid, opts)
                    extra.append(p)
            else:
                root = _start_posix(args.n, token, mark)
                containment = proctree.after_spawn(root.pid)
            progress.update(task, description="measuring")
            pids = [p.pid for p in psutil.Process(root.pid).children(recursive=True)]
            pids += [p.pid for p in extra]
            ids = [proctree.identify(pid) for pid in pids]
            live = [i for i in ids if i is not None]
            rows: list[tuple[str, float, int]] = []
            t, _ = _time(lambda: [proctree.identify(pid) for pid in pids], args.repeat)
            rows.append(("identify() x each pid", t, len(pids)))
            t, _ = _time(lambda: [proctree.is_alive(i) for i in live], args.repeat)
            rows.append(("is_alive() x each pid", t, len(live)))
            t, r = _time(lambda: proctree.descendants(root.pid), args.repeat)
            rows.append(("descendants(root) children only", t, len(r)))  # type: ignore[arg-type]
            t, r = _time(lambda: proctree.descendants(root.pid, token=token), args.repeat)
            rows.append(("descendants(root, token=) +argv scan", t, len(r)))  # type: ignore[arg-type]
            t, r = _time(lambda: proctree.descendants(root.pid, mark=mark), args.repeat)
            rows.append(("descendants(root, mark=) +environ scan", t, len(r)))  # type: ignore[arg-type]
            t, r = _time(lambda: proctree.scan(token=token), args.repeat)
            rows.append(("scan(token=) whole system", t, len(r)))  # type: ignore[arg-type]
            total = len(psutil.pids())
            progress.update(task, description="ending the tree")
            root_id = proctree.identify(root.pid)
            assert root_id is not None
            t0 = time.perf_counter()
            res = proctree.terminate_tree(
                root_id, group=containment, mark=mark, token=token, grace=GRACE_S,
                close_stdin=root.stdin, dont_reap=[p.pid for p in extra],
            )  # fmt: skip
            end_t = time.perf_counter() - t0
            for p in extra:
                p.wait()
            root.wait()
        table = Table(title=f"proctree over {len(live)} live processes ({total} on the system)")
        table.add_column("operation")
        table.add_column("median", justify="right")
        table.add_column("per process", justify="right")
        table.add_column("found", justify="right")
        for name, secs, count in rows:
            per = f"{secs / count * 1e6:.1f} us" if count else "-"
            table.add_row(name, f"{secs * 1e3:.1f} ms", per, str(count))
        console.print(table)
        console.print(
            f"terminate_tree: {len(res.ended)} ended ({len(res.term)} by SIGTERM, "
            f"{len(res.kill)} by SIGKILL), {len(res.survivors)} survivors, "
            f"{end_t * 1e3:.0f} ms (each stage, stdin EOF then SIGTERM, waits up to a "
            f"{GRACE_S * 1e3:.0f} ms grace, less once nothing is left)"
        )
        return 0 if res.clean else 1
    finally:
        for p in [*extra, *([root] if root is not None else [])]:
            if p.poll() is None:
                p.kill()
                p.wait()
        guardian.close()  # sweeps anything still carrying the mark
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
