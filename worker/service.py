"""The worker service: wiring, start-up, the HTTP server, worker.json, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
import time
from typing import Any

import psutil
from aiohttp import web

import proctree
from worker.config import WorkerConfig
from worker.containment import Containment, worker_mark
from worker.leaky import LeakySessionManager
from worker.reaper import Reaper
from worker.routes import BODY_TIMEOUT_KEY, DB_LOST_KEY, MAX_BODY_KEY, Routes, guard
from worker.sessions import SessionManager
from worker.store import Store, is_locked

log = logging.getLogger("worker")
# At shutdown, how long requests in flight get to finish (aiohttp's default, 60 s, let one client
# sending its body a byte a second hold the worker's exit that long; long-polls of a session's
# status are answered at once when the worker stops).
SHUTDOWN_REQUESTS_S = 3.0
# The soft limit on open files is raised to this (or the hard limit): each idle client
# connection holds one, and at the common 1,024 a thousand idle connections took the worker down.
OPEN_FILES = 16384


class StartError(Exception):
    """The worker cannot start with these settings on this machine (exit 2, no traceback)."""


class DataDirInUse(StartError):
    pass


class CannotListen(StartError):
    """The port cannot be bound (in use, or not ours to bind)."""


class WorkerService:
    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.pid = os.getpid()
        me = psutil.Process()
        self.create_time = proctree.create_time(me)
        self.mark = worker_mark(self.pid, self.create_time)
        self.started = time.time()
        self.port = 0
        self.ready = False
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            self.store = Store(cfg.db_path, cfg.db_busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise _database_problem(cfg, exc, "cannot hold the database") from exc
        try:
            with self.store.db:
                # One transaction holding the write lock: two workers started at once on one
                # data dir each saw no live run, then both began theirs. Now the second waits
                # here for the first's commit, and sees its run.
                self.store.db.execute("BEGIN IMMEDIATE")
                self._refuse_if_in_use()
                self.run_id = self.store.begin_run(
                    self.pid, self.create_time, self.mark, cfg.mode, proctree.boot_stamp()
                )
        except sqlite3.Error as exc:
            raise _database_problem(cfg, exc, "the database") from exc
        self.containment = Containment(self.mark, self.create_time, cfg.grace)
        self.sessions = SessionManager(cfg, self.store, self.containment, self.run_id)
        self.leaky = LeakySessionManager(cfg, self.store, self.run_id, self.mark)
        self.reaper = Reaper(
            self.store, self.containment, self.sessions, self.run_id, cfg.reap_interval
        )
        self._tasks: list[asyncio.Task[None]] = []
        # The database file as opened: one removed or replaced under us is noticed (what we
        # accepted would be written to a file nobody can open again).
        self._db_file = _file_identity(cfg.db_path)
        self.lost: str | None = None  # why the worker stopped on its own: exit 1

    @property
    def fixed(self) -> bool:
        return self.cfg.mode == "fixed"

    def _refuse_if_in_use(self) -> None:
        """Two workers on one data dir would reap each other's children."""
        for row in self.store.db.execute("SELECT * FROM runs WHERE ended IS NULL"):
            ident = proctree.recorded(int(row["pid"]), float(row["create_time"]), row["boot"])
            if ident is not None and ident.pid != self.pid and proctree.is_alive(ident):
                raise DataDirInUse(f"{self.cfg.data_dir} is in use by worker pid {ident.pid}")

    # -- what the routes call -----------------------------------------------------------------
    async def start_prompt(self, session_id: int, user_prompt: str, number: int) -> None:
        if self.fixed:
            await self.store.enqueue(
                session_id, "prompt", {"userPrompt": user_prompt, "promptNumber": number}
            )
            self.sessions.notify(session_id)
        else:
            self.leaky.start_generator(session_id, user_prompt, number)

    async def queue(self, session_id: int, kind: str, payload: dict[str, Any]) -> None:
        await self.store.enqueue(session_id, kind, payload)
        if self.fixed:
            self.sessions.notify(session_id)
        else:
            self.leaky.notify(session_id)

    async def complete(self, session_id: int) -> None:
        if self.fixed:
            await self.sessions.complete(session_id)
        else:
            await self.store.end_session(session_id, "completed")
            await self.leaky.abort(session_id)

    async def delete(self, session_id: int) -> None:
        if self.fixed:
            await self.sessions.delete(session_id)
        else:
            await self.store.end_session(session_id, "deleted")
            await self.leaky.abort(session_id)

    async def wait_drained(self, session_id: int, timeout: float) -> None:
        """Fixed mode: wait (no polling) until the session's queue is empty or `timeout` passes.
        Leaky mode answers at once, as before."""
        if self.fixed and timeout > 0:
            await self.sessions.wait_drained(session_id, timeout)

    def live_observer_pids(self, session_id: int) -> list[int]:
        if self.fixed:
            return self.sessions.live_pids(session_id)
        return self.leaky.live_pids(session_id)

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("shutdown requested (%s)", reason)
        else:
            # Not a harder stop: cutting the endings short would leave observers running.
            log.info("%s: already stopping; the worker exits once its observers are ended", reason)
        self._stop.set()

    async def stats(self) -> dict[str, Any]:
        counts = await self.store.counts()
        if self.fixed:
            c = self.sessions.counters
            observers = {
                "spawned": c.spawned,
                "live": len(self.sessions.active_observers()),
                "ended": c.ended,
                "turns": c.turns,
                # Slots: live observers and those being ended (see worker/slots.py).
                "limit": self.sessions.slots.limit,
                "in_slots": self.sessions.slots.used,
                "peak_in_slots": self.sessions.slots.peak,
                "waiting_for_slot": self.sessions.slots.waiting,
            }
            errors = c.session_errors
        else:
            observers = {
                "spawned": self.leaky.spawned,
                "live": sum(len(self.leaky.live_pids(s)) for s in self.leaky.sessions),
            }
            errors = self.leaky.session_errors
        try:
            rss = psutil.Process().memory_info().rss
        except psutil.Error:
            rss = None
        r = self.reaper.counters
        return {
            "mode": self.cfg.mode,
            "pid": self.pid,
            # With it a client reads the create_times below as its own (proctree.recorded).
            "boot": proctree.boot_stamp(),
            "uptime": time.time() - self.started,
            "rss": rss,
            **counts,
            "observers": observers,
            "session_errors": errors,
            "reaper": {
                "at_start": r.at_start,
                "earlier_runs_swept": r.earlier_runs_swept,
                "stranded_woken": r.stranded_woken,
                "swept": r.swept,
                "sweeps": r.sweeps,
                "zombies": r.zombies,
                "full_sweeps": r.full_sweeps,
            },
            "containment": self.containment_info(),
            # Another process's lock on the database: waited for without blocking the loop.
            "store": {
                "waiting_for_lock": self.store.waiting,
                "lock_waits": self.store.lock_waits,
                "lock_timeouts": self.store.lock_timeouts,
                # registry rows whose last write failed, written again at each reap interval
                "registry_rows_due": self.sessions.records_due,
                "busy_timeout_s": self.store.busy_timeout,
            },
        }

    def containment_info(self) -> dict[str, Any]:
        """What holds the observers here: it depends on the platform and the privileges."""
        return {
            "subreaper": self.containment.subreaper,
            # Linux: each observer a child subreaper too (None until the first spawn says)
            "observer_subreapers": self.containment.observer_subreapers,
            "pdeathsig": self.containment.pdeathsig,
            # Linux, where allowed: the parent cgroup of the observers' cells
            "cgroups": str(proctree.cgroups_enabled() or "") or None,
            "mark": self.mark,
            # fixed mode on POSIX: the process that ends our trees if we are kill -9ed
            "guardian": self.containment.guardian_info(),
        }

    # -- life cycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if not type(loop).__module__.startswith("asyncio."):
            # Found with uvloop: a flooding observer was not held back (the whole flood went
            # into the worker). The tests prove back-pressure on asyncio's own loops only.
            log.warning(
                "event loop %s.%s is not asyncio's own: back-pressure on observer output is "
                "tested on asyncio's loops only (uvloop did not hold a flooding observer)",
                type(loop).__module__, type(loop).__qualname__,
            )  # fmt: skip
        _watch_children_with_pidfds(loop)
        _raise_open_files_limit()
        self.store.on_event_loop()
        self._install_signals(loop)
        if self.cfg.lifeline_fd is not None:
            proctree.watch_lifeline(
                self.cfg.lifeline_fd, loop, lambda: self.request_stop("lifeline: parent gone")
            )
        pending: list[int] = []  # sessions with queued work, woken once we serve
        if self.fixed:
            self.containment.start()
            try:
                await self.reaper.record_guardian()
                requeued = await self.store.requeue_interrupted()
                if requeued:
                    log.info("re-queued %d message(s) a previous run did not finish", requeued)
                await self.reaper.at_start()
                # Read before serving: pages the reads above do not touch (the sessions')
                # corrupt were a traceback and exit 1 once worker.json was written.
                pending = await self.store.sessions_with_pending()
            except sqlite3.DatabaseError as exc:  # corrupt pages, a full disk: say so, exit 2
                self.containment.close_guardian()
                self.containment.close_cgroups()
                raise _database_problem(self.cfg, exc, "the database cannot be used") from exc
        app = web.Application(client_max_size=self.cfg.max_body, middlewares=[guard])
        app[MAX_BODY_KEY] = self.cfg.max_body
        app[BODY_TIMEOUT_KEY] = self.cfg.client_timeout
        app[DB_LOST_KEY] = self.database_lost
        Routes(self).install(app)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_REQUESTS_S,
            # Also from the connection's start: one that never sends a request is closed too.
            keepalive_timeout=self.cfg.client_timeout,
            # How long the rest of an unread body is drained after the answer (aiohttp: 10 s).
            lingering_time=min(10.0, self.cfg.client_timeout),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
        try:
            await site.start()
        except OSError as exc:
            # Undo the start-up (the guardian, the run's record) before saying why.
            await self._shutdown(runner)
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CannotListen(
                f"cannot listen on {self.cfg.host}:{self.cfg.port}: {reason}"
            ) from exc
        try:
            self.port = _bound_port(runner)
            try:
                self._write_info()
            except OSError as exc:
                # A full disk, a read-only or immutable folder: no client could find us (the
                # port is there), so refuse like a data dir that cannot hold the database;
                # the finally below undoes the start-up. Before: a traceback and exit 1.
                raise StartError(
                    f"--data-dir {self.cfg.data_dir}: cannot write {self.cfg.info_path.name}: "
                    f"{exc.strerror or exc}"
                ) from exc
            log.info(
                "worker (%s) listening on http://%s:%d pid %d",
                self.cfg.mode,
                self.cfg.host,
                self.port,
                self.pid,
            )
            self.ready = True
            if self.fixed:
                for session_id in pending:
                    self.sessions.notify(session_id)
                self._tasks.append(asyncio.create_task(self.reaper.run(), name="reaper"))
            self._tasks.append(asyncio.create_task(self._watch_data_dir(), name="data-dir"))
            await self._stop.wait()
        finally:
            self.ready = False
            await self._shutdown(runner)

    async def _shutdown(self, runner: web.AppRunner) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.fixed:
            live = len(self.sessions.active_observers())
            if live:
                # A stubborn observer takes up to two graces (EOF, SIGTERM, then SIGKILL): say
                # why the worker is quiet meanwhile.
                log.info(
                    "ending %d observer(s): up to %.1f s (stdin EOF, then SIGTERM, then SIGKILL)",
                    live,
                    2 * self.cfg.grace,
                )
            await self.sessions.shutdown()
            # Whatever is still marked as ours now has no session at all.
            with contextlib.suppress(Exception):
                await self.reaper.sweep_once(full=True)
            # Then the guardian: it sweeps our mark once more and exits (never left running).
            try:
                await asyncio.to_thread(self.containment.close_guardian)
            except Exception:
                log.exception("closing the guardian failed")
            await asyncio.to_thread(self.containment.close_cgroups)
        else:
            await self.leaky.shutdown()
        with self.store.failing_fast():
            await runner.cleanup()
        try:
            await self.store.end_run(self.run_id)
        except sqlite3.Error as exc:
            # Locked past --db-busy-timeout, or full: the next start takes this run for an
            # unclean one and sweeps its mark once, which finds nothing. Stop all the same.
            log.warning("the run could not be marked ended: %s", exc)
        self.store.close()
        with contextlib.suppress(OSError):
            self.cfg.info_path.unlink()
        log.info("worker stopped")

    async def _watch_data_dir(self) -> None:
        """Every reap interval: a database file removed or replaced under us stops the worker
        (exit 1: everything accepted from then on would be lost, and a 2xx says it is kept);
        a removed worker.json is written again (clients find the port there)."""
        while True:
            await asyncio.sleep(self.cfg.reap_interval)  # a periodic check, not a wait for work
            if self.database_lost():
                return
            if not self.cfg.info_path.exists():
                with contextlib.suppress(OSError):
                    self._write_info()
                    log.warning("%s was removed: written again", self.cfg.info_path)

    def database_lost(self) -> str | None:
        """Why the database file is no longer the one we write to (removed, replaced), or
        None. The first time, the worker stops (exit 1). Asked before each write hook's 2xx as
        well as each reap interval: a commit into a file nobody can open again is lost, and a
        2xx says it is kept (before, every hook until the next interval got one)."""
        if self.lost is None:
            now = _file_identity(self.cfg.db_path)
            if now == self._db_file:
                return None
            what = "removed" if now is None else "replaced by another file"
            self.lost = f"the database {self.cfg.db_path} was {what} while the worker ran"
            log.error("%s: stopping, so that nothing more is accepted into it", self.lost)
            self.request_stop("database lost")
        return self.lost

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if sys.platform == "win32":
            # No loop signal handlers on Windows: CTRL_BREAK/CTRL_C arrive in the main thread.
            def on_signal(signum: int, _frame: object) -> None:
                loop.call_soon_threadsafe(self.request_stop, signal.Signals(signum).name)

            for name in ("SIGBREAK", "SIGINT", "SIGTERM"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), on_signal)
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def _write_info(self) -> None:
        info = {
            "pid": self.pid,
            # The identity beside the pid: `python -m worker stop` never signals a reused pid.
            "create_time": self.create_time,
            "boot": proctree.boot_stamp(),
            "host": self.cfg.host,
            "port": self.port,
            "mode": self.cfg.mode,
            "started": self.started,
            "containment": self.containment_info(),  # for a harness's report
        }
        # Atomic: readers see the old file or the whole new one, never half of it.
        fd, tmp = tempfile.mkstemp(dir=self.cfg.data_dir, prefix=".worker.", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
                f.flush()
                os.fsync(f.fileno())
            _replace(tmp, self.cfg.info_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _database_problem(cfg: WorkerConfig, exc: Exception, what: str) -> StartError:
    """Why the start-up cannot use the database. A lock another process held past
    --db-busy-timeout is said as such: "the database: database is locked" named neither the
    file, nor that it was waited for, nor the setting that says how long."""
    if isinstance(exc, sqlite3.Error) and is_locked(exc):
        return StartError(
            f"--data-dir {cfg.data_dir}: {cfg.db_path.name} is locked by another process (a "
            f"backup, a sqlite3 shell?): waited {cfg.db_busy_timeout:g} s (--db-busy-timeout)"
        )
    return StartError(f"--data-dir {cfg.data_dir}: {what}: {exc}")


def _replace(src: str, dst: os.PathLike[str] | str, patience_s: float = 2.0) -> None:
    """os.replace; on Windows retried while a reader holds `dst` open (Python opens files
    without FILE_SHARE_DELETE there, so replacing one that is being read is refused)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if sys.platform != "win32" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # a reader's open lasts a moment; once, at start-up


def _file_identity(path: os.PathLike[str] | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _raise_open_files_limit() -> None:
    """POSIX: the soft limit on open files up to OPEN_FILES (never above the hard limit)."""
    if sys.platform == "win32":  # no such limit on sockets
        return
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        log.info("open files limit left as it is: %s", exc)


def _watch_children_with_pidfds(loop: asyncio.AbstractEventLoop) -> None:
    """Python < 3.12 waits for each child in a thread it starts per spawn; a pidfd watcher
    waits in the event loop instead (the default from 3.12 where pidfds exist)."""
    if sys.version_info >= (3, 12) or sys.platform == "win32" or not hasattr(os, "pidfd_open"):
        return
    if not isinstance(loop, asyncio.SelectorEventLoop):
        return  # another loop (uvloop) reaps its children itself and has no watchers
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or []:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no listening socket")
