"""A harness killed outright (SIGKILL, the OOM killer) cannot clean up: the next command that
starts runs, or `python -m harness sweep`, ends what its run left and removes its work folder.
(SIGHUP, which can be handled, stops a soak in order: tests/harness/test_interrupt.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from soak_helpers import SLEEPER, alive, run_pids, wait_for

pytest.importorskip("worker")

from harness import runs  # noqa: E402
from harness.census import run_id_token  # noqa: E402
from harness.cleanup import sweep_run  # noqa: E402

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL: POSIX")


def _env(runs_dir: Path) -> dict[str, str]:
    # A private record folder: no other test's sweep can end this test's stale run first.
    return {**os.environ, runs.RUNS_DIR_ENV: str(runs_dir)}


def _leaky_soak(run_id: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    """A soak whose observers ignore EOF, under a worker that never ends them (#603)."""
    argv = [sys.executable, "-m", "harness", "soak", "--mode", "leaky"]
    if "--claude" not in extra:  # a claude of one's own behaves as it does: no scenario
        argv += ["--scenarios", "ignore-eof"]
    argv += ["--sessions", "10000", "--concurrency", "2", "--run-id", run_id]
    argv += ["--progress", "none", "--no-plot", *extra]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)


def _end(harness: subprocess.Popen, run_id: str) -> None:
    """Whatever the test's outcome: the harness, the run's processes and its work folder go."""
    if harness.poll() is None:
        harness.kill()
        harness.wait()
    sweep_run(run_id)
    for folder in _work_dirs(run_id):
        shutil.rmtree(folder, ignore_errors=True)


def _work_dirs(run_id: str) -> list[Path]:
    import tempfile

    return sorted(Path(tempfile.gettempdir()).glob(f"leakproof-soak-{run_id}-*"))


