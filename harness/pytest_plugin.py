"""pytest plugin: fail a test that leaves processes behind.

Enable it for every test with ``pytest --leak-check``, for one test with
``@pytest.mark.leak_check`` (``@pytest.mark.leak_check(enabled=False)`` opts out), or by requesting
the ``leak_check`` fixture. After the test's teardown, every process the test started that is still
alive (not a zombie) is a leak: the test gets an error at teardown naming each one (pid, age,
command line), and the plugin kills them so the next test starts clean: stopped, then killed, then
looked for again until quiet (a process that forks and exits lives on under new pids). It never
reaps them: a killed child of pytest itself stays a zombie until its owner (a Popen, pexpect,
asyncio) waits.
Before killing, it runs the garbage collector once: a leak that ends then is named as such (its
owner was left unclosed in a reference cycle, and only its finalizer ended it). A leak that a live
object still holds (a ``*Popen``: subprocess's, multiprocessing's, loky's; a ptyprocess: in a cache,
a session-wide object a test filled lazily), and that one's own tree, is reported but killed only
at the session's end, so that the later tests that reuse it do not fail for it.

How a process is tied to a test:
- the parent chain: processes seen as descendants of this pytest process (at every change of
  owner, and by a sampler thread while a test runs) inherit the owner of their parent, keyed by
  identity ``(pid, create_time)``; pytest's own children belong to the owner current then, and
  so do a forkserver's (it forks for whoever runs now, with the environment it started with);
- a token in the environment (``LEAKPROOF_LEAK_CHECK=<session>.<owner>``), set while the test runs
  and inherited by its children; it finds reparented (escaped) descendants. A token is taken only
  if its owner was current when the process was created, or had ended by then (a late fork of
  its lineage): an environment copied while another owner was current (a session fixture's
  ``{**os.environ, ...}``) names that owner, not the test that started the process with it, which
  is then the owner current at the process's creation.
- a thread that a test started and left running may spawn while a later test runs, and the token
  then names the later test: where the kernel still lists the process among that thread's
  children (Linux, the thread alive), the leak is put on the test that left the thread; otherwise
  the report names the threads earlier tests left running that were alive meanwhile
  (harness/pytest_threads.py).
- a daemon (double fork, setsid) started with an empty environment carries no token and is
  no descendant, nor does one that forks without exec (a copy of pytest itself: the kernel shows
  the environment pytest started with, from before the token was set): on Linux,
  ``--leak-check-subreaper`` makes pytest a child subreaper, so such orphans are reparented to
  pytest instead of init and the parent chain finds them.
Processes started while a module/class/session fixture sets up or tears down (within a test's
setup or teardown) belong to that fixture and are only judged after it is torn down; so do those
that an object reachable from such a fixture's live value holds (a session-wide process pool
that starts or replaces its workers while a test uses it: LeakCheckPlugin._give_to_fixtures). With
``--leak-check``, those of no checked test (a hook's, a thread's after its test's teardown) are
judged at the session's end, once the threads tests left running have had up to the timeout to
end. Under pytest-xdist each worker judges its own descendants
only; the token carries a per-process session tag, so workers never claim each other's processes.
A worker's session-end findings go to the controller in its workeroutput, which shows them and
fails the run (the worker's own terminal is not seen). With ``--leak-check`` the controller judges
its own descendants at the session's end, its workers' lineage aside
(harness/pytest_xdist_controller.py).

Before failing, the check retries with backoff up to ``--leak-check-timeout`` seconds (goleak-style)
so that a child which is already on its way out is not a false positive.

This module must stay cheap to import (it is loaded by every pytest run): psutil is imported lazily,
here and in the modules it imports: harness/leak_tracker.py (the bookkeeping),
harness/leak_owners.py (which owner a process belongs to), harness/leak_procs.py (psutil's facts
and the waits) and harness/leak_text.py (the reports).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from cliargs import NON_NEGATIVE
from harness.leak_owners import Owner
from harness.leak_procs import now, terminate_pools_of
from harness.leak_text import (
    FIX_HINT,
    format_leaks,
    gc_note,
    held_note,
    stopped_note,
    survivors_note,
)
from harness.leak_tracker import Leak, LeakTracker
from harness.pytest_threads import Lingering, LingeringThreads, doubt
from harness.pytest_xdist_controller import ControllerCheck

if TYPE_CHECKING:
    import psutil

DEFAULT_TIMEOUT_S = 2.5
DEFAULT_INTERVAL_S = 1.0  # fallback sampler only: the token does the main work


class LeakCheckHandle:
    """What the ``leak_check`` fixture gives a test."""

    def __init__(self, tracker: LeakTracker, owner: Owner) -> None:
        self._tracker = tracker
        self._owner = owner

    def processes(self) -> list[psutil.Process]:
        """Live processes attributed to this test so far."""
        import psutil

        out = []
        for proc in self._tracker.owned_alive(self._owner):
            try:
                out.append(psutil.Process(proc.pid))
            except psutil.NoSuchProcess:
                continue
        return out

    def ignore(self, pid: int) -> None:
        """Let this process outlive the test (the test takes care of it)."""
        self._tracker.ignore(pid)


_plugin_key = pytest.StashKey["LeakCheckPlugin"]()
_marker_problem_key = pytest.StashKey[str]()


def _marker_problem(marker: pytest.Mark) -> str | None:
    """What is wrong with a leak_check marker's arguments, if anything."""
    unknown = set(marker.kwargs) - {"enabled", "timeout"}
    if unknown:
        return f"@pytest.mark.leak_check: unknown argument(s) {', '.join(sorted(unknown))}"
    if len(marker.args) > 1 or ("enabled" in marker.kwargs and marker.args):
        return "@pytest.mark.leak_check takes one `enabled` argument at most"
    enabled = marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
    if not isinstance(enabled, bool):
        return f"@pytest.mark.leak_check: enabled must be True or False, not {enabled!r}"
    timeout = marker.kwargs.get("timeout")
    if timeout is None:
        return None
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout >= 0):
        return f"@pytest.mark.leak_check: timeout must be a number of seconds >= 0, not {timeout!r}"
    return None


