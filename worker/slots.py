"""A cap on the observers alive at once, across all sessions (fixed mode).

One observer per session is not a bound: a hundred open sessions were a hundred `claude`
processes (some 370 MB each in the report of claude-mem's issue #603). claude-mem added a pool
limit in 10.x and a slot limit in 12.x.
Here each observer holds a slot from just before its spawn until its tree has been ended, so an
observer being ended (up to two graces for a stubborn one) still counts. A session that needs a
slot while all are taken ends the longest-idle observer of another session (that session's next
turn starts a new one with `--resume`, as after the idle timeout), or, when every observer is in
a turn, waits until one frees or goes idle. Waiters are served in arrival order, and an observer
that has held its slot for --observer-share seconds while others wait gives it up after its turn
(its session queues again behind them): a session whose queue never empties cannot hold a slot
for ever. Not after each turn: a new observer costs the real CLI's start-up and a resumed
conversation's tokens, and a fault-mix soak at concurrency 16 on 2 slots took 180 s with a share
of 4 turns against 49 s with this one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_MAX_OBSERVERS = 10
DEFAULT_OBSERVER_SHARE_S = 60.0


class ObserverSlots(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._queue: deque[int] = deque()  # waiters' tickets, in arrival order
        self._tickets = itertools.count()
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def changed(self) -> None:
        """A slot freed, an observer went idle, the first waiter left: waiters look again."""
        if self._queue:
            event, self._changed = self._changed, asyncio.Event()
            event.set()

    async def acquire(
        self, idle_victim: Callable[[], T | None], evict: Callable[[T], Awaitable[None]]
    ) -> None:
        """Take a slot in turn; the first waiter, while none is free, ends an idle observer or
        waits for a change."""
        ticket = next(self._tickets)
        self._queue.append(ticket)
        try:
            while self._queue[0] != ticket or self.used >= self.limit:
                victim = idle_victim() if self._queue[0] == ticket else None
                if victim is not None:
                    await evict(victim)  # frees its slot for us: later waiters stay behind
                    continue
                await self._changed.wait()
        finally:
            first = self._queue[0] == ticket
            self._queue.remove(ticket)
            if first:
                self.changed()  # the next in line may take a slot too, or evict
        self.used += 1
        self.peak = max(self.peak, self.used)

    def release(self) -> None:
        self.used -= 1
        self.changed()
