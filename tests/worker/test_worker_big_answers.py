"""Big answers cost the worker a bounded time and memory, whoever asks and however they read.

Two ways a client took a worker's memory and event loop, found by attacking it over HTTP:
/api/pending-queue listed every queued message (40,000 queued: 7 MB and ~0.45 s of the event
loop per request, every hook stalled meanwhile), and an answer the client did not read was
waited for without end, its unsent body held in memory (60 such connections: 43 -> 505 MB, never
closed). Now the listing is bounded like /api/processes', and an answer not read within
--client-timeout closes its connection."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web
from workerkit import FakeRun, Worker

from worker.routes import BODY_TIMEOUT_KEY, MAX_BODY_KEY, guard


def test_pending_queue_is_bounded_and_counts_everything(fake_run: FakeRun, workers) -> None:
    # An observer that hangs in its first turn: everything after it stays queued.
    worker: Worker = workers(
        fake_run.shim("hang:at=mid-turn"), flags=["--grace", "0.5", "--turn-timeout", "600"]
    )
    sid = worker.new_session("big-queue")
    for i in range(12):
        worker.observe("big-queue", i)
    api = worker.api()
    queue = api.ok("GET", "/api/pending-queue?limit=5")["queue"]
    assert len(queue["messages"]) == 5 and queue["truncated"] is True
    assert queue["totalPending"] == 12 and queue["sessionsWithPending"] == 1
    ids = [m["id"] for m in queue["messages"]]
    assert ids == sorted(ids)  # the oldest, oldest first
    queue = api.ok("GET", "/api/pending-queue")["queue"]
    assert len(queue["messages"]) == 12 and queue["truncated"] is False
    for bad in ("0", "-1", "100001", "x"):
        status, body = api.request("GET", f"/api/pending-queue?limit={bad}")
        assert status == 400 and "limit" in body["error"], (bad, status, body)
    api.ok("DELETE", f"/sessions/{sid}")
    fake_run.assert_none_alive()


def test_an_answer_nobody_reads_closes_its_connection() -> None:
    big = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers take

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=big)

    async def answer_small(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def go() -> tuple[float | None, int]:
        app = web.Application(middlewares=[guard])
        app[MAX_BODY_KEY] = 1024 * 1024
        app[BODY_TIMEOUT_KEY] = 1.0
        app.router.add_get("/big", answer)
        app.router.add_get("/small", answer_small)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, stalled_reader, port)
        finally:
            await runner.cleanup()

    closed_after, small_status = asyncio.run(go())
    assert closed_after is not None, "the connection stayed open with its answer unread"
    assert closed_after < 10.0
    assert small_status == 200


def stalled_reader(port: int) -> tuple[float | None, int]:
    """Ask for the big answer, read nothing for 3 s, then see whether the server closed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    start = time.monotonic()
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    time.sleep(3.0)
    closed_after = None
    sock.settimeout(10.0)
    try:
        while time.monotonic() - start < 15.0:
            if not sock.recv(1024 * 1024):
                closed_after = time.monotonic() - start
                break
    except ConnectionError:  # reset: closed too
        closed_after = time.monotonic() - start
    except TimeoutError:  # still open, nothing more sent
        pass
    finally:
        sock.close()
    # The server still answers others.
    with socket.create_connection(("127.0.0.1", port)) as other:
        other.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = other.recv(100)
    return closed_after, int(head.split()[1])
