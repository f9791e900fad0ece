"""The leak-check plugin, run for real: inner pytest sessions whose tests start real processes."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from leakcheck_helpers import processes_with, wait_until, wait_until_gone

pytest_plugins = ["pytester"]

# Every inner test file starts with this: a sleeper command carrying the outer test's marker.
PRELUDE = """
import os, subprocess, sys, time
from pathlib import Path
import pytest

MARKER = {marker!r}
OUT = Path({out!r})
SLEEP = "import sys, time; time.sleep(float(sys.argv[1]))"

def sleeper(seconds, name):
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, str(seconds), MARKER])
    (OUT / (name + ".pid")).write_text(str(proc.pid))
    return proc

def wait_for(path, deadline=60.0):
    end = time.monotonic() + deadline
    while not path.exists():
        assert time.monotonic() < end, f"{{path}} never appeared"
        time.sleep(0.02)
"""

INNER_ARGS = ("-p", "no:cacheprovider", "-p", "no:randomly")


def write_tests(pytester: pytest.Pytester, marker: str, body: str, name: str = "test_inner"):
    out = pytester.path / "out"
    out.mkdir(exist_ok=True)
    source = PRELUDE.format(marker=marker, out=str(out)) + textwrap.dedent(body)
    pytester.makepyfile(**{name: source})
    return out


def pid_of(out: Path, name: str) -> int:
    return int((out / f"{name}.pid").read_text())


def _kill_blank_child(out: Path) -> None:
    """The inner tests' blank-argv child carries no marker for the fixture to find it by: killed
    by the pid it wrote, if that is still it (argv [" "])."""
    with contextlib.suppress(psutil.Error, OSError):
        proc = psutil.Process(pid_of(out, "blank"))
        if proc.cmdline() == [" "]:
            proc.kill()


def teardown_errors(output: str) -> dict[str, str]:
    """Map test name -> text of its 'ERROR at teardown' section in pytest's output."""
    sections: dict[str, str] = {}
    output = re.split(r"^=+ short test summary info =+$", output, flags=re.M)[0]
    parts = re.split(r"_+ ERROR at teardown of (\S+) _+", output)
    for name, text in zip(parts[1::2], parts[2::2], strict=True):
        sections[name.split("::")[-1]] = text
    return sections


LEAKY = """
def test_leaks():
    sleeper(600, "leaks")

def test_clean():
    sleeper(0, "clean").wait()
"""


