"""GET /sessions/{id}/status?waitDrainedMs=N: one request waits for the drain, no polling."""

from __future__ import annotations

import time

from workerkit import FakeRun, Worker


def test_status_wait_answers_once_the_queue_is_drained(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    api = worker.api()
    sid = worker.new_session("content-wait")
    api.ok("POST", f"/sessions/{sid}/init", {"userPrompt": "hello", "promptNumber": 1})
    worker.summarize("content-wait")
    # One request, a deadline far beyond a turn: it must come back drained, not timed out.
    status = api.ok("GET", f"/sessions/{sid}/status?waitDrainedMs=30000")
    assert status["queueLength"] == 0, status
    assert worker.stats()["queue"] == {"processed": 2}
    api.ok("POST", f"/sessions/{sid}/complete")
    assert worker.wait_session_done(sid)["status"] == "completed"


def test_status_wait_returns_at_its_deadline_and_validates(fake_run: FakeRun, workers) -> None:
    # A hung observer: the queue cannot drain, so the answer comes at the deadline.
    worker: Worker = workers(fake_run.shim("hang"))
    api = worker.api()
    sid = worker.new_session("content-hang")
    api.ok("POST", f"/sessions/{sid}/init", {"userPrompt": "hello", "promptNumber": 1})
    t0 = time.monotonic()
    status = api.ok("GET", f"/sessions/{sid}/status?waitDrainedMs=300")
    waited = time.monotonic() - t0
    assert status["queueLength"] >= 1, status
    assert 0.25 <= waited < 10, waited
    assert api.ok("GET", f"/sessions/{sid}/status?waitDrainedMs=0")["sessionDbId"] == sid
    for bad in ("-1", "99999999999"):  # the second was refused as "not a non-negative integer"
        code, body = api.request("GET", f"/sessions/{sid}/status?waitDrainedMs={bad}")
        assert code == 400 and "want milliseconds, 0-999999999" in body["error"], body
    code, _ = api.request("GET", "/sessions/999999/status?waitDrainedMs=10")
    assert code == 404
    api.ok("DELETE", f"/sessions/{sid}")
