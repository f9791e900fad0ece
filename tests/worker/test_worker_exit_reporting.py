"""The observer protocol takes any event loop's subprocess transport: it relies only on
get_returncode(), not on asyncio's own transport class (uvloop's does not subclass it)."""

from __future__ import annotations

import asyncio

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
