"""kill -9 of the worker over and over, at chosen moments (each a condition, not a sleep): in its
start-up, while hooks are being answered, with a message in an observer's turn, just after a
reply was stored, and in its shutdown. Every hook answered 2xx across all of it is stored once
and processed once when a last worker has drained the data dir, and nothing is left running."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from workerkit import DEADLINE, REPO, FakeRun, Http, Worker, observation, wait_until

import proctree

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and SIGTERM")

SESSIONS = 2
# Each moment twice: 10 kills on one data dir.
MOMENTS = ["start-up", "hooks", "in-turn", "stored", "shutdown"] * 2
# Hooks each client sends a worker at most: the last worker drains them all in seconds.
PER_ROUND = 15


def _one(db_path: Path, sql: str, *args: object) -> int:
    """One number read by another connection (an operator's); 0 while there is no database."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
            row = db.execute(sql, args).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


class Sender(threading.Thread):
    """A hook client: observations, one after another, each named by a key in its body; the
    keys the worker answered 2xx are recorded."""

    def __init__(self, port: int, content_id: str, tag: str, acked: set[str]) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.content_id = content_id
        self.tag = tag
        self.acked = acked
        self.sent = 0
        self.stopping = False

    def run(self) -> None:
        http = Http(self.base)
        try:
            while not self.stopping and self.sent < PER_ROUND:
                key = f"{self.tag}-{self.sent}"
                body = observation(self.content_id, self.sent)
                body["tool_input"] = {"file_path": key}
                self.sent += 1
                try:
                    status, _ = http.request("POST", "/api/sessions/observations", json_body=body)
                except Exception:  # noqa: BLE001 - the worker was killed: this one is not acked
                    return
                if 200 <= status < 300:
                    self.acked.add(key)
        finally:
            with contextlib.suppress(Exception):
                http.close()


def test_acknowledged_hooks_survive_repeated_kills_at_every_moment(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    db_path = data / "worker.db"
    claude = fake_run.shim("slow:first=0.05,latency=0.05,jitter=0.02")
    flags = ["--grace", "0.5", "--reap-interval", "0.5", "--turn-timeout", "10"]
    # The sessions and their prompts, from a worker stopped cleanly.
    setup: Worker = workers(claude, data_dir=data, flags=flags)
    for s in range(SESSIONS):
        sid = setup.new_session(f"kl-{s}")
        setup.prompt(sid, f"kl-{s}", "go")
    setup.stop()
    assert setup.wait_exit() == 0
    acked: set[str] = set()
    guardians: list[proctree.ProcId] = []
    python, python_env = proctree.python_command()
    argv = [python, "-m", "worker", "serve", "--data-dir", str(data), "--claude", str(claude),
            *flags]  # fmt: skip
    log_path = tmp_path / "kill-loop.log"

    for n, moment in enumerate(MOMENTS):
        senders: list[Sender] = []
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **python_env},
            )  # fmt: skip
        try:
            if moment == "start-up":
                # Its run recorded, its start-up (re-queue, reaping) under way or just done.
                wait_until(
                    lambda p=proc: (
                        p.poll() is not None
                        or _one(db_path, "SELECT COUNT(*) FROM runs WHERE pid=?", p.pid)
                    ),
                    what="the worker's run recorded",
                )
                assert proc.poll() is None, log_path.read_text()[-3000:]
                continue
            info = wait_until(lambda p=proc: _info(data, p), what="worker.json")
            guardian = _guardian(info["port"])
            if guardian is not None:
                guardians.append(guardian)
            senders = [Sender(info["port"], f"kl-{s}", f"{n}.{s}", acked) for s in range(SESSIONS)]
            for sender in senders:
                sender.start()
            when = _moment(moment, db_path, senders, proc, log_path)
            wait_until(when, what=f"the moment {moment!r}")
        finally:
            proc.kill()
            proc.wait(timeout=DEADLINE)
        for sender in senders:
            sender.stopping = True
            sender.join(DEADLINE)

    assert len(acked) > len(MOMENTS), "too few hooks answered to prove anything"
    last: Worker = workers(claude, data_dir=data, flags=flags)
    wait_until(
        lambda: last.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] == 0,
        what="the queue drained by the last worker",
    )
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT m.payload, m.status, (SELECT COUNT(*) FROM observations o "
            "WHERE o.message_id=m.id) FROM pending_messages m WHERE m.kind='observation'"
        ).fetchall()
    stored: dict[str, list[tuple[str, int]]] = {}
    for payload, status, replies in rows:
        stored.setdefault(json.loads(payload)["tool_input"]["file_path"], []).append(
            (status, replies)
        )
    lost = sorted(acked - set(stored))
    assert not lost, f"{len(lost)} acknowledged hooks lost: {lost[:10]}"
    # Once each: one row per hook, processed, one stored reply (a turn a kill cut short is
    # sent to an observer again after the restart; its reply is stored once).
    wrong = {k: v for k, v in stored.items() if v != [("processed", 1)]}
    assert not wrong, list(wrong.items())[:10]
    last.stop()
    assert last.wait_exit() == 0
    fake_run.assert_none_alive()
    # Each killed worker's guardian ended its trees and exited.
    assert not proctree.wait_gone(guardians, DEADLINE), "a killed worker's guardian stayed"


def _info(data: Path, proc: subprocess.Popen[bytes]) -> dict | None:
    assert proc.poll() is None, f"the worker exited {proc.returncode}"
    try:
        info = json.loads((data / "worker.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == proc.pid else None


def _guardian(port: int) -> proctree.ProcId | None:
    http = Http(f"http://127.0.0.1:{port}")
    try:
        stats = http.ok("GET", "/api/stats")
    finally:
        http.close()
    g = stats["containment"]["guardian"]
    return proctree.recorded(int(g["pid"]), float(g["create_time"]), stats["boot"]) if g else None


def _moment(
    moment: str,
    db_path: Path,
    senders: list[Sender],
    proc: subprocess.Popen[bytes],
    log_path: Path,
) -> Callable[[], bool]:
    """The condition at which this round's worker is killed."""
    in_turn = "SELECT COUNT(*) FROM pending_messages WHERE status='processing'"
    if moment == "hooks":
        floor = 5 + 3 * len(senders)
        return lambda: sum(s.sent for s in senders) > floor
    if moment == "in-turn":
        return lambda: _one(db_path, in_turn) > 0
    if moment == "stored":
        before = _one(db_path, "SELECT COUNT(*) FROM observations")
        return lambda: _one(db_path, "SELECT COUNT(*) FROM observations") > before
    assert moment == "shutdown"
    stops = log_path.read_text(errors="replace").count("shutdown requested")
    state = {"asked": False}

    def stopping() -> bool:
        # With a message in a turn, SIGTERM; killed once the worker says it is stopping.
        if not state["asked"]:
            if _one(db_path, in_turn) == 0:
                return False
            proc.terminate()
            state["asked"] = True
        return log_path.read_text(errors="replace").count("shutdown requested") > stops

    return stopping
