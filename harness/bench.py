"""`python -m harness bench`: the harness's speed figures (issue 4, section 8).

1. throughput: a soak of the fixed worker vs a bare loop that spawns the fake and drives the same
   two turns per session directly (prompt + summary), at the same concurrency (ratio; >= 0.8);
   with the CPU cost of one bare HTTP round trip here (bench_http), the floor of the soak's
   5 hook requests per session;
2. cleanup latency p50/p99 of the fixed worker, session end -> last process gone, with a
   well-behaved fake (target p99 <= 200 ms) and with ignore-eof+ignore-sigterm (target
   <= 2 x grace + 200 ms);
3. the cost of one census sample with N live processes of the run (target <= 50 ms at 500);
4. the harness's own RSS over a long soak (flat: slope per 100 sessions over the 2nd half).
Every size is a flag so that a quick run is possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import proctree
from cliargs import COUNT, int_at_least, path_arg
from harness.bench_http import http_round_trip
from harness.census import Census, run_id_token
from harness.cleanup import end_live_runs, live_run, run_over, sweep_run
from harness.soak import run_soak
from harness.soak_config import SoakConfig, add_grace_arguments, default_concurrency, write_run_shim
from harness.targets import get_target
from harness.verdict import slope_per_100_sessions

BARE_TURN_TIMEOUT_S = 60.0


# -- 1. throughput ------------------------------------------------------------------------------
# The soak below runs prompts=1, observations=0: per session the worker's observer takes two
# turns (the prompt, then the Stop hook's summary), so the bare loop drives two turns as well.
BARE_TURNS_PER_SESSION = 2


async def _bare_session(shim: Path, index: int, turns: int = BARE_TURNS_PER_SESSION) -> None:
    """Spawn the fake, initialize, `turns` user turns, close stdin, wait: no worker, no census."""
    proc = await asyncio.create_subprocess_exec(
        str(shim),
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        limit=16 * 1024 * 1024,
        # In a session of its own, as the worker starts each observer (proctree's spawn options):
        # where the scheduler groups processes by session (Linux's autogroup), the bare fakes
        # would otherwise share one group with this driver, and another load on the machine
        # would take a larger share of their CPU than of the soak's.
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        init = {"type": "control_request", "request_id": f"req_{index}", "request": {
            "subtype": "initialize", "hooks": None}}  # fmt: skip
        proc.stdin.write((json.dumps(init) + "\n").encode())
        await proc.stdin.drain()
        await asyncio.wait_for(_read_until(proc.stdout, "control_response"), BARE_TURN_TIMEOUT_S)
        for turn in range(turns):
            user = {"type": "user", "message": {"role": "user",
                    "content": f"bench {index} turn {turn + 1}"},
                    "parent_tool_use_id": None, "session_id": f"bench-{index}"}  # fmt: skip
            proc.stdin.write((json.dumps(user) + "\n").encode())
            await proc.stdin.drain()
            await asyncio.wait_for(_read_until(proc.stdout, "result"), BARE_TURN_TIMEOUT_S)
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), BARE_TURN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _read_until(stream: asyncio.StreamReader, kind: str) -> None:
    while True:
        line = await stream.readline()
        if not line:
            raise RuntimeError(f"fake closed stdout before {kind}")
        try:
            if json.loads(line).get("type") == kind:
                return
        except ValueError:
            continue


async def bare_loop(sessions: int, concurrency: int, seed: int) -> dict[str, Any]:
    run_id = secrets.token_hex(6)
    with tempfile.TemporaryDirectory(prefix="leakproof-bench-bare-") as tmp:
        shim = write_run_shim(
            Path(tmp), run_id, SoakConfig(scenarios="ok", seed=seed), Path(tmp) / "l"
        )
        counter = iter(range(sessions))

        async def worker() -> None:
            for i in counter:
                await _bare_session(shim, i)

        live_run(run_id, None, Path(tmp))
        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await asyncio.to_thread(sweep_run, run_id)
            run_over(run_id)
        dt = time.perf_counter() - t0
    return {
        "sessions": sessions,
        "seconds": round(dt, 2),
        "sessions_per_s": round(sessions / dt, 3),
    }


async def bare_worker_loop(config: SoakConfig) -> dict[str, Any]:
    """The soak's sessions through the same worker, with no census, progress or report.

    Against the soak's own rate this isolates what the harness costs; against the bare fake loop
    the soak's rate also includes the worker's pipeline (HTTP, SQLite, queue, observer turns).
    """
    import aiohttp

    from harness.target import RunContext
    from harness.workload import make_session

    run_id = secrets.token_hex(6)
    target = get_target(config.target, **config.target_kwargs())
    with tempfile.TemporaryDirectory(prefix="leakproof-bench-worker-") as tmp:
        work = Path(tmp)
        ledger = work / "ledger.jsonl"
        shim = write_run_shim(work, run_id, config, ledger)
        live_run(run_id, target.stop_now, work)
        try:
            # Inside the try: a start that fails half-way (a worker that never got ready)
            # is stopped like any other.
            await target.start(RunContext(run_id, work, shim, ledger, config.seed))
            counter = iter(range(config.sessions))
            async with aiohttp.ClientSession() as http:

                async def loop() -> None:
                    for i in counter:
                        spec = make_session(i, run_id, config.seed, config.prompts, 0)
                        await target.drive_session(spec, http)

                t0 = time.perf_counter()
                await asyncio.gather(*(loop() for _ in range(config.concurrency)))
                dt = time.perf_counter() - t0
        finally:
            await target.stop()
            await asyncio.to_thread(sweep_run, run_id)
            run_over(run_id)
    return {"sessions_per_s": round(config.sessions / dt, 3)}


async def soak_once(config: SoakConfig, target: Any = None) -> dict[str, Any]:
    """One soak; a Ctrl-C ends it (run_soak stops it and reports `interrupted`) and the
    bench with it, rather than the bench going on to its next round."""
    if target is None:
        target = get_target(config.target, **config.target_kwargs())
    report = await run_soak(config, target)
    if report.get("interrupted"):
        raise KeyboardInterrupt
    return report


def _failure(report: dict[str, Any]) -> dict[str, Any]:
    """Why a bench soak did not pass, and where its evidence was kept."""
    return {"soak_reasons": report["reasons"], "soak_work_dir": report["work_dir"]}


def _cpu_seconds() -> tuple[float, float]:
    """(this process, its waited-for descendants): the bare loop's fakes are our children; the
    soak's worker is, and its observers' time is added to it when it reaps them."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def _cpu_split(
    before: tuple[float, float], after: tuple[float, float], sessions: int, names: tuple[str, str]
) -> dict[str, float]:
    own, kids = (round((b - a) / sessions * 1000, 1) for a, b in zip(before, after, strict=True))
    return {names[0]: own, names[1]: kids, "total": round(own + kids, 1)}


