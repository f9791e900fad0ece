"""The CPU cost of one HTTP round trip on this machine, with nothing behind it: a trivial
aiohttp server (its own process, as the worker) and the harness's aiohttp client.

The soak drives each session through the worker's HTTP API (5 hook requests per session in the
throughput bench), the bare loop through none; this floor says how much of the soak's extra
CPU per session the HTTP round trips alone cost here, before any work of the worker.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import psutil

# A JSON echo handler, the shape of a hook: parse the body, answer a small JSON object.
SERVER = """
import asyncio, sys
from aiohttp import web

async def hook(request):
    body = await request.json()
    return web.json_response({"ok": True, "n": body.get("n")})

async def main():
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
WARMUP = 200
START_TIMEOUT_S = 60.0


async def http_round_trip(requests: int = 2000) -> dict[str, Any]:
    """CPU ms per request of the server and of the client, sequential keep-alive requests."""
    import aiohttp

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), START_TIMEOUT_S)
        if not line.strip().isdigit():
            raise RuntimeError(f"the HTTP floor's server did not start (said {line!r})")
        url = f"http://127.0.0.1:{int(line)}/hook"
        proc = psutil.Process(server.pid)
        async with aiohttp.ClientSession() as http:
            for n in range(WARMUP):
                async with http.post(url, json={"n": n}) as resp:
                    await resp.json()
            s0, c0 = proc.cpu_times(), time.process_time()
            for n in range(requests):
                async with http.post(url, json={"n": n}) as resp:
                    await resp.json()
            s1, c1 = proc.cpu_times(), time.process_time()
    finally:
        server.kill()
        server.wait()
    server_ms = ((s1.user + s1.system) - (s0.user + s0.system)) / requests * 1000
    client_ms = (c1 - c0) / requests * 1000
    return {
        "requests": requests,
        "server_cpu_ms_per_request": round(server_ms, 3),
        "client_cpu_ms_per_request": round(client_ms, 3),
        "round_trip_cpu_ms": round(server_ms + client_ms, 3),
    }
