"""The HTTP API: claude-mem 9.0.0's routes and bodies, our additions, and every refusal."""

from __future__ import annotations

import asyncio
import json

from workerkit import FakeRun, Worker

from worker.store import Store


def test_session_round_trip_stores_replies(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    assert set(worker.info) == {
        "pid",
        "create_time",
        "boot",
        "host",
        "port",
        "mode",
        "started",
        "containment",
    }
    # The same containment as /api/stats says (a harness's report carries it).
    assert worker.info["containment"]["mark"] == worker.stats()["containment"]["mark"]
    assert worker.info["mode"] == "fixed" and worker.info["host"] == "127.0.0.1"
    api = worker.api()
    assert api.ok("GET", "/api/health")["status"] == "ok"
    assert api.ok("GET", "/api/readiness")["status"] == "ready"

    sid = worker.new_session("content-1")
    api.ok("POST", f"/sessions/{sid}/init", {"userPrompt": "hello", "promptNumber": 1})
    assert api.ok(
        "POST",
        "/api/sessions/observations",
        {
            "contentSessionId": "content-1",
            "tool_name": "Read",
            "tool_input": {"file_path": "/a.py"},
            "tool_response": "x = 1",
            "cwd": "/",
        },
    ) == {"status": "queued"}
    assert api.ok(
        "POST",
        "/api/sessions/summarize",
        {"contentSessionId": "content-1", "last_assistant_message": "done"},
    ) == {"status": "queued"}
    again = api.ok(
        "POST",
        "/api/sessions/init",
        {"contentSessionId": "content-1", "project": "proj", "prompt": "second"},
    )
    assert again["sessionDbId"] == sid and again["promptNumber"] == 2 and again["skipped"] is False

    api.ok("POST", f"/sessions/{sid}/complete")
    final = worker.wait_session_done(sid)
    assert final["status"] == "completed"

    stats = worker.stats()
    assert stats["observations"] == 1 and stats["summaries"] == 1
    assert stats["queue"] == {"processed": 3}
    assert stats["observers"]["spawned"] == 1 and stats["observers"]["live"] == 0
    # The replies are the fake's, derived from what we sent.
    assert "/a.py" in api.request("GET", "/api/context/inject?projects=proj")[1]

    rows = worker.processes()
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= {"pid", "create_time", "session_db_id", "state", "started", "ended"}
    assert row["session_db_id"] == sid and row["state"] == "ended" and row["ended"] is not None
    main = fake_run.started("main")
    assert [(p.pid, round(p.create_time, 1)) for p in main] == [
        (row["pid"], round(row["create_time"], 1))
    ]
    # The argv claude-mem 9.0.0 spawns (through the TS SDK 0.1.76), after the shim's run id.
    start = next(e for e in fake_run.ledger_lines() if e["event"] == "start")
    argv = start["argv"]
    tail = argv[argv.index(next(a for a in argv if a.startswith("--fake-claude-run-id"))) + 1 :]
    assert tail[:8] == [
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--model",
        "claude-sonnet-4-5",
        "--disallowedTools",
    ]
    assert tail[-4:] == ["--setting-sources", "", "--permission-mode", "default"]
    fake_run.assert_none_alive()


def test_refusals_are_json_4xx(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    api = worker.api()
    cases = [
        ("POST", "/api/sessions/init", b"{not json", None, 400, "malformed JSON"),
        ("POST", "/api/sessions/init", b"[1,2]", None, 400, "JSON object"),
        ("POST", "/api/sessions/init", b"", None, 400, "empty body"),
        (
            "POST",
            "/api/sessions/init",
            json.dumps({"contentSessionId": 7}).encode(),
            None,
            400,
            "wrong type",
        ),
        (
            "POST",
            "/api/sessions/init",
            json.dumps({"project": "p"}).encode(),
            None,
            400,
            "missing field",
        ),
        (
            "POST",
            "/api/sessions/init",
            json.dumps({"contentSessionId": "c", "prompt": "x"}).encode(),
            None,
            400,
            "missing field 'project'",
        ),
        (
            "POST",
            "/api/sessions/init",
            json.dumps({"contentSessionId": "c", "project": "p", "prompt": None}).encode(),
            None,
            400,
            "missing field 'prompt'",
        ),
        (
            "POST",
            "/api/sessions/observations",
            json.dumps({"tool_name": "Read"}).encode(),
            None,
            400,
            "missing field 'contentSessionId'",
        ),
        (
            "POST",
            "/sessions/424242/init",
            json.dumps({"userPrompt": "x"}).encode(),
            None,
            404,
            "unknown session",
        ),
        ("POST", "/sessions/abc/init", b"{}", None, 400, "not a positive integer"),
        ("GET", "/sessions/424242/status", None, None, 404, "unknown session"),
        ("POST", "/sessions/424242/complete", None, None, 404, "unknown session"),
        ("DELETE", "/sessions/424242", None, None, 404, "unknown session"),
        (
            "POST",
            "/api/sessions/init",
            b"{" + b" " * (1024 * 1024 + 10) + b"}",
            None,
            413,
            "larger than",
        ),
        # Nested deeper than the parser recurses: was a 500 (RecursionError).
        ("POST", "/api/sessions/init", b"[" * 100_000 + b"]" * 100_000, None, 400, "malformed"),
        ("GET", "/api/health", None, {"Host": "evil.example:37777"}, 403, "not loopback"),
        ("GET", "/api/health", None, {"Host": "127.0.0.1.nip.io"}, 403, "not loopback"),
        ("GET", "/no/such/route", None, None, 404, ""),
    ]
    for method, path, data, headers, want, words in cases:
        status, body = api.request(method, path, data=data, headers=headers)
        assert status == want, (method, path, status, body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body
        assert words in body["error"], (path, body)
    sid = worker.new_session("typed")
    status, body = api.request(
        "POST", f"/sessions/{sid}/init", json_body={"userPrompt": "x", "promptNumber": "one"}
    )
    assert status == 400 and "promptNumber" in body["error"]
    status, body = api.request(
        "POST", f"/sessions/{sid}/init", json_body={"userPrompt": "x", "promptNumber": True}
    )
    assert status == 400 and "promptNumber" in body["error"]
    # localhost with a port, and the IPv6 loopback, are fine.
    assert api.request("GET", "/api/health", headers={"Host": "localhost:1"})[0] == 200
    assert api.request("GET", "/api/health", headers={"Host": "[::1]:1"})[0] == 200
    assert worker.stats()["observers"]["spawned"] == 0
    fake_run.assert_none_alive()


def test_delete_aborts_at_once_and_pending_queue_lists(fake_run: FakeRun, workers) -> None:
    # A slow observer keeps items queued long enough to see them in /api/pending-queue.
    worker: Worker = workers(fake_run.shim("slow:first=0.5,latency=0.3"))
    sid = worker.new_session("slow-1")
    worker.prompt(sid, "slow-1", "work")
    for i in range(4):
        worker.observe("slow-1", i)
    queue = worker.api().ok("GET", "/api/pending-queue")["queue"]
    assert queue["totalPending"] >= 1 and queue["sessionsWithPending"] == 1
    assert {m["type"] for m in queue["messages"]} <= {"prompt", "observation"}
    worker.api().ok("DELETE", f"/sessions/{sid}")
    st = worker.status(sid)
    assert st["status"] == "deleted" and st["observers"] == [] and st["queueLength"] == 0
    fake_run.assert_none_alive()


def test_processes_by_session(fake_run: FakeRun, workers) -> None:
    """?sessions= answers only those sessions' rows (the soak asks for what it waits on, so its
    look-ups do not grow with the run); a bad list is a 400 that says why."""
    worker: Worker = workers(fake_run.shim("ok"))
    api = worker.api()
    sids = []
    for i in range(3):
        sid = worker.new_session(f"by-session-{i}")
        worker.prompt(sid, f"by-session-{i}", "hello")
        api.ok("POST", f"/sessions/{sid}/complete")
        worker.wait_session_done(sid)
        sids.append(sid)
    every = worker.processes()
    assert sorted(r["session_db_id"] for r in every) == sids
    one = api.ok("GET", f"/api/processes?sessions={sids[1]}")["processes"]
    assert one == [r for r in every if r["session_db_id"] == sids[1]]
    two = api.ok("GET", f"/api/processes?sessions={sids[2]},{sids[0]},424242")["processes"]
    assert two == [r for r in every if r["session_db_id"] in (sids[0], sids[2])]
    assert api.ok("GET", "/api/processes?sessions=")["processes"] == []
    for bad, words in [("1,x", "not a positive integer"), ("-1", "not a positive integer"),
                       (",".join(["1"] * 501), "at most 500")]:  # fmt: skip
        status, body = api.request("GET", f"/api/processes?sessions={bad}")
        assert status == 400 and words in body["error"], (bad, status, body)
    # ?state= and ?limit= (the newest rows, oldest first), and whether rows were left out.
    newest = api.ok("GET", "/api/processes?limit=2")
    assert newest == {"truncated": True, "processes": every[1:]}, newest
    assert api.ok("GET", "/api/processes?limit=3") == {"truncated": False, "processes": every}
    assert api.ok("GET", "/api/processes?state=ended,reaped")["processes"] == every
    assert api.ok("GET", "/api/processes?state=live")["processes"] == []
    some = api.ok("GET", f"/api/processes?sessions={sids[0]},{sids[2]}&state=ended&limit=1")
    assert some == {"truncated": True, "processes": every[2:]}, some
    for bad_query, words in [("state=gone", "expected some of"), ("state=", "expected some of"),
                             ("limit=0", "not a whole number"),
                             ("limit=100001", "not a whole number")]:  # fmt: skip
        status, body = api.request("GET", f"/api/processes?{bad_query}")
        assert status == 400 and words in body["error"], (bad_query, status, body)
    fake_run.assert_none_alive()


def test_the_whole_registry_is_not_the_default_answer(fake_run: FakeRun, workers, tmp_path) -> None:
    """A long-lived worker's registry holds every observer it ever spawned: unasked, the
    newest 1000 rows come back, saying that older ones were left out."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data / "worker.db")

    async def fill() -> None:
        run = store.begin_run(1, 1.0, "1:1.000", "fixed")
        for pid in range(1, 1006):
            row = await store.register_process(run, None, pid, 1.0, str(pid))
            await store.set_process_state(row, "ended", how="completed:stdin")
        await store.end_run(run)

    asyncio.run(fill())
    store.close()
    worker: Worker = workers(fake_run.shim("ok"), data_dir=data)
    body = worker.api().ok("GET", "/api/processes")
    assert body["truncated"] is True
    assert [r["pid"] for r in body["processes"]] == list(range(6, 1006))
    assert len(worker.api().ok("GET", "/api/processes?limit=5000")["processes"]) == 1005


def test_lone_surrogates_in_hook_bodies_are_stored_as_replacement_chars(
    fake_run: FakeRun, workers
) -> None:
    """JSON may escape half a surrogate pair (`\\ud83d` of a cut emoji); such a string cannot
    be encoded. Before: /api/sessions/init answered 500 with a traceback (SQLite), and a prompt
    holding one crashed the fake observer (its turn failed, nothing was stored)."""
    worker: Worker = workers(fake_run.shim("ok"))
    api = worker.api()
    headers = {"Content-Type": "application/json"}
    status, body = api.request(
        "POST",
        "/api/sessions/init",
        data=b'{"contentSessionId": "cut-\\ud83d", "project": "p\\udfff", "prompt": "hi"}',
        headers=headers,
    )
    assert status == 200, body
    sid = body["sessionDbId"]
    status, _ = api.request(
        "POST",
        f"/sessions/{sid}/init",
        data=b'{"userPrompt": "half an emoji: \\ud83d, whole: \\ud83d\\ude00", "promptNumber": 1}',
        headers=headers,
    )
    assert status == 200
    status, _ = api.request(
        "POST",
        "/api/sessions/observations",
        data=b'{"contentSessionId": "cut-\\ud83d", "tool_name": "Read", "tool_input": {},'
        b' "tool_response": "\\udc80 bytes", "cwd": "/"}',
        headers=headers,
    )
    assert status == 200
    assert api.ok("GET", f"/sessions/{sid}/status")["contentSessionId"] == "cut-\ufffd"
    api.ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    stats = worker.stats()
    assert stats["session_errors"] == 0 and stats["observations"] == 1, worker.log()
    assert "Traceback" not in worker.log()
    fake_run.assert_none_alive()
