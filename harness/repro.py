"""`python -m harness repro`: claude-mem #603 in one command.

The leaky worker (9.0.0's flow) and the fixed worker run side by side, each with a well-behaved
fake `claude`, and receive the same session prompt by prompt. After each prompt the census of each
is printed: the leaky worker's leaked observers grow by one per prompt, the fixed worker's stay at
zero. With --mcp-servers N every observer also starts N MCP servers, as 9.0.0's load the user's
own, and each leaked observer leaks them too. Exit 0 when the leak reproduced and the fix held,
1 otherwise, 2 on a harness error.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cliargs import NON_NEGATIVE_INT, int_at_least
from harness.census import RUN_ID_FLAG, Census, ProcRecord
from harness.cleanup import end_live_runs, live_run, run_over, sweep_run
from harness.interrupts import shielded
from harness.report import leak_entry, leaks_table
from harness.soak_config import SoakConfig, add_grace_arguments, write_run_shim
from harness.target import RunContext
from harness.targets.reference import ReferenceTarget
from harness.workload import make_session

SETTLE_TIMEOUT_S = 30.0  # waiting for a worker to show the prompt's effect, on a loaded machine


@dataclass
class Side:
    mode: str
    run_id: str
    work_dir: Path
    census: Census
    target: ReferenceTarget
    history: list[int] = field(default_factory=list)  # leaked-so-far after each prompt
    max_live: int = 0
    live: list[ProcRecord] = field(default_factory=list)  # after the last prompt: observers...
    over: list[ProcRecord] = field(default_factory=list)  # ...those of prompts over, servers too
    reported: set[tuple[int, float]] = field(default_factory=set)


def _live(side: Side) -> list[ProcRecord]:
    """Live observers (and, with --mcp-servers, the MCP servers under them), oldest first."""
    return sorted(side.census.live_records(), key=lambda r: r.spawn_ts)


def _observers(records: list[ProcRecord]) -> list[ProcRecord]:
    return [r for r in records if r.role != "mcp-server"]


def _servers_of(records: list[ProcRecord], observers: list[ProcRecord]) -> list[ProcRecord]:
    """The MCP servers these observers started (the fake's ledger names each one's parent)."""
    pids = {r.pid for r in observers}
    return [r for r in records if r.role == "mcp-server" and r.parent_pid in pids]


async def _start_side(
    sides: list[Side], mode: str, seed: int, grace: float, worker_grace: float, mcp_servers: int
) -> None:
    """Start one side, listed in `sides` before anything of it runs: however the start ends
    (an error, a Ctrl-C), the caller's cleanup finds it."""
    run_id = secrets.token_hex(6)
    work_dir = Path(tempfile.mkdtemp(prefix=f"leakproof-repro-{mode}-{run_id}-"))
    ledger = work_dir / "ledger.jsonl"
    config = SoakConfig(scenarios="ok", seed=seed, mcp_servers=mcp_servers)
    shim = write_run_shim(work_dir, run_id, config, ledger)
    census = Census(run_id, ledger, grace)
    target = ReferenceTarget(mode=mode, worker_grace=worker_grace, reap_interval=1.0)
    live_run(run_id, target.stop_now, work_dir, census)
    side = Side(mode, run_id, work_dir, census, target)
    sides.append(side)
    census.start()
    handle = await target.start(RunContext(run_id, work_dir, shim, ledger, seed))
    census.set_worker(handle.pid, handle.create_time)


async def _settle(side: Side, expect_at_least: int) -> None:
    """Wait until the worker processed the prompt and its observers stopped changing."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    stable_since, last = time.monotonic(), -1
    while time.monotonic() < deadline:
        await asyncio.to_thread(side.census.sample)
        live = _live(side)
        n = len(live)
        if n != last:
            stable_since, last = time.monotonic(), n
        # Stable for a few samples and at least the expected observers (leaky) -> settled.
        settled = time.monotonic() - stable_since >= 1.0
        if len(_observers(live)) >= expect_at_least and settled:
            return
        await asyncio.sleep(0.1)


def _row(k: int, leaky: Side, fixed: Side, mcp_servers: int) -> str:
    def side(s: Side) -> str:
        claude = len(_observers(s.live))
        servers = f" (+{len(s.live) - claude} MCP)" if mcp_servers else ""
        return f"{claude:>2} live claude{servers}, {s.history[-1]:>2} leaked"

    return f"after prompt {k:>2}: leaky worker: {side(leaky)} | fixed worker: {side(fixed)}"


def _as_started(rec: ProcRecord) -> dict[str, Any]:
    """A fake claude's row names it as the worker started it, as #603's table does: `claude`
    and its arguments (`--resume <id>` from the second prompt on). Its process runs them
    behind the fake's interpreter, boot script and run id, which are alike in every row and
    filled the column's width."""
    entry = leak_entry(rec, None)
    argv = entry["cmdline"]
    if rec.role in ("main", "observer"):
        for i, arg in enumerate(argv):
            if arg.startswith(RUN_ID_FLAG):
                entry["cmdline"] = ["claude", *argv[i + 1 :]]
                break
    return entry


def _print_table(title: str, records: list[Any], out: Any) -> None:
    table = leaks_table([_as_started(r) for r in records], width=None, where=False)
    print(title + "\n    " + table.rstrip().replace("\n", "\n    "), file=out)


