"""A cap on the observers alive at once, across all sessions (fixed mode).

One observer per session is not a bound: a hundred open sessions were a hundred `claude`
processes of some 370 MB each. claude-mem added a pool limit in 10.x and a slot limit in 12.x.
Here each observer holds a slot from just before its spawn until its tree has been ended, so an
observer being ended (up to two graces for a stubborn one) still counts. A session that needs a
slot while all are taken ends the longest-idle observer of another session (that session's next
turn starts a new one with `--resume`, as after the idle timeout), or, when every observer is in
a turn, waits until one frees or goes idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_MAX_OBSERVERS = 10


class ObserverSlots(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.waiting = 0
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """A slot freed or an observer went idle: waiters look again."""
        if self.waiting:
            event, self._changed = self._changed, asyncio.Event()
            event.set()

    async def acquire(
        self, idle_victim: Callable[[], T | None], evict: Callable[[T], Awaitable[None]]
    ) -> None:
        """Take a slot; while none is free, end an idle observer or wait for a change."""
        self.waiting += 1
        try:
            while self.used >= self.limit:
                victim = idle_victim()
                if victim is not None:
                    await evict(victim)  # frees its slot; another waiter may take it first
                    continue
                await self._changed.wait()
        finally:
            self.waiting -= 1
        self.used += 1
        self.peak = max(self.peak, self.used)

    def release(self) -> None:
        self.used -= 1
        self.changed()
