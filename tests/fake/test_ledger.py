"""The ledger: atomic appends under many concurrent writers, and the identity it records."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import psutil
from fake_helpers import DEADLINE

from fake_claude.identity import create_time
from fake_claude.ledger import Ledger, read_ledger

WRITER = """
import sys
from fake_claude.ledger import Ledger
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
led = Ledger(path, "r" + who)
for i in range(n):
    # Sizes vary up to well past PIPE_BUF (4096), where pipes stop being atomic.
    led.write("turn", who=who, i=i, pad="x" * ((i * 997) % 9000))
"""


def test_concurrent_writers_never_interleave_or_lose_lines(tmp_path):
    path = tmp_path / "ledger.jsonl"
    writers, lines = 8, 300
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(lines)])
        for w in range(writers)
    ]
    try:
        for p in procs:
            assert p.wait(timeout=DEADLINE * 2) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    raw = path.read_bytes().split(b"\n")
    assert raw[-1] == b""
    records = [json.loads(line) for line in raw[:-1]]  # a torn line would not parse
    assert len(records) == writers * lines
    seen = Counter((r["who"], r["i"]) for r in records)
    assert set(seen.values()) == {1}
    assert {r["run_id"] for r in records} == {f"r{w}" for w in range(writers)}
    for r in records:
        assert {"event", "ts", "pid", "run_id"} <= r.keys()


def test_no_path_means_no_ledger(tmp_path):
    Ledger(None, "x").write("start")
    assert list(tmp_path.iterdir()) == []


def test_own_create_time_matches_psutil():
    assert abs(create_time() - psutil.Process().create_time()) <= 0.01


def test_fake_start_line_identity(spawn):
    fake = spawn()
    fake.initialize()
    start = fake.wait_record("start")
    proc = psutil.Process(fake.pid)
    assert start["pid"] == fake.pid
    assert start["role"] == "main"
    assert start["ppid"] == proc.ppid()
    assert abs(start["create_time"] - proc.create_time()) <= 0.01
    assert start["argv"] == proc.cmdline()
    assert start["run_id"] == fake.run_id
    assert start["scenario"] == "ok"
    fake.close_stdin()
    fake.wait_exit()
    events = [r["event"] for r in read_ledger(fake.ledger)]
    assert events == ["start", "stdin_eof", "exit"]
