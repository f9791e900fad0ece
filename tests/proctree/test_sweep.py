"""sweep: ends what carries our mark/token and outlived its session; spares live sessions."""

from __future__ import annotations

import sys

import pytest
from proctree_helpers import HOP, Runner, new_token

import proctree

GRACE = 0.5


def test_sweep_ends_orphaned_session_spares_live_one_and_decoy(
    mode: str, run: Runner, tmp_path
) -> None:
    mark = run.mark  # one worker-wide mark, as the contract gives children
    live = run.start(mark=mark, children=1, grandchildren=1, ignore_term=True)
    dead = run.start(mark=mark, children=2, ignore_term=True, ignore_eof=True)
    decoy_run = Runner(new_token(), tmp_path)
    try:
        decoy = decoy_run.start(mark=None, children=1, contained=False)
        ended = proctree.sweep(mark=mark, token=run.token, exclude={live.root}, grace=GRACE)
        assert set(dead.ids()) <= set(ended)
        assert not [i for i in dead.ids() if proctree.is_alive(i)]
        assert all(proctree.is_alive(i) for i in live.ids()), "a live session was swept"
        assert all(proctree.is_alive(i) for i in decoy.ids()), "the decoy was swept"
        assert not (set(live.ids()) | set(decoy.ids())) & set(ended)
    finally:
        decoy_run.cleanup()


@pytest.mark.skipif(sys.platform == "win32", reason="escapees are a POSIX double fork here")
def test_sweep_catches_escapee_of_live_session(mode: str, run: Runner) -> None:
    tree = run.start(mark=run.mark, escape=True, scrub_escapee=True, ignore_term=True)
    (escapee,) = tree.ids("escapee")
    ended = proctree.sweep(token=run.token, exclude={tree.root}, grace=GRACE)
    # It left its session's tree, so it is an orphan of ours: swept. The session lives on.
    assert escapee in ended
    assert proctree.is_alive(tree.root)


def test_sweep_without_mark_or_token_does_nothing(run: Runner) -> None:
    tree = run.start(mark=run.mark)
    assert proctree.sweep() == []
    assert proctree.is_alive(tree.root)


def test_sweep_by_prefix_mark_reaches_session_marks(run: Runner) -> None:
    worker_mark = run.mark
    a = run.start(mark=f"{worker_mark}:s1", children=1)
    b = run.start(mark=f"{worker_mark}:s2", children=1)
    other = run.start(mark=f"{worker_mark}x:s3")  # shares a prefix, not the mark
    ended = proctree.sweep(mark=worker_mark, grace=GRACE)
    if not ended and proctree.is_alive(a.root):
        pytest.skip("environ() unreadable on this platform; marks need argv tokens here")
    assert set(a.ids()) | set(b.ids()) <= set(ended)
    assert proctree.is_alive(other.root)


def test_mark_matching_rules() -> None:
    assert proctree.mark_matches("12:3", "12:3")
    assert proctree.mark_matches("12:3:session-7", "12:3")
    assert not proctree.mark_matches("12:34", "12:3")
    assert not proctree.mark_matches(None, "12:3")


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("setsid", [False, True], ids=["in-its-group", "new-session-each-hop"])
def test_sweep_ends_a_lineage_that_forks_and_exits(
    mode: str, run: Runner, setsid: bool, stops_growing
) -> None:
    """No pid of it outlives the grace: the sweep looks again for what carries the mark after
    the grace, and stops what it finds before SIGKILL (see test_terminate)."""
    tree = run.start(mark=run.mark, children=1, hop=HOP, hop_setsid=setsid)
    tree.popen.stdin.close()  # the root exits, the hopper lives on: its session is over
    assert tree.popen.wait(timeout=30) == 0
    ended = proctree.sweep(mark=run.mark, grace=GRACE)
    assert ended
    assert stops_growing(tree.report), "the lineage still hops after the sweep"
