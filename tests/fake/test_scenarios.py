"""Every misbehaviour, observed from outside: exit status, signals, stdin, ledger, psutil."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from fake_helpers import POSIX, alive, run_processes, wait_for

posix_only = pytest.mark.skipif(not POSIX, reason="POSIX signals and sessions")
MiB = 1 << 20


def still_running(fake, seconds: float = 1.0) -> bool:
    """True if the fake has not exited within `seconds` (used to assert persistence only)."""
    try:
        fake.popen.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return alive(fake.pid)
    return False


def test_slow_delays_first_byte_and_messages(spawn):
    fake = spawn("slow:first=0.5,latency=0.3,jitter=0")
    fake.wait_record("start")
    t0 = time.monotonic()
    fake.initialize()
    assert time.monotonic() - t0 >= 0.5
    t1 = time.monotonic()
    msgs = fake.turn("slowly")
    # assistant and result are each held back by the latency
    assert time.monotonic() - t1 >= 0.6
    assert msgs[-1]["type"] == "result"


@posix_only
@pytest.mark.parametrize("point", ["before-init", "mid-turn", "after-result"])
def test_hang_at_point_forever(spawn, point):
    fake = spawn(f"hang:at={point}")
    fake.send({"type": "control_request", "request_id": "i", "request": {"subtype": "initialize"}})
    if point != "before-init":
        fake.read_until(lambda m: m.get("type") == "control_response", "initialize reply")
        fake.user("hello")
    if point == "after-result":
        fake.read_until(lambda m: m.get("type") == "result", "result")
    if point == "mid-turn":
        fake.read_until(lambda m: m.get("subtype") == "init", "system init")
    rec = fake.wait_record("misbehave", what="hang")
    assert rec["at"] == point
    fake.close_stdin()
    assert still_running(fake), "a hung fake must not react to stdin EOF"
    assert not fake.records("exit")
    fake.signal(signal.SIGTERM)  # signals still work unless ignore-sigterm is composed in
    assert fake.wait_exit() == 143


@posix_only
def test_ignore_eof_stays_after_stdin_closes(spawn):
    fake = spawn("ignore-eof")
    fake.initialize()
    fake.turn("observe this")
    fake.close_stdin()
    fake.wait_record("stdin_eof")
    fake.wait_record("misbehave", what="ignore-eof")
    assert still_running(fake)
    fake.signal(signal.SIGTERM)
    assert fake.wait_exit() == 143


@posix_only
def test_ignore_sigterm_ignores_term_int_hup(spawn):
    fake = spawn("ignore-sigterm")
    fake.initialize()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        fake.signal(sig)
        rec = fake.wait_record("signal", signum=int(sig))
        assert rec["action"] == "ignored"
    assert alive(fake.pid)
    # Still a working CLI afterwards, and stdin EOF still ends it.
    assert fake.turn("still here")[-1]["is_error"] is False
    fake.close_stdin()
    assert fake.wait_exit() == 0


@posix_only
def test_ignore_eof_and_sigterm_is_the_603_orphan(spawn):
    fake = spawn("ignore-eof+ignore-sigterm")
    fake.initialize()
    fake.turn("x")
    fake.close_stdin()
    fake.signal(signal.SIGTERM)
    fake.wait_record("signal", action="ignored")
    assert still_running(fake)
    fake.signal(signal.SIGKILL)
    assert fake.wait_exit() == -signal.SIGKILL


def _grandchildren(fake) -> list[psutil.Process]:
    try:
        kids = psutil.Process(fake.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if any("--fake-claude-child" in a for a in k.cmdline())]


@posix_only
def test_grandchildren_are_children_and_die_with_their_parent(spawn):
    fake = spawn("grandchild:n=3")
    fake.initialize()
    kids = wait_for(lambda: len(_grandchildren(fake)) == 3 and _grandchildren(fake), "3 kids")
    recs = wait_for(
        lambda: (
            len(fake.records("start", role="grandchild")) == 3
            and fake.records("start", role="grandchild")
        ),
        "3 grandchild start lines",
    )
    assert {r["pid"] for r in recs} == {k.pid for k in kids}
    assert all(r["parent_pid"] == fake.pid for r in recs)
    for k in kids:
        assert f"--fake-claude-run-id={fake.run_id}" in k.cmdline()
        # create_time in the ledger is psutil's, within the contract's tolerance
        rec = [r for r in recs if r["pid"] == k.pid][0]
        assert abs(rec["create_time"] - k.create_time()) <= 0.01
    fake.signal(signal.SIGKILL)  # the parent dies abruptly; MCP-like children see EOF and go
    fake.wait_exit()
    wait_for(lambda: not any(alive(k.pid) for k in kids), "grandchildren to exit")
    assert len(fake.records("exit", code=0)) == 3


def _term_until_ignored(fake, kids: list[psutil.Process], timeout: float = 30.0) -> set[int]:
    """SIGTERM each kid until its ledger says it ignored one (a signal sent again if none is
    recorded within a second; the pids that recorded one are returned)."""
    deadline = time.monotonic() + timeout
    ignored: set[int] = set()
    while time.monotonic() < deadline:
        for k in kids:
            if k.pid not in ignored and alive(k.pid):
                k.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        while time.monotonic() - sent < 1.0:
            ignored = {r["pid"] for r in fake.records("signal", action="ignored")}
            if ignored >= {k.pid for k in kids}:
                return ignored
            time.sleep(0.02)
    return ignored


def _signal_diagnostics(fake, kids: list[psutil.Process]) -> str:
    lines = [json.dumps(r) for r in fake.records() if r.get("pid") in {k.pid for k in kids}]
    for k in kids:
        try:
            state = k.status()
        except psutil.Error as exc:
            state = type(exc).__name__
        masks = ""
        if sys.platform.startswith("linux"):  # why a signal would not arrive: blocked, ignored
            wanted = ("SigBlk", "SigIgn", "SigCgt")
            try:
                with open(f"/proc/{k.pid}/status", encoding="ascii") as f:
                    masks = " ".join(x.strip() for x in f if x.startswith(wanted))
            except OSError:
                masks = "(gone)"
        lines.append(f"kid {k.pid}: {state} {masks}")
    return "\n".join(lines)


@posix_only
def test_grandchildren_ignoring_signals(spawn):
    fake = spawn("grandchild:n=2,ignore=1")
    fake.initialize()
    kids = wait_for(lambda: len(_grandchildren(fake)) == 2 and _grandchildren(fake), "kids")
    wait_for(lambda: len(fake.records("start", role="grandchild")) == 2, "grandchild starts")
    ignored = _term_until_ignored(fake, kids)
    assert ignored == {k.pid for k in kids}, _signal_diagnostics(fake, kids)
    assert all(alive(k.pid) for k in kids)
    os.killpg(fake.pid, signal.SIGKILL)  # the group kill ends them all
    wait_for(lambda: not any(alive(k.pid) for k in kids), "grandchildren to die")


@posix_only
def test_lingering_grandchildren_outlive_their_parent(spawn):
    fake = spawn("grandchild:n=2,linger=1")
    fake.initialize()
    kids = wait_for(lambda: len(_grandchildren(fake)) == 2 and _grandchildren(fake), "kids")
    fake.signal(signal.SIGKILL)
    fake.wait_exit()
    wait_for(lambda: len(fake.records("stdin_eof")) == 2, "grandchildren to see EOF")
    assert all(alive(k.pid) for k in kids)
    assert {p.pid for p in run_processes(fake.run_id)} == {k.pid for k in kids}


@posix_only
def test_escape_double_forks_into_new_session(spawn):
    fake = spawn("escape")
    fake.initialize()
    rec = fake.wait_record("start", role="escapee")
    esc = psutil.Process(rec["pid"])
    assert rec["parent_pid"] == fake.pid
    assert esc.ppid() != fake.pid  # reparented: not in psutil's children() of the fake
    assert esc.pid not in {c.pid for c in psutil.Process(fake.pid).children(recursive=True)}
    # A new session (led by the vanished intermediate: the daemon cannot regain a terminal).
    assert os.getsid(esc.pid) != os.getsid(fake.pid)
    assert os.getpgid(esc.pid) != os.getpgid(fake.pid)
    assert f"--fake-claude-run-id={fake.run_id}" in esc.cmdline()
    if sys.platform.startswith("linux"):
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{esc.pid}/fd/{fd}") == os.devnull
    for sig in (signal.SIGTERM, signal.SIGHUP):
        esc.send_signal(sig)
        wait_for(lambda s=sig: fake.records("signal", pid=esc.pid, signum=int(s)), f"{sig!r}")
    assert fake.records("signal", pid=esc.pid)[0]["action"] == "ignored"
    # Killing the fake's whole process group does not reach it: that is what escaping means.
    os.killpg(fake.pid, signal.SIGKILL)
    fake.wait_exit()
    assert still_running_pid(esc.pid)
    assert [p.pid for p in run_processes(fake.run_id)] == [esc.pid]
    esc.kill()
    wait_for(lambda: not alive(esc.pid), "escapee to die")


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a zombie leader with live threads is Linux's"
)


@posix_only
def test_headless_main_serves_from_a_thread_and_shrugs_off_sigterm(spawn):
    fake = spawn("headless")
    fake.initialize()
    fake.wait_record("misbehave", what="headless", pid=fake.pid)
    if sys.platform.startswith("linux"):
        leader = psutil.Process(fake.pid)
        wait_for(lambda: leader.status() == psutil.STATUS_ZOMBIE, "the main thread's exit")
        assert alive(fake.pid)
    assert fake.turn("before")[-1]["type"] == "result"
    # Only the main thread runs Python's signal handlers: SIGTERM is caught, then nothing.
    fake.signal(signal.SIGTERM)
    assert fake.turn("after")[-1]["type"] == "result"
    assert not fake.records("signal")
    fake.close_stdin()
    assert fake.wait_exit() == 0  # stdin EOF still ends it, from its thread
    assert fake.records("exit")[-1]["code"] == 0


@linux_only
def test_a_headless_escapee_reads_as_a_zombie_and_runs(spawn):
    fake = spawn("escape:headless=1")
    fake.initialize()
    rec = fake.wait_record("start", role="escapee")
    fake.wait_record("misbehave", what="headless", pid=rec["pid"])
    esc = psutil.Process(rec["pid"])
    wait_for(lambda: esc.status() == psutil.STATUS_ZOMBIE, "its main thread's exit")
    assert esc.num_threads() >= 2 and alive(esc.pid)
    assert esc.pid in {p.pid for p in run_processes(fake.run_id)}  # argv read through a thread
    esc.kill()
    wait_for(lambda: not alive(esc.pid), "the escapee to die")


def still_running_pid(pid: int, seconds: float = 0.5) -> bool:
    try:
        psutil.Process(pid).wait(timeout=seconds)
    except psutil.TimeoutExpired:
        return True
    except psutil.NoSuchProcess:
        return False
    return False


@pytest.mark.parametrize("point", ["after-init", "mid-turn", "after-result"])
def test_crash_with_code_at_point(spawn, point):
    fake = spawn(f"crash:at={point},code=3")
    fake.initialize()
    if point != "after-init":
        fake.user("boom")
    assert fake.wait_exit() == 3
    assert fake.records("misbehave", what="crash")[0]["at"] == point
    assert fake.records("exit")[0]["code"] == 3
    if point == "after-result":
        fake.read_until(lambda m: m.get("type") == "result", "result before the crash")
    elif point == "mid-turn":
        with pytest.raises(AssertionError):  # stdout ends without a result
            fake.read_until(lambda m: m.get("type") == "result", "result")


@posix_only
@pytest.mark.parametrize("sig", ["KILL", "SEGV"])
def test_crash_by_signal(spawn, sig):
    fake = spawn(f"crash:at=mid-turn,signal={sig}")
    fake.initialize()
    fake.user("boom")
    signum = getattr(signal, "SIG" + sig)
    assert fake.wait_exit() == -signum
    assert fake.records("exit")[0]["code"] == -signum


def test_exit_early_gives_the_writer_epipe(spawn):
    fake = spawn("exit-early:code=1")
    assert fake.wait_exit() == 1
    assert fake.records("misbehave", what="exit-early")
    with pytest.raises((BrokenPipeError, OSError)):
        fake.initialize()
    assert fake.read_line() is None  # stdout closed without a single line


def test_garbage_lines_on_stdout(spawn):
    fake = spawn("garbage:lines=4")
    fake.initialize()
    fake.user("x")
    bad = []
    while True:
        line = fake.read_line()
        assert line is not None
        try:
            msg = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if msg.get("type") == "result":
            break
    assert any(not b.startswith(b"{") for b in bad), "a non-JSON line"
    assert any(b.startswith(b"{") for b in bad), "a truncated JSON line"


def test_huge_line(spawn):
    fake = spawn("huge-line:mb=8")
    fake.initialize()
    fake.user("x")
    fake.read_until(lambda m: m.get("type") == "result", "result")
    biggest = max(fake.stdout_lines, key=len)
    assert len(biggest) >= 8 * MiB
    assert json.loads(biggest)["type"] == "assistant"


def test_stdout_flood_is_valid_lines_then_the_turn_goes_on(spawn):
    fake = spawn("stdout-flood:mb=2")
    fake.initialize()
    msgs = fake.turn("x")  # every line parses (read_message), and the result comes after
    flood = [m for m in msgs if m.get("type") == "assistant"]
    assert len(flood) > 1000
    assert sum(len(json.dumps(m)) for m in flood) >= 2 * MiB
    assert msgs[-1]["subtype"] == "success"
    assert fake.records("misbehave", what="stdout-flood")


def test_stdout_flood_forever_between_turns(spawn):
    """After the result, with no turn asked for, the lines keep coming (the flood a worker that
    stops reading between turns must hold off by back-pressure, not by buffering)."""
    fake = spawn("stdout-flood:at=after-result,forever=1")
    fake.initialize()
    fake.turn("x")
    got = 0
    while got < 8 * MiB:  # past any one turn's worth; each read has the helper's deadline
        line = fake.read_line()
        assert line is not None
        if json.loads(line)["type"] == "assistant":  # (the turn's idle state frame comes first)
            got += len(line)


def test_stderr_flood_blocks_until_drained(spawn):
    fake = spawn("stderr-flood:mb=4", drain_stderr=False)
    fake.send({"type": "control_request", "request_id": "i", "request": {"subtype": "initialize"}})
    # Nobody drains stderr: the fake is stuck writing it and cannot reply (the deadlock a parent
    # that ignores stderr gets). The pause asserts absence; it synchronises nothing.
    with pytest.raises(AssertionError):
        fake.read_line(timeout=1.0)
    fake.start_draining_stderr()
    fake.read_until(lambda m: m.get("type") == "control_response", "initialize reply")
    wait_for(lambda: len(fake.stderr) >= 4 * MiB, "4 MiB of stderr")


def test_ballast_holds_touched_memory(spawn):
    plain = spawn("ok")
    heavy = spawn("ballast:mb=96")
    plain.initialize()
    heavy.initialize()
    rss_plain = psutil.Process(plain.pid).memory_info().rss
    rss_heavy = psutil.Process(heavy.pid).memory_info().rss
    assert rss_heavy - rss_plain >= 0.9 * 96 * MiB


def _run_mix(spawn, tmp_path, seed: str, n: int, tag: str) -> list[str]:
    ledger = tmp_path / f"mix-{tag}.jsonl"
    drawn = []
    for _ in range(n):
        fake = spawn("mix:ok=1,crash=1,exit-early=1,garbage=1", seed=seed, ledger=ledger)
        try:
            fake.initialize()
            fake.user("x")
            fake.close_stdin()
        except (BrokenPipeError, OSError, AssertionError):
            pass  # exit-early and crash draws end the conversation on their own
        fake.wait_exit()
        drawn.append(fake.records("start", pid=fake.pid)[0]["scenario"])
    return drawn


def test_mix_is_seeded_and_reproducible(spawn, tmp_path):
    a = _run_mix(spawn, tmp_path, "42", 10, "a")
    b = _run_mix(spawn, tmp_path, "42", 10, "b")
    c = _run_mix(spawn, tmp_path, "43", 10, "c")
    assert a == b
    assert a != c
    names = {s.split(":")[0] for s in a + c}
    assert len(names) >= 3, names


def test_scenario_files_json_and_toml(spawn, tmp_path):
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"parts": [{"name": "crash", "at": "after-init", "code": 5}]}))
    fake = spawn("", extra_settings={"scenario_file": str(js)})
    fake.initialize()
    assert fake.wait_exit() == 5
    toml = tmp_path / "s.toml"
    toml.write_text('spec = "crash:at=after-init,code=6"\nseed = 9\n')
    fake = spawn("", extra_settings={"scenario_file": str(toml)})
    fake.initialize()
    assert fake.wait_exit() == 6
    assert fake.records("start", pid=fake.pid)[0]["scenario"] == "crash:at=after-init,code=6"


@posix_only
def test_composition_ignore_eof_with_grandchild(spawn):
    fake = spawn("ignore-eof+grandchild:n=1")
    fake.initialize()
    fake.turn("compose")
    fake.close_stdin()
    fake.wait_record("misbehave", what="ignore-eof")
    kids = wait_for(lambda: _grandchildren(fake), "a grandchild")
    assert still_running(fake) and alive(kids[0].pid)
    assert len(run_processes(fake.run_id)) == 2