def test_leaked_sleeping_child_fails_naming_it(pytester: pytest.Pytester, marker: str) -> None:
    out = write_tests(pytester, marker, LEAKY)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=2, errors=1)
    pid = pid_of(out, "leaks")
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_leaks"}
    section = errors["test_leaks"]
    assert "started by test_inner.py::test_leaks:" in section
    # pid, ppid, age, then the command line
    assert re.search(rf"^\s+{pid}\s+\d+\s+[\d.]+s\s+.*{marker}$", section, re.M), section
    assert "leak-check killed them." in section
    assert "hint: end what the test starts before it returns" in section
    # The plugin killed it: nothing carrying the marker survives the inner run.
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP: POSIX")
def test_a_stopped_leak_is_named_stopped(pytester: pytest.Pytester, marker: str) -> None:
    """A child left stopped (here SIGSTOP; a background read of the terminal does it too) does
    not end on SIGTERM or EOF: the report says so, and the kill still takes it."""
    out = write_tests(
        pytester,
        marker,
        """
        import signal

        def test_leaves_it_stopped():
            proc = sleeper(600, "stopped")
            os.kill(proc.pid, signal.SIGSTOP)
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    pid = pid_of(out, "stopped")
    section = teardown_errors(result.stdout.str())["test_leaves_it_stopped"]
    assert re.search(rf"^\s+{pid}\s+\d+\s+[\d.]+s\s+\(stopped\) .*{marker}$", section, re.M), (
        section
    )
    assert "note: 1 of them were stopped when judged" in section, section
    assert "leak-check killed them." in section
    assert wait_until_gone(marker) == []


def test_without_the_option_only_marked_tests_are_checked(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(
        pytester,
        marker,
        """
        def test_unchecked_leak():
            sleeper(600, "unchecked")

        @pytest.mark.leak_check
        def test_marked_leak():
            sleeper(600, "marked")

        def test_fixture_leak(leak_check):
            proc = sleeper(600, "fixture")
            assert proc.pid in [p.pid for p in leak_check.processes()]

        @pytest.mark.leak_check
        def test_marked_ignored(leak_check):
            proc = sleeper(600, "ignored")
            leak_check.ignore(proc.pid)
        """,
    )
    result = pytester.runpytest_subprocess(*INNER_ARGS)
    result.assert_outcomes(passed=4, errors=2)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_marked_leak", "test_fixture_leak"}
    assert str(pid_of(out, "marked")) in errors["test_marked_leak"]
    assert str(pid_of(out, "fixture")) in errors["test_fixture_leak"]
    # The unchecked and the excused sleepers are still running: the plugin only touches leaks.
    alive = {proc.pid for proc in processes_with(marker)}
    assert alive == {pid_of(out, "unchecked"), pid_of(out, "ignored")}


OPTED_OUT = """
@pytest.mark.leak_check(enabled=False)
def test_opted_out():
    sleeper(600, "opted")
"""
CHECKED = """
def test_checked():
    pass
"""


@pytest.mark.parametrize("first", ["opted_out", "checked"])
def test_an_opted_out_tests_leak_is_judged_at_session_end_in_any_order(
    pytester: pytest.Pytester, marker: str, first: str
) -> None:
    """First in the run, an opted-out test's process was taken for the session's own (as if
    started at configure) and outlived pytest unreported; after a checked test, it was reported
    at the session's end as started by no checked test. Now, in either order: not its test's
    failure, reported at the session's end under its name, and killed."""
    body = OPTED_OUT + CHECKED if first == "opted_out" else CHECKED + OPTED_OUT
    out = write_tests(pytester, marker, body)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "leak-check: 1 process(es) still running at session end:" in text, text
    assert "started by test_inner.py::test_opted_out (opted out):" in text, text
    assert str(pid_of(out, "opted")) in text
    assert wait_until_gone(marker) == []


SLOW_EXIT = """
CHILD = (
    "import sys, time; from pathlib import Path; out = Path(sys.argv[1]);"
    "(out / 'started').write_text(repr(time.time()));"
    "time.sleep(float(sys.argv[2]));"
    "(out / 'exiting').write_text(repr(time.time()))"
)

def test_child_exits_slowly():
    subprocess.Popen([sys.executable, "-c", CHILD, str(OUT), "{seconds}", MARKER])
    wait_for(OUT / "started")
    (OUT / "returned").write_text(repr(time.time()))
"""


def test_child_exiting_within_the_backoff_passes(pytester: pytest.Pytester, marker: str) -> None:
    out = write_tests(pytester, marker, SLOW_EXIT.format(seconds=2.0))
    result = pytester.runpytest_subprocess("--leak-check", "--leak-check-timeout=30", *INNER_ARGS)
    result.assert_outcomes(passed=1)
    # The child outlived the test body: the check had to wait for it, and did.
    assert float((out / "exiting").read_text()) > float((out / "returned").read_text())


def test_same_slow_child_is_a_leak_without_the_backoff(
    pytester: pytest.Pytester, marker: str
) -> None:
    write_tests(pytester, marker, SLOW_EXIT.format(seconds=600))
    result = pytester.runpytest_subprocess("--leak-check", "--leak-check-timeout=0", *INNER_ARGS)
    result.assert_outcomes(passed=1, errors=1)
    assert wait_until_gone(marker) == []


def test_reparented_grandchild_is_found_and_attributed(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(
        pytester,
        marker,
        """
        # The middle process starts a detached grandchild and exits: the grandchild is reparented
        # (to init or a subreaper) and no longer descends from pytest.
        MIDDLE = (
            "import subprocess, sys;"
            "kw = dict(start_new_session=True) if sys.platform != 'win32' else "
            "dict(creationflags=subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP);"
            "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '600', sys.argv[3]], **kw);"
            "open(sys.argv[2], 'w').write(str(p.pid))"
        )

        def test_orphans_a_grandchild():
            pidfile = OUT / "grandchild.pid"
            subprocess.run([sys.executable, "-c", MIDDLE, SLEEP, str(pidfile), MARKER], check=True)

        def test_next():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=2, errors=1)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_orphans_a_grandchild"}
    assert str(pid_of(out, "grandchild")) in errors["test_orphans_a_grandchild"]
    assert wait_until_gone(marker) == []


def test_module_fixture_processes_are_judged_at_its_teardown(
    pytester: pytest.Pytester, marker: str
) -> None:
    write_tests(
        pytester,
        marker,
        """
        @pytest.fixture(scope="module")
        def server():
            proc = sleeper(600, "server")
            yield proc
            proc.kill()
            proc.wait()

        def test_uses_server_a(server):
            assert server.poll() is None

        def test_uses_server_b(server):
            assert server.poll() is None
        """,
        name="test_tidy_fixture",
    )
    write_tests(
        pytester,
        marker,
        """
        @pytest.fixture(scope="module")
        def forgetful():
            yield sleeper(600, "forgetful")

        def test_uses_forgetful_a(forgetful):
            pass

        def test_uses_forgetful_b(forgetful):
            pass
        """,
        name="test_forgetful_fixture",
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=4, errors=1)
    errors = teardown_errors(result.stdout.str())
    # Not blamed on the first test that used it, but on the fixture, when it was torn down.
    assert set(errors) == {"test_uses_forgetful_b"}
    assert "fixture 'forgetful'" in errors["test_uses_forgetful_b"]
    assert wait_until_gone(marker) == []


def test_under_xdist_each_leak_is_attributed_to_its_test(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(
        pytester,
        marker,
        """
        def test_leak_a():
            sleeper(600, "a")

        def test_clean_1():
            sleeper(0, "c1").wait()

        def test_leak_b():
            sleeper(600, "b")

        def test_clean_2():
            sleeper(0, "c2").wait()
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2", "--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=4, errors=2)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_leak_a", "test_leak_b"}
    pid_a, pid_b = pid_of(out, "a"), pid_of(out, "b")
    assert str(pid_a) in errors["test_leak_a"] and str(pid_b) not in errors["test_leak_a"]
    assert str(pid_b) in errors["test_leak_b"] and str(pid_a) not in errors["test_leak_b"]
    assert wait_until_gone(marker) == []


def test_interrupted_session_kills_what_the_test_started(
    pytester: pytest.Pytester, marker: str
) -> None:
    write_tests(
        pytester,
        marker,
        """
        def test_interrupted():
            sleeper(600, "interrupted")
            raise KeyboardInterrupt
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert wait_until_gone(marker) == []


DAEMON = """
DAEMONIZE = '''
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
open(sys.argv[1], "w").write(str(os.getpid()))
# An empty environment, the leak-check token with it (os.environ.clear() would not do: the
# kernel still shows the environment the process was started with).
os.execve(sys.executable, [sys.executable, "-c", sys.argv[2], "600", sys.argv[3]], {})
'''

def test_starts_a_daemon():
    pid_file = str(OUT / "daemon.pid")
    subprocess.run([sys.executable, "-c", DAEMONIZE, pid_file, SLEEP, MARKER], check=True)
    wait_for(OUT / "daemon.pid")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="a child subreaper is Linux-only")
def test_a_scrubbed_daemon_is_found_with_the_subreaper(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(pytester, marker, DAEMON)
    try:
        # Without it: double fork, setsid and no token, so nothing ties the daemon to the test.
        missed = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
        missed.assert_outcomes(passed=1)
        assert processes_with(marker), "the daemon should have outlived the inner run"
    finally:
        for proc in processes_with(marker):
            proc.kill()
    assert wait_until_gone(marker) == []
    (out / "daemon.pid").unlink()
    found = pytester.runpytest_subprocess("--leak-check", "--leak-check-subreaper", *INNER_ARGS)
    found.assert_outcomes(passed=1, errors=1)
    assert "subreaper on" in found.stdout.str()
    section = teardown_errors(found.stdout.str())["test_starts_a_daemon"]
    assert f" {pid_of(out, 'daemon')} " in section and "leak-check killed them." in section
    assert wait_until_gone(marker) == []


# As pexpect's spawn and asyncio's subprocess transport do: a finalizer that ends the child, on
# an object left in a reference cycle. gc is off in the inner run, so only leak-check's own
# gc.collect() ends it.
CYCLE_OWNER = """
import gc

gc.disable()

class Owner:
    def __init__(self, name):
        self.proc = sleeper(600, name)
        self.me = self  # the cycle

    def __del__(self):
        self.proc.kill()
        self.proc.wait()
"""


def test_a_leak_that_only_the_garbage_collector_ends_is_named_so(
    pytester: pytest.Pytester, marker: str
) -> None:
    write_tests(
        pytester,
        marker,
        CYCLE_OWNER
        + textwrap.dedent(
            """
            def test_a_cycle():
                Owner("cycle")

            def test_b_plain():
                sleeper(600, "plain")
            """
        ),
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=2, errors=2)
    errors = teardown_errors(result.stdout.str())
    cycle, plain = pid_of(out := pytester.path / "out", "cycle"), pid_of(out, "plain")
    assert str(cycle) in errors["test_a_cycle"]
    assert (
        f"1 of them ({cycle}) ended only when leak-check ran gc.collect()" in errors["test_a_cycle"]
    )
    assert str(plain) in errors["test_b_plain"] and "gc.collect()" not in errors["test_b_plain"]
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform == "win32", reason="multiprocessing's resource tracker: POSIX")
def test_the_gc_note_holds_beside_a_helper_the_test_started(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Any live process with the test's token but the leaks was taken for a leak's fork that
    outlived it, and the note dropped: a spawn Pool in a cycle (its resource tracker, started by
    the test, runs on) was said to be killed by leak-check, not ended by the gc."""
    write_tests(
        pytester,
        marker,
        CYCLE_OWNER
        + textwrap.dedent(
            """
            import multiprocessing

            def test_a_cycle():
                multiprocessing.get_context("spawn").Lock()  # starts the resource tracker
                Owner("cycle")
            """
        ),
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=1, errors=1)
    section = teardown_errors(result.stdout.str())["test_a_cycle"]
    cycle = pid_of(pytester.path / "out", "cycle")
    assert f"1 of them ({cycle}) ended only when leak-check ran gc.collect()" in section, section
    assert wait_until_gone(marker) == []


def test_a_leak_found_at_session_end_that_only_the_garbage_collector_ends_is_named_so(
    pytester: pytest.Pytester, marker: str
) -> None:
    # The test is interrupted, so its teardown never judges it: the session's end does.
    write_tests(
        pytester,
        marker,
        CYCLE_OWNER
        + textwrap.dedent(
            """
            def test_interrupted():
                Owner("interrupted")
                raise KeyboardInterrupt
            """
        ),
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    pid = pid_of(pytester.path / "out", "interrupted")
    text = result.stdout.str()
    assert "1 process(es) still running at session end:" in text, text
    assert f"1 of them ({pid}) ended only when leak-check ran gc.collect()" in text, text
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform == "win32", reason="posix_spawn and wait statuses are POSIX")
def test_a_killed_leak_is_left_for_its_owner_to_reap(
    pytester: pytest.Pytester, marker: str
) -> None:
    # pexpect's own suite leaves `cat` children until gc collects their spawn objects; reaped by
    # the plugin, their owners' later waits failed ("Did someone else call waitpid()?"), and a
    # Popen's wait() said 0 instead of the SIGKILL. Here the owner keeps only the pid.
    write_tests(
        pytester,
        marker,
        """
        import signal

        LEFT = []

        def test_a_leaves_it():
            argv = [sys.executable, "-c", SLEEP, "600", MARKER]
            LEFT.append(os.posix_spawn(sys.executable, argv, os.environ))

        def test_b_its_owner_reaps_it():
            _, status = os.waitpid(LEFT[0], 0)
            assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=2, errors=1)
    assert set(teardown_errors(result.stdout.str())) == {"test_a_leaves_it"}
    assert wait_until_gone(marker) == []


# The owner: a subprocess.Popen, or a class of its own named like one (loky's, billiard's),
# which holds only the pid (checked alive with signal 0 then).
OWNERS = {
    "subprocess.Popen": "sleeper(600, 'shared')",
    "test_inner.WorkerPopen": "WorkerPopen()",
}


@pytest.mark.parametrize("kind", sorted(OWNERS))
def test_a_leak_a_live_object_still_holds_is_reported_but_spared(
    pytester: pytest.Pytester, marker: str, kind: str
) -> None:
    # execnet's suite: a function-scoped fixture starts a gateway on first use and caches it in
    # a session-wide group; killed after the first test, every later test that used it failed
    # (loky's: the workers of its reusable executor).
    write_tests(
        pytester,
        marker,
        f"""
        class WorkerPopen:
            def __init__(self):
                self.pid = sleeper(600, "shared").pid

            def poll(self):
                os.kill(self.pid, 0)  # raises once it is gone

        CACHE = {{}}

        @pytest.fixture
        def server():
            if "proc" not in CACHE:
                CACHE["proc"] = {OWNERS[kind]}
            return CACHE["proc"]

        def test_a_starts_it(server):
            pass

        def test_b_uses_it(server):
            assert server.poll() is None

        def test_c_uses_it_too(server):
            assert server.poll() is None
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=3, errors=1)
    out = result.stdout.str()
    section = " ".join(teardown_errors(out)["test_a_starts_it"].split())
    pid = pid_of(pytester.path / "out", "shared")
    assert f"left 1 of them running: a live object still holds each ({pid} ({kind}))" in section
    assert "make it in a session-scoped fixture that ends it" in section  # the way to allow it
    assert "leak-check left them running." not in section  # said once, by the note
    assert "killed at session end the 1 process(es) it spared" in out and str(pid) in out
    assert wait_until_gone(marker) == []


def test_sampler_does_not_disturb_the_tests_own_process_iter(
    pytester: pytest.Pytester, marker: str
) -> None:
    # psutil.process_iter() shares cached Process objects and overwrites their .info: a sampler
    # thread that used it would make a test's concurrent process_iter(["cmdline"]) lose keys.
    write_tests(
        pytester,
        marker,
        """
        import psutil

        def test_iterates_while_the_sampler_runs():
            sleeper(0, "short").wait()
            end = time.monotonic() + 3.0
            loops = 0
            while time.monotonic() < end:
                procs = list(psutil.process_iter(["cmdline"]))
                time.sleep(0.1)  # give the sampler a chance to run in between
                assert all("cmdline" in proc.info for proc in procs)
                loops += 1
            assert loops > 1
        """,
    )
    pytester.makeini("[pytest]\nleak_check_interval = 0.005\n")
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(sys.platform == "win32", reason="argv bytes that are not text: POSIX only")
def test_a_leak_with_an_unprintable_command_line_is_named_readably(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Undecodable bytes and a terminal escape in a leaked child's argv: the report shows
    them as escapes (not a crash of the report, not a cleared terminal) and the child ends."""
    out = write_tests(
        pytester,
        marker,
        """
        def test_leaks_odd_argv():
            odd = b"odd\\xff\\x1b[2J"
            proc = subprocess.Popen([sys.executable, "-c", SLEEP, "600", MARKER, odd])
            (OUT / "odd.pid").write_text(str(proc.pid))
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=1, errors=1)
    section = teardown_errors(result.stdout.str())["test_leaks_odd_argv"]
    assert str(pid_of(out, "odd")) in section
    assert "odd\\xff\\x1b[2J" in section and "\x1b[2J" not in section
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform == "win32", reason="argv[0] apart from the executable: POSIX")
def test_a_leak_with_a_blank_argv_is_named_by_its_executable(
    pytester: pytest.Pytester, marker: str
) -> None:
    """A child exec'd with blank arguments (as one that blanked its argv reads: perl's
    ``$0 = ""``): the report names it ``[comm]``, as ps does, not with an empty COMMAND cell
    (it was one, or spaces); one whose argv[0] alone is blank, ``[comm]`` and the rest."""
    out = write_tests(
        pytester,
        marker,
        """
        def test_all_blank():
            proc = subprocess.Popen([" "], executable=sys.executable, stdin=subprocess.PIPE)
            proc.stdin.write(b"import time; time.sleep(600)\\n")
            proc.stdin.close()
            (OUT / "blank.pid").write_text(str(proc.pid))

        def test_blank_argv0():
            proc = subprocess.Popen([" ", "-c", SLEEP, "600", MARKER], executable=sys.executable)
            (OUT / "argv0.pid").write_text(str(proc.pid))
        """,
    )
    try:
        result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
        result.assert_outcomes(passed=2, errors=2)
        errors = teardown_errors(result.stdout.str())
        row = r"^\s+{pid}\s+\d+\s+[\d.]+s  (.*)$"
        found = re.search(row.format(pid=pid_of(out, "blank")), errors["test_all_blank"], re.M)
        assert found and re.fullmatch(r"\[[^\]\s]+\]", found[1]), errors["test_all_blank"]
        section = errors["test_blank_argv0"]
        found = re.search(row.format(pid=pid_of(out, "argv0")), section, re.M)
        assert found and re.fullmatch(rf"\[[^\]\s]+\] -c .* 600 {marker}", found[1]), section
    finally:
        _kill_blank_child(out)
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_NAME): Linux only")
def test_a_leak_with_a_blank_argv_and_name_is_named_by_its_executable(
    pytester: pytest.Pytester, marker: str
) -> None:
    """perl's ``$0 = ""`` blanks the kernel's name (comm) as well as argv: the report named the
    leak ``[]``; it names it by its executable's file instead."""
    out = write_tests(
        pytester,
        marker,
        """
        # prctl(PR_SET_NAME, ""), then sleep
        BLANK_NAME = (
            "import ctypes, time; ctypes.CDLL(None).prctl(15, b'', 0, 0, 0); time.sleep(600)"
        )

        def test_all_blank():
            proc = subprocess.Popen([" "], executable=sys.executable, stdin=subprocess.PIPE)
            proc.stdin.write(BLANK_NAME.encode())
            proc.stdin.close()
            (OUT / "blank.pid").write_text(str(proc.pid))
            comm = Path(f"/proc/{proc.pid}/comm")
            end = time.monotonic() + 60
            while comm.read_text().strip():
                assert time.monotonic() < end, "the child never blanked its name"
                time.sleep(0.02)
        """,
    )
    try:
        result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
        result.assert_outcomes(passed=1, errors=1)
        section = teardown_errors(result.stdout.str())["test_all_blank"]
        row = rf"^\s+{pid_of(out, 'blank')}\s+\d+\s+[\d.]+s  (.*)$"
        found = re.search(row, section, re.M)
        assert found and re.fullmatch(r"\[python[^\]\s]*\]", found[1]), section
    finally:
        _kill_blank_child(out)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--leak-check-timeout=-1"], "must be >= 0"),
        (["-o", "leak_check_interval=abc"], "ini option leak_check_interval"),
        (["-o", "leak_check_timeout=nan"], "ini option leak_check_timeout"),
    ],
)
def test_bad_settings_are_usage_errors(pytester: pytest.Pytester, args, says) -> None:
    """Before: a bad ini value was an INTERNALERROR traceback, a negative timeout was taken."""
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--leak-check", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert says in result.stderr.str()
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


# test_a leaves a thread running that spawns a sleeper once test_b asks it to (a file), so the
# sleeper carries test_b's token. `keep`: the thread stays alive until test_c (the kernel still
# lists the sleeper among its children); otherwise it ends right after the spawn.
LINGERING_THREAD = """
import threading
done = threading.Event()

def spawner(keep):
    wait_for(OUT / "go")
    sleeper(600, "late")
    if keep:
        done.wait(60)

def test_a_leaves_a_thread():
    threading.Thread(target=spawner, args=({keep},), name="spawner").start()

def test_b_innocent():
    (OUT / "go").write_text("")
    wait_for(OUT / "late.pid")
    if not {keep}:
        end = time.monotonic() + 60
        while any(t.name == "spawner" for t in threading.enumerate()):
            assert time.monotonic() < end, "the spawner thread did not end"
            time.sleep(0.02)

def test_c_ends_it():
    done.set()
"""


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(
            True,
            id="thread-alive",
            marks=pytest.mark.skipif(
                not sys.platform.startswith("linux"), reason="per-thread children: Linux"
            ),
        ),
        pytest.param(False, id="thread-gone"),
    ],
)
def test_a_process_a_lingering_thread_started(
    pytester: pytest.Pytester, marker: str, keep: bool
) -> None:
    out = write_tests(pytester, marker, LINGERING_THREAD.format(keep=keep))
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=3, errors=1)
    section = teardown_errors(result.stdout.str())["test_b_innocent"]
    assert str(pid_of(out, "late")) in section
    if keep:  # the kernel still says which thread forked it: put on the test that left it
        assert "(0 started by this test, 1 by earlier tests or fixtures)" in section, section
        by = "test_inner.py::test_a_leaves_a_thread, by the thread 'spawner' it left running"
        assert f"started by {by}" in section, section
    else:  # that thread is gone: the token says test_b, and the report says the doubt
        assert "note: threads left running by earlier tests were alive" in section, section
        assert "test_inner.py::test_a_leaves_a_thread ('spawner')" in section, section
    assert wait_until_gone(marker) == []


