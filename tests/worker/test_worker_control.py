"""`python -m worker status|stop`: the worker of a data dir found by identity, asked, stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from workerkit import DEADLINE, REPO, FakeRun, Worker, wait_until

import proctree
from worker import control as worker_control

STUBBORN = "ignore-eof+ignore-sigterm"
NOBODY = 65534
# Looked up, not named: os.geteuid is absent on Windows, where this module is collected too.
AS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0
# A stand-in for a worker whose loop is stuck: no API, SIGTERM without effect (its handler
# would run in the loop); it says when the handler is set.
STUCK = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
    "time.sleep(600)"
)


def control(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m worker ARGS` with nobody's real uid: what an ordinary user's command meets."""
    python = "/usr/bin/python3"  # the venv's may live under root's home, which nobody can enter
    site = str(Path(psutil.__file__).parent.parent)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(REPO), site])}
    # cwd "/": a test's own folders may sit under ones only root may enter (pytest's are 0700).
    kw: dict[str, Any] = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "env": env}
    same = f"import psutil, worker, sys; assert sys.version_info[:2] == {sys.version_info[:2]!r}"
    if not os.path.exists(python) or subprocess.run([python, "-c", same], cwd="/", **kw).returncode:
        pytest.skip(f"{python} of this Python version cannot import the worker as nobody")
    return subprocess.run(
        [python, "-m", "worker", *args],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
        **kw,
    )


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A data dir any user may enter (pytest's tmp_path sits under a 0700 folder of root's)."""
    # Not the tests' TMPDIR either (0700): /tmp, which every user may enter.
    path = Path(tempfile.mkdtemp(prefix="lp-control-", dir="/tmp"))
    path.chmod(0o755)
    try:
        for folder in [path, *path.parents]:
            if not folder.stat().st_mode & stat.S_IXOTH:
                pytest.skip(f"{folder} may not be entered by other users")
        yield path
    finally:
        shutil.rmtree(path)


def write_worker_json(folder: Path, proc: subprocess.Popen[Any], port: int) -> Path:
    """A worker.json naming `proc` as a worker would: pid, create_time, boot, host, port."""
    ident = proctree.identify(proc.pid)
    assert ident is not None
    path = folder / "worker.json"
    info = {
        "pid": proc.pid,
        "create_time": ident.create_time,
        "boot": proctree.boot_stamp(),
        "host": "127.0.0.1",
        "port": port,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def closed_port() -> int:
    """A loopback port nothing listens on (a connection is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def stuck() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", STUCK], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "1\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE)
        if proc.stdout is not None:
            proc.stdout.close()


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


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM ignored: POSIX")
def test_a_worker_that_does_not_answer(tmp_path: Path, stuck: subprocess.Popen[str]) -> None:
    """Its loop stuck (its API silent, its SIGTERM handler never run): stop says so, and --kill
    ends it. A stand-in process holds the worker's place: a real worker cannot be made so."""
    write_worker_json(tmp_path, stuck, closed_port())
    status = control("status", "--data-dir", str(tmp_path))
    assert status.returncode == 1, status
    assert "does not answer" in status.stdout
    kept = control("stop", "--data-dir", str(tmp_path), "--timeout", "1")
    assert kept.returncode == 1, kept
    assert "sent SIGTERM" in kept.stdout and "--kill" in kept.stderr
    assert stuck.poll() is None
    killed = control("stop", "--data-dir", str(tmp_path), "--timeout", "1", "--kill")
    assert killed.returncode == 0, killed
    assert "killed (SIGKILL)" in killed.stdout
    assert stuck.wait(timeout=DEADLINE) == -signal.SIGKILL


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP: POSIX")
def test_a_stopped_worker_is_said_stopped_and_stop_resumes_it_to_end(
    fake_run: FakeRun, workers
) -> None:
    """SIGSTOPped, the worker answers nothing: status waited out the HTTP timeout and said it
    did not answer; stop did too, then sent a SIGTERM that a stopped process does not act on,
    and waited out --timeout for nothing. Now both say it is stopped and how to resume it, and
    stop follows the SIGTERM with SIGCONT: the worker shuts down as on SIGTERM, observers too."""
    worker: Worker = workers(fake_run.shim(STUBBORN))
    sid = worker.new_session("ctl-stopped")
    worker.prompt(sid, "ctl-stopped", "go")
    wait_until(lambda: fake_run.alive(), what="the observer")
    worker.freeze()
    proc = psutil.Process(worker.pid)
    wait_until(lambda: proc.status() == psutil.STATUS_STOPPED, what="the worker stopped")
    status = control("status", "--data-dir", str(worker.data_dir))
    assert status.returncode == 1, status
    assert "is stopped" in status.stdout and f"kill -CONT {worker.pid}" in status.stdout
    stop = control("stop", "--data-dir", str(worker.data_dir), "--timeout", str(DEADLINE))
    assert stop.returncode == 0, stop
    assert "it is stopped" in stop.stdout and "SIGCONT" in stop.stdout, stop
    assert f"worker pid {worker.pid} stopped" in stop.stdout
    assert worker.wait_exit() == 0  # its own graceful shutdown, not a kill
    assert not fake_run.alive(), fake_run.alive()


