"""The fake keeps its conversations as the real CLI does, so that --resume, --continue and
--session-id succeed or fail as they would with the real one (2.1.x's messages, exit 1): an
agent daemon that resumes a conversation that is gone (claude-mem's stale memory session id
after a restart) sees its observer exit 1 at once, as it would in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_helpers import DEADLINE, SDK_ARGV, wait_for

from fake_claude.transcripts import project_key

UNKNOWN = "11111111-2222-4333-8444-555555555555"


def _turns(spawn, *texts: str, args: list[str] | None = None) -> tuple[str, object]:
    fake = spawn(args=[*SDK_ARGV, *(args or [])])
    fake.initialize()
    ids = set()
    for text in texts:
        ids |= {m["session_id"] for m in fake.turn(text)}
    fake.close_stdin()
    assert fake.wait_exit() == 0
    (sid,) = ids
    return sid, fake


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _store(fake) -> Path:
    return Path(str(fake.ledger) + ".claude") / "projects"


def test_a_conversation_is_kept_and_resumed_in_the_same_file(spawn):
    sid, first = _turns(spawn, "one")
    path = next(_store(first).glob(f"*/{sid}.jsonl"))
    again, _ = _turns(spawn, "two", args=["--resume", sid])
    assert again == sid
    lines = _lines(path)
    assert [(x["type"], x["sessionId"]) for x in lines] == [
        ("user", sid), ("assistant", sid), ("user", sid), ("assistant", sid),
    ]  # fmt: skip
    assert lines[0]["message"]["content"] == "one" and lines[2]["message"]["content"] == "two"
    # A chain, as the real CLI's: each line names the one before it.
    assert [x["parentUuid"] for x in lines[1:]] == [x["uuid"] for x in lines[:-1]]
    assert lines[0]["parentUuid"] is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--resume", UNKNOWN], f"No conversation found with session ID: {UNKNOWN}"),
        (["--resume", "not-a-session"], 'Provided value "not-a-session" is not a UUID'),
        (["--continue"], "No conversation found to continue"),
        (["--session-id", "nope"], "Error: Invalid session ID. Must be a valid UUID."),
    ],
)
def test_a_conversation_that_cannot_be_had_exits_1_before_any_turn(spawn, args, says):
    fake = spawn(args=[*SDK_ARGV, *args])
    assert fake.wait_exit() == 1
    wait_for(lambda: says in fake.stderr.decode(), "the real CLI's words on stderr")
    assert not fake.records("turn")
    assert fake.records("start") and fake.records("exit")[-1]["code"] == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--resume", UNKNOWN], "resume_target_not_found"),
        (["--continue"], None),  # no known cause: stderr alone, as the real CLI
    ],
)
def test_a_host_that_asks_gets_a_startup_failure_result(spawn, monkeypatch, args, reason):
    # 2.1.334: with CLAUDE_CODE_STARTUP_FAILURE_RESULTS set, a known startup failure also ends
    # with a zeroed error result naming its cause, on stdout before the exit.
    monkeypatch.setenv("CLAUDE_CODE_STARTUP_FAILURE_RESULTS", "1")
    fake = spawn(args=[*SDK_ARGV, *args])
    assert fake.wait_exit() == 1
    lines = []
    while (line := fake.lines.get(timeout=DEADLINE)) is not None:  # None: stdout ended
        lines.append(json.loads(line))
    if reason is None:
        assert lines == []
        return
    (result,) = lines
    assert result["type"] == "result" and result["subtype"] == "error_during_execution"
    assert result["startup_failure_reason"] == reason and result["is_error"] is True
    assert result["errors"] == [f"No conversation found with session ID: {UNKNOWN}"]
    assert result["num_turns"] == 0 and result["total_cost_usd"] == 0


def test_a_session_id_in_use_is_refused_unless_it_names_a_fork(spawn):
    sid, _ = _turns(spawn, "one")
    fake = spawn(args=[*SDK_ARGV, "--session-id", sid])
    assert fake.wait_exit() == 1
    wait_for(lambda: f"Session ID {sid} is already in use" in fake.stderr.decode(), "refusal")
    # --resume X --fork-session --session-id X: the one case the real CLI lets through.
    again, _ = _turns(spawn, "two", args=["--resume", sid, "--fork-session", "--session-id", sid])
    assert again == sid


def test_continue_goes_on_with_the_projects_latest_conversation(spawn):
    _turns(spawn, "older")
    newer, fake = _turns(spawn, "newer")
    # The newest by time written: make the older one clearly older whatever the clock's grain.
    for path in _store(fake).glob("*/*.jsonl"):
        if path.stem != newer:
            os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))
    went_on, _ = _turns(spawn, "more", args=["--continue"])
    assert went_on == newer


def test_a_fork_starts_as_a_copy_and_leaves_the_original_alone(spawn):
    sid, fake = _turns(spawn, "one")
    original = next(_store(fake).glob(f"*/{sid}.jsonl"))
    before = original.read_text()
    fork, _ = _turns(spawn, "two", args=["--resume", sid, "--fork-session"])
    assert fork != sid
    assert original.read_text() == before
    lines = _lines(original.with_name(f"{fork}.jsonl"))
    assert [x["message"]["content"] for x in lines if x["type"] == "user"] == ["one", "two"]


def test_a_session_mirror_gets_every_line_under_the_clis_own_path(spawn, tmp_path, monkeypatch):
    """--session-mirror (the Python SDK's session_store): each line written goes out as a
    transcript_mirror frame, a fork's copied history first, named by the file the real CLI
    would write (~/.claude/projects here), by which the SDK keys the store's entries."""
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    sid, _ = _turns(spawn, "one")
    fake = spawn(args=[*SDK_ARGV, "--session-mirror", "--resume", sid, "--fork-session"])
    fake.initialize()
    said = fake.turn("two")
    fake.close_stdin()
    assert fake.wait_exit() == 0
    frames = [m for m in said if m["type"] == "transcript_mirror"]
    (fork,) = {m["session_id"] for m in said if "session_id" in m}
    kept = next(_store(fake).glob(f"*/{fork}.jsonl"))
    home = tmp_path / "home" / ".claude" / "projects" / kept.parent.name / kept.name
    assert {m["filePath"] for m in frames} == {str(home)}
    entries = [e for m in frames for e in m["entries"]]
    assert entries == _lines(kept)  # all of it, as written
    assert [e["message"]["content"] for e in entries if e["type"] == "user"] == ["one", "two"]
    assert said.index(frames[-1]) < len(said) - 1  # before the result, which the SDK flushes at
    assert not (tmp_path / "home").exists()  # named, never written


def test_a_resume_goes_on_from_the_last_message_not_a_title_line(spawn):
    # The SDKs' fork_session and rename_session append a `custom-title` line, the fork's with a
    # uuid of its own. A resume chained its prompt to that line, which is no message: the SDKs'
    # get_session_messages, walking back from the newest reply, lost all that came before.
    sid, fake = _turns(spawn, "one")
    path = next(_store(fake).glob(f"*/{sid}.jsonl"))
    reply = _lines(path)[-1]["uuid"]
    title = {"type": "custom-title", "customTitle": "t (fork)", "sessionId": sid,
             "uuid": "99999999-8888-4777-8666-555555555555"}  # fmt: skip
    with path.open("a") as f:
        f.write(json.dumps(title) + "\n")
    _turns(spawn, "two", args=["--resume", sid])
    (prompt,) = [x for x in _lines(path) if x.get("message", {}).get("content") == "two"]
    assert prompt["parentUuid"] == reply


def test_hooks_get_the_transcripts_path(spawn):
    fake = spawn(args=SDK_ARGV)
    hooks = {"UserPromptSubmit": [{"matcher": None, "hookCallbackIds": ["h1"]}]}
    fake.initialize(hooks=hooks)
    fake.user("hi")
    ask = fake.read_until(lambda m: m.get("type") == "control_request", "hook callback")
    path = Path(ask["request"]["input"]["transcript_path"])
    assert path.parent.name == project_key(os.getcwd()) and path.suffix == ".jsonl"
    answer = {"subtype": "success", "request_id": ask["request_id"], "response": {}}
    fake.send({"type": "control_response", "response": answer})
    result = fake.read_until(lambda m: m.get("type") == "result", "result")
    assert path.stem == result["session_id"] and path.is_file()
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_no_session_persistence_writes_nothing_and_config_dir_is_honoured(
    spawn, tmp_path, monkeypatch
):
    _, fake = _turns(spawn, "one", args=["--no-session-persistence"])
    assert not list(_store(fake).glob("*/*.jsonl"))
    config = tmp_path / "config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))  # the fake inherits our environment
    sid, _ = _turns(spawn, "one")
    assert [p.stem for p in config.glob("projects/*/*.jsonl")] == [sid]


def test_a_long_project_path_gets_the_clis_hashed_folder_name():
    assert project_key("/home/u/my project") == "-home-u-my-project"
    long = "/x" * 150
    key = project_key(long)
    assert len(key) > 200 and key.startswith("-x" * 100 + "-")
    assert key != project_key("/y" + long[2:])  # the hash tells apart what the cut does not


def test_without_a_ledger_the_folder_is_the_users_whatever_user_variables_say(tmp_path):
    """No ledger, no CLAUDE_CONFIG_DIR: the fake keeps conversations in the temporary folder.
    It named that folder after $USER/$LOGNAME, so an environment passed on from another user
    (`su -p`, a container's USER=root for uid 1001) put them in that user's folder, and a run
    with other variables did not find them: `--resume` failed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_CLAUDE_", "CLAUDE_"))}
    base["TMPDIR"] = str(tmp_path)  # the fake's temporary folder, this test's alone

    def ask(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**base, "USER": user, "LOGNAME": user, "LNAME": user, "USERNAME": user}
        argv = [sys.executable, "-m", "fake_claude", "-p", *args, "--output-format", "json"]
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEADLINE
        )

    first = ask("someone-else", "one")
    assert first.returncode == 0, first.stderr
    sid = json.loads(first.stdout)["session_id"]
    again = ask("yet-another", "two", "--resume", sid)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["session_id"] == sid
    (kept,) = tmp_path.glob(f"fake-claude-*/projects/*/{sid}.jsonl")
    assert "someone-else" not in str(kept)