# test_a leaves a thread running (a kept Pool's handlers, asyncio's waitpid thread); test_b's
# own main thread then starts a child, which starts a grandchild.
LINGERING_THREAD_INNOCENT = """
import threading
done = threading.Event()

def test_a_leaves_a_thread():
    threading.Thread(target=done.wait, args=(60,), name="idle").start()

def test_b_leaks_itself():
    code = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)"
    cmd = [sys.executable, "-c", SLEEP, "600", MARKER]
    proc = subprocess.Popen([sys.executable, "-c", code, *cmd])
    (OUT / "child.pid").write_text(str(proc.pid))

def test_c_ends_it():
    done.set()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread children: Linux")
def test_a_lingering_thread_the_kernel_rules_out_casts_no_doubt(
    pytester: pytest.Pytester, marker: str
) -> None:
    """The kernel says which thread forked pytest's child: not the thread an earlier test left
    running, so the leak is this test's. It was reported "with this test's token" and "may be"
    the idle thread's (every leak after a kept Pool's or an asyncio child's test read so)."""
    out = write_tests(pytester, marker, LINGERING_THREAD_INNOCENT)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=3, errors=1)
    section = teardown_errors(result.stdout.str())["test_b_leaks_itself"]
    assert str(pid_of(out, "child")) in section, section
    assert "(2 started by this test, 0 by earlier tests or fixtures)" in section, section
    assert "threads left running" not in section, section
    assert wait_until_gone(marker) == []