async def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Bare loop and soak in alternating rounds: a load that changes during the bench (other
    jobs on the machine) then weighs on both sides alike; the figure is the median ratio."""
    config = SoakConfig(
        sessions=args.sessions,
        concurrency=args.concurrency,
        prompts=1,
        observations=0,
        scenarios="ok",
        seed=args.seed,
        grace=args.grace,
        progress="none",
        plot=False,
    )
    rounds: list[dict[str, Any]] = []
    for _ in range(max(1, args.rounds)):
        c0 = _cpu_seconds()
        bare = await bare_loop(args.sessions, args.concurrency, args.seed)
        c1 = _cpu_seconds()
        report = await soak_once(config)
        c2 = _cpu_seconds()
        soak_rate = report["sessions_per_s_driving"]
        rounds.append(
            {
                "bare_fake_sessions_per_s": bare["sessions_per_s"],
                "soak_sessions_per_s": soak_rate,
                "ratio": round(soak_rate / bare["sessions_per_s"], 3),
                # Where the CPU goes, per session: with both cores saturated the ratio is
                # about the inverse ratio of these totals.
                "cpu_ms_per_session": {
                    "bare": _cpu_split(c0, c1, args.sessions, ("driver", "fakes")),
                    "soak": _cpu_split(c1, c2, args.sessions, ("harness", "worker_and_fakes")),
                },
                "soak_verdict": report["verdict"],
                **(_failure(report) if report["verdict"] != "PASS" else {}),
            }
        )
    worker = await bare_worker_loop(config)
    floor = await http_round_trip()
    median_soak = statistics.median(r["soak_sessions_per_s"] for r in rounds)
    return {
        "concurrency": args.concurrency,
        "turns_per_session": BARE_TURNS_PER_SESSION,
        "rounds": rounds,
        "bare_worker_sessions_per_s": worker["sessions_per_s"],
        "ratio_vs_bare_fake_median": statistics.median(r["ratio"] for r in rounds),
        "ratio_vs_bare_worker_driver": round(median_soak / worker["sessions_per_s"], 3)
        if worker["sessions_per_s"]
        else None,
        "target": 0.8,
        "soak_verdicts": sorted({r["soak_verdict"] for r in rounds}),
        # What the soak's hook requests cost before the worker does any work (bench_http).
        "http_round_trip_floor": floor,
    }


# -- 2. cleanup latency -------------------------------------------------------------------------
async def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"worker_grace_s": args.worker_grace}
    for label, scenario in (
        ("ok", "ok"),
        ("ignore-eof+ignore-sigterm", "ignore-eof+ignore-sigterm"),
    ):
        config = SoakConfig(
            sessions=args.latency_sessions,
            concurrency=min(2, args.concurrency),
            prompts=1,
            observations=1,
            scenarios=scenario,
            seed=args.seed,
            grace=max(args.grace, 4 * args.worker_grace + 1.0),
            worker_grace=args.worker_grace,
            progress="none",
            plot=False,
        )
        report = await soak_once(config)
        out[label] = {**report["cleanup_latency_ms"], "verdict": report["verdict"]}
    out["target_ok_p99_ms"] = 200
    out["target_stubborn_ms"] = round(2 * args.worker_grace * 1000 + 200)
    return out


# -- 3. census sample cost ----------------------------------------------------------------------
_FORKER = """
import os, subprocess, sys, time
n = int(sys.argv[1])
if hasattr(os, "fork"):
    for _ in range(n - 1):
        if os.fork() == 0:
            break  # children inherit argv, so each carries the run token
