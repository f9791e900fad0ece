"""The PID-namespace containment of claude-mem builds: probe, init, and the ledger translation.

Real namespaces (util-linux `unshare`, skipped where none can be made), real processes: a process
inside writes a fake-style ledger with namespace PIDs, and `LedgerTranslator` must rewrite them to
the host PIDs psutil sees. The namespace's init (`_pidns_init.py`) is also run on its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness.targets import claude_mem_pidns as pidns

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

ROOT = Path(__file__).resolve().parents[2]

# Inside the namespace (PID 2, under the init): writes ledger lines with namespace PIDs, says
# "ready", then waits for stdin to close.
_INNER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
from fake_claude.identity import create_time
me, parent = os.getpid(), os.getppid()
started = {"pid": me, "ppid": parent, "parent_pid": parent, "create_time": create_time()}
lines = [
    {"event": "start", **started},
    {"event": "turn", "pid": me, "ppid": parent},
    "not json",
    ["not", "an", "object"],
    {"event": "start", "pid": 4000, "create_time": 1.0},
    {"event": "start", "pid": me, "create_time": 1.0},
    {"event": "spawn", "pid": "two"},
]
with open(sys.argv[1], "a") as fh:
    for line in lines:
        fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    fh.write('{"event": "exit", "pid": ')  # a line still being written
print(me, parent, flush=True)
sys.stdin.read()
"""


