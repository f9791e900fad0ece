"""The worker's start-up errors, as a real `python -m worker serve`: bad flags, and a second
worker on a data dir a live worker holds (it must refuse, not share the database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from workerkit import REPO, FakeRun, Worker, observation, wait_until, write_locked

_RUN = {"cwd": REPO, "capture_output": True, "text": True, "timeout": 120}


def test_bad_flags_exit_2_and_name_the_flag(tmp_path):
    bad_mode = subprocess.run(
        [sys.executable, "-m", "worker", "serve", "--mode", "sloppy", "--data-dir", str(tmp_path)],
        **_RUN,
    )
    assert bad_mode.returncode == 2
    assert "--mode" in bad_mode.stderr and "sloppy" in bad_mode.stderr
    no_command = subprocess.run([sys.executable, "-m", "worker"], **_RUN)
    assert no_command.returncode == 2 and "serve" in no_command.stderr
    bad_number = subprocess.run(
        [sys.executable, "-m", "worker", "serve", "--grace", "soon", "--data-dir", str(tmp_path)],
        **_RUN,
    )
    assert bad_number.returncode == 2 and "--grace" in bad_number.stderr
    assert not (tmp_path / "worker.json").exists()  # refused before serving anything


@pytest.mark.parametrize(
    "flags",
    [
        ["--host", "0.0.0.0"],  # the API spawns processes: never beyond loopback
        ["--port", "70000"],
        ["--grace", "-1"],
        ["--reap-interval", "0"],  # was a busy loop
        ["--turn-timeout", "nan"],
        ["--max-attempts", "0"],
        ["--max-line", "10"],
        ["--log-level", "chatty"],  # was a traceback from logging
        ["--db-busy-timeout", "0"],
        ["--lifeline-fd", "987"],  # not open
        ["--lifeline-fd", "0"],  # open, but stdin (/dev/null here): not a pipe
    ],
)
def test_settings_that_cannot_run_a_worker_are_refused(tmp_path, flags):
    run = subprocess.run(
        [sys.executable, "-m", "worker", "serve", *flags, "--data-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        **_RUN,
    )
    assert run.returncode == 2, run.stderr
    assert flags[0] in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "worker.json").exists()


def test_loopback_hosts_are_accepted():
    from worker.config import WorkerConfig

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert WorkerConfig(host=host).problem() is None


def test_second_worker_on_a_held_data_dir_refuses(fake_run: FakeRun, workers, tmp_path):
    first: Worker = workers(fake_run.shim("ok"))
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "serve",
            "--data-dir",
            str(first.data_dir),
            "--claude",
            str(first.claude),
        ],
        **_RUN,
    )
    assert second.returncode == 2, second.stderr
    assert f"in use by worker pid {first.pid}" in second.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="btime: Linux's clock")
def test_a_worker_started_after_a_clock_step_still_sees_the_data_dir_held(
    fake_run: FakeRun, workers
):
    """The first worker read the boot time 7 s before the wall clock was set ahead: the create
    time it stored for itself is 7 s earlier than the one the second computes for it, which
    took it for a dead worker and served the same data dir (two workers reaping each other)."""
    import proctree
    from bootclock import ENV

    boot_id, btime = str(proctree.boot_stamp()).split()
    before_the_step = {ENV: f"{boot_id} {float(btime) - 7.0!r}"}
    first: Worker = workers(fake_run.shim("ok"), env=before_the_step)
    argv = [sys.executable, "-m", "worker", "serve", "--data-dir", str(first.data_dir),
            "--claude", str(first.claude)]  # fmt: skip
    second = subprocess.run(argv, **_RUN)
    assert second.returncode == 2, second.stderr
    assert f"in use by worker pid {first.pid}" in second.stderr
    # The first one is untouched and still serves real work.
    assert first.proc is not None and first.proc.poll() is None
    sid = first.new_session("still-mine")
    first.api().ok("POST", f"/sessions/{sid}/complete")
    first.wait_session_done(sid)
    assert sum(first.stats()["sessions"].values()) == 1
    first.stop()
    assert first.wait_exit() == 0
    fake_run.assert_none_alive(timeout=30)


@pytest.mark.parametrize(
    ("claude", "says"),
    [
        (str(REPO / "no" / "such" / "claude"), "not an executable file"),
        ("no-such-claude-on-path-a1b2c3", "not found on PATH"),
    ],
)
def test_a_claude_that_cannot_start_is_refused_at_start(tmp_path, claude, says):
    """Before: the worker served, and every session failed later with 'cannot start'."""
    run = subprocess.run(
        [sys.executable, "-m", "worker", "serve", "--claude", claude, "--data-dir", str(tmp_path)],
        **_RUN,
    )
    assert run.returncode == 2, run.stderr
    assert f"--claude {claude}: {says}" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "worker.json").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX exec")
def test_a_claude_the_kernel_cannot_exec_is_refused_at_start(tmp_path):
    """A script without `#!` is executable, yet every spawn of it fails with 'Exec format
    error' (a shell runs it, execve does not): the worker served, and every session failed."""
    claude = tmp_path / "claude"
    claude.write_text("echo hello\n")
    claude.chmod(0o755)
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "worker", "serve", "--claude", str(claude), "--data-dir"]
    run = subprocess.run([*argv, str(data)], **_RUN)
    assert run.returncode == 2, run.stderr
    assert f"--claude {claude}: the kernel cannot run it: no '#!' line" in run.stderr
    assert not (data / "worker.json").exists()


