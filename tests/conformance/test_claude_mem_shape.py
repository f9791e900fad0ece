"""A claude-mem 9.0.0-shaped session through the real TS SDK: the child's command line is the one
in the #603 report, `--resume` keeps the session id, and the fake serves both SDK versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conformance_support import RUN_ID_FLAG, TS_NEW, TS_OLD, TS_SDKS, node_driver, read_ledger

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("node_sdks")]

MakeFake = Callable[..., tuple[Path, Path]]
DISALLOWED = (
    "Bash,Read,Write,Edit,Grep,Glob,WebFetch,WebSearch,Task,NotebookEdit,AskUserQuestion,TodoWrite"
)
# The leaked children's command line in the #603 report (ps prints the empty argument after
# --setting-sources as nothing).
ISSUE_603_ARGV = [
    "--output-format",
    "stream-json",
    "--verbose",
    "--input-format",
    "stream-json",
    "--model",
    "claude-sonnet-4-5",
    "--disallowedTools",
    DISALLOWED,
    "--setting-sources",
    "",
    "--permission-mode",
    "default",
]


def _argv_after_shim(start: dict) -> list[str]:
    argv = start["argv"]
    flag = next(i for i, a in enumerate(argv) if a.startswith(RUN_ID_FLAG))
    return argv[flag + 1 :]


def _session(make_fake: MakeFake, sdk: str, resume: str | None = None) -> tuple[dict, dict]:
    shim, ledger = make_fake("ok", name=f"fake-{resume or 'fresh'}")
    extra = {"resume": resume} if resume else {}
    res = node_driver(sdk, "claude-mem", shim, **extra).result()
    assert res["error"] is None and res.get("error_after_end") is None, res
    (start,) = [e for e in read_ledger(ledger) if e["event"] == "start"]
    return res, start


def test_sdk_0_1_76_spawns_the_issue_603_command_line(make_fake: MakeFake) -> None:
    res, start = _session(make_fake, TS_OLD)
    assert _argv_after_shim(start) == ISSUE_603_ARGV
    assert [m["type"] for m in res["messages"]] == ["system", "assistant", "result"]


def test_sdk_0_3_uses_flag_equals_value_forms(make_fake: MakeFake) -> None:
    _, start = _session(make_fake, TS_NEW)
    argv = _argv_after_shim(start)
    assert argv[:5] == ISSUE_603_ARGV[:5]
    assert "--model=claude-sonnet-4-5" in argv
    assert f"--disallowedTools={DISALLOWED}" in argv


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_resume_keeps_the_session_id(sdk: str, make_fake: MakeFake, tmp_path, monkeypatch) -> None:
    # Two fakes with ledgers of their own: one conversation store for both, as the real CLI's
    # ~/.claude is (the fake would rightly say the second has no such conversation).
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    first, _ = _session(make_fake, sdk)
    session_id = first["messages"][0]["session_id"]
    second, start = _session(make_fake, sdk, resume=session_id)
    argv = _argv_after_shim(start)
    resume_forms = (["--resume", session_id], [f"--resume={session_id}"])
    assert any(
        argv[i : i + len(form)] == form for form in resume_forms for i in range(len(argv))
    ), argv
    assert {m["session_id"] for m in second["messages"]} == {session_id}
