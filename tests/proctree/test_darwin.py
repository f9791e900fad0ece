"""macOS: no pdeathsig, no subreaper; process groups plus sweeps by argv token."""

from __future__ import annotations

import sys

import pytest
from proctree_helpers import Runner

import proctree

pytestmark = pytest.mark.skipif(sys.platform != "darwin", reason="macOS-only behaviour")


def test_capabilities_report_the_macos_path() -> None:
    caps = proctree.capabilities()
    assert not caps.has_subreaper and not caps.has_pdeathsig and caps.has_process_groups
    assert not proctree.enable_subreaper()
    assert "preexec_fn" not in proctree.spawn_options("m")


def test_token_finds_escapee_where_environ_is_unreadable(run: Runner) -> None:
    tree = run.start(mark=run.mark, escape=True, scrub_escapee=True, ignore_term=True)
    res = proctree.terminate_tree(tree.root, group=tree.containment, token=run.token, grace=0.5)
    assert res.clean
    assert not [i for i in tree.ids() if proctree.is_alive(i)]


def test_polling_wait_sees_exit_without_kqueue(run: Runner) -> None:
    tree = run.start(mark=run.mark)
    tree.popen.stdin.close()
    assert proctree.wait_gone([tree.root], timeout=60) == set()
