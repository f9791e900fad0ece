"""The worker's SQLite database (stdlib sqlite3, WAL).

Sessions, prompts, the queue of pending messages, observations, summaries, the runs of the worker
on this data dir, and the process registry. Every call commits before it returns, so an HTTP 2xx
sent after a store call means the row is on disk (WAL survives a kill -9 of the worker).
All calls happen on the event-loop thread; each is a few small statements in one transaction.

Another process holding the database's lock (a backup, a `sqlite3` shell in a write transaction)
must not stop the worker: the calls are coroutines that wait for the lock with asyncio.sleep,
up to the busy timeout, while the event loop serves everything else. SQLite's own busy handler
would sleep in the loop's thread, and every request, ending and sweep would wait with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Collection, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import proctree

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    create_time REAL NOT NULL,
    mark TEXT NOT NULL,
    mode TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    reaped REAL,
    boot TEXT,
    guardian TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_session_id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    memory_session_id TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    prompt_counter INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    ended REAL
);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    prompt_number INTEGER NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    done REAL
);
CREATE INDEX IF NOT EXISTS pending_by_session ON pending_messages(session_id, status);
-- The queued and claimed rows are few among all ever queued: found without a scan.
CREATE INDEX IF NOT EXISTS pending_by_status ON pending_messages(status);
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    message_id INTEGER NOT NULL UNIQUE REFERENCES pending_messages(id),
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    message_id INTEGER NOT NULL UNIQUE REFERENCES pending_messages(id),
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS processes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    session_id INTEGER,
    pid INTEGER NOT NULL,
    create_time REAL NOT NULL,
    grp TEXT,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    exit_code INTEGER,
    how TEXT
);
CREATE INDEX IF NOT EXISTS processes_by_state ON processes(state);
CREATE INDEX IF NOT EXISTS processes_by_session ON processes(session_id);
"""

# Processes in these states may still be running; everything else is known to be gone.
OPEN_STATES = ("live", "ending")


log = logging.getLogger("worker.store")

# First and longest pause between tries for the lock: short at first (most locks are brief),
# then no busier than 20 tries a second. Each pause is drawn from half to one and a half of
# that: waiters in step would all miss the short gaps of a writer that holds the lock on a
# period (helper-33: 8 hooks all 503 against a 0.5 s hold, 10 ms gap).
LOCK_POLL_FIRST_S = 0.002
LOCK_POLL_MAX_S = 0.05
# A call that has waited this long says so in the log, once.
LOCK_WAIT_LOG_S = 2.0

# SQLite's primary result codes (the sqlite3 module names them from Python 3.11 on only).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6

P = ParamSpec("P")
R = TypeVar("R")

# Set to False by Store.once(): the calls made in its scope try once and do not wait.
_waits_for_locks: ContextVar[bool] = ContextVar("waits_for_locks", default=True)


def is_locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds what the statement needs."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return "is locked" in str(exc)  # "database is locked", "database table is locked"


