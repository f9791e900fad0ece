"""Requests shaped byte for byte as claude-mem 9.0.0's real hook scripts send them.

Captured by running 9.0.0's plugin/scripts (context-hook.js, user-message-hook.js, new-hook.js,
save-hook.js, summary-hook.js under bun 1.4.5, the stdin Claude Code gives them) against this
worker through a logging proxy: compact JSON (`JSON.stringify`) and Bun's fetch headers. The
answers are what 9.0.0's worker (src/services/worker/http/routes) gives for the same requests;
the hooks read `skipped` and `reason` of /api/sessions/init to decide whether to start a generator.
See docs/claude-mem.md, "Running claude-mem's own hook scripts".
"""

from __future__ import annotations

import json
from typing import Any

from workerkit import FakeRun, Worker

# What Bun's fetch sends with `headers: {'Content-Type': 'application/json'}`.
BUN_HEADERS = {
    "Content-Type": "application/json",
    "Connection": "keep-alive",
    "User-Agent": "Bun/1.4.5",
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate, br, zstd",
}
BUN_GET_HEADERS = {k: v for k, v in BUN_HEADERS.items() if k != "Content-Type"}


def hook_post(worker: Worker, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return worker.api().request("POST", path, data=raw, headers=BUN_HEADERS)


def hook_get(worker: Worker, path: str) -> tuple[int, Any]:
    return worker.api().request("GET", path, headers=BUN_GET_HEADERS)


def user_prompt_submit(worker: Worker, cid: str, project: str, prompt: str) -> dict[str, Any]:
    """new-hook.js: /api/sessions/init, then /sessions/N/init unless the prompt was private."""
    status, init = hook_post(
        worker,
        "/api/sessions/init",
        {"contentSessionId": cid, "project": project, "prompt": prompt},
    )
    assert status == 200, init
    if not (init.get("skipped") and init.get("reason") == "private"):
        cleaned = prompt[1:] if prompt.startswith("/") else prompt
        status, body = hook_post(
            worker,
            f"/sessions/{init['sessionDbId']}/init",
            {"userPrompt": cleaned, "promptNumber": init["promptNumber"]},
        )
        assert status == 200, body
    return init


def post_tool_use(worker: Worker, cid: str, cwd: str, tool: str, tin: Any, tout: Any) -> Any:
    """save-hook.js."""
    status, body = hook_post(
        worker,
        "/api/sessions/observations",
        {
            "contentSessionId": cid,
            "tool_name": tool,
            "tool_input": tin,
            "tool_response": tout,
            "cwd": cwd,
        },
    )
    assert status == 200, body
    return body


def stop(worker: Worker, cid: str, last: str) -> Any:
    """summary-hook.js."""
    status, body = hook_post(
        worker, "/api/sessions/summarize", {"contentSessionId": cid, "last_assistant_message": last}
    )
    assert status == 200, body
    return body


def drained(worker: Worker, sid: int) -> None:
    status, body = worker.api().request("GET", f"/sessions/{sid}/status?waitDrainedMs=20000")
    assert status == 200 and body["queueLength"] == 0, body


def read_tool(path: str, content: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"file_path": path},
        {"type": "text", "file": {"filePath": path, "content": content, "numLines": 1}},
    )


def test_user_message_hook_gets_its_own_projects_context(fake_run: FakeRun, workers) -> None:
    """user-message-hook.js asks `?project=X&colors=true` (the legacy single project); 9.0.0
    takes `projects`, else `project`, and neither is a 400. Before, `project` was ignored and
    every project's observations were the answer: a session in beta was shown alpha's memory."""
    worker: Worker = workers(fake_run.shim("ok"))
    sids = {}
    for project in ("alpha", "beta"):
        cid = f"ctx-{project}"
        cwd = f"/work/{project}"
        sids[project] = int(user_prompt_submit(worker, cid, project, "look")["sessionDbId"])
        post_tool_use(worker, cid, cwd, "Read", *read_tool(f"{cwd}/{project}_only.py", "x\n"))
        drained(worker, sids[project])

    for path in (
        "/api/context/inject?project=beta&colors=true",
        "/api/context/inject?projects=beta",
    ):
        status, text = hook_get(worker, path)
        assert status == 200, text
        assert "beta_only.py" in text and "alpha_only.py" not in text, (path, text)
    status, text = hook_get(worker, "/api/context/inject?projects=alpha,beta")
    assert "beta_only.py" in text and "alpha_only.py" in text
    status, body = hook_get(worker, "/api/context/inject")
    assert status == 400 and "project" in body["error"], body
    status, body = hook_get(worker, "/api/context/inject?projects=,")
    assert status == 400, body
    worker.stop()
    fake_run.assert_none_alive()