@posix_only
def test_sweep_ends_what_a_killed_soak_left(tmp_path, run_id):
    """Leaky worker, observers that ignore EOF: with the harness SIGKILLed, the worker dies on its
    lifeline but its observers live on (what the sweep exists for), and so does the work folder."""
    env = _env(tmp_path / "runs")
    harness = _leaky_soak(run_id, env)
    try:
        wait_for(lambda: len(run_pids(run_id)) >= 3, timeout=90, what="a few observers")
        worker = [p for p in psutil.Process(harness.pid).children() if "serve" in p.cmdline()]
        assert worker, "the worker was not found under the harness"
        harness.send_signal(signal.SIGKILL)
        harness.wait(timeout=30)
        # The worker (its argv names the run too) dies on its lifeline a moment later; taken
        # among the survivors, its end would pass for the dry run's doing (failed in CI once).
        wait_for(lambda: not alive(worker[0].pid), timeout=30, what="the worker to die")
        survivors = run_pids(run_id)
        assert survivors, "nothing of the killed run survived: this test would prove nothing"
        assert (tmp_path / "runs" / f"{run_id}.json").exists()
        [work_dir] = _work_dirs(run_id)

        dry = subprocess.run(
            [sys.executable, "-m", "harness", "sweep", "--dry-run"],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        assert f"run {run_id}" in dry.stdout and "would end" in dry.stdout
        assert set(survivors) <= set(run_pids(run_id)), "a dry run ended something"

        done = subprocess.run(
            [sys.executable, "-m", "harness", "sweep"],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"run {run_id}" in done.stdout and f"removed {work_dir}" in done.stdout
        wait_for(lambda: run_pids(run_id) == [], timeout=30, what="the run's survivors to go")
        assert not work_dir.exists()
        assert list((tmp_path / "runs").glob("*.json")) == []
    finally:
        _end(harness, run_id)


@posix_only
def test_sweep_ends_a_killed_claude_runs_orphans_by_identity(tmp_path, run_id):
    """`soak --claude`: the run's processes are the user's own claude, with no run token in
    argv. The census names them in the run's record, so a sweep still ends them (by pid and
    create time, each only while that very process holds its pid)."""
    env = _env(tmp_path / "runs")
    theirs = run_id[::-1]  # the claude's own run id (the fake's): not the harness run's token
    shim = [sys.executable, "-m", "fake_claude", "shim", str(tmp_path / "fc")]
    shim += ["--scenario", "ignore-eof", "--run-id", theirs]
    subprocess.run(shim, check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    harness = _leaky_soak(run_id, env, "--claude", str(tmp_path / "fc" / "claude"))
    record = tmp_path / "runs" / f"{run_id}.json"

    def named() -> set[int]:
        try:
            return {pid for pid, _ in json.loads(record.read_text()).get("processes", [])}
        except (OSError, ValueError):
            return set()

    try:
        wait_for(lambda: len(run_pids(theirs)) >= 3, timeout=90, what="a few observers")
        assert not set(run_pids(theirs)) & set(run_pids(run_id)), "they carry the run's token"
        wait_for(
            lambda: set(run_pids(theirs)[:3]) <= named(), timeout=30, what="the record to name them"
        )
        harness.send_signal(signal.SIGKILL)
        harness.wait(timeout=30)
        # Those the record names (one born in the last second before the kill may not be
        # named yet: the record is written at most once a second; the cleanup below ends it).
        survivors = set(run_pids(theirs)) & named()
        assert survivors, "nothing named of the killed run survived: this test would prove nothing"

        done = subprocess.run(
            [sys.executable, "-m", "harness", "sweep"],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"run {run_id}" in done.stdout
        wait_for(
            lambda: not survivors & set(run_pids(theirs)), timeout=30, what="the named ones to go"
        )
    finally:
        _end(harness, run_id)
        sweep_run(theirs)


def _record(runs_dir: Path, run_id: str, owner: psutil.Process, work_dir: Path | None) -> None:
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / f"{run_id}.json").write_text(json.dumps({
        "run_id": run_id, "owner_pid": owner.pid, "owner_create_time": owner.create_time(),
        "started": owner.create_time(), "work_dir": str(work_dir) if work_dir else None,
        "command": ["python", "-m", "harness", "soak"],
    }))  # fmt: skip


def test_a_starting_soak_sweeps_only_runs_whose_owner_is_gone(tmp_path, spawn):
    """Three records: a dead owner (its process and folder go), a live owner (untouched), and a
    dead owner whose record names a folder that is not a run's (the process goes, the folder
    stays)."""
    runs_dir = tmp_path / "runs"
    dead_owner = spawn("pass")
    owner_handle = psutil.Process(dead_owner.pid)
    dead_ids = ["a1" * 6, "c3" * 6]
    live_id = "b2" * 6
    procs = {rid: spawn(SLEEPER, run_id_token(rid)) for rid in [*dead_ids, live_id]}
    stale_dir = tmp_path / "leakproof-soak-stale"
    foreign_dir = tmp_path / "not-a-run-folder"
    for folder in (stale_dir, foreign_dir):
        folder.mkdir()
    _record(runs_dir, dead_ids[0], owner_handle, stale_dir)
    _record(runs_dir, dead_ids[1], owner_handle, foreign_dir)
    _record(runs_dir, live_id, psutil.Process(), None)  # this test process: alive
    dead_owner.wait(timeout=30)  # now the owner's identity names no live process

    soak = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--sessions", "1", "--concurrency", "1",
         "--scenarios", "ok", "--progress", "none", "--no-plot"],
        env=_env(runs_dir), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert soak.returncode == 0, soak.stdout + soak.stderr
    for rid in dead_ids:
        assert f"an earlier run {rid}" in soak.stderr
        wait_for(lambda rid=rid: procs[rid].poll() is not None, timeout=30, what=f"run {rid}")
    assert procs[live_id].poll() is None, "a run whose owner lives was swept"
    assert not stale_dir.exists() and foreign_dir.exists()
    assert sorted(p.stem for p in runs_dir.glob("*.json")) == [live_id]


def test_records_that_are_not_records_are_dropped_not_trusted(tmp_path, monkeypatch, spawn):
    """Damaged or hand-edited records: none may stop a soak from starting, none is acted on."""
    from harness.sweep import sweep_stale

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(runs_dir))
    victim_id = "d4" * 6
    victim = spawn(SLEEPER, run_id_token(victim_id))  # would be ended if a record were trusted
    good = {"run_id": victim_id, "owner_pid": 1, "owner_create_time": 0.0, "started": 0.0,
            "work_dir": str(tmp_path), "command": []}  # fmt: skip
    bad = {
        "garbage": "{not json",
        "list": "[1, 2]",
        "negative-pid": json.dumps({**good, "owner_pid": -5}),
        "int-folder": json.dumps({**good, "work_dir": 7}),
        "nan-start": json.dumps({**good, "started": float("nan")}),
        "negative-named-pid": json.dumps({**good, "processes": [[-1, 0.0]]}),
        "named-not-a-pair": json.dumps({**good, "processes": [["x", 1.0, 2]]}),
    }
    for name, text in bad.items():
        (runs_dir / f"{name}.json").write_text(text)
    (runs_dir / f"{victim_id}.json").write_text(json.dumps({**good, "owner_pid": -5}))
    assert sweep_stale() == []
    assert list(runs_dir.glob("*.json")) == []
    assert victim.poll() is None, "a process was ended on a record that is not one"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="btime: Linux's clock")