def _ini_seconds(config: pytest.Config, name: str) -> float:
    """An ini value in seconds (>= 0); a bad one is a usage error, not an INTERNALERROR."""
    raw = config.getini(name)
    try:
        return NON_NEGATIVE(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name}: {exc}") from None


def _become_subreaper() -> str:
    """--leak-check-subreaper: "on", or why it is off. Orphans in the tree of a subreaper are
    reparented to it rather than to init: a daemon a test started stays our descendant, so the
    parent chain finds it even with its token scrubbed from its environment."""
    if sys.platform != "linux":
        return "off (Linux only)"
    from proctree import enable_subreaper

    return "on" if enable_subreaper(despite_fallback=True) else "off (prctl refused it)"


_owner_key = pytest.StashKey["tuple[Owner, int, str | None]"]()


@dataclass
class _FixtureOwner:
    """A higher-scoped fixture's owner, made current again for its teardown."""

    owner: Owner
    label: str
    previous: tuple[int, str | None] | None = None  # what to restore after its teardown
    # Its value (a pool, a server object): a process it holds is the fixture's, whoever ran
    # when the object started it (see LeakCheckPlugin._give_to_fixtures).
    value: object = None

    def resume(self, tracker: LeakTracker) -> None:
        self.previous = tracker.resume(self.owner)


# The threads alive at a checked test's start, and those earlier tests left running then.
_threads_key = pytest.StashKey["tuple[frozenset[int], list[Lingering]]"]()
# An opted-out test's owner (with --leak-check): not judged at its teardown, at the session's end.
_opted_out_key = pytest.StashKey["tuple[Owner, int, str | None]"]()
# An xdist worker's session-end report, in its workeroutput: [(text, red)].
_WORKER_REPORT = "leak_check_session_end"


def _writer(reporter: Any) -> Callable[[str, bool], None]:
    def emit(text: str, red: bool) -> None:
        reporter.write_line(text, red=red)
        reporter.flush()

    return emit


class LeakCheckPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.everywhere = bool(config.getoption("leak_check"))
        timeout = config.getoption("leak_check_timeout")
        self.timeout = (
            timeout if timeout is not None else _ini_seconds(config, "leak_check_timeout")
        )
        self.tracker = LeakTracker(
            timeout=self.timeout,
            interval=_ini_seconds(config, "leak_check_interval"),
            kill=not config.getoption("leak_check_keep"),
        )
        # id(fixturedef) -> its owners (one per setup): the owner, its label, and what to
        # restore once its teardown is over (set when the teardown begins).
        self._fixture_owners: dict[int, list[_FixtureOwner]] = {}
        self.checked = 0
        self.leaked: list[Leak] = []
        self._item: pytest.Item | None = None  # the checked test now running, if any
        self._tearing_down: pytest.Item | None = None  # the test tearing down, checked or not
        self.threads = LingeringThreads()
        self.subreaper = _become_subreaper() if config.getoption("leak_check_subreaper") else None
        self.tracker.attribution.adopting = self.subreaper == "on"
        self._in_worker = hasattr(config, "workerinput")  # an xdist worker
        self._workers_leaked = False  # an xdist controller: a worker's session-end check failed

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        adopting = f", subreaper {self.subreaper}" if self.subreaper else ""
        if not self.everywhere:
            return f"leak-check: marked tests{adopting}" if adopting else None
        kill = "killed" if self.tracker.kill else "kept"
        return f"leak-check: every test, retry up to {self.timeout:g} s, leaks {kill}{adopting}"

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """A marker whose arguments make no sense is a usage error, as the same values given
        on the command line are (a string timeout was a traceback at setup and at teardown)."""
        for item in items:
            for marker in item.iter_markers("leak_check"):
                problem = _marker_problem(marker)
                if problem and hasattr(self.config, "workerinput"):
                    # An xdist worker: a usage error here is an INTERNALERROR of the controller.
                    # The test fails at its setup instead, saying why.
                    item.stash[_marker_problem_key] = problem
                elif problem:
                    raise pytest.UsageError(f"{item.nodeid}: {problem}")

    def enabled_for(self, item: pytest.Item) -> tuple[bool, float]:
        marker = item.get_closest_marker("leak_check")
        timeout = self.timeout
        if marker is not None:
            if marker.kwargs.get("timeout") is not None:
                timeout = float(marker.kwargs["timeout"])
            enabled = marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
            return bool(enabled), timeout
        fixturenames = getattr(item, "fixturenames", ())
        return self.everywhere or "leak_check" in fixturenames, timeout

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        problem = item.stash.get(_marker_problem_key, None)
        if problem:
            result = yield  # pytest's own setup runs (its teardown expects it), then the failure
            pytest.fail(problem, pytrace=False)
            return result
        enabled, _ = self.enabled_for(item)
        if enabled:
            suspects = self.threads.alive_besides(item.nodeid)
            item.stash[_threads_key] = (LingeringThreads.snapshot(), suspects)
            item.stash[_owner_key] = self.tracker.begin(item.nodeid)
            self._item = item
            self.tracker.activate()
        elif self.everywhere:
            # Opted out: what it leaves running is not its failure, yet it still outlives
            # pytest: judged at the session's end under its name. (Were it the first test, it
            # had been taken for the session's own, at configure, and left running.)
            item.stash[_opted_out_key] = self.tracker.begin(f"{item.nodeid} (opted out)")
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        # request.node is the module/class/session node here: use the running test instead.
        if self._item is None or fixturedef.scope == "function":
            return (yield)
        label = f"fixture {fixturedef.argname!r} ({fixturedef.scope})"
        owner, current, env_value = self.tracker.begin(label)
        threads_before = LingeringThreads.snapshot()
        record = _FixtureOwner(owner, label)
        try:
            record.value = yield
            return record.value
        finally:
            self.threads.left_by(label, threads_before, by_test=False)
            self.tracker.restore(owner, current, env_value)
            self._fixture_owners.setdefault(id(fixturedef), []).append(record)
            # Finalizers run last in first: this one, added after the fixture's own teardown,
            # runs before it, so that what the teardown starts is the fixture's too, not the
            # test's whose teardown it runs in (pytest_fixture_post_finalizer restores).
            fixturedef.addfinalizer(lambda: record.resume(self.tracker))

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        stack = self._fixture_owners.get(id(fixturedef))
        if stack:
            record = stack.pop()
            if record.previous is not None:
                self.tracker.restore(record.owner, *record.previous)
            # The test in whose teardown it ran, checked or not (request.node is the Session
            # for a session fixture: its nodeid is "").
            item = self._item or self._tearing_down
            where = item.nodeid if item is not None else request.node.nodeid or "the session"
            self.tracker.end(record.owner, f"{record.label}, torn down after {where}")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        begun = item.stash.get(_owner_key, None)
        self._tearing_down = item
        opted_out = item.stash.get(_opted_out_key, None)
        if opted_out is not None:
            try:
                return (yield)
            finally:
                self._tearing_down = None
                self.tracker.restore(*opted_out)  # its processes stay its own, unjudged
        try:
            result = yield
        except BaseException as exc:
            self._tearing_down = None
            if begun is not None:
                quick = isinstance(exc, KeyboardInterrupt)
                message = self._judge(item, begun, timeout=0.0 if quick else None)
                if message:
                    item.add_report_section("teardown", "leak-check", message)
            raise
        self._tearing_down = None
        if begun is not None:
            message = self._judge(item, begun)
            if message:
                pytest.fail(message, pytrace=False)
        return result

    def _judge(
        self, item: pytest.Item, begun: tuple[Owner, int, str | None], timeout: float | None = None
    ) -> str | None:
        owner, current, env_value = begun
        self._item = None
        # The first look for leaks absorbs new descendants as this test's: no scan here.
        self.tracker.deactivate()
        self.tracker.restore(owner, current, env_value, absorb=False)
        self.tracker.end(owner)
        self.checked += 1
        if timeout is None:
            timeout = self.enabled_for(item)[1]
        window = self.tracker.take_window()
        first = None
        if self._live_fixture_values():  # not waited for: a fixture's pool does not end
            first = self.tracker.find_leaks(*window, fallback=owner.number)
            self._give_to_fixtures(first[0])
        if first == ([], 0, 0):
            # Nothing left, nothing ending: the wait's own first look would return at once.
            # Looked once, not twice, at every clean test's teardown.
            leaks: list[Leak] = []
            waited = 0.0
        else:
            leaks, waited = self.tracker.wait_for_leaks(window, timeout, fallback=owner.number)
        item.user_properties.append(("leak_check_wait_s", round(waited, 3)))
        before, suspects = item.stash.get(_threads_key, (frozenset(), []))
        self.threads.left_by(owner.label, before)
        if not leaks:
            return None
        leaks, doubtful = self._blame_threads(leaks, owner.label, suspects)
        collected, held = self.tracker.after_gc(leaks)
        # One started during the wait (a pool replacing a worker), or one held in the tree of
        # another: what a fixture's object holds is not this test's.
        given = self._give_to_fixtures([leak for leak in leaks if leak.pid in held])
        if given:
            leaks = [leak for leak in leaks if leak.pid not in given]
            held = {pid: kind for pid, kind in held.items() if pid not in given}
            if not leaks:
                return None
        survivors = self.tracker.settle(leaks, spare=held, window=window, fallback=owner.number)
        self.leaked.extend(leaks)
        mine = sum(1 for leak in leaks if leak.owner == owner.label)
        # With a thread of an earlier test alive meanwhile, the token says less (see doubt()).
        ours = "with this test's token" if doubtful else "started by this test"
        header = (
            f"leak-check: {len(leaks)} process(es) still running {waited:.1f} s after the "
            f"teardown of {item.nodeid} ({mine} {ours}, "
            f"{len(leaks) - mine} by earlier tests or fixtures):"
        )
        killed = self.tracker.kill and not survivors and len(held) < len(leaks)
        text = format_leaks(leaks, header=header, killed=killed, spared=len(held))
        notes = stopped_note(leaks)
        notes += [gc_note(collected)] if collected else []
        notes += [held_note(held)] if held and self.tracker.kill else []
        notes += [doubt(doubtful)] if doubtful else []
        notes += [survivors_note(survivors)] if survivors and self.tracker.kill else []
        return "\n".join([text, *notes, FIX_HINT])

    def _live_fixture_values(self) -> list[_FixtureOwner]:
        """The higher-scoped fixtures set up and not yet torn down that have a value."""
        return [
            record
            for stack in self._fixture_owners.values()
            for record in stack
            if record.value is not None and not record.owner.ended
        ]

    def _give_to_fixtures(self, leaks: list[Leak]) -> set[int]:
        """The leaks that an object a live higher-scoped fixture holds (its value, or what that
        refers to) owns, given to that fixture with their lineage; returns their pids.

        A session-wide ProcessPoolExecutor starts its workers on the first submit, and a Pool
        with maxtasksperchild replaces them from its handler thread: while a test runs, and so
        with its token. They are the fixture's to end at its teardown, and judged then."""
        from harness.leak_procs import live_holders, reachable

        records = self._live_fixture_values()
        holders = live_holders({leak.pid for leak in leaks}) if records else {}
        if not holders:
            return set()
        left = {id(holder): pid for pid, holder in holders.items()}
        given: set[int] = set()
        for record in records:
            if not left:
                break
            found = reachable(record.value, left.keys())
            # Their lineage goes with them (a worker's own subprocess).
            given |= self.tracker.give([left.pop(key) for key in found], record.owner.number)
        return given

    @staticmethod
    def _blame_threads(
        leaks: list[Leak], label: str, suspects: list[Lingering]
    ) -> tuple[list[Leak], list[Lingering]]:
        """Leaks this test's token names that a thread an earlier test left running forked:
        put on that test where the kernel says so; the suspects, if any leak is left in doubt."""
        if not suspects:
            return leaks, []
        blamed: list[Leak] = []
        doubtful = False
        for leak in leaks:
            thread, certain = LingeringThreads.forked_by(suspects, leak.pid)
            if leak.owner == label and thread is not None:
                by = f"{thread.owner}, by the thread {thread.name!r} it left running"
                leak = dataclasses.replace(leak, owner=by)
            doubtful = doubtful or (leak.owner == label and not certain)
            blamed.append(leak)
        return blamed, suspects if doubtful else []

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, Any, Any]:
        # Runs after the last teardown: on Ctrl-C, the tests' teardowns were skipped, so this is
        # where whatever the interrupted test started gets ended.
        result = yield
        if self._workers_leaked and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # an xdist controller
        if not self._in_worker:
            self._finish_session(session, exitstatus)
        return result

    @pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_in_worker(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, Any, Any]:
        # An xdist worker sends its last event to the controller once the wrappers inside
        # xdist's have returned: judged here, tryfirst, the report went to the worker's
        # terminal, which nobody sees, and the run passed. Judged innermost instead, after the
        # session's fixtures are torn down, and the report handed on in workeroutput.
        result = yield
        if self._in_worker:
            lines: list[tuple[str, bool]] = []
            self._finish_session(session, exitstatus, lambda text, red: lines.append((text, red)))
            if lines:
                self.config.workeroutput[_WORKER_REPORT] = lines  # type: ignore[attr-defined]
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """An xdist controller: show what a worker's session-end check found (it failed)."""
        lines = getattr(node, "workeroutput", {}).get(_WORKER_REPORT)
        if not lines:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        gateway = getattr(getattr(node, "gateway", None), "id", "worker")
        for text, red in lines:
            if red:
                self._workers_leaked = True
            if reporter is not None:
                reporter.ensure_newline()  # not at the end of the progress dots
                # ensure_newline() knows only of pytest's own progress, not xdist's dots: the
                # report's first line was glued to them.
                writer = getattr(reporter, "_tw", None)
                if getattr(writer, "width_of_current_line", 0):
                    reporter.write("\n")
                for line in text.splitlines():
                    reporter.write_line(f"[{gateway}] {line}", red=red)

    def _finish_session(
        self,
        session: pytest.Session,
        exitstatus: int,
        emit: Callable[[str, bool], None] | None = None,
    ) -> None:
        if not self.tracker._tests_began:  # no checked test ever began here
            return
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        with self.tracker._lock:
            for owner in self.tracker._state.owners.values():
                # Processes of no checked test (started at collection, by a hook, or by a
                # thread after its test's teardown) are judged too when every test is checked:
                # they outlive pytest as surely as a test's. With marked tests only, not ours.
                if owner.number > 0 or (owner.number == 0 and self.everywhere):
                    owner.ended = True
                    owner.ended_at = min(owner.ended_at, now())
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if emit is None and reporter is not None:
            emit = _writer(reporter)
        try:
            self._end_session(session, emit, interrupted)
        except KeyboardInterrupt:
            # A Ctrl-C during the last wait (it looks like a stall): the last look, at once,
            # and the run ends as interrupted (re-raised here, it was a bare traceback).
            self._end_session(session, emit, interrupted=True)
            session.exitstatus = pytest.ExitCode.INTERRUPTED

    def _end_session(
        self, session: pytest.Session, emit: Callable[[str, bool], None] | None, interrupted: bool
    ) -> None:
        everything = (0.0, frozenset[int]())  # look at every process for our tokens
        spared = self.tracker.end_spared()  # first: their trees go with them
        if spared and emit is not None:
            verb = "killed" if self.tracker.kill else "left running"
            pids = ", ".join(str(leak.pid) for leak in spared)
            emit(
                f"leak-check: {verb} at session end the {len(spared)} process(es) it spared for "
                f"later tests (reported at their tests' teardown): {pids}",
                False,
            )
        if not interrupted:
            self.threads.join(self.timeout)  # their late spawns, if any, before the last look
            alive = self.threads.alive_besides("")
            if alive and emit is not None:
                names = ", ".join(f"{lt.owner} ({lt.name!r})" for lt in alive[:5])
                emit(
                    f"leak-check: {len(alive)} thread(s) that tests left running still run at "
                    f"session end; what they start from now on is not checked: {names}",
                    False,
                )
        leaks, _ = self.tracker.wait_for_leaks(everything, 0.0)
        if leaks and not interrupted and self.timeout > 0:
            if emit is not None and not self._in_worker:  # else pytest seems to stall here
                emit(
                    f"leak-check: {len(leaks)} process(es) still running at session end: "
                    f"waiting up to {self.timeout:g} s for them to end (Ctrl-C ends them now)",
                    False,
                )
            leaks, _ = self.tracker.wait_for_leaks(everything, self.timeout)
        if leaks:
            collected, _ = self.tracker.after_gc(leaks)  # nothing is spared any longer
            if self.tracker.kill:
                terminate_pools_of([leak.pid for leak in leaks])  # before its workers die
            survivors = self.tracker.settle(leaks)
            self.leaked.extend(leaks)
            text = format_leaks(
                leaks,
                header=f"leak-check: {len(leaks)} process(es) still running at session end:",
                killed=self.tracker.kill and not survivors,
            )
            notes = stopped_note(leaks)
            notes += [gc_note(collected)] if collected else []
            notes += [survivors_note(survivors)] if survivors and self.tracker.kill else []
            if emit is not None:
                emit("\n".join([text, *notes]), True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("leak-check", "fail tests that leave processes behind")
    group.addoption(
        "--leak-check",
        action="store_true",
        default=False,
        help="fail any test that leaves descendant processes running after its teardown",
    )
    group.addoption(
        "--leak-check-timeout",
        type=NON_NEGATIVE,
        default=None,
        help=f"seconds to keep retrying before a survivor counts as leaked "
        f"(default {DEFAULT_TIMEOUT_S})",
    )
    group.addoption(
        "--leak-check-keep",
        action="store_true",
        default=False,
        help="report leaked processes but do not kill them",
    )
    group.addoption(
        "--leak-check-subreaper",
        action="store_true",
        default=False,
        help="Linux: make pytest a child subreaper, so that a daemon a test starts (a double "
        "fork, setsid, a scrubbed environment, or no exec at all) is reparented to pytest and "
        "found; a test's "
        "orphans then become pytest's children (os.wait() may return them; their zombies stay "
        "until pytest exits)",
    )
    parser.addini(
        "leak_check_timeout", "default for --leak-check-timeout", default=str(DEFAULT_TIMEOUT_S)
    )
    parser.addini(
        "leak_check_interval",
        "seconds between descendant samples while a checked test runs (0 = off)",
        default=str(DEFAULT_INTERVAL_S),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leak_check(enabled=True, timeout=None): fail the test if it leaves processes behind",
    )
    plugin = LeakCheckPlugin(config)
    config.stash[_plugin_key] = plugin
    config.pluginmanager.register(plugin, "leak-check-tracker")
    if plugin.everywhere and not plugin._in_worker:  # what an xdist controller starts itself
        config.pluginmanager.register(ControllerCheck(plugin.tracker), "leak-check-controller")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(_plugin_key, None)
    if plugin is not None:
        plugin.tracker.close()


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> LeakCheckHandle:
    """Turn the leak check on for this test; the handle lists or excuses its processes."""
    plugin = request.config.stash[_plugin_key]
    begun = request.node.stash.get(_owner_key, None)
    if begun is None:  # enabled=False marker wins over the fixture
        pytest.skip("leak_check fixture requested but the check is disabled by a marker")
    return LeakCheckHandle(plugin.tracker, begun[0])
