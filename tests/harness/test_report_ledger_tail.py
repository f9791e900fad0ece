"""The harness's ledger tail on what a crashing or foreign writer leaves: a missing file, garbage
lines, JSON that is not an event, other runs' events, and a line cut mid-write."""

from __future__ import annotations

import json

from harness.ledger import LedgerTail


def test_tail_skips_garbage_and_foreign_runs_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "ledger.jsonl"
    tail = LedgerTail(path, run_id="aaaaaaaaaaaa")
    assert tail.read_new() == []  # not written yet
    mine = {"event": "start", "pid": 1, "run_id": "aaaaaaaaaaaa"}
    untagged = {"event": "exit", "pid": 1, "code": 0}
    with open(path, "wb") as fh:
        fh.write(b"not json at all\n\n[1, 2]\n")
        fh.write(json.dumps({"event": "start", "run_id": "bbbbbbbbbbbb"}).encode() + b"\n")
        fh.write(json.dumps(mine).encode() + b"\n")
        fh.write(json.dumps(untagged).encode()[:10])  # cut mid-line
    assert tail.read_new() == [mine]
    assert tail.bad_lines == 2
    assert tail.read_new() == []  # nothing new: the partial line still waits
    with open(path, "ab") as fh:
        fh.write(json.dumps(untagged).encode()[10:] + b"\n")
    assert tail.read_new() == [untagged]  # untagged lines are kept (older fakes)
