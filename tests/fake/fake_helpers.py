"""Helpers for the fake-claude tests: spawn a fake through its shim, talk to it, watch it.

Everything here acts only on processes this test started (by PID or process group) or on
processes carrying the test's own run id on their command line.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

import proctree
from fake_claude.ledger import read_ledger
from fake_claude.shim import command_for, write_shim
from harness.cleanup import run_processes as harness_run_processes

T = TypeVar("T")
RUN_ID_FLAG = "--fake-claude-run-id="
# Generous: two cores shared by seven engineers' test runs.
DEADLINE = float(os.environ.get("FAKE_TEST_DEADLINE", "60"))
# Cleanup's polite stage: the fake's SIGTERM handler exits at once; a stopped or ignoring one
# is SIGKILLed after this deadline.
GRACEFUL_EXIT_S = 5.0
SDK_ARGV = ["--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]
POSIX = sys.platform != "win32"


def new_run_id() -> str:
    return secrets.token_hex(6)


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll until `predicate` returns something truthy; fail naming `what` after `timeout`."""
    end = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose argv carries this run id."""
    return harness_run_processes(run_id, skip_zombies=True)


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie with no thread left (a `headless` process's leader
    reads as a zombie while another thread runs on)."""
    try:
        return not proctree.exited(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def kill_run(run_id: str) -> list[int]:
    """SIGKILL every process carrying the run id (by PID); returns the pids that were found."""
    pids = []
    for proc in run_processes(run_id):
        try:
            proc.kill()
            pids.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


class FakeProc:
    """One fake main process started through a shim, with stdout/stderr pumped by threads."""

    def __init__(
        self,
        tmp: Path,
        run_id: str,
        scenario: str = "ok",
        args: list[str] | None = None,
        *,
        seed: str = "1",
        ledger: Path | None = None,
        extra_settings: dict[str, str] | None = None,
        drain_stderr: bool = True,
        sdk_env: bool = True,
    ) -> None:
        self.run_id = run_id
        self.scenario = scenario
        self.ledger = ledger or tmp / f"ledger-{run_id}.jsonl"
        settings = {
            "scenario": scenario,
            "seed": seed,
            "ledger": str(self.ledger),
            "run_id": run_id,
        }
        settings.update(extra_settings or {})
        self.shim = write_shim(tmp / f"bin-{secrets.token_hex(3)}", settings)
        if POSIX:
            argv = [str(self.shim), *(SDK_ARGV if args is None else args)]
            baked: dict[str, str] = {}
        else:
            # Without cmd.exe in between, so that self.pid is the fake itself.
            prefix, baked = command_for(settings)
            argv = [*prefix, *(SDK_ARGV if args is None else args)]
        kwargs: dict[str, Any] = {}
        if POSIX:
            kwargs["start_new_session"] = True  # own process group: killpg ends what we started
        else:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        env = {**os.environ, **baked}
        if sdk_env:
            # What both Agent SDKs (Python, TS >= 0.2) set; it turns on session_state frames.
            env["CLAUDE_CODE_SDK_READS_SESSION_STATE"] = "1"
            env["CLAUDE_CODE_ENTRYPOINT"] = "sdk-py"
        else:
            env.pop("CLAUDE_CODE_SDK_READS_SESSION_STATE", None)
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kwargs,
        )
        self.pid = self.popen.pid
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stdout_lines: list[bytes] = []
        self.stderr = bytearray()
        self._stderr_go = threading.Event()
        if drain_stderr:
            self._stderr_go.set()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip(b"\n"))
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        self._stderr_go.wait()
        assert self.popen.stderr is not None
        while True:
            chunk = self.popen.stderr.read1(1 << 16)
            if not chunk:
                return
            self.stderr += chunk

    def start_draining_stderr(self) -> None:
        self._stderr_go.set()

    # ---- talking ---------------------------------------------------------------------------
    def send(self, obj: dict | bytes) -> None:
        assert self.popen.stdin is not None
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def initialize(self, hooks: dict | None = None, request_id: str = "req_init") -> dict:
        self.send(
            {
                "type": "control_request",
                "request_id": request_id,
                "request": {"subtype": "initialize", "hooks": hooks},
            }
        )
        return self.read_until(lambda m: m.get("type") == "control_response", "initialize reply")

    def control(self, request_id: str, request: dict) -> dict:
        """Send a control request as the SDK would; the `response` of its reply."""
        self.send({"type": "control_request", "request_id": request_id, "request": request})
        return self.read_until(
            lambda m: (
                m.get("type") == "control_response"
                and m["response"].get("request_id") == request_id
            ),
            f"the reply to {request_id}",
        )["response"]

    def user(self, text: str, session_id: str = "") -> None:
        self.send(
            {
                "type": "user",
                "message": {"role": "user", "content": text},
                "parent_tool_use_id": None,
                "session_id": session_id,
            }
        )

    def close_stdin(self) -> None:
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass

    def read_line(self, timeout: float = DEADLINE) -> bytes | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stdout line within {timeout:.0f} s") from None
        if line is not None:
            self.stdout_lines.append(line)
        return line

    def read_message(self, timeout: float = DEADLINE) -> dict | None:
        line = self.read_line(timeout)
        return None if line is None else json.loads(line)

    def read_until(
        self, pred: Callable[[dict], bool], what: str, timeout: float = DEADLINE
    ) -> dict:
        end = time.monotonic() + timeout
        while True:
            msg = self.read_message(max(0.01, end - time.monotonic()))
            if msg is None:
                raise AssertionError(f"stdout closed before {what}")
            if pred(msg):
                return msg

    def turn(self, text: str) -> list[dict]:
        """Send a user message; return every message up to and including the result."""
        self.user(text)
        out = []
        while True:
            msg = self.read_message()
            assert msg is not None, "stdout closed mid-turn"
            out.append(msg)
            if msg.get("type") == "result":
                return out

    # ---- watching ----------------------------------------------------------------------------
    def wait_exit(self, timeout: float = DEADLINE) -> int:
        return self.popen.wait(timeout=timeout)

    def records(self, event: str | None = None, **match: Any) -> list[dict]:
        if not self.ledger.exists():
            return []
        return [
            r
            for r in read_ledger(self.ledger)
            if (event is None or r["event"] == event)
            and all(r.get(k) == v for k, v in match.items())
        ]

    def wait_record(self, event: str, what: str | None = None, **match: Any) -> dict:
        return wait_for(
            lambda: (self.records(event, **match) or [None])[0], what or f"ledger {event} {match}"
        )

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def _ask_to_exit(self) -> None:
        """SIGTERM the fake first, so it leaves through its own handler (os._exit): under
        `-e coverage` that is what saves its measurements, which a SIGKILL would lose. The
        SIGKILL of the group that follows still ends whatever stays (grandchildren, ignorers)."""
        if not POSIX or self.popen.poll() is not None or "ignore-sigterm" in self.scenario:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=GRACEFUL_EXIT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass

    def cleanup(self) -> None:
        """End the process group we created and anything else carrying our run id."""
        self._ask_to_exit()
        if POSIX:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif self.popen.poll() is None:
            self.popen.kill()
        kill_run(self.run_id)
        try:
            self.popen.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
