"""How the real TS Agent SDK sees the fake's faults (the versions differ; see
docs/protocol-notes.md). Each case pins what the SDK yields and how the child ended."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conformance_support import TS_OLD, TS_SDKS, node_driver, read_ledger

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("node_sdks")]

MakeFake = Callable[..., tuple[Path, Path]]


def _outcome(make_fake: MakeFake, sdk: str, scenario: str) -> tuple[dict, list[dict]]:
    shim, ledger = make_fake(scenario)
    res = node_driver(sdk, "plain", shim).result()
    return res, read_ledger(ledger)


def _exit_codes(ledger: list[dict]) -> list[int]:
    return [e["code"] for e in ledger if e["event"] == "exit"]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_non_json_stdout(sdk: str, make_fake: MakeFake) -> None:
    res, ledger = _outcome(make_fake, sdk, "garbage:at=mid-turn")
    assert any(e["event"] == "misbehave" and e["what"] == "garbage" for e in ledger)
    if sdk == TS_OLD:
        # 0.1.76 JSON.parses every line: the query throws, and close() ends stdin and SIGTERMs
        # the child in the same tick (the signal nearly always lands first).
        assert res["error"] and "JSON" in res["error"], res["error"]
        assert not [m for m in res["messages"] if m["type"] == "result"]
        assert _exit_codes(ledger) in ([143], [0])
    else:
        # 0.3.x skips lines it cannot parse and finishes the turn.
        assert res["error"] is None, res["error"]
        assert [m["subtype"] for m in res["messages"] if m["type"] == "result"] == ["success"]
        assert _exit_codes(ledger) == [0]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_exit_before_any_reply(sdk: str, make_fake: MakeFake) -> None:
    res, ledger = _outcome(make_fake, sdk, "exit-early")
    assert res["error"] == "Claude Code process exited with code 1"
    assert res["messages"] == []
    assert _exit_codes(ledger) == [1]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_crash_after_result(sdk: str, make_fake: MakeFake) -> None:
    res, ledger = _outcome(make_fake, sdk, "crash:code=2,at=after-result")
    # Everything before the crash is yielded, then the exit status is thrown.
    assert [m["subtype"] for m in res["messages"] if m["type"] == "result"] == ["success"]
    assert res["error"] == "Claude Code process exited with code 2"
    assert _exit_codes(ledger) == [2]


@pytest.mark.parametrize("sdk", TS_SDKS)
def test_huge_line(sdk: str, make_fake: MakeFake) -> None:
    res, ledger = _outcome(make_fake, sdk, "huge-line:mb=8")
    assert res["error"] is None, res["error"]
    assistants = [m for m in res["messages"] if m["type"] == "assistant"]
    # The 8 MiB assistant message arrives whole (the driver reports its text, so check size).
    sizes = sorted(len(b.get("text", "")) for m in assistants for b in m["content"])
    assert sizes[-1] >= 8 * 1024 * 1024
    assert _exit_codes(ledger) == [0]
