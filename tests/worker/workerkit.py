"""Helpers for the worker tests: a real `python -m worker serve`, the real fake through its
shim with a ledger, a census by run id, and cleanup by PID."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import proctree
from fake_claude import RUN_ID_FLAG
from fake_claude.shim import write_shim

REPO = Path(__file__).resolve().parents[2]
# Generous: the machine is shared and loaded; every wait is a poll on a real condition.
DEADLINE = 60.0
FAST_FLAGS = ["--grace", "0.5", "--reap-interval", "0.5", "--turn-timeout", "3"]


def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


@dataclass
class FakeRun:
    """One run of the fake: its id, its ledger, its shims; a census of its processes."""

    run_id: str
    root: Path
    decoys: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.jsonl"

    def shim(self, scenario: str, seed: int = 1) -> Path:
        folder = self.root / f"bin-{secrets.token_hex(3)}"
        settings = {
            "scenario": scenario,
            "seed": str(seed),
            "ledger": str(self.ledger),
            "run_id": self.run_id,
        }
        return write_shim(folder, settings)

    def census(self) -> list[psutil.Process]:
        """Live (non-zombie) processes carrying this run's id in argv."""
        token = f"{RUN_ID_FLAG}={self.run_id}"
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                cmdline = proc.info["cmdline"] or []
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            if any(token in arg for arg in cmdline):
                found.append(proc)
        decoys = {d.pid for d in self.decoys}
        return [p for p in found if p.pid not in decoys]

    def ledger_lines(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        lines = []
        for raw in self.ledger.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                lines.append(json.loads(raw))
        return lines

    def started(self, role: str | None = None) -> list[proctree.ProcId]:
        found = [
            proctree.recorded(int(e["pid"]), float(e["create_time"]), e.get("boot"))
            for e in self.ledger_lines()
            if e["event"] == "start" and (role is None or e.get("role") == role)
        ]
        return [p for p in found if p is not None]

    def alive_from_ledger(self) -> list[proctree.ProcId]:
        decoys = {d.pid for d in self.decoys}
        return [p for p in self.started() if p.pid not in decoys and proctree.is_alive(p)]

    def alive(self) -> list[str]:
        """Everything of the run still alive, by census and by ledger (identities differ)."""
        seen = {f"pid {p.pid} {_cmd(p)}" for p in self.census()}
        seen |= {f"pid {p.pid} (ledger)" for p in self.alive_from_ledger()}
        return sorted(seen)

    def assert_none_alive(self, timeout: float = DEADLINE) -> None:
        wait_until(lambda: not self.alive(), timeout, f"no process of run {self.run_id}")

    def hops(self) -> int:
        return sum(1 for e in self.ledger_lines() if e["event"] == "hop")

    def start_decoy(self, argv_tail: list[str]) -> subprocess.Popen[bytes]:
        """A `claude` the user started by hand: our fake, launched by us, not by the worker."""
        claude = self.shim("ok")
        env = {k: v for k, v in os.environ.items() if k != proctree.MARK_ENV}
        decoy = subprocess.Popen(
            [str(claude), *argv_tail],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.decoys.append(decoy)
        return decoy

    def kill_everything(self) -> None:
        """Cleanup by verified identity: everything the ledger or census names, and decoys."""
        for _ in range(3):
            targets = {(p.pid, p) for p in self.census()}
            for pid_id in self.alive_from_ledger():
                proc = pid_id.process()
                if proc is not None:
                    targets.add((proc.pid, proc))
            if not targets:
                break
            for _, proc in targets:
                try:
                    proc.kill()  # psutil checks the create_time before signalling
                except psutil.Error:
                    pass
            psutil.wait_procs([p for _, p in targets], timeout=5)
        for decoy in self.decoys:
            if decoy.poll() is None:
                decoy.kill()
            decoy.wait(timeout=10)


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()[-6:])[:160]
    except psutil.Error:
        return "?"


class Http:
    """A small synchronous face over aiohttp (one loop and one ClientSession per worker)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            kwargs: dict[str, Any] = {"headers": headers}
            if json_body is not None:
                kwargs["json"] = json_body
            elif data is not None:
                kwargs["data"] = data
            async with self.session.request(method, self.base_url + path, **kwargs) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text)
                except ValueError:
                    return resp.status, text

        return self.loop.run_until_complete(go())

    def ok(self, method: str, path: str, json_body: Any = None) -> Any:
        status, body = self.request(method, path, json_body=json_body)
        assert 200 <= status < 300, f"{method} {path} -> {status} {body}"
        return body

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


class Worker:
    """`python -m worker serve` as a real child of the test."""

    def __init__(
        self,
        data_dir: Path,
        claude: Path,
        mode: str,
        flags: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env
        self.data_dir = data_dir
        self.claude = claude
        self.mode = mode
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: Http | None = None
        self.info: dict[str, Any] = {}
        # The worker's guardian (fixed mode, POSIX), by identity: ended by PID at cleanup.
        self.guardian: proctree.ProcId | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.{secrets.token_hex(3)}.log"

    def start(self) -> Worker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info_path = self.data_dir / "worker.json"
        # Windows: the interpreter itself, not a venv's redirector, so that the pid matches.
        python, python_env = proctree.python_command()
        argv = [
            python,
            "-m",
            "worker",
            "serve",
            "--mode",
            self.mode,
            "--data-dir",
            str(self.data_dir),
            "--claude",
            str(self.claude),
            *self.flags,
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **python_env, **(self.env or {})},
                # Windows: its own console group, so CTRL_BREAK reaches it and not us.
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        finally:
            log.close()

        def ready() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.log()}")
            try:
                info = json.loads(info_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == self.proc.pid else None

        self.info = wait_until(ready, DEADLINE, "worker.json")
        self.http = Http(f"http://127.0.0.1:{self.info['port']}")
        stats = self.stats()
        g = stats["containment"].get("guardian")
        if g:  # a worker given a boot time of its own (LEAKPROOF_BOOT_TIME) says it
            self.guardian = proctree.recorded(int(g["pid"]), float(g["create_time"]), stats["boot"])
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        except OSError:
            return ""

    def api(self) -> Http:
        assert self.http is not None
        return self.http

    # -- the hooks, as claude-mem 9.0.0's would call them -------------------------------------
    def new_session(self, content_id: str, project: str = "proj", prompt: str = "hello") -> int:
        body = self.api().ok(
            "POST",
            "/api/sessions/init",
            {"contentSessionId": content_id, "project": project, "prompt": prompt},
        )
        return int(body["sessionDbId"])

    def prompt(self, session_id: int, content_id: str, text: str) -> int:
        body = self.api().ok(
            "POST",
            "/api/sessions/init",
            {"contentSessionId": content_id, "project": "proj", "prompt": text},
        )
        number = int(body["promptNumber"])
        self.api().ok(
            "POST", f"/sessions/{session_id}/init", {"userPrompt": text, "promptNumber": number}
        )
        return number

    def observe(self, content_id: str, i: int) -> None:
        self.api().ok("POST", "/api/sessions/observations", observation(content_id, i))

    def summarize(self, content_id: str) -> None:
        self.api().ok(
            "POST",
            "/api/sessions/summarize",
            {"contentSessionId": content_id, "last_assistant_message": "all done"},
        )

    def whole_session(self, content_id: str, observations: int = 3) -> int:
        """A session as the hooks run it: a prompt, observations, the Stop hook's summarize,
        then SessionEnd's complete (the items may still be queued when this returns)."""
        sid = self.new_session(content_id)
        self.prompt(sid, content_id, "go")
        for i in range(observations):
            self.observe(content_id, i)
        self.summarize(content_id)
        self.api().ok("POST", f"/sessions/{sid}/complete")
        return sid

    def status(self, session_id: int) -> dict[str, Any]:
        return self.api().ok("GET", f"/sessions/{session_id}/status")

    def processes(self) -> list[dict[str, Any]]:
        return self.api().ok("GET", "/api/processes")["processes"]

    def stats(self) -> dict[str, Any]:
        return self.api().ok("GET", "/api/stats")

    def wait_session_done(self, session_id: int, timeout: float = DEADLINE) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            st = self.status(session_id)
            quiet = st["queueLength"] == 0 and not st["observers"]
            return st if quiet and st["status"] != "active" else None

        return wait_until(done, timeout, f"session {session_id} to finish")

    # -- ending -------------------------------------------------------------------------------
    def wait_exit(self, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        """Ask for a graceful shutdown the platform's way (SIGTERM; CTRL_BREAK on Windows)."""
        self.signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=DEADLINE)

    def freeze(self) -> None:
        """SIGSTOP (POSIX): the worker can neither notice nor replace a guardian we kill."""
        assert self.proc is not None
        self.signal(signal.SIGSTOP)

    def kill_guardian(self) -> None:
        """SIGKILL the guardian by verified identity and wait until it is gone."""
        if self.guardian is not None:
            proc = self.guardian.process()
            if proc is not None:
                try:
                    proc.kill()  # psutil checks the create_time before signalling
                except psutil.Error:
                    pass
            assert not proctree.wait_gone([self.guardian], DEADLINE), "guardian survived SIGKILL"

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.proc is not None and self.proc.poll() is None:
            if hasattr(signal, "SIGCONT"):
                self.signal(signal.SIGCONT)  # a test may have left it frozen
            self.stop()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=DEADLINE)
        # With its worker gone the guardian sweeps once and exits; if it does not, end it.
        if self.guardian is not None and proctree.wait_gone([self.guardian], 10.0):
            self.kill_guardian()


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold the database's write lock from this (another) process, as a backup tool would."""
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        other.close()  # rolls the open transaction back


