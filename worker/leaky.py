"""`--mode leaky`: claude-mem 9.0.0's generator lifecycle, faithfully, to reproduce #603.

- every POST /sessions/{id}/init starts a new generator and spawns a new `claude`;
- earlier generators stay blocked on the session's queue with their child's stdin open;
- nothing in the hook flow completes a session;
- only /complete, DELETE and shutdown abort generators, the way the TS SDK's close() does:
  end stdin, SIGTERM the direct child 2 s later, nothing more (no tree, no SIGKILL);
- no containment (the child shares our session and group), and child enumeration at shutdown
  is Windows-only in 9.0.0 (getChildProcesses), so on POSIX nothing else is cleaned up.
With a well-behaved `claude` this leaks one child per prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field

import psutil

import proctree
from worker import protocol
from worker.agent import Observer, ObserverError
from worker.config import WorkerConfig
from worker.store import Store

log = logging.getLogger("worker.leaky")

# The TS Agent SDK's close(): SIGTERM this long after ending stdin.
SDK_SIGTERM_DELAY = 2.0

# Children still running at shutdown, held until the process ends (see exit_leaving_children).
_ABANDONED: list[Observer] = []


@dataclass
class LeakySession:
    id: int
    queue: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    generators: list[asyncio.Task[None]] = field(default_factory=list)
    observers: list[Observer] = field(default_factory=list)


class LeakySessionManager:
    def __init__(self, cfg: WorkerConfig, store: Store, run_id: int, mark: str) -> None:
        self.cfg = cfg
        self.store = store
        self.run_id = run_id
        self.mark = mark
        self.sessions: dict[int, LeakySession] = {}
        self.spawned = 0
        self.session_errors = 0
        self._watchers: set[asyncio.Task[None]] = set()
        self._running: set[Observer] = set()  # spawned, exit not seen yet

    def _session(self, session_id: int) -> LeakySession:
        return self.sessions.setdefault(session_id, LeakySession(session_id))

    def start_generator(self, session_id: int, user_prompt: str, prompt_number: int) -> None:
        """9.0.0: unconditionally, whatever generators the session already has."""
        session = self._session(session_id)
        task = asyncio.create_task(
            self._generator(session, user_prompt, prompt_number), name=f"leaky-gen-{session_id}"
        )
        session.generators.append(task)

    def notify(self, session_id: int) -> None:
        self._session(session_id).queue.put_nowait(None)

    async def _generator(self, session: LeakySession, user_prompt: str, number: int) -> None:
        row = await self.store.session(session.id)
        if row is None:
            return
        argv = protocol.observer_argv(self.cfg.claude, self.cfg.model, row["memory_session_id"])
        env = dict(os.environ)
        env[proctree.MARK_ENV] = self.mark  # the contract's marker; no containment at all
        try:
            observer = await Observer.spawn(
                argv, spawn_kwargs={"env": env}, max_line=self.cfg.max_line, token=""
            )
        except OSError as exc:
            log.warning("session %s: cannot start claude: %s", session.id, exc)
            return
        self.spawned += 1
        session.observers.append(observer)
        self._running.add(observer)
        row_id = await self.store.register_process(
            self.run_id, session.id, observer.pid, _create_time(observer.pid), ""
        )
        watcher = asyncio.create_task(self._watch_exit(observer, row_id))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        hint = str(row["content_session_id"])
        project = str(row["project"])
        try:
            # The TS SDK does not wait for the initialize reply before streaming the prompt.
            _, init = protocol.initialize_request()
            await observer.send(init)
            text = protocol.prompt_text("prompt", {"userPrompt": user_prompt}, project, number)
            await observer.turn(text, hint, self.cfg.turn_timeout)
            if observer.claude_session_id:
                # Later generators of this session start with --resume (fresh and resumed mix).
                await self.store.set_memory_session_id(session.id, observer.claude_session_id)
            while True:
                # Blocked here forever once the hooks stop posting: the child's stdin stays open.
                await session.queue.get()
                message = await self.store.next_message(session.id)
                if message is None:
                    continue
                text = protocol.prompt_text(message.kind, message.payload, project, number)
                try:
                    reply = await observer.turn(text, hint, self.cfg.turn_timeout)
                except ObserverError as exc:
                    await self.store.release_message(message, str(exc), self.cfg.max_attempts)
                    raise
                await self.store.complete_message(message, reply)
                if observer.claude_session_id:
                    await self.store.set_memory_session_id(session.id, observer.claude_session_id)
        except ObserverError as exc:
            self.session_errors += 1
            log.warning("session %s generator failed: %s", session.id, exc)

    async def _watch_exit(self, observer: Observer, row_id: int) -> None:
        code = await observer.proc.wait()
        self._running.discard(observer)
        await self.store.set_process_state(row_id, "exited", exit_code=code)

    async def abort(self, session_id: int) -> None:
        """/complete and DELETE in 9.0.0: abort the session's generators (SDK close())."""
        session = self.sessions.get(session_id)
        if session is None:
            return
        await asyncio.gather(*(self._sdk_close(o) for o in session.observers))
        for task in session.generators:
            task.cancel()
        await asyncio.gather(*session.generators, return_exceptions=True)
        session.observers.clear()
        session.generators.clear()

    async def _sdk_close(self, observer: Observer) -> None:
        observer.close_stdin()
        if await observer.wait_exit(SDK_SIGTERM_DELAY) is None:
            with contextlib.suppress(ProcessLookupError):
                if sys.platform == "win32":
                    observer.proc.terminate()
                else:
                    observer.proc.send_signal(signal.SIGTERM)

    async def shutdown(self) -> None:
        """GracefulShutdown in 9.0.0: abort every session; enumerate children on Windows only."""
        await asyncio.gather(*(self.abort(sid) for sid in list(self.sessions)))
        if sys.platform == "win32":
            # 9.0.0's getChildProcesses (wmic) and forceKillProcess: direct children only.
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    child.kill()
        _ABANDONED.extend(o for o in self._running if o.proc.returncode is None)
        for task in list(self._watchers):
            task.cancel()

    def live_pids(self, session_id: int) -> list[int]:
        session = self.sessions.get(session_id)
        if session is None:
            return []
        return [o.pid for o in session.observers if o.proc.returncode is None]


def exit_leaving_children(code: int) -> None:
    """End the process the way 9.0.0's Node process ends: its children keep running.

    asyncio kills a child that is still running when its transport is collected (at the latest
    at interpreter exit), which would end the very survivors #603 is about. So the survivors are
    held (_ABANDONED) and the process ends without collecting them."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _create_time(pid: int) -> float:
    ident = proctree.identify(pid)
    return ident.create_time if ident else 0.0