# A lingering thread's child starts a grandchild: both are put on the test that left the thread.
LINGERING_THREAD_GRANDCHILD = """
import threading
done = threading.Event()

def spawner():
    wait_for(OUT / "go")
    code = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)"
    cmd = [sys.executable, "-c", SLEEP, "600", MARKER]
    proc = subprocess.Popen([sys.executable, "-c", code, *cmd])
    (OUT / "child.pid").write_text(str(proc.pid))
    done.wait(60)

def test_a_leaves_a_thread():
    threading.Thread(target=spawner, name="spawner").start()

def test_b_innocent():
    (OUT / "go").write_text("")
    wait_for(OUT / "child.pid")

def test_c_ends_it():
    done.set()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread children: Linux")
def test_a_lingering_threads_grandchild_is_put_on_its_test(
    pytester: pytest.Pytester, marker: str
) -> None:
    """The kernel names the thread that forked pytest's child; that child's own child was put
    on the innocent test (only the leak's own pid was looked for among the thread's children)."""
    out = write_tests(pytester, marker, LINGERING_THREAD_GRANDCHILD)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=3, errors=1)
    section = teardown_errors(result.stdout.str())["test_b_innocent"]
    assert str(pid_of(out, "child")) in section, section
    assert "(0 started by this test, 2 by earlier tests or fixtures)" in section, section
    assert "threads left running" not in section, section
    assert wait_until_gone(marker) == []


# A module fixture's thread spawns during a later test: it is the fixture's, not the first
# test's (whose window its setup fell in), and no test "left it running".
FIXTURE_THREAD = """
import threading
done = threading.Event()