def test_a_record_written_before_a_clock_step_names_its_live_run(tmp_path, monkeypatch, spawn):
    """A record's create_times are its writer's, which read the boot time before a step of the
    wall clock (7 s here), and a later harness reads it after: without the writer's boot time in
    the record, its live owner looked gone and `sweep` would have ended a live run."""
    import proctree

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(runs_dir))
    live_id, gone_id = "e5" * 6, "f6" * 6
    member = spawn(SLEEPER, run_id_token(live_id))
    me, theirs = proctree.identify(os.getpid()), proctree.identify(member.pid)
    assert me is not None and theirs is not None
    boot_id, btime = str(proctree.boot_stamp()).split()
    earlier = {
        "run_id": live_id, "owner_pid": me.pid, "owner_create_time": me.create_time - 7.0,
        "started": 0.0, "work_dir": None, "command": [],
        "processes": [[theirs.pid, theirs.create_time - 7.0]],
        "boot": f"{boot_id} {float(btime) - 7.0!r}",
    }  # fmt: skip
    (runs_dir / f"{live_id}.json").write_text(json.dumps(earlier))
    # The same owner identity, but written during another boot: nothing of it runs now.
    other_boot = {**earlier, "run_id": gone_id, "boot": f"not-this-boot {btime}"}
    (runs_dir / f"{gone_id}.json").write_text(json.dumps(other_boot))

    stale = runs.stale_runs()
    assert [r.run_id for r in stale] == [gone_id] and stale[0].processes == ()
    live = runs._load(runs_dir / f"{live_id}.json")
    assert live is not None and live.owner_alive()
    ((pid, create_time),) = live.processes
    assert pid == theirs.pid and theirs.matches(create_time)
    assert member.poll() is None