def test_a_claude_given_by_name_is_found_on_path(fake_run: FakeRun, workers) -> None:
    """`--claude claude` (the default) with the CLI on PATH starts observers. On Windows that
    CLI is a claude.cmd (npm's, the fake's shim), which the start-up check found through
    PATHEXT but a spawn of the bare name did not (CreateProcess adds only .exe): the worker
    served, and every session failed with 'cannot start'."""
    shim = fake_run.shim("ok")
    env = {"PATH": os.pathsep.join([str(shim.parent), os.environ.get("PATH", "")])}
    worker: Worker = workers(Path("claude"), env=env)
    sid = worker.new_session("by-name")
    worker.prompt(sid, "by-name", "go")
    wait_until(lambda: fake_run.started("main"), what="an observer started through PATH")
    assert "cannot start" not in worker.log(), worker.log()


def test_a_port_in_use_is_refused_cleanly(fake_run: FakeRun, workers, tmp_path):
    """Before: a traceback and exit 1, with the guardian left to find out by itself."""
    first: Worker = workers(fake_run.shim("ok"))
    port = str(first.info["port"])
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "serve",
            "--port",
            port,
            "--claude",
            str(first.claude),
            "--data-dir",
            str(tmp_path / "second"),
        ],  # fmt: skip
        **_RUN,
    )
    assert second.returncode == 2, second.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr
    assert "guardian pid" not in second.stderr or "exited" in second.stderr  # closed, not left
    assert not (tmp_path / "second" / "worker.json").exists()
    assert first.api().ok("GET", "/api/health")["status"] == "ok"


def test_a_data_dir_that_cannot_hold_the_database_is_refused(tmp_path):
    """Before: a traceback from mkdir or from sqlite3."""
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "serve",
            "--claude",
            sys.executable,
            "--data-dir",
            str(taken),
        ],  # fmt: skip
        **_RUN,
    )
    assert run.returncode == 2, run.stderr
    assert f"--data-dir {taken}: cannot hold the database" in run.stderr
    assert "Traceback" not in run.stderr


def test_worker_bench_says_why_its_worker_did_not_start(tmp_path):
    """Before: 'worker did not start', the worker's own reason thrown away."""
    claude = str(REPO / "no" / "such" / "claude")
    run = subprocess.run([sys.executable, "-m", "worker.bench", "--claude", claude], **_RUN)
    assert run.returncode == 1
    assert "worker did not start" in run.stderr
    assert f"--claude {claude}: not an executable file" in run.stderr