def pool():
    wait_for(OUT / "go")
    sleeper(600, "late")
    done.wait(60)

@pytest.fixture(scope="module")
def server():
    t = threading.Thread(target=pool, name="pool")
    t.start()
    yield
    done.set()

def test_a_uses_the_server(server):
    pass

def test_b_asks_it_to_spawn(server):
    (OUT / "go").write_text("")
    wait_for(OUT / "late.pid")

def test_c_last(server):
    pass
"""


def test_a_fixtures_thread_is_not_put_on_the_first_test(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(pytester, marker, FIXTURE_THREAD)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    output = result.stdout.str()
    assert str(pid_of(out, "late")) in output
    assert "left running" not in output and "threads left running" not in output, output
    assert wait_until_gone(marker) == []


HEADLESS_LEAK = """
# Its main thread exits while another sleeps on: the leader reads as a zombie, the process runs.
HEADLESS = (
    "import ctypes, sys, threading, time\\n"
    "threading.Thread(target=time.sleep, args=(float(sys.argv[1]),)).start()\\n"
    "ctypes.CDLL(None).pthread_exit(None)\\n"
)

def test_leaves_a_headless_child():
    import psutil
    proc = subprocess.Popen([sys.executable, "-c", HEADLESS, "600", MARKER])
    (OUT / "headless.pid").write_text(str(proc.pid))
    handle = psutil.Process(proc.pid)
    end = time.monotonic() + 60
    while handle.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < end, "its main thread never exited"
        time.sleep(0.02)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="a zombie leader with live threads is Linux's")
def test_a_leak_whose_main_thread_exited_is_not_taken_for_a_zombie(
    pytester: pytest.Pytester, marker: str
) -> None:
    out = write_tests(pytester, marker, HEADLESS_LEAK)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS)
    result.assert_outcomes(passed=1, errors=1)
    pid = pid_of(out, "headless")
    section = teardown_errors(result.stdout.str())["test_leaves_a_headless_child"]
    # Named with its command line, read through its live thread.
    assert re.search(rf"^\s+{pid}\s+\d+\s+[\d.]+s\s+.*{marker}$", section, re.M), section
    assert "leak-check killed them." in section
    assert wait_until_gone(marker) == []


KEPT_POOL = """
import multiprocessing as mp
KEEP = []

def _note():
    (OUT / f"worker-{os.getpid()}.pid").write_text(str(os.getpid()))

def test_keeps_a_pool():
    pool = mp.get_context("fork").Pool(2, initializer=_note)
    assert pool.map(abs, [-1, -2]) == [1, 2]
    KEEP.append(pool)

def test_uses_it():
    assert KEEP[0].map(abs, [-3]) == [3]
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the fork start method")
def test_a_pool_kept_for_the_session_is_ended_and_pytest_exits(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Its workers were killed at the session's end while the Pool lived: its handler thread
    started new ones, and pytest never exited (xdist: the new workers were left running)."""
    import psutil

    out = write_tests(pytester, marker, KEPT_POOL)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=2, errors=1)  # reported at its test's teardown, spared
    assert "killed at session end the 2 process(es) it spared" in result.stdout.str()
    # Forks without exec read as pytest itself: said so (a newcomer took them for pytest's own).
    assert "(a fork of pytest, no exec) " in result.stdout.str(), result.stdout.str()
    workers = [int(f.read_text()) for f in out.glob("worker-*.pid")]
    assert len(workers) >= 2

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    assert not [pid for pid in workers if running(pid)]


LATE_SPAWNS = """
import threading

def _later(name):
    time.sleep(0.3)
    sleeper(600, name)

def test_last():
    threading.Thread(target=_later, args=("late",)).start()
"""

HOOK_SPAWN = """
import subprocess, sys

def pytest_runtest_logfinish(nodeid, location):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
"""


@pytest.mark.parametrize("where", ["thread", "hook"])
def test_what_no_checked_test_started_is_judged_at_session_end(
    pytester: pytest.Pytester, marker: str, where: str
) -> None:
    """A thread's spawn after the last test's teardown, or a conftest hook's: filed under no
    test, never reported, and left running after pytest (under xdist too)."""
    if where == "thread":
        write_tests(pytester, marker, LATE_SPAWNS)
    else:
        write_tests(pytester, marker, "def test_x():\n    pass\n")
        pytester.makeconftest(HOOK_SPAWN.format(marker=marker))
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    text = result.stdout.str()
    assert "process(es) still running at session end" in text, text
    assert "started by no checked test" in text
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert wait_until_gone(marker) == []


WORKER_HOOK_SPAWN = """
import subprocess, sys

IN_WORKER = []

def pytest_configure(config):
    # Not PYTEST_XDIST_WORKER: an outer xdist run's sets it in the inner controller too.
    IN_WORKER.append(hasattr(config, "workerinput"))

def pytest_runtest_logfinish(nodeid, location):
    if IN_WORKER[-1]:  # the controller's hook runs too: not a worker's
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
"""


@pytest.mark.parametrize("where", ["thread", "hook"])
def test_what_no_checked_test_started_is_reported_by_the_xdist_controller(
    pytester: pytest.Pytester, marker: str, where: str
) -> None:
    """Under xdist, a worker judged its session's end after xdist had sent its last event: the
    leaks were killed, but their report went to the worker's terminal, which nobody sees, and
    pytest exited 0 (pytest-xprocess's and a suite's late spawns passed unnoticed)."""
    if where == "thread":
        write_tests(pytester, marker, LATE_SPAWNS)
    else:
        write_tests(pytester, marker, "def test_x():\n    pass\n")
        pytester.makeconftest(WORKER_HOOK_SPAWN.format(marker=marker))
    result = pytester.runpytest_subprocess("-n", "1", "--leak-check", *INNER_ARGS, timeout=120)
    text = result.stdout.str()
    # On a line of its own: it was glued to the progress dots ("..[gw0] leak-check: ...").
    header = r"^\[gw0\] leak-check: 1 process\(es\) still running at session end:$"
    assert re.search(header, text, re.M), text
    assert "started by no checked test" in text
    assert marker in text
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert wait_until_gone(marker) == []