def _wait_for(predicate: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def namespace_prefix() -> tuple[str, ...]:
    prefix, how = pidns.probe()
    if prefix is None:
        pytest.skip(f"no PID namespace can be made here: {how}")
    return prefix


def test_ledger_in_a_namespace_is_rewritten_with_host_pids(
    namespace_prefix: tuple[str, ...], popen: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    src, dest = tmp_path / "ledger-pidns.jsonl", tmp_path / "ledger.jsonl"
    argv = pidns.wrap(namespace_prefix, [sys.executable, "-c", _INNER, str(src), str(ROOT)])
    assert argv[: len(namespace_prefix) + 4] == [
        *namespace_prefix,
        sys.executable,
        "-I",
        "-S",
        str(pidns.INIT),
    ]
    # At teardown: stdin closed, 10 s to exit, then SIGKILL (unshare --kill-child: its init, and
    # so the whole namespace, die with it).
    proc = popen(argv, patience=10, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    inner_ns_pid, inner_ns_ppid = map(int, proc.stdout.readline().split())
    # Inside, the worker's side sees namespace PIDs: the init is 1 and its child 2.
    assert (inner_ns_pid, inner_ns_ppid) == (2, 1)

    init = pidns.find_init(proc.pid)
    assert init is not None
    ns = pidns.pid_ns(init.pid)
    assert ns is not None and ns != pidns.pid_ns(os.getpid())
    assert pidns.ns_pids(init.pid) == [init.pid, 1]
    inner = init.children()[0]
    assert pidns.ns_pids(inner.pid) == [inner.pid, 2]
    assert {p.pid for p in pidns.members(ns)} == {init.pid, inner.pid}

    translator = pidns.LedgerTranslator(src, dest, ns, interval=0.02)
    translator.start()
    try:
        assert _wait_for(lambda: len(_lines(dest)) == 2), _lines(dest)
        with src.open("a") as fh:  # the line being written is finished
            fh.write('2, "code": 0}\n')
        assert _wait_for(lambda: len(_lines(dest)) == 3), _lines(dest)
    finally:
        translator.stop()

    start, turn, end = _lines(dest)
    assert start["event"] == "start" and turn["event"] == "turn" and end["event"] == "exit"
    for ev in (start, turn, end):
        assert ev["pid"] == inner.pid and ev["ns_pid"] == 2
    assert start["ppid"] == start["parent_pid"] == turn["ppid"] == init.pid
    assert abs(start["create_time"] - inner.create_time()) <= pidns.CT_TOLERANCE
    # Unplaceable: a namespace PID with no process, one whose create time is not the process's
    # (a reused PID), and a PID that is not a number. Lines that are not JSON objects are skipped.
    assert translator.translated == 3 and translator.dropped == 3
    assert translator.map[1] == (init.pid, init.create_time())

    proc.stdin.close()  # the inner process ends, then its init, then unshare
    assert proc.wait(timeout=30) == 0
    assert not init.is_running()


def test_translator_without_a_source_writes_nothing(tmp_path: Path) -> None:
    translator = pidns.LedgerTranslator(
        tmp_path / "missing.jsonl", tmp_path / "out.jsonl", pidns.pid_ns(os.getpid()) or ""
    )
    translator.pump(final=True)
    assert not (tmp_path / "out.jsonl").exists()
    assert translator.translated == translator.dropped == 0


def test_process_without_a_namespace_child_has_no_init(
    popen: Callable[..., subprocess.Popen[str]],
) -> None:
    sleeper = popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = time.monotonic()
    assert pidns.find_init(sleeper.pid, timeout=0.3) is None
    assert time.monotonic() - started >= 0.3
    sleeper.stdin.close()  # type: ignore[union-attr]
    sleeper.wait(timeout=30)
    # Gone (and reaped): no process to ask, no namespace, no NSpid.
    assert pidns.find_init(sleeper.pid, timeout=5) is None
    assert pidns.pid_ns(sleeper.pid) is None
    assert pidns.ns_pids(sleeper.pid) == []


def test_redirect_shim_points_the_fake_at_another_ledger(tmp_path: Path) -> None:
    from fake_claude.shim import write_shim

    if sys.platform == "win32":
        pytest.skip("POSIX shim")
    ledger, ns_ledger = tmp_path / "ledger.jsonl", tmp_path / "ledger pidns.jsonl"
    shim = write_shim(tmp_path / "bin", {"scenario": "ok", "ledger": str(ledger), "run_id": "r1"})
    out = pidns.redirect_shim(shim, ledger, ns_ledger, tmp_path / "bin-pidns")
    assert out == tmp_path / "bin-pidns" / shim.name
    text = out.read_text()
    assert "FAKE_CLAUDE_LEDGER='" + str(ns_ledger) + "'; export FAKE_CLAUDE_LEDGER" in text
    assert str(ledger) + "'" not in text.replace(str(ns_ledger), "")
    assert os.access(out, os.X_OK)
    # A shim for another ledger, or no shim at all, cannot be redirected.
    assert pidns.redirect_shim(shim, tmp_path / "other.jsonl", ns_ledger, tmp_path / "x") is None
    assert pidns.redirect_shim(tmp_path / "none", ledger, ns_ledger, tmp_path / "x") is None
    assert not (tmp_path / "x").exists()


def _stand_in(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_probe_says_why_no_namespace_can_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKPROOF_NO_PID_NAMESPACE", "1")
    assert pidns._probe() == (None, "LEAKPROOF_NO_PID_NAMESPACE=1")
    monkeypatch.delenv("LEAKPROOF_NO_PID_NAMESPACE")

    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    assert pidns._probe() == (None, "util-linux `unshare` is not on PATH")

    # An unshare that refuses, as without privileges or user namespaces.
    _stand_in(
        bindir / "unshare",
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n",
    )
    prefix, why = pidns._probe()
    assert prefix is None
    assert why.startswith("unshare could not make a PID namespace here: ")
    assert "--pid --fork --mount-proc --kill-child: exit 1 unshare: unshare failed" in why
    if os.geteuid() == 0:  # root tries without, then with a user namespace
        assert "--user --map-root-user --pid" in why

    # An unshare that cannot even be started (its interpreter is missing).
    _stand_in(bindir / "unshare", f"#!{tmp_path / 'no-such-interpreter'}\n")
    prefix, why = pidns._probe()
    assert prefix is None and "No such file or directory" in why

    # One that runs the probe without a namespace: the probe sees it is not PID 1.
    _stand_in(
        bindir / "unshare", '#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n'
    )
    prefix, why = pidns._probe()
    assert prefix is None and "exit 3" in why

    # probe() caches, refresh=True asks again (the module's cache is restored by monkeypatch).
    monkeypatch.setattr(pidns, "_probe_cache", None)
    first = pidns.probe()
    assert first == (None, why)
    monkeypatch.setenv("LEAKPROOF_NO_PID_NAMESPACE", "1")
    assert pidns.probe() == first
    assert pidns.probe(refresh=True) == (None, "LEAKPROOF_NO_PID_NAMESPACE=1")


def _init(*cmd: str) -> list[str]:
    # Without -I -S, so that the init runs under coverage like any other child.
    return [sys.executable, str(pidns.INIT), *cmd]


def test_init_without_a_command_is_an_error() -> None:
    res = subprocess.run(_init(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr == "pidns-init: no command\n"


def test_init_exits_with_its_commands_status() -> None:
    res = subprocess.run(
        _init(sys.executable, "-c", "import sys; print('hi'); sys.exit(7)"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode, res.stdout) == (7, "hi\n")
    res = subprocess.run(_init("/no/such/command"), capture_output=True, timeout=60)
    assert res.returncode == 127  # exec failed in the child


def _catches(pid: int, signum: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_init_forwards_sigterm_and_exits_as_its_command_died(
    popen: Callable[..., subprocess.Popen[str]],
) -> None:
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    init = popen(
        _init(sys.executable, "-c", code), text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert init.stdout is not None and init.stdout.readline() == "ready\n"
    child = psutil.Process(init.pid).children()[0]
    # The init's handlers are installed right after the fork: wait for them, then signal it.
    assert _wait_for(lambda: _catches(init.pid, signal.SIGTERM)), "init never caught SIGTERM"
    init.send_signal(signal.SIGTERM)
    assert init.wait(timeout=30) == 128 + signal.SIGTERM
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