def queue_rows(db_path: Path, kind: str | None = None) -> list[tuple[str, int]]:
    """(status, attempts) of a worker database's queued messages (of this kind), oldest first,
    read by another connection (as an operator would)."""
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT status, attempts FROM pending_messages WHERE ? IS NULL OR kind=? ORDER BY id",
            (kind, kind),
        )
        return [(str(status), int(attempts)) for status, attempts in rows]
    finally:
        db.close()


def observation(content_id: str, i: int) -> dict[str, Any]:
    """The PostToolUse hook's body for a Read of file i."""
    return {
        "contentSessionId": content_id,
        "tool_name": "Read",
        "tool_input": {"file_path": f"/src/f{i}.py"},
        "tool_response": f"contents {i}",
        "cwd": "/src",
    }


class InThread:
    """One request on a connection and an event loop of its own, in a thread: a request the
    worker holds (waiting for a lock) while the test goes on."""

    def __init__(self, worker: Worker, method: str, path: str, body: Any) -> None:
        self.reply: tuple[int, Any] | None = None
        self.error: str | None = None  # what the client saw instead of a reply
        base = worker.api().base_url
        self.thread = threading.Thread(target=self._run, args=(base, method, path, body))
        self.thread.start()

    def _run(self, base: str, method: str, path: str, body: Any) -> None:
        http = Http(base)
        try:
            self.reply = http.request(method, path, json_body=body)
        except Exception as exc:  # noqa: BLE001 - a connection closed unanswered is a finding
            self.error = repr(exc)
        finally:
            http.close()

    def join(self) -> InThread:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the request got no answer in time"
        return self
