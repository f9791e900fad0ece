"""Launching tree_prog.py trees and waiting on their reports, with deadlines, not sleeps."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import proctree

PROG = Path(__file__).with_name("tree_prog.py")
# Generous: a loaded 2-core machine can take seconds to start a dozen interpreters.
DEADLINE = 60.0


# One per interpreter (per xdist worker): every test token starts with it and every mark
# lives under it, so the session's guardian can end all of it if pytest itself is killed.
SESSION = f"ptsess{secrets.token_hex(6)}"


def new_token() -> str:
    return f"{SESSION}x{secrets.token_hex(6)}"


def wait_for(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


HOP = 0.01  # the hopper's interval: no pid of its lineage lives longer than this


def read_report(path: Path) -> list[tuple[str, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        role, _, pid = line.partition(" ")
        if pid.strip().isdigit():
            out.append((role, int(pid)))
    return out


@dataclass
class Tree:
    popen: subprocess.Popen[bytes]
    report: Path
    token: str
    roles: dict[str, list[proctree.ProcId]] = field(default_factory=dict)
    containment: proctree.Containment | None = None

    @property
    def root(self) -> proctree.ProcId:
        assert self.containment is not None and self.containment.proc_id is not None
        return self.containment.proc_id

    def ids(self, *roles: str) -> list[proctree.ProcId]:
        out: list[proctree.ProcId] = []
        for role in roles or tuple(self.roles):
            out.extend(self.roles.get(role, []))
        return out

    def wait_ready(self, expected: Mapping[str, int]) -> None:
        def ready() -> bool:
            counts: dict[str, int] = {}
            for role, _ in read_report(self.report):
                counts[role] = counts.get(role, 0) + 1
            return all(counts.get(r, 0) >= n for r, n in expected.items())

        wait_for(ready, what=f"tree {expected}")
        for role, pid in read_report(self.report):
            pid_id = proctree.identify(pid)
            if pid_id is not None:
                self.roles.setdefault(role, []).append(pid_id)

    def end(self, **options: Any) -> proctree.TerminationResult:
        """terminate_tree on this tree's root and group, its stdin closed as the first stage."""
        return proctree.terminate_tree(
            self.root, group=self.containment, close_stdin=self.popen.stdin, **options
        )

    def living(self, *roles: str) -> list[proctree.ProcId]:
        return [i for i in self.ids(*roles) if proctree.is_alive(i)]


def start_tree(
    tmp_path: Path,
    token: str,
    *,
    mark: str | None,
    children: int = 0,
    grandchildren: int = 0,
    escape: bool = False,
    scrub_escapee: bool = False,
    ignore_term: bool = False,
    ignore_eof: bool = False,
    fork_on_term: bool = False,
    hop: float = 0.0,
    hop_setsid: bool = False,
    contained: bool = True,
    env: Mapping[str, str] | None = None,
    launcher: bool = False,
) -> Tree:
    """A tree of tree_prog. `launcher`: spawned through proctree's launcher (the worker's way),
    which enters its cgroup cell before its exec; else the cell is entered by after_spawn, and
    what the root forks before that (under load, its escapee) stays outside."""
    report = tmp_path / f"report-{secrets.token_hex(4)}.txt"
    argv = [sys.executable, str(PROG), "--report", str(report), "--token", token]
    argv += ["--children", str(children), "--grandchildren", str(grandchildren)]
    for flag, on in (
        ("--escape", escape),
        ("--scrub-escapee", scrub_escapee),
        ("--ignore-term", ignore_term),
        ("--ignore-eof", ignore_eof),
        ("--fork-on-term", fork_on_term),
    ):
        if on:
            argv.append(flag)
    if hop:
        argv += ["--hop", str(hop)] + (["--hop-setsid"] if hop_setsid else [])
    kwargs: dict[str, Any] = {}
    opts = None
    if contained:
        opts = proctree.spawn_options(mark or "unmarked", env=env, argv=argv if launcher else None)
        kwargs.update(opts)
        if mark is None:
            kwargs["env"].pop(proctree.MARK_ENV, None)
        argv = opts.argv or argv
    elif env is not None:
        kwargs["env"] = dict(env)
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, **kwargs)
    tree = Tree(popen, report, token)
    if contained:
        tree.containment = proctree.after_spawn(popen.pid, opts)
    else:
        pid_id = proctree.identify(popen.pid)
        tree.containment = proctree.Containment(popen.pid, pid_id, None)
    expected = {"main": 1}
    if children:
        expected["child"] = children
    if grandchildren and children and not hop:
        expected["grandchild"] = children * grandchildren
    if hop and children:
        expected["hop"] = 2 * children  # hopping for real before the test goes on
    if escape:
        expected["escapee"] = 1
    tree.wait_ready(expected)
    return tree


def alive_by_token(token: str) -> list[proctree.ProcId]:
    """Living (not zombie) processes carrying the token; tolerant of exits during the look."""
    ids = (proctree.identify(p.pid) for p in proctree.scan(token=token))
    return [i for i in ids if i is not None and proctree.is_alive(i)]


class Runner:
    """Starts trees for one test and ends them all on teardown."""

    def __init__(self, token: str, tmp_path: Path) -> None:
        self.token = token
        self.tmp_path = tmp_path
        self.trees: list[Tree] = []
        self.extra: list[subprocess.Popen[bytes]] = []

    @property
    def mark(self) -> str:
        return f"{SESSION}:{self.token}"

    def start(self, *, mark: str | None, **kwargs: Any) -> Tree:
        tree = start_tree(self.tmp_path, self.token, mark=mark, **kwargs)
        self.trees.append(tree)
        return tree

    def cleanup(self) -> None:
        kill_by_token(self.token)
        for tree in self.trees:
            p = tree.popen
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            if p.stdin is not None:
                p.stdin.close()
            if tree.containment is not None:
                tree.containment.close()
            # Escapees adopted while we were a subreaper are our children: reap them by pid.
            for pid_id in tree.ids():
                if pid_id.pid != p.pid:
                    _reap(pid_id.pid)
        for p in self.extra:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        left = [i for t in self.trees for i in t.ids() if proctree.is_alive(i)]
        assert not left, f"cleanup left processes alive: {left}"


def _reap(pid: int) -> None:
    if sys.platform == "win32":
        return  # no zombies; os.waitpid takes a handle there
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def kill_by_token(token: str) -> list[int]:
    """Cleanup: SIGKILL every verified process of this test's run id, then reap our children."""
    killed = []
    for _ in range(3):
        procs = proctree.scan(token=token)
        if not procs:
            break
        for p in procs:
            try:
                p.kill()  # psutil checks the create_time it cached: no PID-reuse victim
                killed.append(p.pid)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
    for pid in killed:
        _reap(pid)
    return killed
