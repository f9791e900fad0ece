"""Hostile `claude` executables: small stdlib Python scripts, NOT the fake.

They carry no `--fake-claude-run-id` and write no ledger. Each appends `<pid> <role>` to a pid
file of its own (the test's ground truth, read with psutil; nothing in the worker or the census
reads it), speaks just enough stream-json to be driven, then misbehaves.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.cleanup import kill_and_wait

# Shared prologue: pid file, stream-json replies, helpers to start a sleeping descendant.
PROLOGUE = r'''
import json, os, signal, sys, time
PIDFILE = {pidfile!r}
SLEEP = "import time\nwhile True: time.sleep(1)"
IGNORE_TERM_SLEEP = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True: time.sleep(1)"
)
# The same for 150 s at most: a failed test leaves nothing for long.
IGNORE_TERM_NAP = IGNORE_TERM_SLEEP.replace("while True", "for _ in range(150)")

def headless(role):
    """Code for daemon_sleep: ignores SIGTERM, then its main thread exits while another lives
    on; that thread records `role` once the leader reads as a zombie, and sleeps."""
    return "\n".join([
        "import ctypes, os, signal, threading, time",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "def run():",
        "    stat = '/proc/%d/stat' % os.getpid()",
        "    while open(stat).read().rsplit(') ', 1)[1][0] != 'Z':",
        "        time.sleep(0.01)",
        f"    fd = os.open({{PIDFILE!r}}, os.O_WRONLY | os.O_APPEND)",
        f"    os.write(fd, ('%d {{role}}' % os.getpid() + chr(10)).encode())",
        "    while True:",
        "        time.sleep(1)",
        "threading.Thread(target=run).start()",
        "ctypes.CDLL(None).pthread_exit(None)",
    ])

def record(role, pid=None):
    fd = os.open(PIDFILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{{pid or os.getpid()}} {{role}}\n".encode())
    os.close(fd)

def noted(word):
    """Whether a line of the pid file holds `word` (a thing done once per hostile, not per
    process)."""
    with open(PIDFILE) as f:
        return word in f.read()

def out(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())

def answer_init(msg):
    out({{"type": "control_response", "response": {{"subtype": "success",
        "request_id": msg.get("request_id"), "response": {{}}}}}})

def answer_turn(msg, sid="hostile-0001"):
    out({{"type": "system", "subtype": "init", "session_id": sid}})
    text = {{"type": "text", "text": "<observation/>"}}
    out({{"type": "assistant", "message": {{"content": [text]}}, "session_id": sid}})
    out({{"type": "result", "subtype": "success", "is_error": False, "result": "<observation/>",
         "session_id": sid}})

def messages():
    buf = b""
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)

def answer_first_init():
    """Answer the initialize request, then read nothing more."""
    for msg in messages():
        if msg.get("type") == "control_request":
            answer_init(msg)
            return

def idle():
    while True:
        time.sleep(1)

def serve(on_turn=answer_turn):
    for msg in messages():
        if msg.get("type") == "control_request":
            answer_init(msg)
        elif msg.get("type") == "user":
            on_turn(msg)

def serve_then_idle():
    """serve(), then ignore stdin's EOF (and a broken pipe): wait for a signal."""
    try:
        serve()
    except OSError:
        pass
    idle()

def daemon_sleep(role, code=SLEEP, env=None, setsid=False, setpgid=False, keep_stdio=False):
    """fork; the child records itself and execs a sleeping interpreter."""
    pid = os.fork()
    if pid:
        return pid
    try:
        if setsid:
            os.setsid()
        if setpgid:
            os.setpgid(0, 0)
        if not keep_stdio:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        record(role)
        argv = [sys.executable, "-c", code]
        if env is None:
            os.execv(sys.executable, argv)
        os.execve(sys.executable, argv, env)
    finally:
        os._exit(0)
'''

# Root's ways out (Linux): what a hostile running as root can do to leave its cgroup cell, its
# PID namespace, its uid, its spawning thread and its own argv behind.
ESCAPE_KIT = r'''
import ctypes, threading
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWPID = 0x20000000
PR_SET_NAME, PR_SET_CHILD_SUBREAPER = 15, 36
# The sleepers below die by themselves (a failed run leaves nothing for long): pending alarms
# survive exec, and SIGALRM is not ignored.
NAP = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.alarm(150)\n"
    "for _ in range(150): time.sleep(1)"
)

