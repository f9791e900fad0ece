"""Every misbehaviour of the fake, against the fixed worker: the session ends, the worker keeps
serving, and no process of the run is left alive (by the fake's ledger and by psutil)."""

from __future__ import annotations

import sys

import pytest
from workerkit import FakeRun, Worker, wait_until

import proctree

FAULT_FLAGS = [
    "--grace",
    "0.5",
    "--reap-interval",
    "0.5",
    "--turn-timeout",
    "2",
    "--max-attempts",
    "1",
]

# Scenarios whose observer cannot complete the session's turns.
FAILING = {"hang", "crash", "exit-early", "garbage", "huge-line"}
# Floods past the worker's 4 MiB bound on a reply: in one turn, or between turns (read as the
# next turn's reply once the worker reads again).
FAILING_SPECS = {"stdout-flood:mb=8", "stdout-flood:at=after-result,forever=1"}

SCENARIOS = [
    "ok",
    "ok:tool=Bash",  # the observer calls a tool the worker disallows: "No such tool" result
    "slow",
    "hang:at=before-init",
    "hang:at=mid-turn",
    "hang:at=after-result",
    "ignore-eof",
    "ignore-sigterm",
    "ignore-eof+ignore-sigterm",
    "grandchild:n=2",
    "grandchild:n=2,ignore=1+ignore-eof+ignore-sigterm",
    "grandchild:n=2,ignore=1,linger=1+ignore-eof+ignore-sigterm",
    "escape",
    "escape:n=2+ignore-eof+ignore-sigterm",
    "crash:at=mid-turn,code=3",
    "crash:at=after-init,signal=KILL",
    "exit-early",
    "garbage",
    "huge-line",
    "stdout-flood",
    *sorted(FAILING_SPECS),
    "stderr-flood",
    "ballast:mb=32",
    "mix",
]


def spawned_roles(scenario: str) -> list[str]:
    return [
        role
        for role, part in (("escapee", "escape"), ("grandchild", "grandchild"))
        if part in scenario
    ]


def drive_one_session(
    worker: Worker,
    content_id: str,
    observations: int = 2,
    *,
    fake_run: FakeRun | None = None,
    scenario: str = "",
) -> int:
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    for i in range(observations):
        worker.observe(content_id, i)
    worker.summarize(content_id)
    if fake_run is not None:
        # Let what the scenario spawns really run (its ledger line proves it) before the
        # session ends; otherwise it may be ended before it ever starts.
        for role in spawned_roles(scenario):
            wait_until(lambda r=role: fake_run.started(r), what=f"a {role} to start")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    return sid


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixed_worker_leaves_nothing(fake_run: FakeRun, workers, scenario: str) -> None:
    worker: Worker = workers(fake_run.shim(scenario, seed=7), flags=FAULT_FLAGS)
    sid = drive_one_session(worker, f"fault-{scenario}", fake_run=fake_run, scenario=scenario)
    worker.wait_session_done(sid)
    assert fake_run.started("main"), "the fake never ran"
    if scenario.startswith("escape"):
        assert fake_run.started("escapee"), "the escape scenario spawned no escapee"
    if "grandchild" in scenario:
        assert fake_run.started("grandchild")
    # Ended with its session, not later by a sweep or at shutdown: the worker is still up.
    fake_run.assert_none_alive(timeout=10)
    assert worker.api().ok("GET", "/api/health")["status"] == "ok"
    rows = worker.processes()
    assert rows and all(r["state"] == "ended" for r in rows), rows
    assert "Traceback" not in worker.log(), worker.log()
    stats = worker.stats()
    if scenario.split(":")[0].split("+")[0] in FAILING or scenario in FAILING_SPECS:
        # A session error, handled: not a crash, and nothing stored from a broken turn.
        assert stats["session_errors"] >= 1, stats
    elif scenario != "mix":
        assert stats["session_errors"] == 0, worker.log()
        assert stats["observations"] == 2 and stats["summaries"] == 1, stats


@pytest.mark.parametrize("at", ["after-init", "mid-turn"])
def test_an_observer_that_stops_reading_stdin_is_ended(fake_run: FakeRun, workers, at) -> None:
    """A hung observer reads no more stdin; a prompt larger than the pipe (a big tool output)
    then blocks the worker's write. The write was not under the turn timeout: the session, and
    its observer, were held until the worker stopped."""
    worker: Worker = workers(fake_run.shim(f"hang:at={at}"), flags=FAULT_FLAGS)
    sid = worker.new_session("deaf-1")
    worker.prompt(sid, "deaf-1", "x" * 300_000)  # several times a pipe's 64 KiB buffer
    worker.observe("deaf-1", 0)
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    fake_run.assert_none_alive(timeout=10)
    assert worker.stats()["session_errors"] >= 1
    assert worker.api().ok("GET", "/api/health")["status"] == "ok"


@pytest.mark.parametrize(
    "scenario",
    [
        "ignore-eof+ignore-sigterm",
        "grandchild:n=2,ignore=1,linger=1+ignore-eof+ignore-sigterm",
        "escape:n=2+ignore-eof+ignore-sigterm",
    ],
)
def test_fixed_worker_leaves_nothing_in_fallback(fake_run: FakeRun, workers, scenario: str) -> None:
    """No subreaper, no pdeathsig (the macOS path, forced on Linux): still nothing left."""
    worker: Worker = workers(
        fake_run.shim(scenario, seed=7), flags=FAULT_FLAGS, env={proctree.FALLBACK_ENV: "1"}
    )
    assert worker.stats()["containment"]["subreaper"] is False
    sid = drive_one_session(worker, f"fallback-{scenario}", fake_run=fake_run, scenario=scenario)
    worker.wait_session_done(sid)
    fake_run.assert_none_alive(timeout=10)
    assert "Traceback" not in worker.log(), worker.log()


def test_fixed_worker_many_sessions_mixed(fake_run: FakeRun, workers) -> None:
    """Several concurrent sessions of mixed behaviour; nothing survives their end."""
    worker: Worker = workers(fake_run.shim("mix", seed=11), flags=FAULT_FLAGS)
    sids = [drive_one_session(worker, f"mixed-{i}", observations=1) for i in range(6)]
    for sid in sids:
        worker.wait_session_done(sid)
    assert len(fake_run.started("main")) >= len(sids)
    fake_run.assert_none_alive(timeout=10)
    assert "Traceback" not in worker.log(), worker.log()


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
@pytest.mark.parametrize(
    "scenario",
    ["grandchild:n=1,ignore=1,hop=0.01", "escape:hop=0.01"],
    ids=["in-its-group", "new-session-each-hop"],
)
def test_fixed_worker_ends_lineages_that_fork_and_exit(
    fake_run: FakeRun, workers, stops_growing, scenario: str, fallback: bool
) -> None:
    """A child that forks and exits every 10 ms (no pid of it lives long enough to be found
    and signalled twice) is ended with its session, in its group or a new session per hop."""
    env = {proctree.FALLBACK_ENV: "1"} if fallback else {}
    worker: Worker = workers(fake_run.shim(scenario, seed=7), flags=FAULT_FLAGS, env=env)
    content_id = f"hop-{scenario}"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    worker.summarize(content_id)
    wait_until(lambda: fake_run.hops() >= 3, what="the lineage to hop")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    assert stops_growing(fake_run.ledger), "the lineage still hops"
    fake_run.assert_none_alive(timeout=10)
    assert worker.api().ok("GET", "/api/health")["status"] == "ok"
    assert "Traceback" not in worker.log(), worker.log()