@pytest.mark.parametrize(
    ("marker_args", "says"),
    [
        ('timeout="soon"', "timeout must be a number of seconds >= 0, not 'soon'"),
        ("timeout=-5", "timeout must be a number of seconds >= 0, not -5"),
        ('"no"', "enabled must be True or False, not 'no'"),
        ("tmeout=1", "unknown argument(s) tmeout"),
    ],
)
def test_bad_marker_arguments_are_usage_errors(
    pytester: pytest.Pytester, marker_args: str, says: str
) -> None:
    """A string timeout was a traceback at setup and another at teardown; -5 and "no" were
    taken as they came."""
    pytester.makepyfile(
        test_x=f"import pytest\n\n@pytest.mark.leak_check({marker_args})\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest_subprocess(*INNER_ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert says in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


DAEMONS_NOT_AWAITED = (
    DAEMON.split("def test_starts_a_daemon")[0]
    + """
@pytest.mark.parametrize("n", range(8))
def test_starts_a_daemon(n):
    # Not waited for: the test ends while the middle of the double fork may still be forking.
    pid_file = str(OUT / f"daemon-{n}.pid")
    subprocess.run([sys.executable, "-c", DAEMONIZE, pid_file, SLEEP, MARKER], check=True)
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="a child subreaper is Linux-only")
def test_a_daemon_forked_after_the_test_returned_is_still_its_tests(
    pytester: pytest.Pytester, marker: str
) -> None:
    """The teardown's first look saw only the exited middle (a zombie), found no leak and
    stopped looking; the daemon forked a moment later was filed under no test and left running
    (one time in three). A zombie keeps the check looking a moment, and an orphan whose session
    leader was the test's is the test's."""
    write_tests(pytester, marker, DAEMONS_NOT_AWAITED)
    result = pytester.runpytest_subprocess("--leak-check", "--leak-check-subreaper", *INNER_ARGS)
    errors = teardown_errors(result.stdout.str())
    assert len(errors) == 8, result.stdout.str()
    for n in range(8):
        section = errors[f"test_starts_a_daemon[{n}]"]
        assert f"started by test_inner.py::test_starts_a_daemon[{n}]:" in section, section
    assert "still running at session end" not in result.stdout.str()
    assert wait_until_gone(marker) == []


SESSION_SERVER = """
import subprocess, sys

def pytest_configure(config):
    config.server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", {marker!r}]
    )

def pytest_unconfigure(config):
    config.server.kill()
    config.server.wait()
"""


def _beside_a_session_server(pytester: pytest.Pytester, marker: str, tests: str, n: int) -> None:
    """Run `n` tests beside the session's own server (SESSION_SERVER): all pass, nothing is
    judged, and the server is gone once its owner stopped it."""
    write_tests(pytester, marker, tests)
    pytester.makeconftest(SESSION_SERVER.format(marker=marker))
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=n)
    assert result.ret == pytest.ExitCode.OK
    assert "still running at session end" not in result.stdout.str()
    assert wait_until_gone(marker) == []


def test_a_server_the_session_starts_before_any_test_is_not_judged(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Started at configure, stopped at unconfigure (after the session's end): the session's
    own, not a leak of "no checked test", and not killed under its owner."""
    _beside_a_session_server(pytester, marker, "def test_x():\n    pass\n", 1)


CLOCK_STEP = """
import psutil

def step_the_clock():
    # What /proc/stat's btime says once the wall clock is set 5 s ahead (a VM restored from a
    # snapshot, NTP's first sync): psutil's create_time of every process moves with it.
    real = psutil._pslinux.boot_time
    psutil._pslinux.boot_time = lambda: real() + 5.0
    psutil.process_iter.cache_clear()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="btime: Linux's clock")
def test_a_step_of_the_wall_clock_does_not_make_old_processes_new(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Once the clock was set, every process's psutil create_time moved by the step, so the
    session's own server looked new and was filed under the test then running (seen once in
    CI on a VM restored from a snapshot)."""
    pytester.makepyfile(steps=CLOCK_STEP)
    tests = (
        "from steps import step_the_clock\n\n"
        "def test_a():\n    pass\n\n"
        "def test_b():\n    step_the_clock()\n\n"
        "def test_c():\n    pass\n"
    )
    _beside_a_session_server(pytester, marker, tests, 3)


POOL_AFTER_THE_TESTS = """
import multiprocessing, os
from pathlib import Path
KEEP = {{}}

def _note():
    (Path({out!r}) / f"worker-{{os.getpid()}}.pid").write_text(str(os.getpid()))

def pytest_runtest_logreport(report):
    if report.when == "teardown" and "pool" not in KEEP:
        KEEP["pool"] = multiprocessing.get_context("fork").Pool(2, initializer=_note)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the fork start method")
def test_a_pool_first_found_at_session_end_is_ended_and_pytest_exits(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Made by a hook after the tests: its workers were killed at the session's end and the
    pool's handler started new ones; pytest never exited."""
    import psutil

    out = write_tests(pytester, marker, "def test_a():\n    pass\n")
    pytester.makeconftest(POOL_AFTER_THE_TESTS.format(out=str(out)))
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    assert "process(es) still running at session end" in result.stdout.str()
    workers = [int(f.read_text()) for f in out.glob("worker-*.pid")]
    assert len(workers) >= 2
    gone = [pid for pid in workers if not psutil.pid_exists(pid)]
    zombies = []
    for pid in set(workers) - set(gone):
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                zombies.append(pid)
    assert sorted(gone + zombies) == sorted(workers)


PRE_FORK_SERVER = """
import subprocess, sys
SERVER = '''
import subprocess, sys, time
child = None
for _ in range(200):  # a new worker every 0.2 s, the previous one ended
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
    if child is not None:
        child.kill()
        child.wait()
    child = new
    time.sleep(0.2)
'''

def pytest_configure(config):
    config.server = subprocess.Popen([sys.executable, "-c", SERVER, {marker!r}])

def pytest_unconfigure(config):
    config.server.kill()
    config.server.wait()
"""


def test_the_workers_a_session_server_starts_later_are_its_own(
    pytester: pytest.Pytester, marker: str
) -> None:
    """A pre-fork server started at configure makes new workers while the tests run: they were
    reported as "started by no checked test" and killed under their server."""
    write_tests(
        pytester,
        marker,
        "import time\n\ndef test_a():\n    time.sleep(0.5)\n\ndef test_b():\n    time.sleep(0.5)\n",
    )
    pytester.makeconftest(PRE_FORK_SERVER.format(marker=marker))
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    for proc in processes_with(marker):  # the last worker: its server is gone, it is not
        proc.kill()
    assert wait_until_gone(marker) == []


@pytest.mark.skipif(sys.platform == "win32", reason="the forkserver start method")
def test_a_forkserver_child_is_a_leak_not_the_forkserver(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Its children keep the forkserver's argv: they were taken for the forkserver itself (a
    helper for pytest's lifetime) and never reported."""
    write_tests(
        pytester,
        marker,
        """
        import multiprocessing

        def test_leaks():
            ctx = multiprocessing.get_context("forkserver")
            ctx.Process(target=time.sleep, args=(60,), daemon=True).start()
        """,
    )
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    assert "started by test_inner.py::test_leaks:" in result.stdout.str()


def test_a_bad_marker_under_xdist_fails_its_test_not_pytest(pytester: pytest.Pytester) -> None:
    """A usage error raised in an xdist worker's collection was an INTERNALERROR."""
    pytester.makepyfile(
        test_x='import pytest\n\n@pytest.mark.leak_check(timeout="soon")\ndef test_x():\n    pass\n'
    )
    result = pytester.runpytest_subprocess("-n", "1", *INNER_ARGS, timeout=120)
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text, text
    assert "timeout must be a number of seconds >= 0, not 'soon'" in text
    result.assert_outcomes(errors=1)


CTRL_C_AT_THE_END = """
import subprocess, sys

def pytest_runtest_logfinish(nodeid, location):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])

"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process")
def test_a_ctrl_c_during_the_last_wait_ends_what_it_found(
    pytester: pytest.Pytester, marker: str
) -> None:
    """pytest seems to stall while the check waits at the session's end, so users press Ctrl-C
    there: it was a bare traceback, and what had been found was left running."""
    import signal
    import subprocess

    out = write_tests(pytester, marker, "def test_x():\n    pass\n")
    pytester.makeconftest(CTRL_C_AT_THE_END.format(marker=marker))
    argv = [sys.executable, "-m", "pytest", "--leak-check", "--leak-check-timeout", "60"]
    log = out / "inner.log"  # not a pipe: the hook's child would hold it open
    with log.open("wb") as sink:
        inner = subprocess.Popen(
            [*argv, *INNER_ARGS], cwd=pytester.path, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "waiting up to 60 s" in log.read_text(), "the last wait", 120)
        inner.send_signal(signal.SIGINT)
        inner.wait(timeout=120)
        text = log.read_text()
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    assert inner.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text, text
    assert "still running at session end" in text
    assert wait_until_gone(marker) == []


def _each_blamed_on_itself(result, out: Path, pids: dict[str, str], fixture: str) -> None:
    """Exactly these tests failed at teardown, each naming its own process (the pid file it
    wrote) as started by itself, and not the fixture whose environment it used."""
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == set(pids), result.stdout.str()
    for name, pid_name in pids.items():
        section = errors[name]
        assert f"started by test_inner.py::{name}:" in section, section
        assert str(pid_of(out, pid_name)) in section, section
        assert fixture not in section, section


ENV_COPIED_BY_A_FIXTURE = """
# Starts a detached grandchild and exits: the grandchild is found by its token alone.
MIDDLE = (
    "import subprocess, sys;"
    "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '600', sys.argv[3]],"
    " start_new_session=True);"
    "open(sys.argv[2], 'w').write(str(p.pid))"
)

@pytest.fixture(scope="session")
def child_env():
    # One environment for every subprocess of the suite, copied with the fixture's token in it.
    return {**os.environ, "APP_MODE": "test"}

def test_a_clean(child_env):
    subprocess.run([sys.executable, "-c", "pass"], env=child_env, check=True)

def test_b_leaks(child_env):
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, "600", MARKER], env=child_env)
    (OUT / "b.pid").write_text(str(proc.pid))