else:  # Windows: started instead, each with the token; the base interpreter needs no venv
    python = getattr(sys, "_base_executable", None) or sys.executable
    sleeper = "import time\\nwhile True: time.sleep(60)"
    kids = [subprocess.Popen([python, "-S", "-c", sleeper, *sys.argv[2:]]) for _ in range(n - 1)]
while True:
    time.sleep(60)
"""


def bench_census(n_procs: int, samples: int, descendants: bool = False) -> dict[str, Any]:
    """`descendants`: the processes carry no run token; the census knows them only as new
    descendants of the "worker" (the forking parent), as with `soak --claude PATH`."""
    run_id = secrets.token_hex(6)
    marker = "--no-run-token" if descendants else run_id_token(run_id)
    parent = subprocess.Popen(
        [sys.executable, "-S", "-c", _FORKER, str(n_procs), marker],
        stdin=subprocess.DEVNULL,
    )
    want = n_procs - 1 if descendants else n_procs  # the parent plays the worker
    census = Census(run_id, None, grace=60.0, track_descendants=descendants)
    try:
        if descendants:
            census.set_worker(parent.pid, proctree.create_time(psutil.Process(parent.pid)))
        census.session_started("bench")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            census.sample()
            if len(census.live_records()) >= want:
                break
            time.sleep(0.2)
        seen = len(census.live_records())
        costs, cpu = [], []
        for _ in range(samples):
            t0, c0 = time.perf_counter(), time.thread_time()
            census.sample()
            costs.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
        costs.sort()
        cpu.sort()
        total = len(psutil.pids())
    finally:
        sweep_run(run_id, census)
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=60)
    return {
        "run_processes": seen,
        "all_processes": total,
        "found_by": "descendant tracking" if descendants else "run token",
        "sample_ms_p50": round(costs[len(costs) // 2], 2),
        "sample_ms_max": round(costs[-1], 2),
        # CPU of the sampling thread: what the sample costs, whatever the load (the wall time
        # above also holds the waits for a core on a busy machine).
        "sample_cpu_ms_p50": round(cpu[len(cpu) // 2], 2),
        "target_ms": 50,
    }


# -- 4. harness RSS over a long soak ------------------------------------------------------------
async def bench_harness_rss(args: argparse.Namespace) -> dict[str, Any]:
    me = psutil.Process()
    points: list[tuple[float, float, float]] = []
    config = SoakConfig(
        sessions=args.rss_sessions,
        concurrency=args.concurrency,
        prompts=1,
        observations=1,
        scenarios="ok",
        seed=args.seed,
        grace=args.grace,
        progress="none",
        plot=False,
    )
    target = get_target(config.target, **config.target_kwargs())
    done = {"n": 0}

    async def sampler() -> None:
        while True:
            points.append((time.time(), done["n"], float(me.memory_info().rss)))
            await asyncio.sleep(0.5)

    # Count completed sessions by wrapping drive_session (the sampler needs the x axis).
    orig = target.drive_session

    async def drive(session: Any, http: Any) -> None:
        await orig(session, http)
        done["n"] += 1

    target.drive_session = drive  # type: ignore[method-assign]
    task = asyncio.ensure_future(sampler())
    try:
        report = await soak_once(config, target)
    finally:
        task.cancel()
    rss = [p[2] for p in points]
    slope = slope_per_100_sessions([p for p in points if p[1] < args.rss_sessions])
    return {
        "sessions": report["completed"],
        "harness_rss_mb_start": round(rss[0] / 1e6, 1) if rss else None,
        "harness_rss_mb_end": round(rss[-1] / 1e6, 1) if rss else None,
        "harness_rss_mb_peak": round(max(rss) / 1e6, 1) if rss else None,
        "harness_rss_slope_mb_per_100_sessions_2nd_half": slope["mb_per_100_sessions"],
        "soak_verdict": report["verdict"],
    }


# -- command line -------------------------------------------------------------------------------
PARTS = ("throughput", "latency", "census", "rss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeat for more)"
    )
    parser.add_argument(
        "--sessions", type=COUNT, default=100, help="throughput: sessions per side and round"
    )
    # Single rounds vary by +-0.05 on a shared 2-core VM (the fakes' own CPU drifts by 15%
    # between rounds): the median of five is steadier than of three.
    parser.add_argument("--rounds", type=COUNT, default=5, help="throughput: bare/soak rounds")
    parser.add_argument(
        "--concurrency",
        type=COUNT,
        default=default_concurrency(),
        help="sessions at once (default: two per core, 2 to 8)",
    )
    parser.add_argument(
        "--latency-sessions", type=COUNT, default=30, help="latency: sessions per fake scenario"
    )
    parser.add_argument(
        "--census-procs", type=int_at_least(2), default=500, help="census: live processes"
    )
    parser.add_argument("--census-samples", type=COUNT, default=20, help="census: samples timed")
    parser.add_argument(
        "--rss-sessions", type=COUNT, default=1000, help="rss: sessions of the long soak"
    )
    add_grace_arguments(parser, grace=5.0, worker_grace=0.5)
    parser.add_argument("--seed", type=int, default=1, help="drives the scenario draws")
    parser.add_argument("--json", type=path_arg, default=None, help="also write the figures here")


def _print(name: str, figures: dict[str, Any]) -> None:
    print(f"{name}:")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    parts = args.only or list(PARTS)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_1m": psutil.getloadavg()[0]}
    try:
        if "census" in parts:
            results["census"] = bench_census(args.census_procs, args.census_samples)
            _print("census sample cost", results["census"])
            results["census_descendants"] = bench_census(
                args.census_procs, args.census_samples, descendants=True
            )
            _print("census sample cost, no run token", results["census_descendants"])
        if "throughput" in parts:
            results["throughput"] = asyncio.run(bench_throughput(args))
            _print("throughput (soak vs bare fake loop)", results["throughput"])
        if "latency" in parts:
            results["latency"] = asyncio.run(bench_latency(args))
            _print("cleanup latency, fixed worker (ms)", results["latency"])
        if "rss" in parts:
            results["rss"] = asyncio.run(bench_harness_rss(args))
            _print("harness RSS over a long soak", results["rss"])
    except KeyboardInterrupt:
        # An interrupt that got past the runs' own cleanup: end what they started here.
        end_live_runs()
        print("bench interrupted", file=sys.stderr)
        return 130
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