@pytest.mark.skipif(
    sys.platform == "win32" or not AS_ROOT, reason="root, and a file of another user's"
)
def test_a_process_that_did_not_write_worker_json_is_neither_reported_nor_signalled(
    tmp_path: Path,
) -> None:
    """Root runs stop in another user's data dir: a worker.json nobody owns names root's
    process, its pid, create_time and boot all right. Root SIGTERMed (with --kill SIGKILLed)
    it; status said it ran. The process must run as the file's owner to be the worker."""
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        path = write_worker_json(tmp_path, ours, closed_port())
        # Written by ourselves (root), the same process is taken for the worker.
        same = control("status", "--data-dir", str(tmp_path))
        assert same.returncode == 1 and "does not answer" in same.stdout, same
        os.chown(path, NOBODY, NOBODY)
        status = control("status", "--data-dir", str(tmp_path))
        assert status.returncode == 3, status
        assert "not the worker that wrote it" in status.stdout, status
        stop = control("stop", "--data-dir", str(tmp_path), "--timeout", "1", "--kill")
        assert stop.returncode == 0, stop
        assert "not the worker that wrote it" in stop.stdout, stop
        assert ours.poll() is None, "stop signalled a process that is not the worker"
    finally:
        ours.kill()
        ours.wait(timeout=DEADLINE)


@pytest.mark.skipif(sys.platform == "win32" or not AS_ROOT, reason="root starts nobody's")
def test_a_worker_json_another_user_may_not_read_is_unknown(open_dir: Path) -> None:
    """Not 'no worker runs' (3; stop: nothing to stop, 0): the worker may well run."""
    path = open_dir / "worker.json"
    path.write_text('{"pid": 1, "create_time": 1, "host": "127.0.0.1", "port": 1}', "utf-8")
    path.chmod(0o600)
    status = as_nobody("status", "--data-dir", str(open_dir))
    assert status.returncode == 4, status
    assert "PermissionError" in status.stdout and "unknown" in status.stdout, status
    stop = as_nobody("stop", "--data-dir", str(open_dir))
    assert stop.returncode == 4, stop
    assert "PermissionError" in stop.stderr and "unknown" in stop.stderr, stop


def test_a_worker_json_that_is_a_folder_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "worker.json").mkdir()
    status = control("status", "--data-dir", str(tmp_path))
    assert status.returncode == 4 and "unknown" in status.stdout, status
    stop = control("stop", "--data-dir", str(tmp_path))
    assert stop.returncode == 4 and "unknown" in stop.stderr, stop


