"""`python -m worker.bench --claude PATH`: figures for the reference worker, printed.

Starts `python -m worker serve` on a fresh data dir, drives sessions the way claude-mem 9.0.0's
hooks do (init, init, observations, summarize, complete), and prints: request latency (a 2xx is a
SQLite commit), throughput of the observer queue, time from /complete to the observer's tree
being gone, worker RSS, and what is left alive afterwards (by the worker's mark).
Make a fake claude first: `fake-claude shim /tmp/fc --scenario ok` -> /tmp/fc/claude.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import proctree
from cliargs import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, HelpFormatter


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        await asyncio.sleep(0.02)


async def drive(base: str, args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    end_times: list[float] = []
    async with aiohttp.ClientSession() as http:

        async def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            t = time.perf_counter()
            async with http.post(base + path, json=body) as resp:
                data = await resp.json()
                resp.raise_for_status()
            latencies.append(time.perf_counter() - t)
            return data

        async def get(path: str) -> dict[str, Any]:
            async with http.get(base + path) as resp:
                return await resp.json()

        async def session(i: int) -> None:
            cid = f"bench-{i}"
            init = {"contentSessionId": cid, "project": "bench", "prompt": "p"}
            sid = (await post("/api/sessions/init", init))["sessionDbId"]
            await post(f"/sessions/{sid}/init", {"userPrompt": "p", "promptNumber": 1})
            for n in range(args.observations):
                body = {
                    "contentSessionId": cid,
                    "tool_name": "Read",
                    "tool_input": {"file_path": f"/f{n}"},
                    "tool_response": "x" * 200,
                    "cwd": "/",
                }
                await post("/api/sessions/observations", body)
            await post("/api/sessions/summarize", {"contentSessionId": cid})

            async def drained() -> bool:
                return (await get(f"/sessions/{sid}/status"))["queueLength"] == 0

            await wait_for(drained, 300)
            if args.mode == "fixed":
                t = time.perf_counter()
                await post(f"/sessions/{sid}/complete")

                async def gone() -> bool:
                    return not (await get(f"/sessions/{sid}/status"))["observers"]

                await wait_for(gone, 300)
                end_times.append(time.perf_counter() - t)

        started = time.perf_counter()
        sem = asyncio.Semaphore(args.concurrency)

        async def limited(i: int) -> None:
            async with sem:
                await session(i)

        await asyncio.gather(*(limited(i) for i in range(args.sessions)))
        elapsed = time.perf_counter() - started
        stats = await get("/api/stats")
    items = args.sessions * (args.observations + 2)
    return {
        "latencies": latencies,
        "end_times": end_times,
        "elapsed": elapsed,
        "items": items,
        "stats": stats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m worker.bench", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("--claude", required=True, help="the claude the worker spawns (path or name)")
    p.add_argument("--mode", choices=("fixed", "leaky"), default="fixed", help="the worker's mode")
    p.add_argument("--sessions", type=COUNT, default=20, help="sessions to drive")
    p.add_argument(
        "--observations", type=NON_NEGATIVE_INT, default=5, help="observations per session"
    )
    p.add_argument("--concurrency", type=COUNT, default=4, help="sessions at once")
    p.add_argument(
        "--grace",
        type=NON_NEGATIVE,
        default=0.5,
        help="the worker's --grace: its wait between EOF, SIGTERM and SIGKILL",
    )
    args = p.parse_args(argv)
    # `timeout`, a cancelled job: SIGTERM becomes an exception, so the worker is stopped below.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _bench(args)
    except KeyboardInterrupt:
        print("worker.bench: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        data = Path(tmp) / "data"
        python, python_env = proctree.python_command()
        cmd = [python, "-m", "worker", "serve", "--mode", args.mode]
        cmd += ["--data-dir", str(data), "--claude", args.claude, "--grace", str(args.grace)]
        log_path = Path(tmp) / "worker.log"
        # Contained, and on a lifeline: killed outright, the bench takes its worker along
        # (Linux: parent-death signal; macOS: the worker reads EOF and stops; Windows: the job).
        line = proctree.Lifeline() if sys.platform != "win32" else None
        if line is not None:
            cmd += ["--lifeline-fd", str(line.child_fd)]
        opts = proctree.spawn_options(
            f"worker-bench:{os.getpid()}", env={**os.environ, **python_env}, argv=cmd
        )
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                opts.argv or cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=line.pass_fds if line is not None else (),
                **opts,
            )
        contained = proctree.after_spawn(worker.pid, opts)
        if line is not None:
            line.spawned()
        try:
            info_path = data / "worker.json"
            deadline = time.monotonic() + 60
            while not info_path.exists():
                if worker.poll() is not None or time.monotonic() > deadline:
                    # Say why: the worker refuses bad settings with a one-line reason.
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                    raise SystemExit("worker did not start:\n" + "\n".join(tail))
                time.sleep(0.05)
            info = json.loads(info_path.read_text())
            mark = f"{info['pid']}:{proctree.create_time(psutil.Process(info['pid'])):.3f}"
            result = asyncio.run(drive(f"http://127.0.0.1:{info['port']}", args))
            rss = psutil.Process(worker.pid).memory_info().rss
            live_before_exit = len(proctree.scan(mark=mark))
        finally:
            proctree.ask_to_stop(worker)  # the worker then ends its observers' trees
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                contained.kill()
                worker.wait()
            contained.close()
            if line is not None:
                line.close()
        left = proctree.scan(mark=mark)
        lat = [x * 1000 for x in result["latencies"]]
        ends = [x * 1000 for x in result["end_times"]]
        s = result["stats"]
        print(f"mode                      {args.mode}")
        print(f"sessions x observations   {args.sessions} x {args.observations}")
        print(f"request latency ms        p50 {pct(lat, 0.5):.1f}  p95 {pct(lat, 0.95):.1f}")
        print(f"queue throughput items/s  {result['items'] / result['elapsed']:.1f}")
        if ends:
            print(
                f"complete -> tree gone ms  p50 {pct(ends, 0.5):.0f}  p95 {pct(ends, 0.95):.0f}"
                f"  (mean {statistics.mean(ends):.0f})"
            )
        print(f"observers spawned         {s['observers']['spawned']}")
        print(f"worker RSS MiB            {rss / 2**20:.1f}")
        print(f"ours alive before exit    {live_before_exit}")
        print(f"ours alive after exit     {len(left)}")
        for proc in left:  # the bench cleans up what it caused, by verified identity
            pid_id = proctree.identify(proc.pid)
            if pid_id is not None:
                proctree.terminate_tree(pid_id, grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
