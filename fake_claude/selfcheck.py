"""`fake-claude selfcheck`: start the fake in its main behaviours and watch each from outside.

A quick smoke test for a fresh machine (the full checks are the tests in tests/fake/). Every
process it starts carries a fresh run id and is ended by PID before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SDK_ARGV = ["--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]
DEADLINE = 60.0
INIT = {"type": "control_request", "request_id": "sc", "request": {"subtype": "initialize"}}
USER = {"type": "user", "message": {"role": "user", "content": "selfcheck prompt"}}


def _wait(pred: Callable[[], object], what: str) -> object:
    end = time.monotonic() + DEADLINE
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class _Run:
    def __init__(self, tmp: Path) -> None:
        from fake_claude.shim import write_shim

        self.tmp = tmp
        self.run_id = secrets.token_hex(6)
        self.write_shim = write_shim

    def start(self, scenario: str) -> tuple[subprocess.Popen, Path]:
        ledger = self.tmp / f"{scenario.replace(':', '_')}.jsonl"
        shim = self.write_shim(
            self.tmp / secrets.token_hex(3),
            {"scenario": scenario, "ledger": str(ledger), "run_id": self.run_id},
        )
        env = dict(os.environ, CLAUDE_CODE_SDK_READS_SESSION_STATE="1")
        proc = subprocess.Popen(
            [str(shim), *SDK_ARGV],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        return proc, ledger

    def processes(self) -> list:
        import psutil

        token = f"--fake-claude-run-id={self.run_id}"
        out = []
        for p in psutil.process_iter(["cmdline", "status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and token in (p.info["cmdline"] or []):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out

    def end_all(self) -> None:
        for p in self.processes():
            try:
                p.kill()
            except Exception:
                pass


def _talk(proc: subprocess.Popen, *msgs: dict) -> None:
    assert proc.stdin is not None
    for msg in msgs:
        proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()


def _read_until(proc: subprocess.Popen, kind: str) -> dict:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"stdout ended before a {kind} message")
        msg = json.loads(line)
        if msg.get("type") == kind:
            return msg


def _records(ledger: Path, event: str) -> list[dict]:
    from fake_claude.ledger import read_ledger

    return [r for r in read_ledger(ledger) if r["event"] == event] if ledger.exists() else []


def check_protocol(run: _Run) -> str:
    proc, ledger = run.start("ok")
    _talk(proc, INIT, USER)
    _read_until(proc, "control_response")
    result = _read_until(proc, "result")
    assert result["subtype"] == "success", result
    proc.stdin.close()  # type: ignore[union-attr]
    assert proc.wait(DEADLINE) == 0
    return f"turn answered, exit 0 on EOF, {len(_records(ledger, 'start'))} ledger start line"


def check_sigterm(run: _Run) -> str:
    proc, _ = run.start("ok")
    _talk(proc, INIT)
    _read_until(proc, "control_response")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(DEADLINE)
    assert code == 143, code
    return "exit 143"


def check_ignore_eof(run: _Run) -> str:
    proc, ledger = run.start("ignore-eof+ignore-sigterm")
    _talk(proc, INIT, USER)
    _read_until(proc, "result")
    proc.stdin.close()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    _wait(lambda: _records(ledger, "signal"), "the ignored SIGTERM in the ledger")
    assert proc.poll() is None, "should still be running"
    proc.kill()
    proc.wait(DEADLINE)
    return "outlived stdin EOF and SIGTERM (then killed by PID)"


def check_escape(run: _Run) -> str:
    import psutil

    proc, ledger = run.start("escape+grandchild:n=2")
    _talk(proc, INIT)
    _read_until(proc, "control_response")
    _wait(lambda: len(_records(ledger, "start")) >= 4, "4 processes in the ledger")
    starts = _records(ledger, "start")
    esc = [r for r in starts if r["role"] == "escapee"][0]
    kids = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    assert esc["pid"] not in kids, "the escapee should not be a descendant"
    found = {p.pid for p in run.processes()}
    assert esc["pid"] in found, "the census by run id should find the escapee"
    proc.kill()
    proc.wait(DEADLINE)
    return f"escapee pid {esc['pid']} outside the tree, found by run id; 2 grandchildren"


CHECKS = [
    ("protocol", check_protocol),
    ("sigterm", check_sigterm),
    ("ignore-eof+ignore-sigterm", check_ignore_eof),
    ("escape+grandchild", check_escape),
]


def selfcheck_main(argv: list[str]) -> int:
    # argparse for --help and usage errors only: before, any argument (--help too) ran the checks
    argparse.ArgumentParser(
        prog="python -m fake_claude selfcheck",
        description="Start the fake in its main behaviours (a turn, SIGTERM, ignored EOF and "
        "SIGTERM, an escapee and grandchildren) and check each from outside; every process it "
        "starts is ended. Exit 0 if all pass.",
    ).parse_args(argv)
    if sys.platform == "win32":
        CHECKS[:] = [c for c in CHECKS if c[0] == "protocol"]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="fake-claude-selfcheck-") as tmp:
        run = _Run(Path(tmp))
        try:
            for name, fn in CHECKS:
                try:
                    detail = fn(run)
                    print(f"PASS  {name:28} {detail}")
                except Exception as exc:  # report every check, then fail overall
                    failures += 1
                    print(f"FAIL  {name:28} {exc!r}")
        finally:
            run.end_all()
            _wait(lambda: not run.processes(), "the self-check's processes to end")
    print("selfcheck:", "ok" if not failures else f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":  # the same as `python -m fake_claude selfcheck`
    sys.exit(selfcheck_main(sys.argv[1:]))
