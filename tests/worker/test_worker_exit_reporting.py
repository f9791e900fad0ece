"""The worker starts and serves on another asyncio event loop too (uvloop's, by hand: a soak of
60 fault-mix sessions PASSed): its observer protocol relies only on a subprocess transport's
get_returncode(), not on asyncio's class, and it installs asyncio's child watcher only on
asyncio's own loop. (Not everything holds there: under uvloop a flooding observer was not held
back, tests/robust; the worker logs a warning on any loop that is not asyncio's.)"""

from __future__ import annotations

import asyncio
import sys

import pytest

from worker.agent import _ExitReporting


class _ForeignTransport:
    """A subprocess transport of another loop: the methods, not asyncio's class."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.closed = False

    def get_returncode(self) -> int | None:
        return self.code

    def get_pipe_transport(self, fd: int) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_the_reap_is_reported_through_a_foreign_transport() -> None:
    async def go() -> int:
        protocol = _ExitReporting(asyncio.get_running_loop())
        transport = _ForeignTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        transport.code = 3
        protocol.process_exited()
        return await asyncio.wait_for(protocol.exited, 5)

    assert asyncio.run(go()) == 3


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12+ watches children itself (3.14 has no watchers)"
)
def test_another_loop_gets_no_asyncio_child_watcher(monkeypatch) -> None:
    # uvloop's policy has no child watchers (it reaps its own children): installing one made the
    # worker exit 1 at start-up under uvloop.
    from worker.service import _watch_children_with_pidfds

    def no_watchers(watcher: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio, "set_child_watcher", no_watchers)
    _watch_children_with_pidfds(asyncio.AbstractEventLoop())  # a loop that is not asyncio's own
