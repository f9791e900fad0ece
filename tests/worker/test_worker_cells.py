"""cgroup cells (Linux, where the worker may create cgroups), and without them observers that are
subreapers: an escapee with nothing to know it by is still its own observer's, and ends with it,
while an older observer lives on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from workerkit import FakeRun, Worker, wait_until

import proctree
from proctree import _cgroup

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux's")

# escape:scrub=1: each observer's escapee leaves its group and sheds the worker's mark; the
# worker (a subreaper) adopts it, and without a cell cannot tell whose it is.
SCENARIO = "escape:scrub=1"
ENDED_DEADLINE = 10.0  # the worker's escalation (2 x its grace) plus slack for a loaded machine


def escapee_of(fake_run: FakeRun, worker: Worker, session_id: int) -> proctree.ProcId:
    mains = {r["pid"] for r in worker.processes() if r["session_db_id"] == session_id}
    found = [
        proctree.ProcId(int(e["pid"]), float(e["create_time"]))
        for e in fake_run.ledger_lines()
        if e["event"] == "start" and e.get("role") == "escapee" and e.get("parent_pid") in mains
    ]
    assert len(found) == 1, (mains, found)
    return found[0]


@pytest.mark.parametrize("held_by", ["cells", "observer-subreapers", "out-of-its-cell"])
def test_an_unmarked_escapee_ends_with_its_own_observer(
    fake_run: FakeRun, workers, held_by: str
) -> None:
    """observer-subreapers: no cells (an unprivileged worker), each observer a subreaper, so
    the escapee is reparented to its own observer. Before, the worker adopted it, could not
    tell whose it was, and spared it while the older observer lived.

    out-of-its-cell: cells, and the escapee moves itself out of its cell first (a root
    claude can; so is what an observer forks before its move into the cell). Observers were
    subreapers only where there were no cells: it was adopted by the worker and spared."""
    env = {"PROCTREE_CGROUPS": "0"} if held_by == "observer-subreapers" else None
    scenario = SCENARIO + (",uncell=1" if held_by == "out-of-its-cell" else "")
    worker: Worker = workers(fake_run.shim(scenario), env=env)
    containment = worker.stats()["containment"]
    cells = containment["cgroups"]
    if held_by != "observer-subreapers" and cells is None:
        pytest.skip("the worker may not create cgroups here (not root, no delegated subtree)")
    # Cells or not, each observer is a subreaper: a cell does not hold what left it.
    assert containment["observer_subreapers"] is True, containment
    if held_by == "observer-subreapers":
        assert cells is None, containment
    sids = []
    for name in ("older", "newer"):
        sid = worker.new_session(name)
        worker.prompt(sid, name, "go")
        sids.append(sid)
        count = len(sids)
        wait_until(lambda n=count: len(fake_run.started("escapee")) == n, what=name)
    older, newer = (escapee_of(fake_run, worker, sid) for sid in sids)
    if held_by == "out-of-its-cell":
        assert _cgroup.cgroup_of(newer.pid) == "/", "the escapee did not leave its cell"
    worker.summarize("newer")
    worker.api().ok("POST", f"/sessions/{sids[1]}/complete")
    worker.wait_session_done(sids[1])
    # Before cells it was spared while the older observer lived: nothing said whose it was.
    wait_until(
        lambda: not proctree.is_alive(newer), ENDED_DEADLINE, "the newer session's escapee to end"
    )
    assert proctree.is_alive(older), "the older session's escapee went with the newer's"
    rows = [r for r in worker.processes() if r["session_db_id"] == sids[0]]
    assert rows and all(r["state"] != "ended" for r in rows), rows
    if cells is not None:
        assert Path(cells).is_dir()
