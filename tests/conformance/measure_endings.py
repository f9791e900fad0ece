"""Measure how each real SDK ends the fake child, and print the figures (docs/protocol-notes.md).

    python tests/conformance/measure_endings.py [--watch 12]

For each SDK and each way a caller ends a session (leave the loop, abort, exit the parent),
with a well-behaved child (`ok`) and a stubborn one (`ignore-eof+ignore-sigterm`), it reports,
in seconds after the turn's result: when the child saw stdin EOF, when it got SIGTERM, when it
died (or that it was still alive after the watch window). Needs node_modules (run the
conformance tests once) and, for the Python row, claude_agent_sdk (tox -e conformance).
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psutil
from conformance_support import (
    NODE_DIR,
    TS_SDKS,
    Driver,
    end_run,
    is_gone,
    node_driver,
    python_driver,
    read_ledger,
    start_ledger_event,
    wait_for,
)
from rich.console import Console
from rich.table import Table

from fake_claude.shim import write_shim

CHILDREN = {"ok": "ok", "stubborn": "ignore-eof+ignore-sigterm"}
ENDINGS = {
    "break": "break-after-result",
    "abort": "abort-after-result",
    "exit": "exit-after-result",
}


def _start(parent: str, ending: str, shim: Path, watch: float, marker: Path) -> Driver:
    if parent == "python":
        return python_driver("py_sdk_parent.py", shim, exit="return")
    extra: dict[str, object] = {}
    if ending != "exit":
        linger = int(watch * 1000) + 3000
        extra = {"releaseInput": False, "lingerMs": linger, "deadlineMs": linger + 30_000}
        extra["markerFile"] = str(marker)
    return node_driver(parent, ENDINGS[ending], shim, **extra)


def measure(parent: str, ending: str, child: str, watch: float, work: Path) -> dict:
    run_id = secrets.token_hex(6)
    ledger = work / f"{run_id}.jsonl"
    shim = write_shim(
        work / run_id, {"scenario": CHILDREN[child], "ledger": str(ledger), "run_id": run_id}
    )
    driver = _start(parent, ending, shim, watch, work / f"{run_id}.marker")
    try:
        start = wait_for(lambda: start_ledger_event(ledger, run_id), "the fake to start")
        turn = wait_for(
            lambda: next((e for e in read_ledger(ledger) if e["event"] == "turn"), None),
            "the first turn",
        )
        t0 = turn["ts"]
        try:
            proc: psutil.Process | None = psutil.Process(start["pid"])
        except psutil.NoSuchProcess:
            proc = None
        died = None
        while proc is not None and time.time() - t0 < watch:
            if is_gone(proc):
                died = time.time() - t0
                break
            time.sleep(0.02)
        events = read_ledger(ledger)
        exits = [e for e in events if e["event"] == "exit"]
        if died is None and exits:
            died = exits[0]["ts"] - t0
        return {
            "eof": next((e["ts"] - t0 for e in events if e["event"] == "stdin_eof"), None),
            "sigterm": next((e["ts"] - t0 for e in events if e["event"] == "signal"), None),
            "died": died,
            "parent_alive": driver.proc.poll() is None,
        }
    finally:
        driver.kill()
        end_run(run_id)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--watch", type=float, default=12.0, help="seconds to watch each child")
    args = ap.parse_args(argv)
    parents: list[tuple[str, list[str]]] = []
    if (NODE_DIR / "node_modules").is_dir():
        parents += [(sdk, list(ENDINGS)) for sdk in TS_SDKS]
    if importlib.util.find_spec("claude_agent_sdk"):
        parents.append(("python", ["exit"]))
    table = Table(title=f"How the SDKs end the child (s after the result; watched {args.watch} s)")
    for col in ("SDK", "caller", "child", "stdin EOF", "SIGTERM", "died", "parent alive after"):
        table.add_column(col)
    with tempfile.TemporaryDirectory(prefix="measure-endings-") as tmp:
        for parent, endings in parents:
            for ending in endings:
                for child in CHILDREN:
                    r = measure(parent, ending, child, args.watch, Path(tmp))
                    died = _fmt(r["died"]) if r["died"] is not None else "ALIVE"
                    table.add_row(
                        parent,
                        ending,
                        child,
                        _fmt(r["eof"]),
                        _fmt(r["sigterm"]),
                        died,
                        "yes" if r["parent_alive"] else "no",
                    )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