def test_a_run_id_under_way_is_refused_before_anything_starts(tmp_path, run_id, monkeypatch):
    """Two soaks with one --run-id: the second would count the first's processes as its own
    and its exit sweep would kill them (seen: a 2-session soak FAILed naming the other run's
    observers, which it had SIGKILLed). Refused with exit 2, its report folder untouched."""
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "runs"))
    _record_live_run(run_id)
    report = tmp_path / "report"
    argv = [sys.executable, "-m", "harness", "soak", "--sessions", "1", "--run-id", run_id]
    argv += ["--progress", "none", "--report", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 2, done.stderr
    assert f"--run-id {run_id}: a run with this id is under way" in done.stderr
    assert not report.exists() and run_pids(run_id) == []


def _record_live_run(run_id: str) -> int:
    """A record of a run under way, owned by a live process that is not us; that owner's pid."""
    owner = psutil.Process(os.getppid())
    runs._write(run_id, {
        "run_id": run_id, "owner_pid": owner.pid, "owner_create_time": owner.create_time(),
        "started": owner.create_time(), "work_dir": None, "command": [],
    })  # fmt: skip
    return owner.pid


def test_a_report_folder_a_live_run_writes_to_is_refused(tmp_path, run_id, monkeypatch):
    """Two soaks with one --report folder: each took away the other's files, and one printed
    PASS beside a report.json that held the other's FAIL. The second is refused with exit 2,
    the first's report left as it was."""
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "runs"))
    owner = _record_live_run(run_id)
    report = tmp_path / "report"
    report.mkdir()
    running = json.dumps({"verdict": "running", "run_id": run_id, "started": 1.0})
    (report / "report.json").write_text(running)
    argv = [sys.executable, "-m", "harness", "soak", "--sessions", "1", "--progress", "none"]
    argv += ["--report", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 2, done.stderr
    assert f"run {run_id} (harness pid {owner}) is writing its report there" in done.stderr
    assert (report / "report.json").read_text() == running
    # Once that run is over (its record gone), the folder is free again.
    runs.forget(run_id)
    free = subprocess.run([*argv, "--scenarios", "ok"], capture_output=True, text=True,
                          timeout=120, env=os.environ)  # fmt: skip
    assert free.returncode == 0, (free.stdout, free.stderr)  # the verdict's reasons: stdout
    assert json.loads((report / "report.json").read_text())["verdict"] == "PASS"


# A harness between its report check and its run record (its worker starting): it has marked
# the folder "running" but no record names it yet. Holds that state until its stdin closes.
_STARTING_HARNESS = """
import sys
from pathlib import Path
from harness.soak_config import report_dir_problem
print(report_dir_problem(Path(sys.argv[1]), sys.argv[2]), flush=True)
sys.stdin.read()
"""


def test_a_report_folder_a_starting_run_took_is_refused(tmp_path, run_id, monkeypatch, popen):
    """Two soaks started together with one --report: the second checked the folder before the
    first had written its run record (it does once its worker runs), and both ran, each
    printing its verdict beside the other's report.json. The second is refused with exit 2."""
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "runs"))
    report = tmp_path / "report"
    starting = [sys.executable, "-c", _STARTING_HARNESS, str(report), run_id]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    first = popen(starting, text=True, env=os.environ, **pipes)
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "None"  # it took the folder (popen ends it)
    assert runs.under_way(run_id) is None  # no record yet: the registry cannot tell
    argv = [sys.executable, "-m", "harness", "soak", "--sessions", "1", "--scenarios", "ok"]
    argv += ["--progress", "none", "--report", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "is writing its report there" in done.stderr
    assert json.loads((report / "report.json").read_text())["run_id"] == run_id
    # Its holder gone (however it ended), the folder is free again.
    assert first.stdin is not None
    first.stdin.close()
    first.wait(timeout=60)
    free = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert free.returncode == 0, (free.stdout, free.stderr)


def test_a_run_record_that_cannot_be_written_is_said(tmp_path, monkeypatch, capsys) -> None:
    # An unwritable HOME (inherited from another user) or runs folder: the soak went on without
    # its record and said nothing, so a harness killed outright left processes no sweep finds.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(blocker / "runs"))  # under a file: never a folder
    runs.record("abcdefabcdef", None)
    try:
        err = capsys.readouterr().err
        assert "cannot write this run's record" in err and runs.RUNS_DIR_ENV in err, err
        assert str(blocker / "runs") in err
    finally:
        runs.forget("abcdefabcdef")
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "runs"))  # writable: nothing said
    runs.record("abcdefabcdef", None)
    try:
        assert capsys.readouterr().err == ""
        assert (tmp_path / "runs" / "abcdefabcdef.json").is_file()
    finally:
        runs.forget("abcdefabcdef")
