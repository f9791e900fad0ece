"""`python -m worker status|stop`: the worker of a data dir found by identity, asked, stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from workerkit import DEADLINE, REPO, FakeRun, Worker, wait_until

import proctree

STUBBORN = "ignore-eof+ignore-sigterm"


def control(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )


def test_status_then_stop_ends_the_worker_and_its_observers(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim(STUBBORN))
    sid = worker.new_session("ctl-1")
    worker.prompt(sid, "ctl-1", "go")
    wait_until(lambda: fake_run.alive(), what="the observer")

    up = control("status", "--data-dir", str(worker.data_dir))
    assert up.returncode == 0, up
    assert f"worker pid {worker.pid} (fixed mode)" in up.stdout
    assert "observers: 1 live" in up.stdout

    stopped = control("stop", "--data-dir", str(worker.data_dir))
    assert stopped.returncode == 0, stopped
    assert f"worker pid {worker.pid} stopped" in stopped.stdout
    # Gone by the time stop returned: it waited for the exit, not only asked.
    ident = proctree.recorded(worker.pid, worker.info["create_time"], worker.info["boot"])
    assert ident is not None and not proctree.is_alive(ident)
    assert worker.wait_exit() == 0
    # The stubborn observer was ended by the worker's own shutdown (escalated to SIGKILL).
    assert not fake_run.alive(), fake_run.alive()

    down = control("status", "--data-dir", str(worker.data_dir))
    assert down.returncode == 3, down
    again = control("stop", "--data-dir", str(worker.data_dir))
    # worker.json is gone with the worker's clean exit: nothing to stop, and that is no error.
    assert again.returncode == 0 and "no worker is running" in again.stdout, again


def test_a_reused_pid_is_neither_reported_nor_signalled(tmp_path: Path) -> None:
    """worker.json left by a worker killed -9, its pid now another program's: not ours."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        ident = proctree.identify(other.pid)
        assert ident is not None
        (tmp_path / "worker.json").write_text(
            json.dumps(
                {
                    "pid": other.pid,
                    "create_time": ident.create_time - 100.0,  # the worker that held it
                    "boot": proctree.boot_stamp(),
                    "host": "127.0.0.1",
                    "port": 9,
                }
            ),
            encoding="utf-8",
        )
        status = control("status", "--data-dir", str(tmp_path))
        assert status.returncode == 3, status
        assert "which is gone" in status.stdout
        stop = control("stop", "--data-dir", str(tmp_path), "--kill")
        assert stop.returncode == 0, stop
        assert other.poll() is None, "stop signalled a process that is not the worker"
    finally:
        other.kill()
        other.wait(timeout=DEADLINE)


@pytest.mark.parametrize(
    "text",
    ['{"pid": 1, "host": "127.0.0.1", "port": 1}', "{not json"],
    ids=["no-create-time", "not-json"],
)
def test_unreadable_worker_json_is_unknown_not_stopped(tmp_path: Path, text: str) -> None:
    """A worker.json that cannot be read (an older worker's, without create_time): its worker
    may well run. `stop` said it had nothing to stop and exited 0, `status` said none ran."""
    (tmp_path / "worker.json").write_text(text, encoding="utf-8")
    status = control("status", "--data-dir", str(tmp_path))
    assert status.returncode == 4, status
    assert "cannot be read as a worker's" in status.stdout and "unknown" in status.stdout
    stop = control("stop", "--data-dir", str(tmp_path))
    assert stop.returncode == 4, stop
    assert "cannot be read as a worker's" in stop.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP: POSIX")
def test_a_worker_that_does_not_answer(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    worker.freeze()  # its loop cannot answer, nor act on SIGTERM until it runs again
    status = control("status", "--data-dir", str(worker.data_dir))
    assert status.returncode == 1, status
    assert "does not answer" in status.stdout
    kept = control("stop", "--data-dir", str(worker.data_dir), "--timeout", "1")
    assert kept.returncode == 1, kept
    assert "sent SIGTERM" in kept.stdout and "--kill" in kept.stderr
    assert worker.proc is not None and worker.proc.poll() is None
    killed = control("stop", "--data-dir", str(worker.data_dir), "--timeout", "1", "--kill")
    assert killed.returncode == 0, killed
    assert "killed (SIGKILL)" in killed.stdout
    assert worker.wait_exit() == -9