def test_c_orphans(child_env):
    args = [sys.executable, "-c", MIDDLE, SLEEP, str(OUT / "c.pid"), MARKER]
    subprocess.run(args, env=child_env, check=True)

def test_d_innocent():
    pass
"""


@pytest.mark.skipif(sys.platform == "win32", reason="start_new_session")
@pytest.mark.parametrize("subreaper", [False, True])
def test_a_token_in_a_copied_environment_does_not_move_the_blame(
    pytester: pytest.Pytester, marker: str, subreaper: bool
) -> None:
    """A session fixture's copy of os.environ carries the fixture's token: the children that
    tests started with it were put on the fixture, and reported at a later, innocent test's
    teardown."""
    if subreaper and sys.platform != "linux":
        pytest.skip("a child subreaper is Linux-only")
    out = write_tests(pytester, marker, ENV_COPIED_BY_A_FIXTURE)
    extra = ["--leak-check-subreaper"] if subreaper else []
    result = pytester.runpytest_subprocess("--leak-check", *extra, *INNER_ARGS, timeout=120)
    _each_blamed_on_itself(result, out, {"test_b_leaks": "b", "test_c_orphans": "c"}, "child_env")
    result.assert_outcomes(passed=4, errors=2)
    assert wait_until_gone(marker) == []


ENV_COPIED_AS_THE_TEST_BEGINS = """
@pytest.fixture(scope="session")
def child_env():
    return {**os.environ, "APP_MODE": "test"}

@pytest.fixture(scope="module")
def module_env():
    return {**os.environ, "APP_MODE": "module"}

def test_a_leaks(child_env):
    # At once after the fixture's setup: within a clock tick of it (create_time's 10 ms).
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, "600", MARKER], env=child_env)
    (OUT / "a.pid").write_text(str(proc.pid))

def test_b_leaks(module_env):
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, "600", MARKER], env=module_env)
    (OUT / "b.pid").write_text(str(proc.pid))

def test_c_innocent(child_env, module_env):
    pass
"""


def test_a_token_copied_just_before_the_spawn_does_not_move_the_blame(
    pytester: pytest.Pytester, marker: str
) -> None:
    """A test that sets up a wider fixture and at once starts a process with the fixture's
    copy of os.environ: the process was put on the fixture (its token fitted the timeline
    within a clock tick of the switch back to the test), the test passed, and the leak was
    reported at the last test's teardown, under the fixture's name."""
    out = write_tests(pytester, marker, ENV_COPIED_AS_THE_TEST_BEGINS)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    _each_blamed_on_itself(result, out, {"test_a_leaks": "a", "test_b_leaks": "b"}, "_env'")
    result.assert_outcomes(passed=3, errors=2)
    assert wait_until_gone(marker) == []


A_ZOMBIE_KEPT = """
KEEP = []

