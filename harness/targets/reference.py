"""Our reference worker (`python -m worker serve`) as a soak target.

The worker runs as a subprocess in its own process group; the session is driven as claude-mem
9.0.0's hooks would, plus (fixed mode only) the session-end hook that 9.0.0 lacked.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import proctree
from harness.hooks import HookClient
from harness.soak_config import CLAUDE_TURN_TIMEOUT_S, FAKE_TURN_TIMEOUT_S
from harness.target import RunContext, SessionSpec, SpawnedProcess, Target, WorkerHandle
from harness.text import describe
from harness.workload import make_observation
from worker.containment import cell_label

START_TIMEOUT_S = 60.0  # generous: the machine may be loaded by parallel test runs
STOP_TIMEOUT_S = 20.0
REGISTRY_MIN_INTERVAL_S = 1.0
REGISTRY_SESSIONS_PER_REQUEST = 200  # the worker takes up to 500 ids per ?sessions=
DRAIN_WAIT_MS = 1000  # one long-poll of the session's status; repeated until the deadline
DRAIN_TIMEOUT_S = 60.0  # a queue that does not move this long is given up (see drain)
DRAIN_SLACK_S = 10.0  # beyond its slowest turns: the observer's spawn and start-up
ABANDON_TIMEOUT_S = 10.0  # a DELETE ends the observer by escalation: a few graces at most


class WorkerStartError(RuntimeError):
    pass


class DrainTimeout(RuntimeError):
    pass


class ReferenceTarget(Target):
    name = "reference"
    descendants_are_run = True  # it spawns observers only (its guardian before it is ready)

    def __init__(
        self,
        mode: str = "fixed",
        worker_grace: float = 0.5,
        reap_interval: float = 1.0,
        idle_timeout: float | None = None,
        turn_timeout: float | None = FAKE_TURN_TIMEOUT_S,
        drain_timeout: float | None = None,
        end_sessions: bool | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        if mode not in ("fixed", "leaky"):
            raise ValueError(f"mode must be fixed or leaky, not {mode!r}")
        self.mode = mode
        self.worker_grace = worker_grace
        self.reap_interval = reap_interval
        self.idle_timeout = idle_timeout
        self.turn_timeout = turn_timeout
        # A message is tried twice (the worker's --max-attempts) before the queue moves on, so
        # a queue of slow turns may rest for two turn timeouts and still be moving.
        if drain_timeout is None:
            slowest = 2 * (turn_timeout or CLAUDE_TURN_TIMEOUT_S) + DRAIN_SLACK_S
            drain_timeout = max(DRAIN_TIMEOUT_S, slowest)
        self.drain_timeout = drain_timeout
        # 9.0.0 had no session-end hook; the fixed flow restores it.
        self.end_sessions = (mode == "fixed") if end_sessions is None else end_sessions
        self.extra_args = list(extra_args or [])
        self._proc: subprocess.Popen[Any] | None = None
        self._containment: proctree.Containment | None = None
        self._lifeline: proctree.Lifeline | None = None
        self._log: Any = None
        self.handle: WorkerHandle | None = None
        self._info: dict[str, Any] = {}  # its worker.json
        self.db_ids: dict[str, int] = {}
        self._cwd = "/tmp"
        self._registry: dict[int, list[SpawnedProcess]] = {}  # fetched, not yet taken
        self._registry_wanted: set[int] = set()  # sessions waiting for the next fetch
        self._registry_at: float | None = None
        self._registry_started = 0.0
        self._registry_task: asyncio.Future[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, ctx: RunContext) -> WorkerHandle:
        data_dir = ctx.work_dir / f"worker-{self.mode}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._cwd = str(ctx.work_dir)
        python, python_env = proctree.python_command()
        argv = [
            python,
            "-m",
            "worker",
            "serve",
            "--mode",
            self.mode,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--claude",
            str(ctx.claude_path),
            "--grace",
            str(self.worker_grace),
            "--reap-interval",
            str(self.reap_interval),
        ]
        if self.idle_timeout is not None:
            argv += ["--idle-timeout", str(self.idle_timeout)]
        if self.turn_timeout is not None:
            argv += ["--turn-timeout", str(self.turn_timeout)]
        argv += self.extra_args
        pass_fds: tuple[int, ...] = ()
        if sys.platform != "win32":
            # Should we die outright, the worker reads EOF here and stops as on SIGTERM, ending
            # its observers (where no parent-death signal kills it first: macOS).
            self._lifeline = proctree.Lifeline()
            argv += ["--lifeline-fd", str(self._lifeline.child_fd)]
            pass_fds = self._lifeline.pass_fds
        log_path = data_dir / "worker.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **python_env}
        env["PYTHONUNBUFFERED"] = "1"
        # Contained like any child: its own group (a Ctrl-C at the terminal is ours to relay),
        # and it dies with us should we be killed outright (Linux: parent-death signal;
        # Windows: job), so the fixed worker's guardian still ends its observers.
        opts = proctree.spawn_options(f"harness-target:{os.getpid()}:{ctx.run_id}", env=env,
                                      argv=argv)  # fmt: skip
        self._proc = subprocess.Popen(
            opts.argv or argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ctx.work_dir),
            pass_fds=pass_fds,
            **opts,
        )
        if self._lifeline is not None:
            self._lifeline.spawned()
        self._containment = proctree.after_spawn(self._proc.pid, opts)
        info = self._info = await self._wait_ready(data_dir / "worker.json", log_path)
        proc = psutil.Process(self._proc.pid)
        self.handle = WorkerHandle(
            base_url=f"http://{info.get('host', '127.0.0.1')}:{info['port']}",
            pid=self._proc.pid,
            create_time=proctree.create_time(proc),
            mode=self.mode,
            log_path=log_path,
        )
        return self.handle

    async def _wait_ready(self, info_path: Path, log_path: Path) -> dict:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise WorkerStartError(
                    f"worker exited with {self._proc.returncode} before it was ready; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            try:
                info = json.loads(info_path.read_text())
            except (FileNotFoundError, ValueError):
                info = None
            if info and info.get("pid") == self._proc.pid and info.get("port"):
                return info
            await asyncio.sleep(0.05)
        raise WorkerStartError(f"worker not ready after {START_TIMEOUT_S:.0f}s; log {log_path}")

    async def stop(self) -> None:
        # self._proc stays set until the worker is gone: a second Ctrl-C during the waits below
        # still finds it for stop_now.
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # Graceful first (the worker ends every tree on SIGTERM), then the whole group.
            proctree.ask_to_stop(proc)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                self._kill_worker(proc)
                proc.wait()
        elif proc is not None:
            proc.wait()
        self._proc = None
        if self._containment is not None:
            self._containment.close()
            self._containment = None
        self._cut_lifeline()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cut_lifeline(self) -> None:
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def _kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """The worker's whole group (its own, or its job on Windows), all at once."""
        if self._containment is None or not self._containment.kill():
            proc.kill()

    def facts(self) -> dict[str, Any]:
        # The fixed worker's containment varies by platform and privilege (cgroup cells need
        # write access to a cgroup): a reader of the verdict should see which it had.
        return {"containment": self._info.get("containment")} if self._info else {}

    def exit_status(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def tidy(self) -> int:
        # A worker that stopped in order removed its cells; one killed with its guardian left
        # them (empty once the sweep is done). They are this run's: none outlives it.
        held = self._info.get("containment") or {}
        if not (held.get("cgroups") and held.get("mark")):
            return 0
        return proctree.end_stale_cells([cell_label(held["mark"])], Path(held["cgroups"]).parent)

    def stop_now(self) -> None:
        """Synchronous last resort (interpreter exit): kill the worker's group."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._kill_worker(proc)
            proc.wait()
        self._cut_lifeline()

    # -- driving -----------------------------------------------------------------------------
    def client(self, http: Any) -> HookClient:
        assert self.handle is not None, "start() first"
        return HookClient(http, self.handle.base_url)

    async def drive_prompt(self, session: SessionSpec, http: Any, prompt_no: int) -> int:
        """One user prompt with its tool uses and its Stop; returns the session's db id."""
        hooks = self.client(http)
        prompt = session.prompts[prompt_no - 1]
        init = await hooks.session_init(session.content_session_id, session.project, prompt)
        db_id = int(init["sessionDbId"])
        self.db_ids[session.content_session_id] = db_id
        if not init.get("skipped"):
            await hooks.start_generator(db_id, prompt, int(init.get("promptNumber", prompt_no)))
        for k in range(session.observations_per_prompt):
            obs = make_observation(session, prompt_no, k)
            await hooks.observation(session.content_session_id, cwd=self._cwd, **obs)
        await hooks.summarize(session.content_session_id, f"Done with prompt {prompt_no}.")
        return db_id

    async def end_session(self, session: SessionSpec, http: Any) -> None:
        db_id = self.db_ids.get(session.content_session_id)
        if db_id is not None and self.end_sessions:
            await self.client(http).complete(db_id)

    async def drive_session(self, session: SessionSpec, http: Any) -> None:
        for prompt_no in range(1, len(session.prompts) + 1):
            await self.drive_prompt(session, http, prompt_no)
        await self.end_session(session, http)
        await self.wait_drained(session, http)

    async def wait_drained(self, session: SessionSpec, http: Any) -> None:
        """Return once the worker has processed everything queued for the session.

        The worker processes observations after the hooks return (as claude-mem does), so the
        session's observer may legitimately start and work after the last hook. The session ends,
        for the census, when its queue is drained; from then on its processes get only the grace.
        """
        db_id = self.db_ids.get(session.content_session_id)
        if db_id is None:
            return
        hooks = self.client(http)
        # Measured from the queue's last progress, not from the hooks' end: a long session
        # (--prompts 20 --observations 20: 400+ messages) was given up while its queue still
        # moved; a queue that stops moving (observers that never answer) is given up as before.
        deadline = time.monotonic() + self.drain_timeout
        left: int | None = None
        while True:
            # The worker answers as soon as the queue is empty (or after the wait): one request
            # per session instead of a polling loop, and the end is seen at once.
            status = await hooks.get(f"/sessions/{db_id}/status?waitDrainedMs={DRAIN_WAIT_MS}")
            length = int(status.get("queueLength") or 0)
            if length == 0:
                return
            if left is not None and length < left:
                deadline = time.monotonic() + self.drain_timeout
            left = length
            if time.monotonic() > deadline:
                # The worker is still working on the session (e.g. retrying observers that
                # never answer): the harness gives up on it as a user would, by deleting it, so
                # that what the worker runs for it from now on counts against the worker.
                try:
                    await asyncio.wait_for(hooks.delete_session(db_id), ABANDON_TIMEOUT_S)
                    then = "deleted"
                except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
                    then = f"and could not be deleted: {describe(exc)}"
                raise DrainTimeout(
                    f"worker session id {db_id}: queue not drained, no message done in "
                    f"{self.drain_timeout:.0f}s ({length} left), {then}"
                )

    async def messages(self, http: Any) -> dict[str, int] | None:
        queue = (await self.client(http).get("/api/stats")).get("queue")
        if not isinstance(queue, dict):
            return None
        return {k: int(queue.get(k) or 0) for k in ("processed", "failed")}

    async def session_processes(self, session: SessionSpec, http: Any) -> list[SpawnedProcess]:
        db_id = self.db_ids.pop(session.content_session_id, None)
        if db_id is None:
            return []
        self._registry_wanted.add(db_id)
        await self._registry_after(time.monotonic(), http)
        return self._registry.pop(db_id, [])

    async def _registry_after(self, t: float, http: Any) -> None:
        """Return once a registry fetch that started after time t is done.

        Sessions ending close together share one fetch (at most one per REGISTRY_MIN_INTERVAL_S)
        that asks only for the sessions waiting on it, so attribution costs the worker O(runs/s)
        and O(1) per session, however long the soak.
        """
        while self._registry_at is None or self._registry_at < t:
            if self._registry_task is None or self._registry_task.done():
                self._registry_task = asyncio.ensure_future(self._fetch_registry(http))
            await asyncio.shield(self._registry_task)

    async def _fetch_registry(self, http: Any) -> None:
        wait = self._registry_started + REGISTRY_MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        # No await between the two lines below: every session added before `started` is asked for.
        started = self._registry_started = time.monotonic()
        wanted, self._registry_wanted = sorted(self._registry_wanted), set()
        try:
            for i in range(0, len(wanted), REGISTRY_SESSIONS_PER_REQUEST):
                chunk = wanted[i : i + REGISTRY_SESSIONS_PER_REQUEST]
                query = ",".join(map(str, chunk))
                data = await self.client(http).get(f"/api/processes?sessions={query}")
                self._file_rows(data, set(chunk))
        except Exception:  # noqa: BLE001 - attribution is optional; the census falls back
            pass
        self._registry_at = started

    def _file_rows(self, data: Any, sessions: set[int]) -> None:
        """Keep the rows of `sessions` (a worker that ignored the filter sent more)."""
        for row in data.get("processes", []) if isinstance(data, dict) else []:
            sid = row.get("session_db_id")
            if sid in sessions and "pid" in row and row.get("create_time") is not None:
                ended = row.get("ended")
                self._registry.setdefault(sid, []).append(
                    SpawnedProcess(
                        int(row["pid"]),
                        float(row["create_time"]),
                        float(ended) if ended is not None else None,
                    )
                )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