def waits_for_locks(
    method: Callable[Concatenate[Store, P], R],
) -> Callable[Concatenate[Store, P], Coroutine[Any, Any, R]]:
    """Make a store call a coroutine that retries it while the database is locked.

    Each call is one transaction, rolled back when it fails, so trying it again repeats
    nothing that was committed; no transaction is open across the await."""

    @functools.wraps(method)
    async def call(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        deadline: float | None = None
        since = 0.0
        logged = False
        pause = LOCK_POLL_FIRST_S
        while True:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if (
                    not is_locked(exc)
                    or not _waits_for_locks.get()
                    or self.stopped_waiting
                    or self.db.in_transaction
                ):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline, since = now + self.busy_timeout, now
                    self.lock_waits += 1
                if now >= deadline:
                    self.lock_timeouts += 1
                    raise
                if not logged and now - since >= LOCK_WAIT_LOG_S:
                    logged = True
                    log.warning("%s has waited %.0f s for another process's lock on the "
                                "database (gives up after %g s)", method.__name__, now - since,
                                self.busy_timeout)  # fmt: skip
            self.waiting += 1
            try:
                jitter = 0.5 + random.random()  # noqa: S311 - spreading retries, not secrets
                await asyncio.sleep(min(pause * jitter, max(0.0, deadline - now)))
            finally:
                self.waiting -= 1
            pause = min(pause * 2, LOCK_POLL_MAX_S)

    return call


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    session_id: int
    kind: str  # "prompt" | "observation" | "summarize"
    payload: dict[str, Any]
    attempts: int


class Store:
    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.busy_timeout = busy_timeout
        self.waiting = 0  # calls waiting for another process's lock right now
        self.lock_waits = 0  # calls that found the database locked
        self.lock_timeouts = 0  # of those, calls that gave up after busy_timeout
        self.stopped_waiting = False  # see failing_fast()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: in WAL mode a commit is appended to the -wal file by write() before
        # COMMIT returns; NORMAL only skips the fsync of each commit (the WAL is fsynced at
        # checkpoints). A kill -9 of the worker leaves the written WAL in the OS page cache, and
        # the next open recovers it, so "a 2xx means committed" holds across a crash of the
        # worker process, which is the guarantee issue 4 asks for. Only an OS crash or power loss
        # can roll back the last commits; FULL would cost an fsync per hook request for that.
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Until on_event_loop(), SQLite's busy handler waits for another process's lock (a
        # backup, a sqlite3 shell, a second worker starting): nothing is served yet.
        self.db.execute(f"PRAGMA busy_timeout={max(1, round(busy_timeout * 1000))}")
        self.db.executescript(SCHEMA)
        self._add_column("runs", "reaped", "REAL")  # databases made before it
        self._add_column("runs", "boot", "TEXT")
        self._add_column("runs", "guardian", "TEXT")

    def on_event_loop(self) -> None:
        """From now on a locked database fails a statement at once, and the calls wait for
        the lock themselves (waits_for_locks), without blocking the loop."""
        self.db.execute("PRAGMA busy_timeout=0")

    @contextlib.contextmanager
    def failing_fast(self) -> Iterator[None]:
        """While it lasts, every call (those waiting already too) fails at once on a lock: the
        server is stopping, and a request waiting for the lock gets its 503 now rather than a
        connection closed without an answer."""
        self.stopped_waiting = True
        try:
            yield
        finally:
            self.stopped_waiting = False

    @staticmethod
    @contextlib.contextmanager
    def once(only_once: bool = True) -> Iterator[None]:
        """The calls in this scope try once (unless only_once is False): a record that must not
        hold up what it records."""
        token = _waits_for_locks.set(not only_once)
        try:
            yield
        finally:
            _waits_for_locks.reset(token)

    def _add_column(self, table: str, column: str, kind: str) -> None:
        if column in {r["name"] for r in self.db.execute(f"PRAGMA table_info({table})")}:
            return
        try:
            self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another worker added it just now
                raise

    def close(self) -> None:
        self.db.close()

    # -- runs ---------------------------------------------------------------------------------
    def begin_run(
        self, pid: int, create_time: float, mark: str, mode: str, boot: str | None = None
    ) -> int:
        """`boot`: proctree.boot_stamp(), with which a later worker reads this run's
        create_times (its own boot time may have been read after a step of the clock)."""
        cur = self.db.execute(
            "INSERT INTO runs(pid, create_time, mark, mode, started, boot) VALUES (?,?,?,?,?,?)",
            (pid, create_time, mark, mode, time.time(), boot),
        )
        return int(cur.lastrowid or 0)

    @waits_for_locks
    def end_run(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET ended=? WHERE id=?", (time.time(), run_id))

    @waits_for_locks
    def set_run_guardian(self, run_id: int, guardian: proctree.ProcId) -> None:
        """The run's guardian as now (started, or replaced): a later start ends it if it
        outlived the run (a stopped one would wait for ever)."""
        self.db.execute(
            "UPDATE runs SET guardian=? WHERE id=?",
            (f"{guardian.pid} {guardian.create_time!r}", run_id),
        )

    @waits_for_locks
    def unclean_runs(self, current_run: int) -> list[sqlite3.Row]:
        """Earlier runs that never reached the end of their shutdown (killed, crashed) and that
        no later run has reaped yet."""
        return list(
            self.db.execute(
                "SELECT * FROM runs WHERE id<>? AND ended IS NULL AND reaped IS NULL ORDER BY id",
                (current_run,),
            )
        )

    @waits_for_locks
    def mark_reaped(self, run_ids: Collection[int]) -> None:
        """Their leftovers have been swept once: later starts need not walk for their marks."""
        if not run_ids:  # the usual start: no write transaction for nothing
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "UPDATE runs SET reaped=? WHERE id=?", [(time.time(), i) for i in run_ids]
            )

    # -- sessions -----------------------------------------------------------------------------
    @waits_for_locks
    def init_session(
        self, content_session_id: str, project: str, prompt: str, *, record: bool = True
    ) -> tuple[int, int]:
        """Create or reuse the session, record the prompt; return (session id, prompt number).

        `record=False` (a prompt that was entirely private): the session is created all the
        same, the prompt is neither kept nor counted, as in 9.0.0 (whose prompt number is the
        count of kept prompts plus one)."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR IGNORE INTO sessions(content_session_id, project, created) "
                "VALUES (?,?,?)",
                (content_session_id, project, now),
            )
            row = self.db.execute(
                "SELECT id, prompt_counter FROM sessions WHERE content_session_id=?",
                (content_session_id,),
            ).fetchone()
            number = int(row["prompt_counter"]) + 1
            if not record:
                return int(row["id"]), number
            self.db.execute(
                "UPDATE sessions SET prompt_counter=?, status='active', ended=NULL WHERE id=?",
                (number, row["id"]),
            )
            self.db.execute(
                "INSERT INTO prompts(session_id, prompt_number, text, created) VALUES (?,?,?,?)",
                (row["id"], number, prompt, now),
            )
        return int(row["id"]), number

    @waits_for_locks
    def session(self, session_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM sessions WHERE id=?", (session_id,)).fetchone()

    @waits_for_locks
    def session_by_content_id(self, content_session_id: str) -> sqlite3.Row | None:
        return self.db.execute(
            "SELECT * FROM sessions WHERE content_session_id=?", (content_session_id,)
        ).fetchone()

    @waits_for_locks
    def set_memory_session_id(self, session_id: int, memory_session_id: str) -> None:
        self.db.execute(
            "UPDATE sessions SET memory_session_id=? WHERE id=? AND memory_session_id IS NULL",
            (memory_session_id, session_id),
        )

    @waits_for_locks
    def end_session(self, session_id: int, status: str) -> None:
        self.db.execute(
            "UPDATE sessions SET status=?, ended=? WHERE id=?", (status, time.time(), session_id)
        )

    @waits_for_locks
    def cancel_pending(self, session_id: int) -> None:
        """A deleted session's queue: nothing in it will be worked."""
        self.db.execute(
            "UPDATE pending_messages SET status='cancelled', done=? "
            "WHERE session_id=? AND status IN ('pending','processing')",
            (time.time(), session_id),
        )

    @waits_for_locks
    def sessions_with_pending(self) -> list[int]:
        """Sessions with queued work, whatever their status: a session completed while its
        queue was not yet drained (the Stop hook's summarize, then SessionEnd) gets no other
        hook to wake it, and its accepted messages must still be processed."""
        rows = self.db.execute(
            "SELECT DISTINCT m.session_id FROM pending_messages m JOIN sessions s "
            "ON s.id=m.session_id WHERE m.status IN ('pending','processing') "
            "ORDER BY m.session_id"
        )
        return [int(r[0]) for r in rows]

    # -- queue --------------------------------------------------------------------------------
    @waits_for_locks
    def enqueue(self, session_id: int, kind: str, payload: dict[str, Any]) -> int:
        cur = self.db.execute(
            "INSERT INTO pending_messages(session_id, kind, payload, created) VALUES (?,?,?,?)",
            (session_id, kind, json.dumps(payload), time.time()),
        )
        return int(cur.lastrowid or 0)

    @waits_for_locks
    def next_message(self, session_id: int) -> QueuedMessage | None:
        """Claim the oldest pending message of the session (it becomes 'processing')."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT * FROM pending_messages WHERE session_id=? AND status='pending' "
                "ORDER BY id LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE pending_messages SET status='processing', attempts=attempts+1 WHERE id=?",
                (row["id"],),
            )
        return QueuedMessage(
            int(row["id"]),
            int(row["session_id"]),
            str(row["kind"]),
            json.loads(row["payload"]),
            int(row["attempts"]) + 1,
        )

    @waits_for_locks
    def complete_message(self, message: QueuedMessage, reply: str) -> None:
        """Store the reply and mark the message processed, atomically (exactly once)."""
        table = {"observation": "observations", "summarize": "summaries"}.get(message.kind)
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if table is not None:
                self.db.execute(
                    f"INSERT INTO {table}(session_id, message_id, text, created) VALUES (?,?,?,?)",  # noqa: S608 - table name from a fixed map
                    (message.session_id, message.id, reply, now),
                )
            self.db.execute(
                "UPDATE pending_messages SET status='processed', done=? WHERE id=?",
                (now, message.id),
            )

    @waits_for_locks
    def release_message(self, message: QueuedMessage, error: str, max_attempts: int) -> None:
        """A turn failed: give the message back to the queue, or fail it for good."""
        status = "failed" if message.attempts >= max_attempts else "pending"
        # Only while claimed: a message cancelled meanwhile (its session deleted) stays so.
        self.db.execute(
            "UPDATE pending_messages SET status=?, error=?, done=? "
            "WHERE id=? AND status='processing'",
            (status, error[:500], time.time() if status == "failed" else None, message.id),
        )

    @waits_for_locks
    def unclaim(self, message: QueuedMessage) -> None:
        """Give a claimed message back as if it had not been claimed: the attempt is not
        counted (nothing was tried: the observer could not even be started)."""
        self.db.execute(
            "UPDATE pending_messages SET status='pending', attempts=MAX(0, attempts-1) "
            "WHERE id=? AND status='processing'",
            (message.id,),
        )

    @waits_for_locks
    def requeue_orphans(self, session_id: int) -> int:
        """A session's generator is starting: a message still 'processing' is claimed by no one
        (a generator died before it could give it back, its release failing too). Queue it
        again, its attempt counted."""
        cur = self.db.execute(
            "UPDATE pending_messages SET status='pending' "
            "WHERE session_id=? AND status='processing'",
            (session_id,),
        )
        return cur.rowcount

    @waits_for_locks
    def requeue_interrupted(self) -> int:
        """At start: messages a dead worker was processing were never stored; queue them again."""
        cur = self.db.execute(
            "UPDATE pending_messages SET status='pending' WHERE status='processing'"
        )
        return cur.rowcount

    @waits_for_locks
    def pending_count(self, session_id: int | None = None) -> int:
        if session_id is None:
            row = self.db.execute(
                "SELECT COUNT(*) FROM pending_messages WHERE status IN ('pending','processing')"
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM pending_messages WHERE session_id=? "
                "AND status IN ('pending','processing')",
                (session_id,),
            ).fetchone()
        return int(row[0])

    @waits_for_locks
    def pending_messages(self, oldest: int) -> list[sqlite3.Row]:
        """The `oldest` many queued and claimed messages, oldest first."""
        return list(
            self.db.execute(
                "SELECT id, session_id, kind, status, attempts, created FROM pending_messages "
                "WHERE status IN ('pending','processing') ORDER BY id LIMIT ?",
                (oldest,),
            )
        )

    @waits_for_locks
    def pending_totals(self) -> tuple[int, int]:
        """(queued and claimed messages, sessions that have some), counted in SQLite."""
        row = self.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT session_id) FROM pending_messages "
            "WHERE status IN ('pending','processing')"
        ).fetchone()
        return int(row[0]), int(row[1])

    # -- registry -----------------------------------------------------------------------------
    @waits_for_locks
    def register_process(
        self, run_id: int, session_id: int | None, pid: int, create_time: float, group: str
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO processes(run_id, session_id, pid, create_time, grp, state, started) "
            "VALUES (?,?,?,?,?, 'live', ?)",
            (run_id, session_id, pid, create_time, group, proctree.now()),
        )
        return int(cur.lastrowid or 0)

    @waits_for_locks
    def set_process_state(
        self, row_id: int, state: str, *, exit_code: int | None = None, how: str | None = None
    ) -> None:
        # On create_time's clock, as `started`: a census compares them with create_times.
        ended = None if state in OPEN_STATES else proctree.now()
        self.db.execute(
            "UPDATE processes SET state=?, ended=COALESCE(ended, ?), "
            "exit_code=COALESCE(?, exit_code), how=COALESCE(?, how) WHERE id=?",
            (state, ended, exit_code, how, row_id),
        )

    @waits_for_locks
    def open_processes(self, *, exclude_run: int | None = None) -> list[sqlite3.Row]:
        return list(
            self.db.execute(
                "SELECT p.*, r.mark, r.boot AS run_boot FROM processes p JOIN runs r "
                "ON r.id=p.run_id "
                "WHERE p.state IN ('live','ending') AND p.run_id<>? ORDER BY p.id",
                (exclude_run if exclude_run is not None else -1,),
            )
        )

    @waits_for_locks
    def processes(
        self,
        session_ids: Collection[int] | None = None,
        states: Collection[str] | None = None,
        newest: int | None = None,
    ) -> list[sqlite3.Row]:
        """Registry rows, oldest first: every one, or those of the given sessions and states,
        and of those only the `newest` many (a caller that polls the registry asks for what it
        waits on: its cost then does not grow with the history)."""
        where: list[str] = []
        args: list[object] = []
        filters: list[tuple[str, list[int] | list[str] | None]] = [
            ("session_id", None if session_ids is None else sorted(set(session_ids))),
            ("state", None if states is None else sorted(set(states))),
        ]
        for column, chosen in filters:
            if chosen is None:
                continue
            if not chosen:
                return []
            # placeholders only: the values are bound, not formatted
            where.append(f"{column} IN ({','.join('?' * len(chosen))})")
            args.extend(chosen)
        sql = "SELECT * FROM processes" + (" WHERE " + " AND ".join(where) if where else "")
        if newest is None:
            return list(self.db.execute(sql + " ORDER BY id", args))
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
        return list(self.db.execute(sql, [*args, newest]))

    # -- stats --------------------------------------------------------------------------------
    @waits_for_locks
    def counts(self) -> dict[str, Any]:
        def by(sql: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in self.db.execute(sql)}

        return {
            "sessions": by("SELECT status, COUNT(*) FROM sessions GROUP BY status"),
            "queue": by("SELECT status, COUNT(*) FROM pending_messages GROUP BY status"),
            "processes": by("SELECT state, COUNT(*) FROM processes GROUP BY state"),
            "observations": int(self.db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]),
            "summaries": int(self.db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]),
            "prompts": int(self.db.execute("SELECT COUNT(*) FROM prompts").fetchone()[0]),
        }
