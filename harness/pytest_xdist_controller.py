"""The leak check in an xdist controller: what it starts itself, its workers aside.

The controller runs no test, but conftest hooks and plugins run in it (pytest_sessionfinish,
pytest_runtest_logreport, ...), and what they start outlives pytest as surely as a worker's
leaks do. Its own descendants are judged at the session's end as a run without xdist judges
what no checked test started: from the moment the tests begin (the first test a worker starts)
on; what ran before (configure, sessionstart) is the session's own. The workers and their
lineage judge themselves: each worker is handed over when xdist starts it, its descendants
follow by the parent chain, and an orphan of theirs that a subreaper controller adopts by the
run id xdist puts in the workers' environment.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from harness.leak_tracker import LeakTracker

CONTROLLER = "no test: a hook or plugin run in the xdist controller after the tests began"
RUN_ID_VAR = "PYTEST_XDIST_TESTRUNUID"  # set in each worker's environment by xdist


class ControllerCheck:
    """Registered in every process that is not an xdist worker; acts once a worker starts."""

    def __init__(self, tracker: LeakTracker) -> None:
        self.tracker = tracker
        self.has_workers = False
        self.began = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """A worker is set up (again, after a crash): its lineage is its own to judge."""
        gateway = node.gateway
        if not gateway.spec.popen:
            return  # another machine's process: nothing of it is ours
        # Cached by xdist before this hook (WorkerController.setup): no round trip.
        pid = gateway._rinfo().pid
        self.tracker.hand_over(pid)
        self.tracker.attribution.elsewhere = (RUN_ID_VAR, str(node.workerinput["testrunuid"]))
        self.has_workers = True

    def pytest_runtest_logstart(self) -> None:
        # A worker began its first test: what the controller starts from now on is judged.
        if self.has_workers and not self.began:
            self.began = True
            self.tracker.tests_begin(CONTROLLER)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, Any, Any]:
        # xdist ends its workers in its own pytest_sessionfinish: their descendants are seen
        # under them now, before a subreaper controller adopts those that outlive them.
        if self.began:
            self.tracker.look()
        return (yield)