def quiet():
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

def nap(env=None):
    """exec a sleeper that ignores SIGTERM (150 s at most), by default with no environment:
    sleep(1) where there is one (cheap: hundreds of them cost little), else Python."""
    quiet()
    os.chdir("/")
    env = {{}} if env is None else env
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignored stays ignored across exec
    if os.path.exists("/bin/sleep"):
        os.execve("/bin/sleep", ["sleep", "150"], env)
    os.execve(sys.executable, [sys.executable, "-c", NAP], env)

def cgroup_mount():
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return fields[4]
    return None

def own_cgroup():
    for line in open("/proc/self/cgroup"):
        if line.startswith("0::"):
            return line[3:].strip()
    return None

def leave_cell(where):
    """Move ourselves out of our worker's cell (a cgroup in `.../leakproof-*/`): "out" to the
    worker's own cgroup (the cells' parent's parent), "sibling" into another live cell of the
    same worker (waiting up to 30 s for one). Never touches a cgroup outside our worker's.
    True once moved; False where there is no cell (cells off) or the move failed."""
    mount, mine = cgroup_mount(), own_cgroup()
    if mount is None or mine is None:
        return False
    cell = os.path.join(mount, mine.lstrip("/"))
    jail = os.path.dirname(cell)
    if not os.path.basename(jail).startswith("leakproof-"):
        return False
    target = os.path.dirname(jail)
    if where == "sibling":
        target = None
        end = time.monotonic() + 30
        while target is None and time.monotonic() < end:
            for name in sorted(os.listdir(jail)):
                other = os.path.join(jail, name)
                try:
                    if other != cell and "populated 1" in open(other + "/cgroup.events").read():
                        target = other
                        break
                except OSError:
                    pass
            else:
                time.sleep(0.05)
        if target is None:
            return False
    try:
        with open(os.path.join(target, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        return False
    return own_cgroup() != mine

def hide_argv(name=b"[kworker/0:1]"):
    """Pose as a kernel thread: comm renamed, argv overwritten in place, the environment block
    zeroed (/proc/<pid>/environ reads empty: the mark cannot be read)."""
    LIBC.prctl(PR_SET_NAME, name.strip(b"[]"), 0, 0, 0)
    stat = open("/proc/self/stat").read().rsplit(") ", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(x) for x in stat[45:49])
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(arg_start)
        mem.write(name + b"\0" * (arg_end - arg_start - len(name)))
        mem.seek(env_start)
        mem.write(b"\0" * (env_end - env_start))
'''

CASES: dict[str, str] = {
    # 1) Exits at once; a background grandchild keeps the stdout pipe (and stderr) open.
    "holds-stdout": r"""
record("main")
daemon_sleep("grandchild", keep_stdio=True, setsid=True)
os._exit(0)
""",
    # 2) A grandchild double-forks into a new session and execs with an empty environment.
    "double-fork-noenv": r"""
record("main")
if os.fork() == 0:
    os.setsid()
    daemon_sleep("escapee", env={{}}, setsid=True)
    os._exit(0)
os.wait()
serve()
""",
    # 3) Answers initialize, then closes stdout/stderr and lives on, ignoring SIGTERM and EOF.
    "closed-stdio": r"""
record("main")
signal.signal(signal.SIGTERM, signal.SIG_IGN)
answer_first_init()
os.close(1)
os.close(2)
idle()
""",
    # 4) On SIGTERM forks a chain: every link starts the next (new session), ignores SIGTERM.
    "fork-chain": r"""
N = {n}
record("main")
def chain(signum, frame):
    for i in range(N):
        if os.fork():
            if i == 0:
                return  # the main carries on (and forks another chain on the next SIGTERM)
            break  # this link stays, sleeping
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if i % 2:
            os.setsid()  # every other link leaves the observer's process group
        record(f"link{{i}}")
        time.sleep(0.01)
    idle()
signal.signal(signal.SIGTERM, chain)
serve_then_idle()
""",
    # 5) Answers initialize, then floods valid JSON lines, never a result.
    "flood": r"""
record("main")
def flood(msg):
    line = (json.dumps({{"type": "assistant", "message": {{"content": [{{"type": "text",
        "text": "x" * 4000}}]}}}}) + "\n").encode() * 16
    while True:
        os.write(1, line)
serve(on_turn=flood)
""",
    # 5b) Answers a turn, then writes 100 big valid lines while nobody reads (between turns),
    # records "flooded", and serves on.
    "flood-idle": r"""
record("main")
def turn_then_flood(msg):
    answer_turn(msg)
    if noted("flooded"):
        return
    line = json.dumps({{"type": "system", "subtype": "status", "x": "y" * 3_000_000}}) + "\n"
    data = line.encode()
    for i in range(100):
        os.write(1, data)
        record(f"line{{i}}")
    record("flooded")
serve(on_turn=turn_then_flood)
""",
    # 7) Serves, and at stdin EOF stops itself (SIGSTOP: SIGTERM stays pending); a grandchild
    # in a group of its own stops itself at once.
    "stops-itself": r"""
record("main")
daemon_sleep("grandchild", code="import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
             setpgid=True)
serve()
os.kill(os.getpid(), signal.SIGSTOP)
idle()
""",
    # 8) A grandchild in a group of its own, ignoring SIGTERM, starts 20 children that exit at
    # once and never reaps them: 20 zombies under a live process.
    "zombie-farm": r"""
record("main")
if os.fork() == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record("farmer")
    for i in range(20):
        if os.fork() == 0:
            os._exit(0)
    record("farmed")
    idle()
serve()
""",
    # 9) Never reads stdin, never answers, ignores SIGTERM.
    "deaf": r"""
record("main")
signal.signal(signal.SIGTERM, signal.SIG_IGN)
idle()
""",
    # 10) Answers initialize, then closes its stdin (the worker's writes meet EPIPE) and stays,
    # ignoring SIGTERM.
    "closes-stdin": r"""
record("main")
signal.signal(signal.SIGTERM, signal.SIG_IGN)
answer_first_init()
os.close(0)
idle()
""",
    # 11) Asks the worker its own control requests (unknown subtypes, a tool permission, an MCP
    # message) by the thousand instead of answering the turn, and never reads the answers.
    "asks-back": r"""
record("main")
for msg in messages():
    if msg.get("type") == "control_request":
        answer_init(msg)
    elif msg.get("type") == "user":
        for i in range(3000):
            sub = ("can_use_tool", "mcp_message", "no_such_request")[i % 3]
            out({{"type": "control_request", "request_id": f"ask-{{i}}",
                 "request": {{"subtype": sub, "tool_name": "Bash", "input": {{}},
                              "server_name": "x", "message": {{}}}}}})
        idle()
""",
    # 12) Two grandchildren whose main thread exits while another runs on (the leader reads as a
    # zombie): one in a group of its own, one double-forked with an empty environment.
    "headless": r"""
record("main")
daemon_sleep("grandchild", code=headless("grandchild-headless"), setpgid=True)
if os.fork() == 0:
    os.setsid()
    daemon_sleep("escapee", code=headless("escapee-headless"), env={{}}, setsid=True)
    os._exit(0)
os.wait()
serve()
""",
    # 9) At its first turn forks N sleepers (plain forks: cheap) that ignore SIGTERM, every
    # other one in a session of its own; exits at stdin EOF, so all N are orphaned at once.
    # They stop by themselves after a minute: a failed test leaves nothing for long.
    "fan-out": r"""
N = {n}
record("main")
fanned = []
def fan(msg):
    if not fanned:
        fanned.append(True)
        for i in range(N):
            pid = os.fork()
            if pid:  # recorded by the parent: a fork ended before it first ran still counts
                record("fanned", pid)
                continue
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if i % 2:
                os.setsid()
            nul = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(nul, fd)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                time.sleep(1)
            os._exit(0)
    answer_turn(msg)
serve(on_turn=fan)
""",
    # 13) Two grandchildren that say nothing of whose they are: the mark emptied (`env VAR=`),
    # and another tool's mark. Groups of their own, SIGTERM ignored (for 150 s).
    "foreign-marks": r"""
record("main")
for role, value in (("emptied", ""), ("foreign", "4242:1796000000.000")):
    env = dict(os.environ, {mark_env}=value)
    daemon_sleep(role, code=IGNORE_TERM_NAP, env=env, setpgid=True)
serve()
""",
    # 14) Two sessions of it: the first shares its mark (a file beside the pid file); the
    # second, at its first turn, leaves behind a double-forked grandchild in a session of its
    # own that carries the first's mark, as if it were that live observer's.
    "forged-mark": r"""
record("main")
MARKS = os.path.join(os.path.dirname(PIDFILE), "marks.txt")
MINE = os.environ.get({mark_env!r}, "")
def turn(msg):
    answer_turn(msg)
    try:
        first = open(MARKS).read().split()[0]
    except (OSError, IndexError):
        first = None
    if first is None:
        with open(MARKS, "a") as f:
            f.write(MINE + "\n")
        record("owner")
    elif first != MINE and not noted("forger"):
        if os.fork() == 0:
            os.setsid()
            daemon_sleep("forger", code=IGNORE_TERM_NAP, env={{{mark_env!r}: first}}, setsid=True)
            os._exit(0)
        os.wait()
serve(on_turn=turn)
""",
    # 15) At its first turn forks a child that writes newlines to stdout without end (60 s at
    # most): nothing the worker reads, all of it the worker must read past.
    "blank-flood": r"""
record("main")
forked = []
def turn_then_blank(msg):
    answer_turn(msg)
    if not forked and os.fork() == 0:
        record("flooder")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            os.write(1, b"\n" * 65536)
        os._exit(0)
    forked.append(True)
serve(on_turn=turn_then_blank)
""",
    # 16) At its first turn, before it answers, forks a grandchild (a session of its own,
    # SIGTERM ignored, 150 s at most) that takes the worker's database's write lock, as a
    # tool's `sqlite3` on it would, and holds it: the worker's store fails while it lives.
    "db-lock": r"""
record("main")
def lock_then_turn(msg):
    if not noted("locker"):
        argv = open(f"/proc/{{os.getppid()}}/cmdline").read().split(chr(0))
        db = os.path.join(argv[argv.index("--data-dir") + 1], "worker.db")
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            import sqlite3
            con = sqlite3.connect(db, isolation_level=None, timeout=30)
            con.execute("BEGIN EXCLUSIVE")
            record("locker")
            for _ in range(150):
                time.sleep(1)
            os._exit(0)
        while not noted("locker"):
            time.sleep(0.01)
    answer_turn(msg)
serve(on_turn=lock_then_turn)
""",
    # 17) The first observer to get a turn leaves a stubborn grandchild (a session of its own,
    # SIGTERM ignored), clears its own parent-death signal, and SIGKILLs the worker's guardian
    # and then the worker: the worker's cgroup cells are left to whoever cleans up after it.
    "regicide": r"""
import ctypes
record("main")
def turn(msg):
    answer_turn(msg)
    if noted("worker-killed"):
        return
    daemon_sleep("stubborn", IGNORE_TERM_NAP, setsid=True)
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = os.getppid()
    for task in os.listdir(f"/proc/{{worker}}/task"):
        for kid in open(f"/proc/{{worker}}/task/{{task}}/children").read().split():
            try:
                if "guardian" in open(f"/proc/{{kid}}/cmdline").read():
                    os.kill(int(kid), signal.SIGKILL)
            except OSError:
                pass
    record("worker-killed")
    os.kill(worker, signal.SIGKILL)
    for _ in range(150):
        time.sleep(1)
    os._exit(0)
serve(on_turn=turn)
""",
    # 6) Its grandchildren move to process groups of their own (setpgid(0,0)), ignore SIGTERM.
    "own-pgid": r"""
record("main")
for i in range(2):
    daemon_sleep(f"grandchild{{i}}", code=IGNORE_TERM_SLEEP, setpgid=True)
serve()
""",
    # 19) A grandchild moves itself out of its cgroup cell (`where`: "out" to the worker's own
    # cgroup, "sibling" into another session's live cell), then double-forks into a session of
    # its own with an empty environment and SIGTERM ignored.
    "cell-exit": r"""
record("main")
if os.fork() == 0:
    moved = leave_cell({where!r})
    record("left-cell" if moved else "no-cell")
    os.setsid()
    if os.fork() == 0:
        record("escapee")
        nap()
    os._exit(0)
serve()
""",
    # 20) A grandchild unshares a new PID namespace and forks its init, which it orphans; the
    # init (it ignores SIGTERM from outside, as a namespace's init does) double-forks in it.
    "pidns": r"""
record("main")
if os.fork() == 0:
    os.setsid()
    if LIBC.unshare(CLONE_NEWPID) != 0:
        record("no-pidns")
        os._exit(0)
    init = os.fork()
    if init:
        record("ns-init", init)
        os._exit(0)
    quiet()
    kid = os.fork()
    if kid == 0:
        if os.fork() == 0:
            record("ns-orphan", int(os.readlink("/proc/self")))  # its pid outside
            nap()
        os._exit(0)
    os.waitpid(kid, 0)
    nap()
serve()
""",
    # 21) A grandchild double-forks into a session of its own and drops to uid/gid nobody (no
    # supplementary groups), with an empty environment.
    "drop-uid": r"""
record("main")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        record("nobody")
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        nap()
    os._exit(0)
serve()
""",
    # 22) Short-lived threads fork, one grandchild each (a session of its own, an empty
    # environment), every other one by a double fork whose orphan comes back to the observer;
    # each thread exits at once (the kernel lists a child under the thread that forked it).
    "thread-fork": r"""
record("main")
def spawn(i):
    if os.fork() == 0:
        os.setsid()
        if i % 2 and os.fork():
            os._exit(0)
        record(f"threaded{{i}}")
        nap()
for i in range(4):
    t = threading.Thread(target=spawn, args=(i,))
    t.start()
    t.join()
serve()
""",
    # 23) A grandchild in a session of its own poses as a kernel thread (comm and argv
    # overwritten, its environment block zeroed and the mark with it), and so does its child.
    "hidden": r"""
record("main")
if os.fork() == 0:
    os.setsid()
    quiet()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.alarm(150)
    hide_argv()
    record("hidden")
    if os.fork() == 0:
        signal.alarm(150)  # not inherited
        hide_argv(b"[ksoftirqd/1]")
        record("hidden-child")
    for _ in range(150):
        time.sleep(1)
    os._exit(0)
serve()
""",
    # 24) On SIGTERM it forks a sleeper every 10 ms, N in all (each ignoring SIGTERM, its
    # environment empty, every other one in a session of its own), while it is being ended.
    "fork-loop": r"""
N = {n}
record("main")
def loop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record("looping")
    for i in range(N):
        if os.fork() == 0:
            # Recorded by itself: its parent may be killed between the fork and a record.
            record("forked")
            if i % 2:
                os.setsid()
            nap()
        time.sleep(0.01)
    record("looped")
signal.signal(signal.SIGTERM, loop)
signal.alarm(150)
serve_then_idle()
""",
    # 25) A grandchild takes a session of its own, leaves its cell, makes itself a child
    # subreaper and double-forks: the orphan is its own, not the observer's. Both have an
    # empty environment and ignore SIGTERM.
    "own-subreaper": r"""
record("main")
if os.fork() == 0:
    os.setsid()
    leave_cell("out")
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    record("subreaper")
    if os.fork() == 0:
        if os.fork() == 0:
            record("its-orphan")
            nap()
        os._exit(0)
    os.wait()
    nap()  # the subreaper bit survives exec
serve()
""",
}


# 27) At its first turn it writes a row into the worker's registry (the database its
# `--data-dir` names) that says a process it did not start is an observer of its session: the
# process `decoy.txt` beside the pid file names by identity (pid, create_time).
CASES["forged-row"] = r"""
record("main")
def forge():
    argv = open(f"/proc/{{os.getppid()}}/cmdline").read().split(chr(0))
    db = os.path.join(argv[argv.index("--data-dir") + 1], "worker.db")
    pid, created = open(os.path.join(os.path.dirname(PIDFILE), "decoy.txt")).read().split()
    import sqlite3
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    mine = "SELECT run_id, session_id FROM processes WHERE pid=? ORDER BY id DESC LIMIT 1"
    end = time.monotonic() + 30
    while (row := con.execute(mine, (os.getpid(),)).fetchone()) is None:
        if time.monotonic() > end:
            return
        time.sleep(0.05)
    con.execute(
        "INSERT INTO processes (run_id, session_id, pid, create_time, state, started)"
        " VALUES (?, ?, ?, ?, 'live', ?)",
        (row[0], row[1], int(pid), float(created), time.time()),
    )
    con.close()
    record("forged")
def turn(msg):
    if not noted("forged"):
        forge()
    answer_turn(msg)
serve(on_turn=turn)
"""

# 26) regicide, whose stubborn grandchild first leaves its cgroup cell and sheds its
# environment (double fork, a session of its own): once the worker and its guardian are dead,
# nothing of theirs can know it (no cell, no mark, no group, init's child). Only the harness,
# which tracked it as it was forked, can.
CASES["regicide-out"] = CASES["regicide"].replace(
    '    daemon_sleep("stubborn", IGNORE_TERM_NAP, setsid=True)\n',
    """    if os.fork() == 0:
        leave_cell("out")
        os.setsid()
        if os.fork() == 0:
            record("stubborn")
            nap()
        os._exit(0)
    os.wait()
""",
)
assert CASES["regicide-out"] != CASES["regicide"]

# Root's ways out (ESCAPE_KIT): case -> (params, roles that prove the misbehaviour happened).
ROOT_CASES: dict[str, tuple[dict[str, object], set[str]]] = {
    "cell-exit": ({"where": "out"}, {"main", "escapee"}),
    "pidns": ({}, {"main", "ns-init", "ns-orphan"}),
    "drop-uid": ({}, {"main", "nobody"}),
    "thread-fork": ({}, {"main", *(f"threaded{i}" for i in range(4))}),
    "hidden": ({}, {"main", "hidden", "hidden-child"}),
    "fork-loop": ({"n": 200}, {"main"}),
    "own-subreaper": ({}, {"main", "subreaper", "its-orphan"}),
}

# The ways out that need a privilege (Linux capability bits, as /proc/self/status CapEff shows
# them): an ordinary user (a developer's machine, CI's runner) or a container without it cannot
# misbehave so, and the case would prove nothing (drop-uid's grandchild dies at setuid).
CAPS_NEEDED: dict[str, dict[int, str]] = {
    "pidns": {21: "CAP_SYS_ADMIN"},  # unshare(CLONE_NEWPID)
    "drop-uid": {6: "CAP_SETGID", 7: "CAP_SETUID"},
}


def effective_caps() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def lacks_privilege(case: str) -> str | None:
    """Why `case` cannot misbehave here (a skip reason), or None."""
    caps = effective_caps()
    lacking = [name for bit, name in CAPS_NEEDED.get(case, {}).items() if not caps >> bit & 1]
    if not lacking:
        return None
    uid = os.geteuid() if hasattr(os, "geteuid") else "?"
    return f"{case} needs {' and '.join(lacking)} (root's), which uid {uid} lacks here"


def case_params(cases: Iterable[str]) -> list[Any]:
    """`cases` for parametrize, those this user may not run skipped with the reason."""
    out = []
    for case in cases:
        reason = lacks_privilege(case)
        out.append(
            pytest.param(case, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))
        )
    return out


def write_hostile(folder: Path, case: str, **params: object) -> Hostile:
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / "pids.txt"
    path = folder / "claude"
    body = (PROLOGUE + ESCAPE_KIT + CASES[case]).format(pidfile=str(pidfile), **params)
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return Hostile(path, pidfile, time.time())


@dataclass
class Hostile:
    path: Path
    pidfile: Path
    since: float

    def entries(self) -> list[tuple[int, str]]:
        try:
            text = self.pidfile.read_text(encoding="utf-8")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            pid, _, role = line.partition(" ")
            if pid.isdigit():
                out.append((int(pid), role))
        return out

    def processes(self) -> list[tuple[psutil.Process, str]]:
        """Live, non-zombie processes the pid file names (created since the test began)."""
        found = []
        for pid, role in self.entries():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() + 1 < self.since or not runs_on(proc):
                    continue
            except psutil.Error:
                continue
            found.append((proc, role))
        return found

    def roles(self) -> set[str]:
        return {role for _, role in self.entries()}

    def kill_all(self) -> None:
        """Cleanup by identity (psutil verifies create_time before signalling)."""
        for _ in range(3):
            procs = [p for p, _ in self.processes()]
            if not procs:
                return
            kill_and_wait(procs)


def runs_on(proc: psutil.Process) -> bool:
    """Not a zombie, or a zombie leader with a thread still running (its main thread exited):
    the test's own reading, apart from proctree's."""
    return proc.status() != psutil.STATUS_ZOMBIE or proc.num_threads() > 1


def env_without_mark() -> dict[str, str]:
    import proctree

    return {k: v for k, v in os.environ.items() if k != proctree.MARK_ENV}


# 28) At its first turn it leaves a grandchild (a session of its own, SIGTERM ignored, no
# environment) that takes a write end of the pipe its worker's guardian reads (opened again
# through /proc/<worker>/fd, as any process of the worker's uid may): the guardian's lifeline
# then no longer ends when the worker dies.
CASES["lifeline-thief"] = r"""
record("main")
def steal(worker):
    lifeline = None
    for task in os.listdir(f"/proc/{{worker}}/task"):
        for kid in open(f"/proc/{{worker}}/task/{{task}}/children").read().split():
            try:
                if "proctree.guardian" in open(f"/proc/{{kid}}/cmdline").read():
                    lifeline = os.readlink(f"/proc/{{kid}}/fd/0")
            except OSError:
                pass
    if lifeline is None:
        return None
    for fd in os.listdir(f"/proc/{{worker}}/fd"):
        try:
            if os.readlink(f"/proc/{{worker}}/fd/{{fd}}") == lifeline:
                return os.open(f"/proc/{{worker}}/fd/{{fd}}", os.O_WRONLY)
        except OSError:
            pass
    return None
def turn(msg):
    answer_turn(msg)
    if noted("thief") or noted("no-pipe"):
        return
    worker = os.getppid()
    if os.fork() == 0:
        os.setsid()
        fd = steal(worker)
        if fd is None:
            record("no-pipe")
            os._exit(0)
        os.set_inheritable(fd, True)  # kept across the exec below
        record("thief")
        nap()
serve(on_turn=turn)
"""

# 29) At its first turn it leaves a grandchild (a session of its own, SIGTERM ignored) that
# takes the worker's listening socket (pidfd_getfd, Linux 5.6+) and accepts connections on it,
# never answering: the worker's clients meet it in the worker's stead.
CASES["api-thief"] = r"""
record("main")
def take_listener(worker):
    import socket
    pidfd = os.pidfd_open(worker)
    for fd in sorted(os.listdir(f"/proc/{{worker}}/fd"), key=int):
        try:
            if not os.readlink(f"/proc/{{worker}}/fd/{{fd}}").startswith("socket:"):
                continue
        except OSError:
            continue
        got = LIBC.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
        if got < 0:
            continue
        sock = socket.socket(fileno=got)
        try:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return sock
        except OSError:
            pass
        sock.detach()
        os.close(got)
    return None
def turn(msg):
    answer_turn(msg)
    if noted("api-thief") or noted("no-listener"):
        return
    worker = os.getppid()
    if os.fork() == 0:
        os.setsid()
        quiet()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.alarm(150)
        sock = take_listener(worker)
        if sock is None:
            record("no-listener")
            os._exit(0)
        record("api-thief")
        held = []
        while True:
            conn, _ = sock.accept()
            held.append(conn)
            record("accepted")
serve(on_turn=turn)
"""

# 30) At its first turn it leaves a grandchild (SIGTERM ignored) that attaches to the observer
# as a debugger would (PTRACE_SEIZE) and swallows every signal it is told of but SIGKILL: the
# observer cannot be stopped by SIGTERM, and its exit is reported to the tracer first.
CASES["tracer"] = r"""
record("main")
def turn(msg):
    answer_turn(msg)
    if noted("tracing") or noted("no-trace"):
        return
    me = os.getpid()
    if os.fork() == 0:
        quiet()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.alarm(150)
        if LIBC.ptrace(0x4206, me, 0, 0) != 0:  # PTRACE_SEIZE
            record("no-trace")
            os._exit(0)
        record("tracing")
        while True:
            try:
                pid, status = os.waitpid(me, 0x40000000)  # __WALL
            except ChildProcessError:
                os._exit(0)
            if os.WIFSTOPPED(status):
                LIBC.ptrace(7, me, 0, 0)  # PTRACE_CONT, the signal swallowed
            elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
                record("tracee-gone")
                for _ in range(150):
                    time.sleep(1)
                os._exit(0)
serve(on_turn=turn)
"""

# 31) Answers initialize first with a reply of the wrong shape (a list, not an object), then
# rightly; answers each turn with fields of other types than the CLI's (valid JSON all).
CASES["odd-shapes"] = r"""
record("main")
for msg in messages():
    if msg.get("type") == "control_request":
        out({{"type": "control_response", "response": [msg.get("request_id")]}})
        out({{"type": "control_response", "response": {{"subtype": "success",
            "request_id": msg.get("request_id"), "response": []}}}})
    elif msg.get("type") == "user":
        out({{"type": "system", "subtype": "init", "session_id": ["x"]}})
        out({{"type": "assistant", "message": {{"content": [{{"type": "text", "text": 5}}]}}}})
        out({{"type": "result", "subtype": "success", "is_error": False, "result": {{"a": 1}},
             "session_id": 7}})
"""

# 32) At its first turn it opens the write end of its worker's guardian's pipe again (as
# lifeline-thief) and writes an order into it: `group PGID CREATE_TIME` naming the process
# `decoy.txt` beside the pid file names (a group of its own, not the worker's).
CASES["lifeline-forger"] = (
    CASES["lifeline-thief"].split("def turn(msg):")[0]
    + r"""
def turn(msg):
    answer_turn(msg)
    if noted("forged") or noted("no-pipe"):
        return
    fd = steal(os.getppid())
    if fd is None:
        record("no-pipe")
        return
    pid, created = open(os.path.join(os.path.dirname(PIDFILE), "decoy.txt")).read().split()
    os.write(fd, f"group {{pid}} {{created}}\n".encode())
    os.close(fd)
    record("forged")
serve(on_turn=turn)
"""
)


# 33) At a turn of the session whose observer `target.txt` beside the pid file names (pid and
# create_time, written by the test), it leaves a sleeper in its own process group (no mark,
# SIGTERM ignored), opens the write end of its worker's guardian's pipe again (as
# lifeline-thief) and writes `ungroup PGID CREATE_TIME` for its own live group: what the worker
# sends only once it has ended that tree. Other sessions it serves as a plain observer.
CASES["lifeline-unwatcher"] = (
    CASES["lifeline-thief"].split("def turn(msg):")[0]
    + r"""
TARGET = os.path.join(os.path.dirname(PIDFILE), "target.txt")
def turn(msg):
    answer_turn(msg)
    if not os.path.exists(TARGET) or noted("unwatched") or noted("no-pipe"):
        return
    pid, created = open(TARGET).read().split()
    if int(pid) != os.getpid():
        return
    if os.getpgrp() != os.getpid():
        record("not-leader")
        return
    daemon_sleep("held", code=IGNORE_TERM_NAP, env={{}})
    end = time.monotonic() + 30
    while not noted("held") and time.monotonic() < end:  # the sleeper records itself
        time.sleep(0.01)
    fd = steal(os.getppid())
    if fd is None:
        record("no-pipe")
        return
    os.write(fd, f"ungroup {{os.getpgrp()}} {{created}}\n".encode())
    os.close(fd)
    record("unwatched")
serve(on_turn=turn)
"""
)


@contextmanager
def decoy(hostile: Hostile | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process nobody of the run started (an empty environment, a session of its own), killed
    after; with `hostile`, its identity in `decoy.txt` beside the pid file, for a hostile that
    names it (a forged row or order)."""
    import proctree

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nfor _ in range(300): time.sleep(1)"],
        env={},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if hostile is not None:
            ident = proctree.identify(proc.pid)
            assert ident is not None
            (hostile.pidfile.parent / "decoy.txt").write_text(f"{ident.pid} {ident.create_time!r}")
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def wait_guardian_listed(hostile: Hostile, deadline: float) -> None:
    """Until every process of the hostile is older than two of the guardian's listings of the
    worker's tree: what was born within one listing of the worker's death is not in it
    (proctree README), so a kill -9 of the worker waits for this."""
    import proctree
    from proctree._guardian import CHILDREN_POLL_S

    def listed() -> bool:
        now = proctree.now()
        return all(
            now - proctree.create_time(p) > 2 * CHILDREN_POLL_S for p, _ in hostile.processes()
        )

    from workerkit import wait_until

    wait_until(listed, deadline, "the guardian to have listed them")