def test_two_workers_started_at_once_on_one_data_dir_do_not_both_serve(
    fake_run: FakeRun, workers, tmp_path
):
    # The in-use check and the run's record were two steps: with the database's write lock
    # held a moment (a backup, a sqlite3 shell) both workers passed the check, and both served
    # one data dir, reaping each other's observers.
    import sqlite3
    import time

    data = tmp_path / "data"
    first: Worker = workers(fake_run.shim("ok"), data_dir=data)  # makes the database
    first.stop()
    assert first.wait_exit() == 0
    holder = sqlite3.connect(data / "worker.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    argv = [sys.executable, "-m", "worker", "serve", "--data-dir", str(data), "--claude",
            str(first.claude), "--db-busy-timeout", "60"]  # fmt: skip
    procs = [subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        # Both have opened the database and wait on its lock: their CPU time stands still.
        def waiting(p: subprocess.Popen[str]) -> bool:
            proc = psutil.Process(p.pid)
            if not any(f.path == str(data / "worker.db") for f in proc.open_files()):
                return False
            before = sum(proc.cpu_times()[:2])
            time.sleep(0.3)  # a sample interval of the condition, not a wait for an event
            return sum(proc.cpu_times()[:2]) == before

        deadline = time.monotonic() + 60
        while not all(p.poll() is None and waiting(p) for p in procs):
            assert time.monotonic() < deadline, "the workers never waited on the lock"
        holder.execute("COMMIT")
        holder.close()
        deadline = time.monotonic() + 60
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither worker refused"
            time.sleep(0.05)
        refused = next(p for p in procs if p.poll() is not None)
        assert refused.returncode == 2
        assert "is in use by worker pid" in (refused.stderr.read() if refused.stderr else "")
        serving = next(p for p in procs if p is not refused)
        assert serving.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=60)
            if p.stderr:
                p.stderr.close()
    fake_run.assert_none_alive(timeout=30)


def test_a_corrupt_database_is_refused_at_start_with_a_reason(fake_run: FakeRun, workers, tmp_path):
    """Before: a DatabaseError traceback and exit 1."""
    data = tmp_path / "data"
    first: Worker = workers(fake_run.shim("ok"), data_dir=data)
    for i in range(20):  # pages beyond the first, for the damage below to land in
        sid = first.new_session(f"s{i}", prompt="x" * 2000)
        first.api().ok("POST", f"/sessions/{sid}/complete")
    first.stop()
    assert first.wait_exit() == 0
    db = data / "worker.db"
    raw = bytearray(db.read_bytes())
    assert len(raw) > 3 * 4096
    raw[4096:] = b"\xa5" * (len(raw) - 4096)  # every page after the schema's
    db.write_bytes(bytes(raw))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "serve",
            "--data-dir",
            str(data),
            "--claude",
            str(first.claude),
        ],  # fmt: skip
        **_RUN,
    )
    assert run.returncode == 2, run.stderr
    assert f"--data-dir {data}" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_database_removed_while_running_stops_the_worker_and_worker_json_comes_back(
    fake_run: FakeRun, workers
):
    # Before: with its database deleted the worker went on answering 200 to every hook, and
    # all of it was lost at the next start; a removed worker.json was never written again.
    worker: Worker = workers(fake_run.shim("ok"))  # reap interval 0.5 s (the tests' flags)
    info = worker.data_dir / "worker.json"
    info.unlink()
    wait_until(info.exists, what="worker.json written again")
    assert "worker.json was removed: written again" in worker.log()
    for name in ("worker.db", "worker.db-wal", "worker.db-shm"):
        (worker.data_dir / name).unlink(missing_ok=True)
    assert worker.wait_exit(timeout=30) == 1
    assert "was removed while the worker ran" in worker.log()
    fake_run.assert_none_alive(timeout=30)


def test_a_data_dir_where_worker_json_cannot_be_written_is_refused(tmp_path):
    """worker.json cannot replace what is there (here a folder in its place; a full disk or an
    immutable data dir do the same): before, a traceback and exit 1 once the worker had
    already started its guardian and served."""
    data = tmp_path / "data"
    (data / "worker.json" / "in-the-way").mkdir(parents=True)
    argv = [sys.executable, "-m", "worker", "serve", "--claude", sys.executable, "--data-dir"]
    run = subprocess.run([*argv, str(data)], **_RUN)
    assert run.returncode == 2, run.stderr
    assert f"--data-dir {data}: cannot write worker.json" in run.stderr
    assert "Traceback" not in run.stderr
    assert "guardian pid" not in run.stderr or "exited" in run.stderr  # closed, not left


