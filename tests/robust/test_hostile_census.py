"""The harness census against hostile `claude` executables that carry no run id and write no
ledger: `python -m harness soak --claude PATH` must see what the leaky worker leaks (descendant
tracking, orphans adopted by the harness) and invent nothing against the fixed worker."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import ROOT_CASES as ROOT_ESCAPES
from hostile import Hostile, case_params, decoy

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux subreaper semantics")

REPO = Path(__file__).resolve().parents[2]


def soak_cli(tmp_path: Path, hostile: Hostile, mode: str, **flags: str) -> tuple[int, dict]:
    """`harness soak --claude` with this suite's small workload; `flags` override it
    (`rss_peak="9"` for `--rss-peak 9`)."""
    out = tmp_path / f"report-{mode}"
    options = {
        "mode": mode,
        "run-id": secrets.token_hex(6),
        "sessions": "2",
        "prompts": "2",
        "observations": "1",
        "concurrency": "2",
        "grace": "1.5",
        "reap-interval": "0.5",
        # The fake's limit, not --claude's 120 s (a real claude's): these claudes answer at
        # once or never, and one that never does held its session for 2 x 120 s per message.
        "turn-timeout": "10",
        "progress": "none",
        "report": str(out),
        **{k.replace("_", "-"): v for k, v in flags.items()},
    }
    argv = [sys.executable, "-m", "harness", "soak", "--claude", str(hostile.path), "--no-plot"]
    for key, value in options.items():
        argv += [f"--{key}", value]
    # The soak ends the worker and sweeps the run itself; the fixture ends the rest by PID.
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # A failed run's work folder (worker log, ledger) stays in the session's tmp folder, which
    # a passing session removes and a failing one keeps: the evidence of a rare failure.
    return proc.returncode, report


def wait_none_alive(hostile: Hostile, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while hostile.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [(p.pid, role) for p, role in hostile.processes()]
    assert not left, f"the harness left processes of the run alive: {left}"


# case -> roles of the long-lived processes it leaves under the leaky worker
LEAKY_CASES = {
    "own-pgid": {"main", "grandchild0", "grandchild1"},
    "double-fork-noenv": {"main", "escapee"},
    "holds-stdout": {"grandchild"},  # its main exits at once
    "closed-stdio": {"main"},
    "stops-itself": {"main", "grandchild"},
    "zombie-farm": {"main", "farmer"},
    # leaders that read as zombies, running on in another thread
    "headless": {"main", "grandchild-headless", "escapee-headless"},
}
# Root's ways out: fewer forks under the leaky worker (each of its observers forks them all),
# every one of them named.
ROOT_CASES = {**ROOT_ESCAPES, "fork-loop": ({"n": 20}, {"main", "looping", "forked"})}


@pytest.mark.parametrize("case", case_params(sorted(LEAKY_CASES) + sorted(ROOT_CASES)))
def test_census_names_the_leaky_workers_leak_without_run_id(case, tmp_path, hostiles) -> None:
    params, roles = ROOT_CASES.get(case) or ({}, LEAKY_CASES[case])
    hostile = hostiles(case, **params)
    code, report = soak_cli(tmp_path, hostile, "leaky")
    # holds-stdout / closed-stdio never finish a turn, so no session completes (ERROR, exit 2);
    # either way the leak must be named.
    assert code in (1, 2) and report["verdict"] in ("FAIL", "ERROR"), report["reasons"]
    leaked = {int(e["pid"]) for e in report["leaked"]}
    recorded = dict(hostile.entries())
    # A fork killed before it could record itself (fork-loop's, by the exit sweep, under load)
    # is the hostile's all the same: its parent is one the hostile recorded.
    parents = {int(e["pid"]): e.get("ppid") for e in report["leaked"]}
    stray = {pid for pid in leaked - set(recorded) if parents[pid] not in recorded}
    assert not stray, f"census counted processes the hostile did not start: {stray}"
    # Every long-lived process it started is named: in other process groups, with an empty
    # environment, orphaned before any sample saw it - none carries the run id.
    assert roles <= hostile.roles(), recorded  # the misbehaviour happened
    expected = {pid for pid, role in recorded.items() if role in roles}
    assert expected <= leaked, {pid: recorded[pid] for pid in expected - leaked}
    wait_none_alive(hostile)


@pytest.mark.parametrize(
    "case",
    case_params(["own-pgid", "double-fork-noenv", "holds-stdout", "headless", *sorted(ROOT_CASES)]),
)
def test_census_invents_nothing_against_the_fixed_worker(case, tmp_path, hostiles) -> None:
    params = ROOT_CASES[case][0] if case in ROOT_CASES else {}
    hostile = hostiles(case, **params)
    code, report = soak_cli(tmp_path, hostile, "fixed")
    held = report["target_facts"]["containment"]
    if case == "headless" and not (held["cgroups"] or held["observer_subreapers"]):
        # Its escapee is unmarked and ignores SIGTERM: with neither cgroup cells nor observers
        # that are subreapers (the macOS path) the fixed worker spares it while an older
        # observer lives (nothing says whose it is), then needs its grace to kill it, which on
        # a loaded machine can outlast this soak's 1.5 s grace. test_hostile_worker covers its
        # end there. (With PROCTREE_CGROUPS=0 alone it passes: its observer holds it.)
        pytest.skip("the worker had neither cgroup cells nor observer subreapers here")
    assert report["leaked_count"] == 0, json.dumps(report["leaked"])[:2000]
    if case != "holds-stdout":  # that one fails every turn by design
        assert code == 0 and report["verdict"] == "PASS", report["reasons"]
    # It did count the run's processes (descendant tracking, or the worker's registry for an
    # observer that lived and died between two samples): not a blind PASS.
    assert report["processes_seen"] >= 1, {k: report.get(k) for k in ("processes_seen", "sessions")}
    wait_none_alive(hostile)


def test_many_orphans_at_once_are_ended_in_time(tmp_path, hostiles) -> None:
    """Six observers (two at a time) each leave 150 SIGTERM-ignoring forks when they exit. Every
    look of every ending read the mark of every orphan the worker held (one look: 220 ms of CPU
    at 1,200 of them); with 200 forks each, endings took 3 to 11 s and soaks named 1,000+ leaks
    (seen three times, on a loaded machine; not again on a quiet one). Now an orphan held in
    another observer's cell is that cell's, a mark once read is not read again, and a wait
    for a tree to go stops at the first process still alive.

    The grace is 5 s: with cells an ending takes about 1 s here, without them (a user who may
    not create cgroups) each of its 150 processes is signalled and checked by itself, and
    endings took 2.0 to 3.2 s (cleanup p50 2.0-2.7 s)."""
    hostile = hostiles("fan-out", n=150)
    # Forks share their pages, yet their RSS is summed: a budget for a leak check, not this.
    code, report = soak_cli(
        tmp_path, hostile, "fixed", sessions="6", prompts="1", observations="0", grace="5",
        rss_peak="100000",
    )  # fmt: skip
    assert report["leaked_count"] == 0, json.dumps(report["leaked"])[:2000]
    assert code == 0 and report["verdict"] == "PASS", report["reasons"]
    assert sum(role == "fanned" for _, role in hostile.entries()) == 6 * 150
    wait_none_alive(hostile)


@pytest.mark.parametrize("case", ["regicide", "regicide-out"])
def test_a_worker_killed_with_its_guardian_leaves_no_cells(case, tmp_path, hostiles) -> None:
    """An observer SIGKILLs the worker's guardian, then the worker: no one is left to remove the
    worker's cgroup cells but the harness. The run fails (the worker died), its processes are
    swept, and its cells go with them: the empty folders stayed until another worker started.
    regicide-out: the stubborn grandchild left its cell and shed its mark first, which no
    daemon can contain once it and its guardian are dead: the harness still sees and ends it."""
    hostile = hostiles(case)
    code, report = soak_cli(tmp_path, hostile, "fixed", prompts="1")
    held = report["target_facts"]["containment"]
    if not held["cgroups"]:
        pytest.skip("the worker had no cgroup cells here")
    assert "worker-killed" in hostile.roles(), report["reasons"]
    assert code == 1 and report["verdict"] == "FAIL", report["reasons"]
    # The stubborn grandchild outlived the worker: named, whatever it shed.
    stubborn = {pid for pid, role in hostile.entries() if role == "stubborn"}
    assert stubborn and stubborn <= {int(e["pid"]) for e in report["leaked"]}, report["leaked"]
    wait_none_alive(hostile)
    assert not Path(held["cgroups"]).exists(), sorted(Path(held["cgroups"]).rglob("*"))[:20]


def test_census_counts_no_process_on_the_workers_word_alone(tmp_path, hostiles) -> None:
    """An observer writes a row into the worker's registry naming, by its exact identity, a
    process that is not the run's (not the worker's descendant). Before, the census took it on
    the registry's word: counted it, named it leaked (a FAIL) and SIGKILLed it in its sweep.
    Now a process the target names is the run's only if it descends from the worker (or the
    harness that adopts the run's orphans)."""

    hostile = hostiles("forged-row")
    with decoy(hostile) as other:
        code, report = soak_cli(tmp_path, hostile, "fixed", sessions="1", prompts="1")
        assert "forged" in hostile.roles(), report["reasons"]  # the row was written
        assert other.poll() is None, "the harness killed a process that is not the run's"
        leaked = {int(e["pid"]) for e in report["leaked"]}
        assert other.pid not in leaked, report["leaked"]
        assert code == 0 and report["verdict"] == "PASS", report["reasons"]
        wait_none_alive(hostile)


@pytest.mark.parametrize(
    ("first_line", "said"),
    [
        (b"#!/nonexistent/python3\n", "'/nonexistent/python3'"),
        # Saved with Windows line endings: the kernel looks for "python3\r".
        (b"#!" + sys.executable.encode() + b"\r\n", "CRLF"),
    ],
)
def test_a_claude_whose_interpreter_cannot_run_is_refused(first_line, said, tmp_path) -> None:
    """A `#!` script whose interpreter does not exist (or names it with a trailing CR) cannot
    be exec'd: every observer's spawn fails with ENOENT. The soak ran anyway and PASSed (exit
    0, a warning that no message was processed), having tested nothing; a script with no `#!`
    was already refused. Now both are refused before anything starts (exit 2)."""
    claude = tmp_path / "claude"
    claude.write_bytes(first_line + b"print('never')\n")
    claude.chmod(0o755)
    argv = [sys.executable, "-m", "harness", "soak", "--claude", str(claude), "--sessions", "1",
            "--progress", "none", "--no-plot", "--report", str(tmp_path / "report")]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "the kernel cannot run it" in proc.stderr and said in proc.stderr, proc.stderr
