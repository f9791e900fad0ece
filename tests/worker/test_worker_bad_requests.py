"""Property: whatever is thrown at the endpoints, the answer is a JSON 4xx or a 2xx (never a 5xx
or a dropped connection), the worker keeps serving, and afterwards nothing of the run is alive."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workerkit import FakeRun, Worker

CONTENT_IDS = ["alpha", "beta", "gamma"]  # few sessions: each may start one observer
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = [
    "contentSessionId",
    "project",
    "prompt",
    "userPrompt",
    "promptNumber",
    "tool_name",
    "tool_input",
    "tool_response",
    "cwd",
    "last_assistant_message",
]
field_values = json_values | st.sampled_from(CONTENT_IDS) | st.integers(0, 4)
shaped_bodies = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6)
raw_bodies = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
bodies = (
    shaped_bodies.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | raw_bodies
)
# "²" and "٣" are digits to str.isdigit(); int() refuses the first and reads the second as 3.
session_ids = st.sampled_from(
    ["1", "2", "3", "0", "-1", "abc", "99999999999999999999", "1.5", "²", "٣", "0001"]
)
routes = st.sampled_from(
    [
        ("POST", "/api/sessions/init"),
        ("POST", "/sessions/{}/init"),
        ("POST", "/api/sessions/observations"),
        ("POST", "/api/sessions/summarize"),
        ("POST", "/sessions/{}/complete"),
        ("DELETE", "/sessions/{}"),
        ("GET", "/sessions/{}/status"),
        ("GET", "/api/pending-queue"),
        ("GET", "/api/processes"),
    ]
)
hosts = st.sampled_from([None, None, None, "evil.example", "127.0.0.1.evil.example", "[::2]"])


@contextlib.contextmanager
def body_cut_short(
    worker: Worker, *, length: int, sent: bytes, extra_headers: str = ""
) -> Iterator[socket.socket]:
    """A POST /api/sessions/init announcing `length` body bytes of which only `sent` come;
    the connection stays open inside the block and is closed at its end."""
    url = urlsplit(worker.api().base_url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (
            "POST /api/sessions/init HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra_headers}\r\n"
        )
        sock.sendall(head.encode() + sent)
        yield sock


def test_bad_requests_never_break_the_worker(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(
        fake_run.shim("ok"),
        flags=["--grace", "0.5", "--reap-interval", "0.5", "--max-body", "4096"],
    )
    api = worker.api()
    statuses: dict[int, int] = {}

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(route=routes, sid=session_ids, body=bodies, host=hosts, big=st.booleans())
    def throw(route: tuple[str, str], sid: str, body: bytes, host: str | None, big: bool) -> None:
        method, path = route
        headers = {"Host": host} if host else None
        data = body + b" " * 5000 if big else body
        status, answer = api.request(
            method, path.format(sid), data=data if method != "GET" else None, headers=headers
        )
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, path, status, answer)
        if host is not None:
            assert status == 403
        if big and method != "GET" and host is None:
            assert status == 413, (path, status)
        if status >= 400:
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer

    throw()
    assert any(400 <= s < 500 for s in statuses), statuses
    # Still serving, with real work: a well-formed session still gets its observation stored.
    sid = worker.new_session("after-the-storm")
    # A known session (the examples above rarely hit one): "²" is a digit to str.isdigit().
    for wait in ("%C2%B2", "-1", "1e3"):
        status, answer = api.request("GET", f"/sessions/{sid}/status?waitDrainedMs={wait}")
        assert status == 400 and "waitDrainedMs" in answer["error"], (wait, status, answer)
    worker.prompt(sid, "after-the-storm", "still there?")
    worker.observe("after-the-storm", 1)
    api.ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    stats: dict[str, Any] = worker.stats()
    assert stats["observations"] >= 1
    worker.stop()
    assert worker.wait_exit() == 0
    fake_run.assert_none_alive(timeout=10)
    assert "Traceback" not in worker.log(), worker.log()


def test_a_client_that_goes_away_mid_body_is_no_error(fake_run: FakeRun, workers) -> None:
    """Content-Length 100, two bytes sent, then the connection closed: the worker logged an
    ERROR with a traceback (ConnectionResetError) for what is the client's business."""
    worker: Worker = workers(fake_run.shim("ok"))
    with body_cut_short(worker, length=100, sent=b"{}"):
        pass
    deadline = time.monotonic() + 30
    while "client went away during POST /api/sessions/init" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    assert worker.new_session("still-serving")
    worker.stop()
    assert worker.wait_exit() == 0
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()