def test_a_keeps_a_finished_popen():
    # A helper that ran to completion, its Popen kept (a cache) and never waited for: a zombie.
    import psutil

    KEEP.append(subprocess.Popen([sys.executable, "-c", "pass", MARKER]))
    end = time.monotonic() + 60
    while psutil.Process(KEEP[0].pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < end, "the helper never exited"
        time.sleep(0.02)

@pytest.mark.parametrize("i", range(10))
def test_trivial(i):
    pass
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a zombie")
def test_a_zombie_kept_for_the_session_does_not_slow_every_later_check(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Every look counted it again, and each later test's check kept looking for
    ZOMBIE_SETTLE_S (30 trivial tests: 0.3 s without the plugin, 10.6 s with it)."""
    import xml.etree.ElementTree as ET

    from harness.leak_tracker import ZOMBIE_SETTLE_S

    write_tests(pytester, marker, A_ZOMBIE_KEPT)
    result = pytester.runpytest_subprocess("--leak-check", "--junitxml=out.xml", *INNER_ARGS)
    result.assert_outcomes(passed=11)
    waits = {
        case.get("name"): float(prop.get("value"))
        for case in ET.parse(pytester.path / "out.xml").iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "leak_check_wait_s"
    }
    trivial = [wait for name, wait in waits.items() if name.startswith("test_trivial")]
    assert len(trivial) == 10, waits
    # Each settled at once; a look itself takes milliseconds (a few slow ones: a loaded machine).
    assert sum(wait >= ZOMBIE_SETTLE_S for wait in trivial) <= 2, waits


HOPPER = """
HOP = (
    "import os, sys, time\\n"
    "while True:\\n"
    "    time.sleep(float(sys.argv[1]))\\n"
    "    if os.fork() != 0:\\n"
    "        os._exit(0)\\n"
)

def test_a_hopper():
    # A lineage that forks and exits every {period} s (a respawning watchdog), in its own session.
    subprocess.Popen([sys.executable, "-c", HOP, "{period}", MARKER], start_new_session=True)
    time.sleep(0.2)  # not a condition: let it hop a few times

def test_b_next():
    pass
"""


def _end_marked(marker: str) -> None:
    """Our inner test's hopper, if the plugin left any of it running: stopped, then killed, by
    this test's marker (never by a group id, which another process may hold by now)."""
    deadline = time.monotonic() + 10
    while (procs := processes_with(marker)) and time.monotonic() < deadline:
        for action in ("suspend", "kill"):
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    getattr(proc, action)()
        psutil.wait_procs(procs, timeout=0.5)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("period", [0.02, 0.3])
def test_a_process_that_keeps_forking_is_reported_and_ended(
    pytester: pytest.Pytester, marker: str, period: float
) -> None:
    """Each of its pids was gone a moment after a look read it: it was missed (the last look
    fell between two pids), or reported and "killed" under its old pid while its lineage ran
    on, past pytest."""
    write_tests(pytester, marker, HOPPER.format(period=period))
    try:
        result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
        errors = teardown_errors(result.stdout.str())
        assert set(errors) == {"test_a_hopper"}, result.stdout.str()
        section = errors["test_a_hopper"]
        assert "started by test_inner.py::test_a_hopper:" in section, section
        assert "leak-check killed them." in section, section
        assert "gc.collect()" not in section, section  # it was not the gc that ended it
        assert wait_until_gone(marker, deadline_s=5) == []
    finally:
        _end_marked(marker)


FORKSERVER_TESTS = """
import multiprocessing

def test_a_uses_it_cleanly():
    proc = multiprocessing.get_context("forkserver").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()

def test_b_leaks_a_child():
    ctx = multiprocessing.get_context("forkserver")
    ctx.Process(target=time.sleep, args=(60,), daemon=True).start()

def test_c_last():
    pass
"""

FORKSERVER_AT_CONFIGURE = """
import multiprocessing

def pytest_configure(config):
    # Warmed once for the run, before any test: the session's own helper.
    multiprocessing.set_start_method("forkserver", force=True)
    from multiprocessing import forkserver
    forkserver.ensure_running()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the forkserver start method")
@pytest.mark.parametrize("warmed", [False, True], ids=["started-by-a-test", "at-configure"])
def test_a_forkserver_child_is_the_leak_of_the_test_that_asked_for_it(
    pytester: pytest.Pytester, marker: str, warmed: bool
) -> None:
    """Its children were put on the forkserver's owner by their parent chain (and carry its
    environment's token): on the test that first started it, or, warmed at configure, on the
    session, never judged at all."""
    write_tests(pytester, marker, FORKSERVER_TESTS)
    if warmed:
        pytester.makeconftest(FORKSERVER_AT_CONFIGURE)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_b_leaks_a_child"}, result.stdout.str()
    assert "started by test_inner.py::test_b_leaks_a_child:" in errors["test_b_leaks_a_child"]
    result.assert_outcomes(passed=3, errors=1)


FIXTURE_TEARDOWN_SPAWNS = """
@pytest.fixture(scope="module")
def server():
    yield
    sleeper(600, "teardown")  # its teardown leaves a process behind

def test_a_uses_the_fixture(server):
    pass

def test_b_does_not_use_it():
    pass
"""


def test_what_a_fixtures_teardown_starts_is_the_fixtures(
    pytester: pytest.Pytester, marker: str
) -> None:
    """The teardown runs within the last test's teardown, and its processes were put on that
    test, which did not even use the fixture."""
    out = write_tests(pytester, marker, FIXTURE_TEARDOWN_SPAWNS)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=120)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_b_does_not_use_it"}, result.stdout.str()
    section = errors["test_b_does_not_use_it"]
    owner = "fixture 'server' (module), torn down after test_inner.py::test_b_does_not_use_it"
    assert f"started by {owner}:" in section, section
    assert str(pid_of(out, "teardown")) in section, section
    result.assert_outcomes(passed=2, errors=1)
    assert wait_until_gone(marker) == []


SESSION_FIXTURE_NEVER_STOPPED = """
@pytest.fixture(scope="session")
def svc():
    sleeper(600, "svc")
    yield  # never stopped

@pytest.mark.leak_check
def test_marked_uses(svc):
    pass

def test_unmarked():
    pass
"""


def test_a_session_fixture_torn_down_after_an_unchecked_test_names_that_test(
    pytester: pytest.Pytester, marker: str
) -> None:
    """Torn down in the teardown of a test that is not checked, it was named "torn down
    after :" (the Session's nodeid is empty)."""
    write_tests(pytester, marker, SESSION_FIXTURE_NEVER_STOPPED)
    result = pytester.runpytest_subprocess(*INNER_ARGS, timeout=120)
    text = result.stdout.str()
    assert "still running at session end" in text, text
    assert "fixture 'svc' (session), torn down after test_inner.py::test_unmarked:" in text, text
    assert wait_until_gone(marker) == []


NOTHING_WITHOUT_THE_OPTION = """
import sys, threading

def test_untouched():
    assert "psutil" not in sys.modules and "proctree" not in sys.modules
    assert [thread.name for thread in threading.enumerate()] == ["MainThread"]
    # As it came from outside (this suite's own --leak-check sets one for its tests): untouched.
    assert os.environ.get("LEAKPROOF_LEAK_CHECK") == {outer!r}
"""


def test_without_the_option_nothing_is_imported_or_started(
    pytester: pytest.Pytester, marker: str
) -> None:
    """A run with no --leak-check and no checked test pays nothing: the tracker made at
    configure took the time for its owner of no test, and that imported psutil and proctree
    (~50 ms) in every pytest run of a project that merely has the package installed."""
    outer = os.environ.get("LEAKPROOF_LEAK_CHECK")
    write_tests(pytester, marker, NOTHING_WITHOUT_THE_OPTION.replace("{outer!r}", repr(outer)))
    result = pytester.runpytest_subprocess(*INNER_ARGS, timeout=120)
    result.assert_outcomes(passed=1)
