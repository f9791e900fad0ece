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
import sqlite3
from typing import Any

from workerkit import FakeRun, Worker, wait_until

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


def test_an_entirely_private_prompt_is_skipped(fake_run: FakeRun, workers) -> None:
    """A prompt that is all `<private>`: 9.0.0 answers `skipped: true, reason: private`, keeps
    and counts no prompt, and answers that prompt's PostToolUse and Stop `skipped` too; the hook
    then starts no generator. Before, the private text was stored, sent to a new observer, and
    its tool uses and summary were queued for it."""
    worker: Worker = workers(fake_run.shim("ok"))
    cid, cwd = "private-1", "/work/proj"
    init = user_prompt_submit(worker, cid, "proj", "<private>my secret plan</private>")
    sid = int(init["sessionDbId"])
    assert init == {"sessionDbId": sid, "promptNumber": 1, "skipped": True, "reason": "private"}
    tin, tout = read_tool(f"{cwd}/a.py", "print(1)\n")
    assert post_tool_use(worker, cid, cwd, "Read", tin, tout) == {
        "status": "skipped",
        "reason": "private",
    }
    assert stop(worker, cid, "Done.") == {"status": "skipped", "reason": "private"}
    stats = worker.stats()
    assert stats["observers"]["spawned"] == 0 and not stats["queue"], stats

    # The next prompt, partly private: kept without its private part, numbered 1 (9.0.0
    # numbers kept prompts), and its tool uses are recorded without their private parts.
    init = user_prompt_submit(worker, cid, "proj", "fix the parser <private>key=hunter2</private>")
    assert init == {"sessionDbId": sid, "promptNumber": 1, "skipped": False}
    tout = {
        "type": "text",
        "file": {"filePath": f"{cwd}/b.py", "content": "<private>tok-42</private>ok"},
    }
    assert post_tool_use(worker, cid, cwd, "Read", {"file_path": f"{cwd}/b.py"}, tout) == {
        "status": "queued"
    }
    assert stop(worker, cid, "Done.") == {"status": "queued"}
    drained(worker, sid)
    db = sqlite3.connect(f"file:{worker.data_dir / 'worker.db'}?mode=ro", uri=True)
    try:
        prompts = db.execute("SELECT prompt_number, text FROM prompts").fetchall()
        observations = [r[0] for r in db.execute("SELECT text FROM observations")]
    finally:
        db.close()
    assert prompts == [(1, "fix the parser")]
    assert len(observations) == 1 and "b.py" in observations[0], observations
    assert "tok-42" not in observations[0] and "my secret" not in observations[0]
    worker.stop()
    fake_run.assert_none_alive()


def test_tools_9_0_0_does_not_record_are_skipped(fake_run: FakeRun, workers) -> None:
    """9.0.0 answers `skipped` for the tools of its default CLAUDE_MEM_SKIP_TOOLS and for reads
    and writes of its own session-memory files, and queues nothing for them. Before, each was
    queued and sent to an observer (a TodoWrite per step of a real session)."""
    worker: Worker = workers(fake_run.shim("ok"))
    cid, cwd = "skips-1", "/work/proj"
    sid = int(user_prompt_submit(worker, cid, "proj", "plan it")["sessionDbId"])
    for tool in ("TodoWrite", "AskUserQuestion", "Skill", "SlashCommand", "ListMcpResourcesTool"):
        body = post_tool_use(worker, cid, cwd, tool, {"todos": []}, {"ok": True})
        assert body == {"status": "skipped", "reason": "tool_excluded"}, tool
    meta = {"file_path": "/home/u/.claude/session-memory/notes.md"}
    assert post_tool_use(worker, cid, cwd, "Write", meta, {"ok": True}) == {
        "status": "skipped",
        "reason": "session_memory_meta",
    }
    assert post_tool_use(worker, cid, cwd, "Bash", {"command": "ls"}, "a b") == {"status": "queued"}
    drained(worker, sid)
    wait_until(lambda: worker.stats()["observations"] == 1, what="the one observation stored")
    assert worker.stats()["queue"] == {"processed": 2}  # the prompt and the Bash use
    worker.stop()
    fake_run.assert_none_alive()


def test_hooks_of_a_session_the_worker_never_saw_are_skipped(fake_run: FakeRun, workers) -> None:
    """PostToolUse and Stop for a contentSessionId with no /api/sessions/init before (its
    UserPromptSubmit came while the worker was down, or before its database was new): 9.0.0
    answers them 200 skipped/private (it records nothing without a kept prompt). Before, 404,
    which save-hook.js and summary-hook.js log as failures."""
    worker: Worker = workers(fake_run.shim("ok"))
    tin, tout = read_tool("/work/proj/a.py", "print(1)\n")
    assert post_tool_use(worker, "never-seen", "/work/proj", "Read", tin, tout) == {
        "status": "skipped",
        "reason": "private",
    }
    assert stop(worker, "never-seen", "Done.") == {"status": "skipped", "reason": "private"}
    stats = worker.stats()
    assert stats["observers"]["spawned"] == 0 and not stats["queue"], stats
    # Nothing was created for it: a later prompt starts the session as usual.
    init = user_prompt_submit(worker, "never-seen", "proj", "now a prompt")
    assert init["promptNumber"] == 1 and init["skipped"] is False
    assert worker.status(int(init["sessionDbId"]))["project"] == "proj"
    worker.stop()
    fake_run.assert_none_alive()