def test_no_hook_gets_a_2xx_for_a_write_into_a_removed_database(fake_run: FakeRun, workers):
    """The data dir deleted under a running worker: before, every hook until the next reap
    interval's look (5 s by default; an hour here) got a 2xx for a commit into a file nobody
    would open again, and was lost. Now the first write after the removal is answered 503 and
    the worker stops (exit 1), ending its observer."""
    import shutil

    flags = ["--grace", "0.5", "--reap-interval", "3600", "--turn-timeout", "3"]
    worker: Worker = workers(fake_run.shim("ok"), flags=flags)
    sid = worker.new_session("doomed")
    worker.prompt(sid, "doomed", "go")
    wait_until(fake_run.census, what="the session's observer")
    shutil.rmtree(worker.data_dir)
    status, body = worker.api().request(
        "POST", "/api/sessions/observations", json_body=observation("doomed", 1)
    )
    assert status == 503, (status, body)
    assert "was removed while the worker ran" in body["error"]
    assert worker.wait_exit(timeout=30) == 1
    fake_run.assert_none_alive(timeout=30)


def test_a_database_another_process_keeps_locked_is_said_so(fake_run: FakeRun, workers, tmp_path):
    """Before: "the database: database is locked", which named neither the file, nor that the
    worker had waited for it, nor the setting that says how long."""
    data = tmp_path / "data"
    first: Worker = workers(fake_run.shim("ok"), data_dir=data)  # makes the database
    first.stop()
    assert first.wait_exit() == 0
    argv = [sys.executable, "-m", "worker", "serve", "--data-dir", str(data), "--claude",
            str(first.claude), "--db-busy-timeout", "0.5"]  # fmt: skip
    with write_locked(data / "worker.db"):
        run = subprocess.run(argv, **_RUN)
    assert run.returncode == 2, run.stderr
    said = f"--data-dir {data}: worker.db is locked by another process"
    assert said in run.stderr and "waited 0.5 s (--db-busy-timeout)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    fake_run.assert_none_alive(timeout=10)


def test_a_database_whose_sessions_are_corrupt_is_refused_before_serving(
    fake_run: FakeRun, workers, tmp_path
):
    """Damage in pages that the start-up's first reads do not touch (the sessions table's,
    read only to wake the sessions with queued work): before, the worker served (worker.json
    written), then a DatabaseError traceback and exit 1."""
    import sqlite3

    data = tmp_path / "data"
    first: Worker = workers(fake_run.shim("hang:at=mid-turn,turn=0"), data_dir=data)
    for i in range(40):  # several pages of sessions, each with a queued observation
        content_id = f"s{i}-" + "x" * 300
        first.new_session(content_id, project="p" * 200)
        first.observe(content_id, i)
    first.kill9()
    path = data / "worker.db"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            leaves = [p for (p,) in db.execute(
                "SELECT pageno FROM dbstat WHERE name='sessions' AND pagetype='leaf'"
            )]  # fmt: skip
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to find the sessions' pages with")
        size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    assert len(leaves) > 1, leaves
    raw = bytearray(path.read_bytes())
    for page in leaves:  # all but each page's header
        raw[(page - 1) * size + 8 : page * size] = b"\xa5" * (size - 8)
    path.write_bytes(bytes(raw))
    argv = [sys.executable, "-m", "worker", "serve", "--data-dir", str(data), "--claude",
            str(first.claude)]  # fmt: skip
    run = subprocess.run(argv, **_RUN)
    assert run.returncode == 2, run.stderr
    assert f"--data-dir {data}: the database cannot be used: database disk image is malformed" in (
        run.stderr
    )
    assert "Traceback" not in run.stderr and "listening" not in run.stderr, run.stderr
    fake_run.assert_none_alive(timeout=10)