@pytest.mark.skipif(sys.platform == "win32" or not AS_ROOT, reason="root starts nobody's")
def test_a_sigkill_that_cannot_be_sent_is_not_reported_sent(
    open_dir: Path, stuck: subprocess.Popen[str]
) -> None:
    """An ordinary user's stop --kill of root's worker: the signals are refused (EPERM). It said
    'still runs 5 s after SIGKILL (stuck in the kernel?)', as though SIGKILL had gone out."""
    write_worker_json(open_dir, stuck, closed_port())
    stop = as_nobody("stop", "--data-dir", str(open_dir), "--kill")
    assert stop.returncode == 1, stop
    assert "SIGTERM could not be sent (not permitted" in stop.stderr, stop
    assert "SIGKILL could not be sent to it (not permitted" in stop.stderr, stop
    assert "after SIGKILL" not in stop.stderr, stop
    # Without --kill: no advice to use it (it would be refused as well), and no wait of the
    # default 60 s for a worker that nothing reached.
    kept = as_nobody("stop", "--data-dir", str(open_dir))
    assert kept.returncode == 1, kept
    assert "SIGTERM could not be sent (not permitted" in kept.stderr, kept
    assert "still runs" in kept.stderr and "--kill" not in kept.stderr, kept
    assert stuck.poll() is None


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not AS_ROOT, reason="root starts nobody's"
)
def test_a_port_the_worker_does_not_listen_on_is_not_asked(tmp_path: Path) -> None:
    """Another user's worker.json, naming that user's own process, names a port of root's
    (here: ours): root's status and stop sent their requests there. The worker process must
    hold the port; else it is taken as a worker that does not answer, and stop signals it."""
    sleeper = subprocess.Popen(["sleep", "600"], user=NOBODY, group=NOBODY, extra_groups=[])
    try:
        with socket.socket() as rooted:
            rooted.bind(("127.0.0.1", 0))
            rooted.listen()
            rooted.setblocking(False)
            path = write_worker_json(tmp_path, sleeper, rooted.getsockname()[1])
            os.chown(path, NOBODY, NOBODY)
            status = control("status", "--data-dir", str(tmp_path))
            assert status.returncode == 1, status
            assert "does not listen on port" in status.stdout, status
            stop = control("stop", "--data-dir", str(tmp_path), "--timeout", str(DEADLINE))
            assert "does not listen on port" in stop.stdout and "sent SIGTERM" in stop.stdout
            assert stop.returncode == 0, stop
            with pytest.raises(BlockingIOError):
                rooted.accept()  # nothing connected to root's port
        assert sleeper.wait(timeout=DEADLINE) == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait(timeout=DEADLINE)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM: POSIX")
def test_a_worker_gone_before_its_sigterm_is_not_a_refusal() -> None:
    """The worker exits between its API's failure and stop's SIGTERM (it was shutting down
    already: its port closed first): the SIGTERM finds no process. That was taken for a refusal:
    stop said 'SIGTERM could not be sent (it is gone)' and 'still runs', exit 1."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = proctree.identify(gone.pid)
    assert ident is not None
    gone.wait(timeout=DEADLINE)  # reaped: its pid names nothing now
    how, refused = worker_control._term(ident)
    assert not refused, how
    assert "exited" in how, how


# Listens on a loopback port as a worker would, and says it is listening.
LISTENER = (
    "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); time.sleep(600)"
)


def test_a_host_the_worker_cannot_serve_is_not_asked(tmp_path: Path) -> None:
    """The worker serves loopback only, and the port check looks at its port alone: a
    worker.json naming its process and port but another host (as another user's may, for
    root's status or stop) sent the request to that host. It counts as not answering."""
    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        port = int(listener.stdout.readline())
        path = write_worker_json(tmp_path, listener, port)
        info = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**info, "host": "192.0.2.1"}), encoding="utf-8")  # TEST-NET
        status = control("status", "--data-dir", str(tmp_path))
        assert status.returncode == 1, status
        assert "not a loopback address" in status.stdout, status
    finally:
        listener.kill()
        listener.wait(timeout=DEADLINE)
        if listener.stdout is not None:
            listener.stdout.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM; no guardian on Windows")
