"""--max-turns: a turn that needs more model round trips (a tool use, then the reply) ends with
an error_max_turns result, as the real CLI's; within the limit nothing changes."""

from __future__ import annotations

import pytest
from fake_helpers import SDK_ARGV


@pytest.mark.parametrize(("limit", "subtype"), [("1", "error_max_turns"), ("2", "success")])
def test_a_tool_turn_against_the_limit(spawn, limit: str, subtype: str) -> None:
    fake = spawn("ok:tool=Bash", args=[*SDK_ARGV, "--max-turns", limit])
    fake.initialize()
    msgs = fake.turn("list the files")
    result = msgs[-1]
    assert result["subtype"] == subtype and result["num_turns"] == 2
    assert result["is_error"] is (subtype != "success")
    # The tool ran either way; only the reply after it is cut.
    assert any(b.get("type") == "tool_result" for m in msgs if m["type"] == "user"
               for b in m["message"]["content"])  # fmt: skip
    if subtype != "success":
        assert result["terminal_reason"] == "max_turns" and "result" not in result
    fake.close_stdin()
    assert fake.wait_exit() == (0 if subtype == "success" else 1)


def test_a_turn_without_a_tool_fits_any_limit(spawn) -> None:
    fake = spawn(args=[*SDK_ARGV, "--max-turns", "1"])
    fake.initialize()
    assert fake.turn("hello")[-1]["subtype"] == "success"
    fake.close_stdin()
    assert fake.wait_exit() == 0
