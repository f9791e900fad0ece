"""The HTTP API: claude-mem 9.0.0's routes and bodies, plus /api/processes and /api/stats.

Every refusal is a 4xx with a JSON body {"error": ...} that says what was wrong.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from worker import privacy, protocol

if TYPE_CHECKING:
    from worker.service import WorkerService

log = logging.getLogger("worker.routes")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "localhost.localdomain"})
MAX_BODY_KEY = web.AppKey("max_body", int)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout", float)
# Why the database file is no longer ours (removed, replaced), or None: WorkerService's.
DB_LOST_KEY: web.AppKey[Callable[[], str | None]] = web.AppKey("db_lost")
# Requests that write: their 2xx says the write is kept.
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A store that stays unavailable (a full disk, a long lock) fails every hook alike: one warning
# per cause per this many seconds, with how many were left unsaid, instead of one per request.
STORE_WARNING_EVERY_S = 10.0


class _Repeats:
    """Counts a warning's repeats between the times it is logged."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}  # cause -> (logged at, unsaid since)

    def due(self, cause: str) -> int | None:
        """The repeats unsaid since the last warning if one is due now, else None."""
        now = time.monotonic()
        at, unsaid = self._last.get(cause, (now - self.every, 0))
        if now - at < self.every:
            self._last[cause] = (at, unsaid + 1)
            return None
        if len(self._last) > 64:  # causes carry no request data, but stay bounded all the same
            self._last.clear()
        self._last[cause] = (now, 0)
        return unsaid


_store_warnings = _Repeats(STORE_WARNING_EVERY_S)


class BadRequest(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def json_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def host_is_loopback(host_header: str | None) -> bool:
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:port
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cross_site(headers: Any) -> str | None:
    """Why a request comes from a web page of another site, or None.

    A page anywhere can send a "simple" cross-origin POST (text/plain, no preflight) to
    127.0.0.1, and this API spawns processes and stops the worker. Browsers name the page's
    origin in `Origin` (on every POST) and say `Sec-Fetch-Site`; hooks (curl, Node's fetch,
    aiohttp) send neither, and a page served from loopback itself stays allowed."""
    origin = headers.get("Origin")
    if origin is not None:
        netloc = origin.split("://", 1)[1] if "://" in origin else ""
        if not host_is_loopback(netloc.split("/", 1)[0]):
            return f"Origin {origin!r} is not loopback"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site {site!r}: a request from another site"
    return None


# Answers up to this size go out as aiohttp writes them: into the transport's buffer, under
# its 64 KiB high-water mark with the headers, so without a wait (even for a client that reads
# nothing; the idle timeout ends that connection) and without a task per request for the deadline.
SMALL_ANSWER = 32 * 1024


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    await _send_within(request, response, request.app[BODY_TIMEOUT_KEY])
    return response


async def _send_within(request: web.Request, response: web.StreamResponse, timeout: float) -> None:
    """Write the answer here, within --client-timeout, not after the handler (aiohttp's own
    write has no time limit: it waits for ever for a client that does not read, the unsent body
    held in memory). Before, 60 connections that asked for /api/pending-queue (40,000 queued
    items) and read nothing took a worker from 43 to 505 MB, and held it after they closed."""
    if response.prepared or not isinstance(response, web.Response):
        return  # a stream its handler writes itself
    body = response.body
    if isinstance(body, (bytes, bytearray)) and len(body) <= SMALL_ANSWER:
        return  # it fits the socket's buffers: aiohttp's write never waits (the hooks' path)
    try:
        await asyncio.wait_for(_send(request, response), timeout)
    except asyncio.TimeoutError:
        log.info("%s %s: the client did not read its answer within %g s: connection closed",
                 request.method, request.path, timeout)  # fmt: skip
        if request.transport is not None:
            request.transport.abort()  # drops what it still buffers
    except ConnectionError:
        pass  # the client went away: aiohttp's own write after us says so and ends the request


async def _send(request: web.Request, response: web.Response) -> None:
    await response.prepare(request)
    await response.write_eof()


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 still sends its own Host.
    if not host_is_loopback(request.headers.get("Host")):
        return json_error(403, f"Host header {request.headers.get('Host')!r} is not loopback")
    refused = cross_site(request.headers)
    if refused is not None:
        return json_error(403, refused)
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        return json_error(413, f"body larger than {limit} bytes")
    try:
        response = await handler(request)
        if request.method in WRITES and response.status < 300:
            lost = request.app[DB_LOST_KEY]()
            if lost is not None:  # committed into a file nobody will open again: not kept
                return json_error(503, f"{lost}: the worker is stopping")
        return response
    except BadRequest as exc:
        response = json_error(exc.status, exc.error)
        if exc.status == 408:
            response.force_close()  # what is left of that body is not worth waiting for
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason or exc.text or "error")
    except sqlite3.OperationalError as exc:
        # Locked by another process, or the disk is full: nothing was committed, and the
        # same request may well succeed later. Say so rather than "internal error".
        unsaid = _store_warnings.due(str(exc))
        if unsaid is not None:
            log.warning(
                "store unavailable: %s %s: %s%s", request.method, request.path, exc,
                f" ({unsaid} more request(s) refused so since the last warning)" if unsaid else "",
            )  # fmt: skip
        response = json_error(503, f"store unavailable, retry later: {exc}")
        response.headers["Retry-After"] = "1"
        return response
    except ConnectionResetError:
        # The client went away mid-request (its body cut short): its business, not our error.
        log.info("client went away during %s %s", request.method, request.path)
        return json_error(400, "the connection was closed before the request was read")
    except Exception:
        log.exception("handler failed: %s %s", request.method, request.path)
        return json_error(500, "internal error")


