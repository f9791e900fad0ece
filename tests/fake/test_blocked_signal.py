"""A fake told to die by a signal that its parent left blocked (the mask survives exec).

kill(self, SIGTERM) then only marks the signal pending: the fake must still end, with the shell's
code for that death (128 + n), and its ledger must still say which signal it meant to die by.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_helpers import DEADLINE, SDK_ARGV

from fake_claude.ledger import read_ledger
from fake_claude.shim import write_shim

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal masks")

# Blocks the signals named in argv[1] (comma-separated), then execs argv[2:]: the mask is kept.
_BLOCKED_EXEC = (
    "import os, signal, sys;"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, 'SIG' + s) for s in "
    "sys.argv[1].split(',')});"
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def _initialize_then_prompt() -> bytes:
    init = {"type": "control_request", "request_id": "r1", "request": {"subtype": "initialize"}}
    user = {
        "type": "user",
        "message": {"role": "user", "content": "boom"},
        "parent_tool_use_id": None,
        "session_id": "",
    }
    return (json.dumps(init) + "\n" + json.dumps(user) + "\n").encode()


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_death_by_a_blocked_signal_still_ends_the_fake(tmp_path: Path, run_id: str, sig: str):
    ledger = tmp_path / "ledger.jsonl"
    shim = write_shim(
        tmp_path / "bin",
        {
            "scenario": f"crash:at=mid-turn,signal={sig}",
            "seed": "1",
            "ledger": str(ledger),
            "run_id": run_id,
        },
    )
    res = subprocess.run(
        [sys.executable, "-c", _BLOCKED_EXEC, sig, str(shim), *SDK_ARGV],
        input=_initialize_then_prompt(),
        capture_output=True,
        timeout=DEADLINE,
    )
    signum = int(getattr(signal, "SIG" + sig))
    assert res.returncode == 128 + signum, res.stderr.decode(errors="replace")
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out[0]["type"] == "control_response"
    assert not any(m.get("type") == "result" for m in out)  # died mid-turn
    events = read_ledger(ledger)
    assert [e["what"] for e in events if e["event"] == "misbehave"] == ["crash"]
    assert [e["code"] for e in events if e["event"] == "exit"] == [-signum]