def test_a_web_page_of_another_site_cannot_drive_or_stop_the_worker(
    fake_run: FakeRun, workers
) -> None:
    # A "simple" cross-origin POST (text/plain: no preflight) from any page the user opens
    # reached the API: it spawned a claude, and /api/admin/shutdown stopped the worker.
    worker: Worker = workers(fake_run.shim("ok"))
    api = worker.api()
    init = json.dumps({"contentSessionId": "csrf", "project": "p", "prompt": "hi"}).encode()
    page = {"Content-Type": "text/plain"}
    for extra in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": "http://127.0.0.1.evil.example"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host name counts too
    ):
        for path in ("/api/sessions/init", "/api/admin/shutdown"):
            status, answer = api.request("POST", path, data=init, headers={**page, **extra})
            assert status == 403 and isinstance(answer.get("error"), str), (extra, path, answer)
    assert worker.stats()["observers"]["spawned"] == 0
    assert worker.proc is not None and worker.proc.poll() is None, "a page stopped the worker"
    # A page served from loopback itself (a viewer on the worker's own port) is not refused.
    own = {"Origin": api.base_url, "Sec-Fetch-Site": "same-origin"}
    status, _ = api.request("POST", "/api/sessions/init", data=init, headers=own)
    assert status == 200


def test_a_body_that_cannot_be_decoded_is_a_400(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    status, answer = worker.api().request(
        "POST", "/api/sessions/init", data=b"not gzip at all", headers=headers
    )
    assert status == 400 and "body" in answer["error"], (status, answer)
    # The same body with its end still to come: aiohttp reads on after the 400 (its
    # "lingering") and met the decoding error again, logged with a traceback as unhandled.
    # The worker closes the connection after that read, so its end is the moment to look.
    with body_cut_short(
        worker, length=100, sent=b"not gzip at all", extra_headers="Content-Encoding: gzip\r\n"
    ) as sock:
        sock.settimeout(30)
        answer_bytes = b""
        while chunk := sock.recv(65536):
            answer_bytes += chunk
    assert answer_bytes.startswith(b"HTTP/1.1 400"), answer_bytes
    assert "Traceback" not in worker.log(), worker.log()
    assert "the body cannot be decoded (400)" in worker.log()


def test_a_body_nested_too_deeply_is_a_400_escape_or_not(fake_run: FakeRun, workers) -> None:
    """Valid JSON nested hundreds of levels deep: json.loads took it, then storing it
    (json.dumps) failed, a 500 with a traceback; with a \\u escape in it, mending surrogates
    failed sooner, a 400 saying "maximum recursion depth". Now the same 400 either way, from a
    depth no hook's body comes near; a body within it is stored."""
    worker: Worker = workers(fake_run.shim("ok"))
    worker.new_session("deep")

    def observe(depth: int, escape: str) -> tuple[int, Any]:
        tool_input = "[" * depth + json.dumps("x" + escape) + "]" * depth
        raw = (
            '{"contentSessionId": "deep", "tool_name": "Read", "cwd": "/tmp", '
            f'"tool_response": "ok", "tool_input": {tool_input}}}'
        ).encode()
        return worker.api().request("POST", "/api/sessions/observations", data=raw)

    for depth in (250, 600):
        for escape in ("", "\\u00e9"):
            status, answer = observe(depth, escape)
            assert status == 400 and "nested deeper than" in answer["error"], (status, answer)
    assert observe(150, "\\u00e9")[0] == 200
    assert "Traceback" not in worker.log(), worker.log()


def test_a_client_that_sends_its_body_slowly_does_not_hold_the_workers_exit(
    fake_run: FakeRun, workers
) -> None:
    # aiohttp waits 60 s by default for requests in flight at shutdown: one client sending its
    # body a byte a second held the worker's exit (and a second SIGTERM did not help) that long.
    worker: Worker = workers(fake_run.shim("ok"))
    with body_cut_short(worker, length=1000, sent=b"{"):
        worker.stop()
        assert worker.wait_exit(timeout=20) == 0


def _closed_by_server(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Read until the server closes the connection: (what it sent, seconds it took)."""
    start = time.monotonic()
    sock.settimeout(within)
    got = b""
    while chunk := sock.recv(4096):  # socket.timeout (a test failure) if it never closes
        got += chunk
    return got, time.monotonic() - start


def test_a_stalled_client_holds_no_connection_past_the_client_timeout(
    fake_run: FakeRun, workers
) -> None:
    """A connection that sends nothing, one that trickles its headers, and one whose body never
    all comes: each is closed once --client-timeout has passed (before, all three stayed open
    for as long as the client did), the last with a 408 that says why."""
    worker: Worker = workers(fake_run.shim("ok"), flags=["--client-timeout", "1"])
    url = urlsplit(worker.api().base_url)
    with contextlib.ExitStack() as stack:
        silent = stack.enter_context(socket.create_connection((url.hostname, url.port)))
        trickle = stack.enter_context(socket.create_connection((url.hostname, url.port)))
        trickle.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        cut = stack.enter_context(body_cut_short(worker, length=100, sent=b'{"contentSe'))
        got, took = _closed_by_server(silent, within=30)
        assert got == b"" and took >= 0.5, (got, took)
        # Its headers began, yet never ended: closed all the same.
        got, _ = _closed_by_server(trickle, within=30)
        assert b"200 OK" not in got, got
        got, _ = _closed_by_server(cut, within=30)
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert b"the request body did not arrive within 1 s" in got, got
    # A client that keeps to the timeout is served as ever.
    assert worker.api().ok("GET", "/api/health")