async def body_of(request: web.Request) -> dict[str, Any]:
    timeout = request.app[BODY_TIMEOUT_KEY]
    try:
        raw = await asyncio.wait_for(request.read(), timeout)
    except asyncio.TimeoutError as exc:
        log.info("%s %s: the body did not arrive within %g s (408)", request.method,
                 request.path, timeout)  # fmt: skip
        raise BadRequest(408, f"the request body did not arrive within {timeout:g} s") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.app[MAX_BODY_KEY]
        raise BadRequest(413, f"body larger than {limit} bytes") from exc
    except RequestPayloadError as exc:  # e.g. Content-Encoding: gzip over bytes that are not
        log.info("%s %s: the body cannot be decoded (400)", request.method, request.path)
        raise BadRequest(400, f"the body cannot be decoded: {exc}") from exc
    if not raw:
        raise BadRequest(400, "empty body: expected a JSON object")
    try:
        body = protocol.loads_text(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        raise BadRequest(400, f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(400, f"expected a JSON object, got {type(body).__name__}")
    return body


def field_of(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool, default=None
) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(400, f"missing field {name!r}")
        return default
    value = body[name]
    # bool is an int in Python; JSON true is not a prompt number.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise BadRequest(400, f"field {name!r} has the wrong type ({type(value).__name__})")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _positive_int(raw: str) -> int | None:
    """ASCII digits (str.isdigit() also takes "²", which int() refuses) of a value in 1..10**18."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 18 and int(raw) > 0:
        return int(raw)
    return None


def session_id_of(request: web.Request) -> int:
    raw = request.match_info["session_id"]
    value = _positive_int(raw)
    if value is None:
        raise BadRequest(400, f"session id {raw!r} is not a positive integer")
    return value


MAX_SESSIONS_PER_QUERY = 500  # ?sessions= of /api/processes: one SQLite statement's worth


def session_ids_of(raw: str | None) -> list[int] | None:
    """`1,2,3` -> [1, 2, 3]; absent -> None (every session)."""
    if raw is None:
        return None
    parts = raw.split(",") if raw else []
    if len(parts) > MAX_SESSIONS_PER_QUERY:
        raise BadRequest(400, f"sessions: at most {MAX_SESSIONS_PER_QUERY} ids per request")
    ids = [_positive_int(part) for part in parts]
    for part, value in zip(parts, ids, strict=True):
        if value is None:
            raise BadRequest(400, f"sessions: {part!r} is not a positive integer")
    return [value for value in ids if value is not None]


# GET /api/processes without ?sessions= answers the newest this many rows unless ?limit= says
# otherwise: the registry keeps every observer ever spawned, and a long-lived worker's whole
# history (megabytes of JSON, built on the event loop) is seldom what a look wants.
DEFAULT_PROCESS_ROWS = 1000
MAX_PROCESS_ROWS = 100_000
PROCESS_STATES = ("live", "ending", "ended", "reaped", "exited")


def process_filters(query: Mapping[str, str]) -> tuple[list[str] | None, int | None]:
    """`?state=live,ending` and `?limit=N` of /api/processes -> (states, row limit)."""
    states = None
    raw = query.get("state")
    if raw is not None:
        states = [part for part in raw.split(",") if part]
        unknown = [part for part in states if part not in PROCESS_STATES]
        if unknown or not states:
            raise BadRequest(400, f"state: {raw!r}: expected some of {', '.join(PROCESS_STATES)}")
    if query.get("limit") is None:
        return states, None if "sessions" in query else DEFAULT_PROCESS_ROWS
    return states, row_limit(query)


def row_limit(query: Mapping[str, str]) -> int:
    """`?limit=N` (1..MAX_PROCESS_ROWS) of a listing, DEFAULT_PROCESS_ROWS when absent."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PROCESS_ROWS
    limit = _positive_int(raw)
    if limit is None or limit > MAX_PROCESS_ROWS:
        raise BadRequest(400, f"limit: {raw!r} is not a whole number in 1..{MAX_PROCESS_ROWS}")
    return limit


MAX_WAIT_MS = 60_000  # cap for GET /sessions/{id}/status?waitDrainedMs=


class _AnsweredBodyErrors(logging.Filter):
    """After a handler returns, aiohttp reads what is left of the request's body (its
    "lingering") and logs a body it cannot decode as an unhandled exception, traceback and all,
    though body_of has already answered it with a 400 (aiohttp issue #1710). It happens only
    when the handler finishes before the body's end was seen: a race, so a log that is clean in
    one run had a traceback in the next. Those records are dropped; body_of logs the request."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, RequestPayloadError)


_BODY_ERRORS = _AnsweredBodyErrors()


class Routes:
    def __init__(self, service: WorkerService) -> None:
        self.service = service
        self.store = service.store

    def install(self, app: web.Application) -> None:
        logging.getLogger("aiohttp.server").addFilter(_BODY_ERRORS)  # once: a set of filters
        r = app.router
        r.add_post("/api/sessions/init", self.sessions_init)
        r.add_post("/sessions/{session_id}/init", self.session_init)
        r.add_post("/api/sessions/observations", self.observations)
        r.add_post("/api/sessions/summarize", self.summarize)
        r.add_post("/sessions/{session_id}/complete", self.complete)
        r.add_delete("/sessions/{session_id}", self.delete)
        r.add_get("/sessions/{session_id}/status", self.status)
        r.add_get("/api/health", self.health)
        r.add_get("/api/readiness", self.readiness)
        r.add_get("/api/version", self.version)
        r.add_get("/api/pending-queue", self.pending_queue)
        r.add_get("/api/context/inject", self.context_inject)
        r.add_post("/api/admin/shutdown", self.admin_shutdown)
        r.add_get("/api/processes", self.processes)
        r.add_get("/api/stats", self.stats)

    async def _known_session(self, session_id: int) -> Any:
        row = await self.store.session(session_id)
        if row is None:
            raise BadRequest(404, f"unknown session {session_id}")
        return row

    async def _recording(self, body: dict[str, Any]) -> Any:
        """The session a PostToolUse or Stop is for, or None when 9.0.0 records nothing for
        it: no prompt of the session was kept (all private), or no session has that id. 9.0.0
        creates such an unknown session and answers skipped/private (no prompt of it is kept);
        this worker answers the same without creating it. Before, an unknown id was a 404."""
        content_id = field_of(body, "contentSessionId", str, required=True)
        row = await self.store.session_by_content_id(content_id)
        if row is None:
            log.debug("hook for unknown contentSessionId %r: skipped, as 9.0.0", content_id)
            return None
        return row if row["prompt_counter"] else None

    # -- hooks --------------------------------------------------------------------------------
    async def sessions_init(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        content_id = field_of(body, "contentSessionId", str, required=True)
        if not content_id.strip():
            raise BadRequest(400, "contentSessionId is empty")
        # Both required, as 9.0.0 (`Missing project`); an empty prompt is a private one.
        project = field_of(body, "project", str, required=True)
        prompt = field_of(body, "prompt", str, required=True)
        # As 9.0.0: the prompt is kept without its <private> and <claude-mem-context> parts; one
        # with nothing left is not kept, and the hook then starts no generator for it.
        cleaned = privacy.strip_tags(prompt)
        session_id, number = await self.store.init_session(
            content_id, project, cleaned, record=bool(cleaned)
        )
        if not cleaned:
            return web.json_response(
                {"sessionDbId": session_id, "promptNumber": number, "skipped": True,
                 "reason": "private"}
            )  # fmt: skip
        return web.json_response(
            {"sessionDbId": session_id, "promptNumber": number, "skipped": False}
        )

    async def session_init(self, request: web.Request) -> web.Response:
        session_id = session_id_of(request)
        body = await body_of(request)
        user_prompt = field_of(body, "userPrompt", str, required=False, default="")
        number = field_of(body, "promptNumber", int, required=False, default=None)
        row = await self._known_session(session_id)
        if number is None:
            number = int(row["prompt_counter"]) or 1
        await self.service.start_prompt(session_id, user_prompt, number)
        return web.json_response(
            {"status": "initialized", "sessionDbId": session_id, "port": self.service.port}
        )

    async def observations(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        tool_name = field_of(body, "tool_name", str, required=True)
        cwd = field_of(body, "cwd", str, required=False, default="")
        field_of(body, "contentSessionId", str, required=True)
        skipped = privacy.skip_reason(tool_name, body.get("tool_input"))
        if skipped is not None:
            return web.json_response({"status": "skipped", "reason": skipped})
        row = await self._recording(body)
        if row is None:
            return web.json_response({"status": "skipped", "reason": "private"})
        payload = {
            "tool_name": tool_name,
            "tool_input": privacy.strip_value(body.get("tool_input")),
            "tool_response": privacy.strip_value(body.get("tool_response")),
            "cwd": cwd,
        }
        await self.service.queue(int(row["id"]), "observation", payload)
        return web.json_response({"status": "queued"})

    async def summarize(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        last = field_of(body, "last_assistant_message", str, required=False, default="")
        row = await self._recording(body)
        if row is None:
            return web.json_response({"status": "skipped", "reason": "private"})
        await self.service.queue(int(row["id"]), "summarize", {"last_assistant_message": last})
        return web.json_response({"status": "queued"})

    async def complete(self, request: web.Request) -> web.Response:
        session_id = session_id_of(request)
        await self._known_session(session_id)
        await self.service.complete(session_id)
        return web.json_response({"success": True, "sessionDbId": session_id})

    async def delete(self, request: web.Request) -> web.Response:
        session_id = session_id_of(request)
        await self._known_session(session_id)
        await self.service.delete(session_id)
        return web.json_response({"status": "deleted", "sessionDbId": session_id})

    async def status(self, request: web.Request) -> web.Response:
        session_id = session_id_of(request)
        await self._known_session(session_id)
        # Our addition: ?waitDrainedMs=N answers once the queue is empty (or after N ms), so a
        # caller waiting for the drain needs one request instead of a polling loop.
        wait_ms = request.query.get("waitDrainedMs")
        if wait_ms is not None:
            if not (wait_ms.isascii() and wait_ms.isdigit()) or len(wait_ms) > 9:
                raise BadRequest(
                    400,
                    f"waitDrainedMs {wait_ms!r}: want milliseconds, 0-999999999 (capped at "
                    f"{MAX_WAIT_MS})",
                )
            await self.service.wait_drained(session_id, min(int(wait_ms), MAX_WAIT_MS) / 1000)
        row = await self._known_session(session_id)
        return web.json_response(
            {
                "status": row["status"],
                "sessionDbId": session_id,
                "contentSessionId": row["content_session_id"],
                "project": row["project"],
                "promptNumber": row["prompt_counter"],
                "memorySessionId": row["memory_session_id"],
                "queueLength": await self.store.pending_count(session_id),
                "observers": self.service.live_observer_pids(session_id),
            }
        )

    # -- service ------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "pid": self.service.pid,
                "mode": self.service.cfg.mode,
                "uptime": time.time() - self.service.started,
            }
        )

    async def readiness(self, request: web.Request) -> web.Response:
        if not self.service.ready:
            return web.json_response({"status": "initializing"}, status=503)
        return web.json_response({"status": "ready"})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "9.0.0", "implementation": "leakproof-reference"})

    async def pending_queue(self, request: web.Request) -> web.Response:
        # Our addition: the oldest 1000 messages unless ?limit=N (1-100,000) says otherwise,
        # `truncated` when more are queued; the totals count them all. Before, every queued
        # message: with 40,000 queued each request held the event loop ~0.45 s and built 7 MB,
        # and a client asking in a loop stalled every hook.
        limit = row_limit(request.query)
        rows = await self.store.pending_messages(limit + 1)
        truncated = len(rows) > limit
        total, sessions = await self.store.pending_totals()
        messages = [
            {
                "id": r["id"],
                "sessionDbId": r["session_id"],
                "type": r["kind"],
                "status": r["status"],
                "attempts": r["attempts"],
                "createdAt": r["created"],
            }
            for r in rows[:limit]
        ]
        return web.json_response(
            {
                "queue": {
                    "messages": messages,
                    "totalPending": total,
                    "sessionsWithPending": sessions,
                    "truncated": truncated,
                }
            }
        )

    async def context_inject(self, request: web.Request) -> web.Response:
        # As 9.0.0: `projects` (comma-separated; the SessionStart context hook's), else the
        # legacy single `project` (its user-message hook sends `?project=X&colors=true`), and
        # neither is a 400. Before, `project` was ignored and every project's observations came
        # back: the user-message hook showed another project's memory.
        raw = request.query.get("projects") or request.query.get("project")
        if not raw:
            raise BadRequest(400, "Project(s) parameter is required (projects= or project=)")
        projects = [p.strip() for p in raw.split(",") if p.strip()]
        if not projects:
            raise BadRequest(400, "At least one project is required")
        marks = ",".join("?" * len(projects))
        rows = self.store.db.execute(
            "SELECT o.text FROM observations o JOIN sessions s ON s.id=o.session_id "
            + f"WHERE s.project IN ({marks}) "  # noqa: S608 - placeholders only
            + "ORDER BY o.id DESC LIMIT 50",
            projects,
        )
        return web.Response(text="\n".join(r[0] for r in rows), content_type="text/plain")

    async def admin_shutdown(self, request: web.Request) -> web.Response:
        self.service.request_stop("admin")
        return web.json_response({"status": "shutting_down"})

    async def processes(self, request: web.Request) -> web.Response:
        # Our addition: ?sessions=1,2,3 answers only those sessions' rows (all of them),
        # ?state=live,ending only those states', ?limit=N the newest N (without ?sessions=,
        # 1000 unless said).
        states, limit = process_filters(request.query)
        sessions = session_ids_of(request.query.get("sessions"))
        rows = await self.store.processes(sessions, states, None if limit is None else limit + 1)
        truncated = limit is not None and len(rows) > limit
        if truncated:
            rows = rows[1:]  # the newest `limit`, oldest first
        return web.json_response(
            {
                "truncated": truncated,
                "processes": [
                    {
                        "pid": r["pid"],
                        "create_time": r["create_time"],
                        "session_db_id": r["session_id"],
                        "state": r["state"],
                        "started": r["started"],
                        "ended": r["ended"],
                        "run": r["run_id"],
                        "group": r["grp"],
                        "exit_code": r["exit_code"],
                        "how": r["how"],
                    }
                    for r in rows
                ],
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.service.stats())