def test_a_worker_in_its_start_up_is_said_starting_and_stop_ends_it(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """A worker that has begun its run but not yet written worker.json (a restart's reaping of
    what a killed worker left can take seconds): `status` said no worker runs (exit 3), and
    `stop` said "nothing to stop" (exit 0), after which the worker went on to serve. Here the
    start-up waits 5 s for an earlier run's guardian that does not exit (a stand-in with that
    guardian's argv, named by that run's row)."""
    import sqlite3

    data = tmp_path / "data"
    claude = fake_run.shim("ok")
    first: Worker = workers(claude, data_dir=data)
    first.stop()
    assert first.wait_exit() == 0
    python, python_env = proctree.python_command()
    env = {**os.environ, **python_env}
    # Its argv is the first worker's guardian's; its stdin held open, it waits for ever.
    stand_in = subprocess.Popen(
        [python, *proctree.guardian_args(first.pid)], cwd=REPO, stdin=subprocess.PIPE, env=env
    )
    second = None
    try:
        stand_id = wait_until(lambda: proctree.identify(stand_in.pid), what="the stand-in")
        db = sqlite3.connect(data / "worker.db", isolation_level=None)
        try:  # the first run again, unclean, its guardian the stand-in
            db.execute(
                "INSERT INTO runs(pid, create_time, mark, mode, started, boot, guardian) "
                "SELECT pid, create_time, mark, mode, started, boot, ? FROM runs WHERE id=1",
                (f"{stand_id.pid} {stand_id.create_time!r}",),
            )
        finally:
            db.close()
        argv = [python, "-m", "worker", "serve", "--data-dir", str(data), "--claude", str(claude)]
        second = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.DEVNULL)

        def run_begun() -> bool:
            ro = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
            try:
                return bool(ro.execute("SELECT 1 FROM runs WHERE pid=?", (second.pid,)).fetchone())
            finally:
                ro.close()

        wait_until(run_begun, what="the second worker's run begun")
        said = control("status", "--data-dir", str(data))
        assert not (data / "worker.json").exists(), "the start-up was over too soon to tell"
        assert said.returncode == 1, said
        assert f"worker pid {second.pid} is starting" in said.stdout, said.stdout
        said = control("stop", "--data-dir", str(data))
        assert said.returncode == 0, said
        assert second.poll() is not None, f"stop returned with the worker running: {said.stdout}"
    finally:
        for proc in (second, stand_in):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait(timeout=DEADLINE)
        if stand_in.stdin is not None:
            stand_in.stdin.close()
    fake_run.assert_none_alive(timeout=10)


def test_a_copied_data_dir_does_not_name_its_original_worker_as_starting(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """A copy of a live worker's data dir (worker.json left out) holds that worker's run as
    not ended: the worker is running, but not on the copy, and must neither be said to start
    there nor be stopped by a `stop` of the copy."""
    worker: Worker = workers(fake_run.shim("ok"))
    copy = tmp_path / "copy"
    shutil.copytree(worker.data_dir, copy, ignore=shutil.ignore_patterns("worker.json"))
    said = control("status", "--data-dir", str(copy))
    assert said.returncode == 3 and "starting" not in said.stdout, said
    said = control("stop", "--data-dir", str(copy))
    assert said.returncode == 0, said
    assert worker.proc is not None and worker.proc.poll() is None, "the original was stopped"


@pytest.mark.skipif(sys.platform == "win32", reason="psutil may list only some files there")
def test_a_copied_worker_json_does_not_name_its_original_worker(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """A copy of a live worker's data dir, worker.json included, named the original worker:
    `status` of the copy reported it as running there and `stop` of the copy stopped it."""
    worker: Worker = workers(fake_run.shim("ok"))
    for copy, kept in ((tmp_path / "copy", None), (tmp_path / "json-only", "worker.json")):
        if kept is None:
            shutil.copytree(worker.data_dir, copy)
        else:
            copy.mkdir()
            shutil.copy(worker.data_dir / kept, copy / kept)
        said = control("status", "--data-dir", str(copy))
        assert said.returncode == 3, said
        assert "copied from another data dir" in said.stdout, said.stdout
        said = control("stop", "--data-dir", str(copy))
        assert said.returncode == 0, said
        assert worker.proc is not None and worker.proc.poll() is None, "the original was stopped"
    said = control("status", "--data-dir", str(worker.data_dir))
    assert said.returncode == 0, said  # the original is still found where it runs
