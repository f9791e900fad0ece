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


def test_an_endless_line_is_skipped_not_held(tmp_path, monkeypatch):
    """A writer gone wrong (a line with no end) costs the harness at most MAX_LINE of memory;
    the events after that line's newline are read as usual."""
    import harness.ledger as ledger

    monkeypatch.setattr(ledger, "MAX_LINE", 64 * 1024)
    monkeypatch.setattr(ledger, "READ_CHUNK", 16 * 1024)
    path = tmp_path / "ledger.jsonl"
    tail = LedgerTail(path, run_id="aaaaaaaaaaaa")
    first = {"event": "start", "pid": 1, "run_id": "aaaaaaaaaaaa"}
    after = {"event": "exit", "pid": 1, "code": 0, "run_id": "aaaaaaaaaaaa"}
    with open(path, "wb") as fh:
        fh.write(json.dumps(first).encode() + b"\n" + b"x" * 50_000)
    assert tail.read_new() == [first]
    for _ in range(20):  # 1 MB more of the same line, read as it grows
        with open(path, "ab") as fh:
            fh.write(b"y" * 50_000)
        assert tail.read_new() == []
        assert len(tail._partial) <= ledger.MAX_LINE
    with open(path, "ab") as fh:
        fh.write(b"z\n" + json.dumps(after).encode() + b"\n")
    assert tail.read_new() == [after]
    assert tail.bad_lines == 1
    # A long line that ends within one read is skipped the same way.
    with open(path, "ab") as fh:
        fh.write(b"q" * 100_000 + b"\n" + json.dumps(first).encode() + b"\n")
    assert tail.read_new() == [first]
    assert tail.bad_lines == 2