async def run_repro(
    prompts: int,
    seed: int,
    grace: float,
    worker_grace: float,
    out: Any = None,
    mcp_servers: int = 0,
) -> dict[str, Any]:
    out = out or sys.stdout
    sides: list[Side] = []
    try:
        await _start_side(sides, "leaky", seed, grace, worker_grace, mcp_servers)
        await _start_side(sides, "fixed", seed, grace, worker_grace, mcp_servers)
        leaky, fixed = sides
        with_mcp = f", {mcp_servers} MCP server(s) each" if mcp_servers else ""
        print(
            f"#603 repro: one session, {prompts} prompts, well-behaved fake claude{with_mcp}\n"
            f"  leaky worker = claude-mem 9.0.0's flow (no session end)   run {leaky.run_id}\n"
            f"  fixed worker = contained observers + session-end hook     run {fixed.run_id}\n"
            f"  (COMMAND: each fake claude's arguments as the worker gave them; its process runs\n"
            f"  them as `python -I -S fake_claude/_boot.py --fake-claude-run-id=RUN ...`)",
            file=out,
        )
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            spec = {side.mode: make_session(0, side.run_id, seed, prompts, 1) for side in sides}
            for side in sides:
                side.census.session_started(spec[side.mode].content_session_id)
            for k in range(1, prompts + 1):
                await asyncio.gather(*(s.target.drive_prompt(spec[s.mode], http, k) for s in sides))
                await asyncio.gather(*(s.target.wait_drained(spec[s.mode], http) for s in sides))
                await asyncio.gather(_settle(leaky, k), _settle(fixed, 1))
                for side in sides:
                    side.live = _live(side)
                    observers = _observers(side.live)
                    side.max_live = max(side.max_live, len(observers))
                    # Every observer but the newest belongs to a prompt that is over, and so do
                    # the MCP servers it started.
                    side.over = [*observers[:-1], *_servers_of(side.live, observers[:-1])]
                    side.history.append(len(side.over))
                print(_row(k, leaky, fixed, mcp_servers), file=out)
                stale = [r for r in leaky.over if r.identity not in leaky.reported]
                if stale:
                    leaky.reported.update(r.identity for r in stale)
                    _print_table("    newly leaked:", stale, out)
            # Session end: 9.0.0 has no hook for it; the fixed flow sends it.
            for side in sides:
                await side.target.end_session(spec[side.mode], http)
                await side.target.wait_drained(spec[side.mode], http)
                side.census.session_ended(spec[side.mode].content_session_id)
                side.census.attribute(spec[side.mode].content_session_id, [])
        # Judge once the census has seen it all: the fixed side empty and every leaky observer
        # classified leaked (alive past its session's end + grace); at the latest after the grace.
        deadline = time.monotonic() + grace + 1.0
        per_prompt = 1 + mcp_servers  # an observer and the servers it started
        while time.monotonic() < deadline:
            if not _live(fixed) and len(leaky.census.leaked) >= prompts * per_prompt:
                break
            await asyncio.sleep(0.1)
        for side in sides:
            await asyncio.to_thread(side.census.finish)
        result = {
            "prompts": prompts,
            "leaky_history": leaky.history,
            "fixed_history": fixed.history,
            "leaky_leaked": len(leaky.census.leaked),
            "fixed_leaked": len(fixed.census.leaked),
            "fixed_max_live": fixed.max_live,
            "leaked": [leak_entry(r, None) for r in leaky.census.leaked],
        }
        grew = all(b > a for a, b in zip(leaky.history, leaky.history[1:], strict=False))
        result["reproduced"] = grew and len(leaky.census.leaked) >= prompts * per_prompt
        result["fix_held"] = not fixed.census.leaked and fixed.max_live <= 1
        print(
            f"after session end + {grace:g}s grace: leaky worker {result['leaky_leaked']} leaked "
            f"(#603 leaks {per_prompt} per prompt: {prompts * per_prompt} expected), "
            f"fixed worker {result['fixed_leaked']} leaked",
            file=out,
        )
        for side in sides:
            if side.census.leaked:
                _print_table(f"    {side.mode} worker, all leaked:", side.census.leaked, out)
        return result
    finally:
        with shielded():  # a second Ctrl-C here would leave a side's processes running
            for side in sides:
                side.census.stop_judging()
                await side.target.stop()
                await asyncio.to_thread(sweep_run, side.run_id, side.census)
                side.census.stop()
                shutil.rmtree(side.work_dir, ignore_errors=True)
                run_over(side.run_id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompts", type=int_at_least(2), default=5, help="prompts in the session (>= 2: growth)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the fake's seed")
    add_grace_arguments(parser, grace=3.0, worker_grace=0.5)
    parser.add_argument(
        "--mcp-servers",
        type=NON_NEGATIVE_INT,
        default=0,
        metavar="N",
        help="each observer also starts N stdio MCP servers (the user's own, which 9.0.0's "
        "observers load): each leaked observer then leaks them too",
    )


def run(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(
            run_repro(
                args.prompts, args.seed, args.grace, args.worker_grace,
                mcp_servers=args.mcp_servers,
            )
        )  # fmt: skip
    except KeyboardInterrupt:
        end_live_runs()  # an interrupt that got past the cleanup above
        print("repro interrupted: the processes of both runs were ended", file=sys.stderr)
        return 130
    ok = result["reproduced"] and result["fix_held"]
    print(
        f"leak reproduced: {'yes' if result['reproduced'] else 'NO'}; "
        f"fix held: {'yes' if result['fix_held'] else 'NO'} -> {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1
