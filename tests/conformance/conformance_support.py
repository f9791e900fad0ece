"""Helpers for the conformance tests: find a run's processes, wait on conditions, run drivers.

Everything here acts only on processes that carry the test's own run id on their command line
(the fake puts `--fake-claude-run-id=<RUNID>` there) or on PIDs the test started itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import psutil

from harness.cleanup import kill_and_wait
from harness.cleanup import run_processes as harness_run_processes

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
RUN_ID_FLAG = "--fake-claude-run-id="
# node_modules aliases (package.json): claude-mem 9.0.0's bundled SDK, and the newest on npm.
# Tests name them only through these, so moving to a newer SDK changes this line, not the tests.
TS_OLD = "sdk-0.1.76"
TS_NEW = "sdk-0.3.335"
TS_SDKS = (TS_OLD, TS_NEW)
T = TypeVar("T")

# Generous: two shared cores, seven engineers' test runs, node start-up of ~0.3 s each.
DEADLINE = float(os.environ.get("CONFORMANCE_DEADLINE", "90"))


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    end = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose argv carries this run id."""
    return harness_run_processes(run_id, skip_zombies=True)


def is_gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def end_run(run_id: str) -> list[int]:
    """End every process of this run; return the PIDs that were still alive."""
    procs = run_processes(run_id)
    kill_and_wait(procs, timeout=10.0)
    return [p.pid for p in procs]


def read_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events


def start_ledger_event(path: Path, run_id: str) -> dict | None:
    """The fake main process's `start` line, once written."""
    for event in read_ledger(path):
        if event.get("event") == "start" and event.get("role", "main") == "main":
            if event.get("run_id") in (None, run_id):
                return event
    return None


class Driver:
    """A driver process (node or python) run with a deadline; its last stdout line is JSON.

    Output goes to files, not pipes: a child that outlives the driver (the point of the leak
    tests) may inherit its stderr, and a pipe would then never reach EOF.
    """

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )

    def _read(self, f: IO[bytes]) -> str:
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    def result(self, timeout: float = DEADLINE) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"driver {self.proc.args!r} still running after {timeout:.0f} s\n"
                f"stdout tail: {self._read(self._out)[-2000:]}\n"
                f"stderr tail: {self._read(self._err)[-2000:]}"
            ) from None
        out, err = self._read(self._out), self._read(self._err)
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(
                f"driver printed nothing (exit {self.proc.returncode})\nstderr: {err[-3000:]}"
            )
        try:
            data = json.loads(lines[-1])
        except ValueError:
            raise AssertionError(
                f"driver's last line is not JSON: {lines[-1][:500]!r}\nstderr: {err[-3000:]}"
            ) from None
        data["_returncode"] = self.proc.returncode
        data["_stderr"] = err[-3000:]
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def node_driver(sdk: str, session: str, claude: Path, **extra: object) -> Driver:
    cfg = {"sdk": sdk, "session": session, "claude": str(claude), **extra}
    cfg.setdefault("deadlineMs", int(DEADLINE * 1000 * 0.8))
    return Driver(["node", str(NODE_DIR / "drive.mjs"), json.dumps(cfg)], cwd=NODE_DIR)


def python_driver(script: str, claude: Path, **extra: object) -> Driver:
    cfg = {"claude": str(claude), **extra}
    return Driver([sys.executable, str(HERE / script), json.dumps(cfg)])


# A stdio MCP server whose one tool, `wait`, never answers; it logs every message it reads.
NEVER_ANSWERING_SERVER = """
import json, sys
log = open(sys.argv[1], "a", buffering=1)
for line in sys.stdin:
    msg = json.loads(line)
    log.write(line)
    reply = {"jsonrpc": "2.0", "id": msg.get("id")}
    if msg.get("method") == "initialize":
        reply["result"] = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                           "serverInfo": {"name": "never", "version": "1"}}
    elif msg.get("method") == "tools/list":
        schema = {"type": "object", "properties": {}}
        reply["result"] = {"tools": [{"name": "wait", "inputSchema": schema}]}
    else:
        continue  # tools/call: never answered; notifications: nothing to answer
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
"""


def never_answering_server(folder: Path) -> tuple[dict, Callable[[], list[dict]]]:
    """(its MCP config entry, said(): the messages it has read so far) for a server in
    `folder` whose tool never answers."""
    script, log = folder / "never_answering_server.py", folder / "never_answering_server.log"
    script.write_text(NEVER_ANSWERING_SERVER, encoding="utf-8")

    def said() -> list[dict]:
        if not log.exists():
            return []
        whole = log.read_text(encoding="utf-8").split("\n")[:-1]  # not a line still written
        return [json.loads(line) for line in whole]

    return {"command": sys.executable, "args": [str(script), str(log)]}, said
