"""Fixed mode's session manager: a queue per session, at most one live observer per session.

A session's generator takes queued items from SQLite one at a time, sends each to its observer
and stores the reply. The observer is ended (close stdin, grace, terminate tree, grace, kill tree)
when the session completes or is deleted, when it fails, and when it idles past the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from worker import protocol
from worker.agent import Observer, ObserverError
from worker.config import WorkerConfig
from worker.containment import Contained, Containment
from worker.slots import ObserverSlots
from worker.store import QueuedMessage, Store

log = logging.getLogger("worker.sessions")

# A store failure in a session's generator (the database locked by another process, a full
# disk) is retried this many times in a row, waiting twice as long each time, before the
# session's generator gives up (its next hook starts a new one).
STORE_RETRIES = 8
STORE_BACKOFF_S = 0.25
STORE_BACKOFF_MAX_S = 30.0
# A spawn that fails for want of a resource the system may have again in a moment: file
# descriptors (ours or the system's), processes (RLIMIT_NPROC), memory. Retried like the store.
SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})


class ResourceShortage(ObserverError):
    """The observer could not be started for want of a resource, not through its own fault:
    its message goes back to the queue uncounted and the session waits, instead of failing
    the message after --max-attempts spawns that could never have worked."""


@dataclass
class ActiveSession:
    id: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    observer: Observer | None = None
    contained: Contained | None = None
    registry_row: int | None = None
    # Observers whose tree is being ended (pid -> containment): the sweep leaves them to it.
    ending: dict[int, Contained | None] = field(default_factory=dict)
    errors: int = 0
    last_error: str | None = None
    last_activity: float = field(default_factory=time.monotonic)
    # The session row's fixed columns (project, content_session_id never change once the row
    # exists), read once instead of once per turn.
    project: str | None = None
    content_id: str | None = None
    # The memory session id already stored for this session (the UPDATE is a no-op after it).
    memory_id_stored: str | None = None
    # The message this session's generator took from the queue and has not stored or given
    # back yet, and why its turn failed (None: no turn failed; only the store may have).
    claimed: QueuedMessage | None = None
    claim_error: str | None = None
    # Its generator waits for work (not in a turn): its observer may be ended for a slot.
    parked: bool = False
    # When its observer took its slot (monotonic): past --observer-share it gives way to
    # sessions waiting for one.
    observer_since: float = 0.0
    # Its generator was cancelled and is giving back its work (unclaim, end the observer):
    # not cancelled again, or a store call waiting for another process's lock would be cut.
    winding_up: bool = False


@dataclass
class Counters:
    spawned: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    session_errors: int = 0

    def count_end(self, reason: str) -> None:
        self.ended[reason] = self.ended.get(reason, 0) + 1


class SessionManager:
    def __init__(
        self, cfg: WorkerConfig, store: Store, containment: Containment, run_id: int
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.containment = containment
        self.run_id = run_id
        self.sessions: dict[int, ActiveSession] = {}
        self.counters = Counters()
        self._closing = False
        # Held while spawning and while sweeping, so a sweep never sees a child that is
        # ours but not yet in the live set.
        self.spawn_lock = asyncio.Lock()
        # Observer roots whose exit status asyncio still has to collect: never reap those.
        self._owned: set[int] = set()
        # Registry rows whose last write failed (the store locked or full): row -> the state
        # and details it should have. Written again by retry_records() at each reap interval.
        self._unrecorded: dict[int, tuple[str, dict[str, Any]]] = {}
        # Claims an ending generator could not give back (the store locked or full): message
        # id -> (it, why its turn failed or None). Tried again at shutdown.
        self._unreturned: dict[int, tuple[QueuedMessage, str | None]] = {}
        # Set (and replaced) whenever a queued message leaves the queue: lets a status request
        # wait for a drained queue without polling (GET /sessions/{id}/status?waitDrainedMs=).
        # session id -> an event set (and dropped) when that session's queue moves.
        self._progress: dict[int, asyncio.Event] = {}
        self._waiting: dict[int, int] = {}  # session id -> requests waiting for its drain
        self.slots: ObserverSlots[ActiveSession] = ObserverSlots(cfg.max_observers)
        # Endings in flight (task -> session id): each runs to its end whoever awaited it was
        # cancelled meanwhile; a delete waits for its session's, shutdown for all.
        self._endings: dict[asyncio.Task[None], int] = {}

    def _queue_progressed(self, session_id: int | None = None) -> None:
        """Wake those waiting for this session's drain (all of them if None)."""
        keys = list(self._progress) if session_id is None else [session_id]
        for key in keys:
            event = self._progress.pop(key, None)
            if event is not None:
                event.set()

    async def wait_drained(self, session_id: int, timeout: float) -> None:
        """Return once the session has nothing pending or processing, or after `timeout`."""
        deadline = time.monotonic() + timeout
        while not self._closing and await self.store.pending_count(session_id) > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = self._progress.setdefault(session_id, asyncio.Event())
            self._waiting[session_id] = self._waiting.get(session_id, 0) + 1
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                # The last waiter drops an event nobody set, so sessions never drained do not
                # pile up in a long-running worker.
                left = self._waiting.pop(session_id) - 1
                if left:
                    self._waiting[session_id] = left
                elif self._progress.get(session_id) is event:
                    del self._progress[session_id]

    # -- called by the routes -----------------------------------------------------------------
    def notify(self, session_id: int) -> None:
        """New work for the session: wake its generator, starting one if none runs."""
        if self._closing:
            return
        active = self.sessions.setdefault(session_id, ActiveSession(session_id))
        active.wake.set()
        if active.task is None or active.task.done():
            active.task = asyncio.create_task(self._generator(active), name=f"gen-{session_id}")

    async def wake_stranded(self) -> list[int]:
        """Sessions with queued work and no generator: start one, as a hook would. A generator
        that gave up (a store failure past its retries, an error not foreseen) left its queue
        to the next hook, and a completed session gets none: its work waited for a restart."""
        if self._closing:
            return []
        stranded = []
        for session_id in await self.store.sessions_with_pending():
            active = self.sessions.get(session_id)
            if active is None or active.task is None or active.task.done():
                stranded.append(session_id)
                self.notify(session_id)
        return stranded

    def active_observers(self) -> list[ActiveSession]:
        return [a for a in self.sessions.values() if a.observer is not None]

    def live_contained(self) -> list[Contained]:
        """Trees the sweep must leave alone: live observers and those being ended right now."""
        trees = []
        for active in self.sessions.values():
            if active.contained is not None:
                trees.append(active.contained)
            trees.extend(c for c in active.ending.values() if c is not None)
        return trees

    def owned_pids(self) -> set[int]:
        return set(self._owned)

    def live_pids(self, session_id: int) -> list[int]:
        active = self.sessions.get(session_id)
        if active is None:
            return []
        pids = set(active.ending)
        if active.observer is not None:
            pids.add(active.observer.pid)
        return sorted(pids)

    async def complete(self, session_id: int) -> None:
        """The session ended: its generator finishes what is queued, then ends the observer."""
        await self.store.end_session(session_id, "completed")
        active = self.sessions.get(session_id)
        if active is not None:
            active.wake.set()
            if active.task is None or active.task.done():
                await self._end_observer(active, "completed")

    async def delete(self, session_id: int) -> None:
        """Abort the session now: cancel its generator, which ends the observer. The observer
        is ended also when the store cannot record the deletion (the error is raised after):
        the lock that stops the store may be held by the observer's own tree (a tool's
        `sqlite3` on the database), which then let go of it only when its generator gave up,
        minutes later, after the DELETE had failed and its observer outlived the session."""
        try:
            await self.store.end_session(session_id, "deleted")
            await self.store.cancel_pending(session_id)
        finally:
            self._queue_progressed(session_id)
            await self._abort(session_id)

    async def _abort(self, session_id: int) -> None:
        active = self.sessions.get(session_id)
        if active is None:
            return
        if active.task is not None and not active.task.done():
            active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await active.task
        await self._end_observer(active, "deleted")
        # An ending its generator had begun (idle, error) goes on after the cancel: wait for it.
        mine = [task for task, sid in self._endings.items() if sid == session_id]
        await asyncio.gather(*mine, return_exceptions=True)
        # Nothing of it is left: its entry goes, as a drained session's does (before, every
        # deleted session's stayed for the worker's lifetime, its cancelled task and frames
        # with it). Not if a hook has given it a new generator meanwhile.
        if active.task is None or active.task.done():
            self._forget(active)

    async def shutdown(self) -> None:
        """Stop every generator; each ends its observer's whole tree."""
        self._closing = True
        self._queue_progressed()  # waiting status requests answer now, not at their deadline
        running = {a.task: a for a in self.sessions.values() if a.task and not a.task.done()}
        pending = set(running)
        while pending:
            # Cancelled again while still running: a cancellation can be lost (see _generator);
            # the next one lands on whatever the task awaits by then. Not a generator that is
            # winding up: its cancellation arrived.
            for task in pending:
                if not running[task].winding_up:
                    task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        await asyncio.gather(
            *(self._end_observer(a, "shutdown") for a in self.sessions.values()),
            return_exceptions=True,
        )
        await asyncio.gather(*list(self._endings), return_exceptions=True)
        await self._last_writes()

    async def _last_writes(self) -> None:
        """At shutdown: what a store failure kept from being written, tried once more (waiting
        for a lock up to --db-busy-timeout); what still fails, the next start settles."""
        try:
            await self._settle_unreturned()
        except sqlite3.Error as exc:
            log.warning("%d message(s) left claimed, re-queued at the next start: %s",
                        len(self._unreturned), exc)  # fmt: skip
        with contextlib.suppress(sqlite3.Error):
            await self.retry_records(wait=True)

    async def _settle_unreturned(self, session_id: int | None = None) -> None:
        """Give back the claims ending generators could not (of one session, or all)."""
        for message_id, (message, error) in list(self._unreturned.items()):
            if session_id is not None and message.session_id != session_id:
                continue
            await self._hand_back(message, error)
            del self._unreturned[message_id]

    # -- the generator ------------------------------------------------------------------------
    async def _generator(self, active: ActiveSession) -> None:
        failures = 0  # store failures in a row
        orphans_checked = False
        active.winding_up = False
        try:
            # Checked each round, not only through cancellation: Python 3.11's wait_for returns
            # the result, and drops the cancellation, when its awaitable completes in the same
            # loop iteration as the cancel (a hook's wake-up racing shutdown); the generator
            # then waited out the idle timeout and held the worker's exit.
            while not self._closing:
                try:
                    if active.claimed is not None:  # a claim a store failure left open
                        await self._return_claim(active)
                    if not orphans_checked:
                        # What an earlier generator of the session could not give back goes
                        # back as it should (uncounted unless its turn failed). Then, as only
                        # one generator per session runs, what is 'processing' is no one's
                        # (left so, its step would never claim it, and a completed session's
                        # would loop on it without end).
                        await self._settle_unreturned(active.id)
                        if await self.store.requeue_orphans(active.id):
                            log.warning("session %s: re-queued a message left claimed", active.id)
                        orphans_checked = True
                    if not await self._step(active):
                        return
                    failures = 0
                except (sqlite3.OperationalError, ResourceShortage) as exc:
                    # The store, not the observer, failed (locked by another process, disk
                    # full), or the system had no fd, process or memory to spare for a spawn:
                    # the same step may succeed later. Keep the observer, wait, retry;
                    # a claimed message goes back to the queue first, so none stays
                    # 'processing' (a drain would wait on it for ever).
                    failures += 1
                    what = "store" if isinstance(exc, sqlite3.Error) else "resources"
                    self._session_error(active, f"{what}: {exc} (attempt {failures})")
                    if failures >= STORE_RETRIES:
                        raise
                    await asyncio.sleep(min(STORE_BACKOFF_MAX_S, STORE_BACKOFF_S * 2**failures))
        except asyncio.CancelledError:
            # Delete or shutdown: the observer must not outlive its generator. A message it
            # was working on goes back to the queue, uncounted unless its turn had failed
            # (shutdown; a delete has already cancelled it), so none is left 'processing'.
            active.winding_up = True
            await self._return_claim_or_keep(active)
            await asyncio.shield(self._end_observer(active, "cancelled"))
            raise
        except Exception as exc:  # the worker serves on; this session just failed
            log.exception("session %s generator failed", active.id)
            self._session_error(active, f"{type(exc).__name__}: {exc}")
            if active.claim_error is None and not isinstance(exc, sqlite3.OperationalError):
                # Not the store being unavailable: an error of ours, at this message; counted,
                # or a message that always raises it would be tried for ever.
                active.claim_error = f"{type(exc).__name__}: {exc}"
            await self._return_claim_or_keep(active)
            await asyncio.shield(self._end_observer(active, "error"))

    async def _step(self, active: ActiveSession) -> bool:
        """One message, or one wait for one; False once the generator has nothing left to do."""
        active.wake.clear()
        message = await self.store.next_message(active.id)
        if message is None:
            row = await self.store.session(active.id)
            if row is None or row["status"] != "active":
                await self._end_observer(active, "completed")
            else:
                active.parked = True
                self.slots.changed()  # its observer may now be ended for a waiting session
                try:
                    await asyncio.wait_for(active.wake.wait(), self.cfg.idle_timeout)
                    return not self._closing
                except asyncio.TimeoutError:
                    await self._end_observer(active, "idle")
                finally:
                    active.parked = False
            # Work may have arrived while the observer was being ended; with no await
            # between this check and the return, a later notify() starts a new task.
            if await self.store.pending_count(active.id) == 0 or self._closing:
                self._forget(active)
                return False
            return True
        active.claimed, active.claim_error = message, None
        active.last_activity = time.monotonic()
        try:
            observer = await self._ensure_observer(active)
            if active.content_id is None:
                await self._load_fixed_columns(active)
            text = protocol.prompt_text(
                message.kind,
                message.payload,
                active.project or "",
                int(message.payload.get("promptNumber") or 1),
            )
            reply = await observer.turn(text, active.content_id or "", self.cfg.turn_timeout)
        except sqlite3.OperationalError:
            raise  # the store's, not the turn's: retried by the generator
        except ResourceShortage:
            # The system's, not the message's: back to the queue as it was; the generator
            # waits and tries again.
            await self._return_claim(active)  # uncounted: no turn failed
            raise
        except Exception as exc:  # noqa: BLE001 - this turn failed; the queue goes on
            if isinstance(exc, ObserverError):
                error = str(exc)
            else:  # not foreseen: say where, but keep the session's queue moving
                log.exception("session %s: turn failed", active.id)
                error = f"{type(exc).__name__}: {exc}"
            self._session_error(active, error)
            active.claim_error = error  # should the store fail now, the attempt still counts
            try:
                await self._return_claim(active)
            finally:  # also when the store fails too: a failed observer is never reused
                await self._end_observer(active, "error")
            return True
        await self.store.complete_message(message, reply)
        active.claimed = None
        self._queue_progressed(active.id)
        self.counters.turns += 1
        memory_id = observer.claude_session_id
        if memory_id and memory_id != active.memory_id_stored:
            await self.store.set_memory_session_id(active.id, memory_id)
            active.memory_id_stored = memory_id
        active.last_activity = time.monotonic()
        held = time.monotonic() - active.observer_since
        if self.slots.waiting and held >= self.cfg.observer_share:
            # Its turn is stored: give the slot to those waiting, and queue behind them.
            await self._end_observer(active, "yielded")
        return True

    async def _return_claim(self, active: ActiveSession) -> None:
        """The claimed message goes back to the queue: its attempt counted if its turn failed
        (claim_error), else as if it had never been claimed (only the store or a cancel
        came in the way)."""
        if active.claimed is None:
            return
        await self._hand_back(active.claimed, active.claim_error)
        active.claimed = active.claim_error = None
        self._queue_progressed(active.id)

    async def _hand_back(self, message: QueuedMessage, turn_error: str | None) -> None:
        """Back to the queue: counted (or failed after --max-attempts) if its turn failed,
        else as if never claimed."""
        if turn_error is not None:
            await self.store.release_message(message, turn_error, self.cfg.max_attempts)
        else:
            await self.store.unclaim(message)

    async def _return_claim_or_keep(self, active: ActiveSession) -> None:
        """_return_claim for a generator that ends: should the store fail, the claim is kept
        for shutdown's last try (else the next start re-queues it, its attempt counted)."""
        claim = active.claimed
        if claim is None:
            return
        try:
            await self._return_claim(active)
        except sqlite3.Error as exc:
            log.warning("session %s: message %s not given back yet: %s", active.id, claim.id, exc)
            self._unreturned[claim.id] = (claim, active.claim_error)
            active.claimed = active.claim_error = None

    async def _load_fixed_columns(self, active: ActiveSession) -> None:
        row = await self.store.session(active.id)
        if row is not None:
            active.project = str(row["project"])
            active.content_id = str(row["content_session_id"])
        else:  # not cached: a row that appears later is read then
            active.project = active.content_id = None

    def _forget(self, active: ActiveSession) -> None:
        """A session with no observer and no work holds nothing: drop it, so a long-running
        worker's memory does not grow with every session it ever saw (notify() recreates it)."""
        if active.observer is None and not active.ending and not self._closing:
            if self.sessions.get(active.id) is active:
                del self.sessions[active.id]

    def _session_error(self, active: ActiveSession, error: str) -> None:
        active.errors += 1
        active.last_error = error
        self.counters.session_errors += 1
        log.warning("session %s: %s", active.id, error)

    async def _ensure_observer(self, active: ActiveSession) -> Observer:
        if active.observer is not None and active.observer.proc.returncode is None:
            return active.observer
        if active.observer is not None:
            await self._end_observer(active, "exited")
        row = await self.store.session(active.id)
        resume = row["memory_session_id"] if row is not None else None
        argv = protocol.observer_argv(self.cfg.claude, self.cfg.model, resume)
        await self.slots.acquire(lambda: self._idle_victim(active), self._evict)
        try:
            observer, unrecorded = await self._spawn(active, argv)
        except BaseException:  # a failed spawn, or cancelled while waiting for the lock
            if active.observer is None:  # else the observer holds it: _end_observer frees it
                self.slots.release()
            raise
        if unrecorded is not None:
            # An observer the registry does not know of must not be reused (nor outlive a
            # crash unseen): end it (outside the spawn lock: that takes a grace), then fail.
            await self._end_observer(active, "error")
            raise unrecorded
        await observer.initialize(self.cfg.turn_timeout)
        return observer

    async def _spawn(
        self, active: ActiveSession, argv: list[str]
    ) -> tuple[Observer, sqlite3.Error | None]:
        """Start the session's observer, contained, and register it: (it, the registry's error).
        From its spawn on, the observer holds the slot taken for it."""
        token = Observer.new_token()
        plan = self.containment.spawn_plan(token, argv)
        async with self.spawn_lock:
            try:
                observer = await Observer.spawn(
                    plan.argv or argv,
                    spawn_kwargs=dict(plan),
                    max_line=self.cfg.max_line,
                    token=token,
                )
            except OSError as exc:
                kind = ResourceShortage if exc.errno in SHORTAGE_ERRNOS else ObserverError
                raise kind(f"cannot start {self.cfg.claude!r}: {exc}") from exc
            self._owned.add(observer.pid)
            active.observer = observer
            active.observer_since = time.monotonic()
            active.contained = self.containment.after_spawn(observer.pid, token, plan)
            self.counters.spawned += 1
            try:
                active.registry_row = await self.store.register_process(
                    self.run_id,
                    active.id,
                    observer.pid,
                    active.contained.identity.create_time,
                    active.contained.group_label,
                )
            except sqlite3.Error as exc:
                return observer, exc
        return observer, None

    async def _end_observer(self, active: ActiveSession, reason: str) -> None:
        """The escalation: close stdin, grace, terminate tree, grace, kill tree; then record it.

        It runs as a task of its own, shielded: a caller cancelled meanwhile (a delete or
        shutdown cancelling a generator that was ending its observer for idleness) neither cuts
        the ending short, which left the tree running and its row `ending`, nor frees the slot
        before the tree is gone."""
        observer, contained, row = active.observer, active.contained, active.registry_row
        if observer is None:
            return
        active.observer = active.contained = active.registry_row = None
        active.ending[observer.pid] = contained
        task = asyncio.ensure_future(self._ending(active, observer, contained, row, reason))
        self._endings[task] = active.id
        task.add_done_callback(self._ending_done)
        await asyncio.shield(task)

    async def _ending(
        self,
        active: ActiveSession,
        observer: Observer,
        contained: Contained | None,
        row: int | None,
        reason: str,
    ) -> None:
        try:
            await self._escalate(observer, contained, row, reason)
        finally:
            active.ending.pop(observer.pid, None)
            self.slots.release()

    def _ending_done(self, task: asyncio.Task[None]) -> None:
        self._endings.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Its awaiter may have been cancelled: say it here, or nobody would.
            log.error("ending an observer failed", exc_info=exc)

    def _idle_victim(self, requester: ActiveSession) -> ActiveSession | None:
        """The observer idle longest of another session whose generator waits for work."""
        idle = [
            a
            for a in self.sessions.values()
            if a is not requester and a.parked and a.observer is not None
        ]
        return min(idle, key=lambda a: a.last_activity, default=None)

    async def _evict(self, victim: ActiveSession) -> None:
        """End `victim`'s observer for a slot (taken from it at once: no other waiter picks it
        again meanwhile)."""
        log.info("session %s: observer ended to free a slot (--max-observers %d)",
                 victim.id, self.slots.limit)  # fmt: skip
        await self._end_observer(victim, "evicted")

    async def _record(self, row: int, state: str, *, wait: bool = True, **details: Any) -> None:
        """The registry's record of an ending, never in the way of the ending itself: a store
        that fails (locked by another process past --db-busy-timeout, a full disk) leaves the
        row open until retry_records() writes it. Before, the failed write came first and the
        tree was never ended (until a sweep took it for a stray). With wait=False a locked
        database is not waited for: the ending does not start up to --db-busy-timeout late."""
        try:
            with self.store.once(not wait):
                await self.store.set_process_state(row, state, **details)
        except sqlite3.Error as exc:
            log.warning("registry row %s not marked %s: %s", row, state, exc)
            self._unrecorded[row] = (state, details)
        else:
            self._unrecorded.pop(row, None)  # an older state that failed must not follow it

    @property
    def records_due(self) -> int:
        return len(self._unrecorded)

    async def retry_records(self, *, wait: bool = False) -> None:
        """Write the registry rows whose last write failed. The reaper tries once each interval
        (a lock still held waits for the next); shutdown waits up to --db-busy-timeout."""
        for row, (state, details) in list(self._unrecorded.items()):
            try:
                with self.store.once(not wait):
                    await self.store.set_process_state(row, state, **details)
            except sqlite3.Error:
                return
            if self._unrecorded.get(row) == (state, details):  # not failed anew meanwhile
                del self._unrecorded[row]
            log.info("registry row %s marked %s after all", row, state)

    async def _escalate(
        self, observer: Observer, contained: Contained | None, row: int | None, reason: str
    ) -> None:
        if row is not None:
            await self._record(row, "ending", wait=False)
        how = "exited"
        if contained is not None:
            how = await self.containment.end(
                contained,
                grace=self.cfg.grace,
                close_stdin=observer.close_stdin,
                exited=observer.exited,
                owned=self._owned,
                spawning=self.spawn_lock.locked,
            )
        else:
            observer.close_stdin()
        code = await observer.wait_exit(self.cfg.grace + 5.0)
        if code is not None:
            self._owned.discard(observer.pid)
        await observer.finish_streams()
        if row is not None:
            await self._record(row, "ended", exit_code=code, how=f"{reason}:{how}")
        self.counters.count_end(reason)
