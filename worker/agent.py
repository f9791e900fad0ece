"""The observer: one `claude` child driven over stream-json (claude-mem's SDKAgent, by hand).

Fixed mode spawns it contained (worker/containment.py); both streams are drained concurrently;
every failure (early exit, EPIPE, garbage, a huge line, a timeout) becomes an ObserverError for
the session, never an exception that reaches the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine
from typing import Any, TypeVar

from worker import protocol
from worker.linereader import BoundedLines, EndOfStream, LineTooLong, drain_tail

log = logging.getLogger("worker.agent")


# After the root has exited, how long its last lines may take to come through the pipe.
EXIT_DRAIN_S = 0.5
# The StreamReader buffer of each pipe: asyncio's own default (BoundedLines caps lines).
STREAM_LIMIT = 64 * 1024


class ObserverError(Exception):
    """The observer cannot serve this session any more; end it and carry on."""


T = TypeVar("T")


async def _within(work: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    """Await `work` for at most `timeout` s; its failure, or the timeout, as an ObserverError
    that holds no frame of `work`.

    On Python < 3.12, wait_for leaves an exception from its task in a reference cycle (the
    task, the exception, its traceback's frames): all those frames hold (the reply read so
    far, the observer and its buffers) stayed until the collector's next full pass: ~5 MB per
    turn failed by a flood; a 12-session soak of such floods grew the worker from 43 to 320 MB
    (45 MB with this and the byte queue)."""
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError as exc:
        exc.__traceback__ = None
        raise ObserverError(f"no {what} within {timeout:g} s") from None
    except ObserverError as exc:
        exc.__traceback__ = None
        raise ObserverError(str(exc)) from None


class _ExitReporting(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol, plus a future resolved with the exit code at the root's reap.

    Process.wait() resolves only once every pipe has closed too, which a process the root left
    behind can hold off for ever; the reap is what ending the tree and the exit watch need.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=STREAM_LIMIT, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self._process: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: another event loop's transport (uvloop's) has get_returncode() without
        # subclassing asyncio's class; an isinstance check would fail every spawn there.
        self._process = transport  # type: ignore[assignment]
        super().connection_made(transport)

    def process_exited(self) -> None:
        code = self._process.get_returncode() if self._process is not None else None
        if code is not None and not self.exited.done():
            self.exited.set_result(code)
        super().process_exited()


class Observer:
    """A spawned `claude` observer and its two stream drains."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        exited: asyncio.Future[int],
        max_line: int,
        token: str,
    ) -> None:
        self.proc = proc
        self.exited = exited
        self.pid = proc.pid
        self.max_line = max_line
        self.token = token
        self.claude_session_id: str | None = None
        self.turns = 0
        assert proc.stdout is not None and proc.stderr is not None
        self._lines = BoundedLines(proc.stdout, max_line)
        # (size, line): at most 256 lines and, above all, at most max_line bytes of them
        # waiting to be read - an observer flooding while no turn reads (between turns) would
        # otherwise park 256 lines of up to max_line each in the worker (~0.8 GB measured).
        # They wait as bytes, parsed only when taken: parsed, small JSON objects weigh several
        # times their text.
        self._messages: asyncio.Queue[tuple[int, bytes | BaseException]] = asyncio.Queue(
            maxsize=256
        )
        self._queued_bytes = 0
        self._failure: BaseException | None = None  # what ended the stream, for every later read
        self._room = asyncio.Event()
        self._reader = asyncio.create_task(self._read_stdout(), name=f"stdout-{proc.pid}")
        self._stderr = asyncio.create_task(drain_tail(proc.stderr), name=f"stderr-{proc.pid}")
        # The root's exit, watched apart from stdout: a process it left behind may hold the
        # pipe open, so EOF on stdout alone can never come (see _next).
        self._exit = asyncio.create_task(self._watch_exit(), name=f"exit-{proc.pid}")

    @classmethod
    async def spawn(
        cls, argv: list[str], *, spawn_kwargs: dict[str, Any], max_line: int, token: str
    ) -> Observer:
        # create_subprocess_exec, with a protocol that also reports the reap (_ExitReporting).
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _ExitReporting(loop),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            **spawn_kwargs,
        )
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        return cls(proc, exited=protocol.exited, max_line=max_line, token=token)

    @staticmethod
    def new_token() -> str:
        return secrets.token_hex(8)

    # -- streams ------------------------------------------------------------------------------
    async def _read_stdout(self) -> None:
        try:
            while True:
                line = await self._lines.next_line()  # never blank (BoundedLines skips them)
                size = len(line)
                while self._queued_bytes and self._queued_bytes + size > self.max_line:
                    self._room.clear()
                    await self._room.wait()  # back-pressure: the pipe fills, the child blocks
                self._queued_bytes += size
                await self._messages.put((size, line))
        except (LineTooLong, EndOfStream) as exc:
            await self._messages.put((0, exc))
        except Exception as exc:  # a broken pipe or a reset: still just a session error
            await self._messages.put((0, exc))

    async def _next(self) -> dict[str, Any]:
        item = self._failure or await self._take()
        if isinstance(item, bytes):
            try:
                return protocol.parse_line(item)
            except protocol.ProtocolError as exc:
                item = exc  # the stream is broken (the reader goes on only to its bounds)
        if isinstance(item, BaseException):
            self._failure = item  # visible to later calls too
            if isinstance(item, EndOfStream):
                raise await self._gone("observer closed its stdout but is still running")
            raise ObserverError(str(item) or type(item).__name__)
        return item

    async def _watch_exit(self) -> None:
        """Once the root has exited, end its stream: its last lines get EXIT_DRAIN_S to come
        through; if the pipe is still open then (a process it left holds stdout: a background
        job, a daemon that kept its stdio), no EOF will come, and waiting for one would hold the
        session a whole turn timeout per queued item, so an error goes into the stream instead.

        Not proc.wait(): that also waits for every pipe to close (see _ExitReporting).
        """
        await asyncio.shield(self.exited)
        done, _ = await asyncio.wait({self._reader}, timeout=EXIT_DRAIN_S)
        if not done:
            error = ObserverError(
                f"observer exited (code {self.proc.returncode}); a process it left holds its "
                f"stdout open{self._stderr_hint()}"
            )
            await self._messages.put((0, error))

    async def _take(self) -> bytes | BaseException:
        """The next line, or what ended the stream (EOF, garbage, the root's exit with the
        pipe held open: see _watch_exit). One queue, one consumer: a cancelled read (a turn's
        timeout) leaves no getter behind that could eat a later message."""
        size, item = await self._messages.get()
        self._queued_bytes -= size
        self._room.set()
        return item

    async def _exit_code_soon(self) -> int | None:
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self.exited), 1.0)
        return self.proc.returncode

    def _stderr_hint(self) -> str:
        if self._stderr.done() and not self._stderr.cancelled() and not self._stderr.exception():
            tail = self._stderr.result().decode("utf-8", "replace").strip()
            if tail:
                return f": {tail[-200:]}"
        return ""

    async def send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise await self._gone("observer stdin is closed")
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise await self._gone(f"observer stdin broke ({type(exc).__name__}: EPIPE)") from exc

    async def _gone(self, what: str) -> ObserverError:
        """Why stdin or stdout was found closed. Mostly the observer's exit (asyncio closes
        stdin the moment the child's end goes, before the reap): said with its exit code and
        its last stderr words. Before, a write said only 'observer stdin is closed', so a claude
        that could not be executed (a bad interpreter line) failed most attempts so, the
        reason lost."""
        code = await self._exit_code_soon()
        if code is None:
            return ObserverError(f"{what}{self._stderr_hint()}")
        # Its stderr ends with it, unless a process it left holds the pipe (so a bound).
        await asyncio.wait({self._stderr}, timeout=EXIT_DRAIN_S)
        return ObserverError(f"observer exited early (code {code}){self._stderr_hint()}")

    # -- protocol -----------------------------------------------------------------------------
    async def initialize(self, timeout: float) -> None:
        request_id, request = protocol.initialize_request()

        async def wait_reply() -> None:
            # The send is timed too (as in turn()).
            await self.send(request)
            while True:
                message = await self._next()
                if message.get("type") == "control_response":
                    response = message.get("response")
                    # Of another shape than the CLI's: not the answer (it was an AttributeError
                    # that failed the session, logged with a traceback as the worker's bug).
                    if isinstance(response, dict) and response.get("request_id") == request_id:
                        if response.get("subtype") != "success":
                            raise ObserverError(f"initialize refused: {response.get('error')}")
                        return
                elif message.get("type") == "control_request":
                    await self.send(protocol.control_reply(message))

        await _within(wait_reply(), timeout, "initialize reply")

    async def turn(self, text: str, session_hint: str, timeout: float) -> str:
        """Send one user message, read to its result; return the reply text.

        The timeout covers the send: an observer that no longer reads its stdin blocks the
        write once the pipe is full (a prompt with a large tool output), and an untimed write
        would hold the session, and its observer, until the worker stops."""
        user = protocol.user_message(text, self.claude_session_id or session_hint)
        texts: list[str] = []
        size = [0]

        async def read_turn() -> str:
            await self.send(user)
            while True:
                message = await self._next()
                kind = message.get("type")
                if kind == "system" and message.get("subtype") == "init":
                    self._note_session_id(message)
                elif kind == "assistant":
                    texts.append(protocol.assistant_text(message))
                    size[0] += len(texts[-1])
                    if size[0] > self.max_line:
                        # An output flood: each line is bounded, so is the reply (memory), and
                        # the session fails now rather than at the turn timeout.
                        raise ObserverError(f"observer reply longer than {self.max_line} bytes")
                elif kind == "control_request":
                    await self.send(protocol.control_reply(message))
                elif kind == "result":
                    self._note_session_id(message)
                    if message.get("is_error"):
                        raise ObserverError(f"observer turn failed: {message.get('subtype')}")
                    result = message.get("result")
                    return result if isinstance(result, str) and result else "".join(texts)

        reply = await _within(read_turn(), timeout, "result")
        self.turns += 1
        return reply

    def _note_session_id(self, message: dict[str, Any]) -> None:
        self.claude_session_id = protocol.session_id_of(message) or self.claude_session_id

    # -- ending -------------------------------------------------------------------------------
    def close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(Exception):
                stdin.close()

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code if the root exits within `timeout`, else None."""
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        return None

    async def finish_streams(self) -> None:
        """After the tree is gone, stop the drains (a surviving grandchild may hold a pipe)."""
        if not self._exit.done():
            self._exit.cancel()
        for task in (self._reader, self._stderr):
            if not task.done():
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), 0.2)
            task.cancel()
        for task in (self._reader, self._stderr):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        transport = getattr(self.proc, "_transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
