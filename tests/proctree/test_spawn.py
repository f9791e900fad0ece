"""Contained spawn: own session and group, the marker, pdeathsig wiring, after_spawn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psutil
import pytest

import proctree

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")

SHOW_ENV = "import os, sys; sys.stdout.write(os.environ.get('LEAKPROOF_WORKER_MARK', '-'))"


def test_marker_in_child_environment(mode: str, popens) -> None:
    opts = proctree.spawn_options("123:456.5")
    p = subprocess.Popen([sys.executable, "-c", SHOW_ENV], stdout=subprocess.PIPE, **opts)
    popens.append(p)
    c = proctree.after_spawn(p.pid, opts)  # Windows: resumes the suspended child
    out, _ = p.communicate(timeout=60)
    c.close()
    assert out.decode() == "123:456.5"


def test_custom_env_is_kept_and_marked() -> None:
    base = {k: v for k, v in os.environ.items() if k != proctree.MARK_ENV}
    base["PROCTREE_TEST_VAR"] = "kept"
    opts = proctree.spawn_options("m", env=base)
    assert opts.env["PROCTREE_TEST_VAR"] == "kept"
    assert opts.env[proctree.MARK_ENV] == "m"
    assert proctree.MARK_ENV not in base  # the caller's mapping is not modified


@posix_only
def test_child_gets_its_own_session_and_group(mode: str, popens) -> None:
    opts = proctree.spawn_options("m")
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], **opts)
    popens.append(p)
    c = proctree.after_spawn(p.pid, opts)
    assert c.group == p.pid == c.pgid
    assert os.getpgid(p.pid) == p.pid != os.getpgid(0)
    assert os.getsid(p.pid) == p.pid
    assert c.proc_id is not None and proctree.is_alive(c.proc_id)
    assert c.mark == "m"


def test_pdeathsig_only_on_native_linux(mode: str) -> None:
    opts = proctree.spawn_options("m")
    caps = proctree.capabilities()
    assert ("preexec_fn" in opts) == caps.has_pdeathsig
    # With argv: a launcher wraps it instead of a preexec_fn (which forbids vfork), if any.
    argv = [sys.executable, "-c", "pass"]
    wrapped = proctree.spawn_options("m", argv=argv)
    if caps.has_pdeathsig and wrapped.argv != argv:
        assert "preexec_fn" not in wrapped and wrapped.argv[-len(argv) :] == argv
        # proctree's launcher (parent pid, program, argv) or setpriv's options
        assert wrapped.argv[1:3] == [str(os.getpid()), argv[0]] or "--pdeathsig" in wrapped.argv
    else:
        assert wrapped.argv == argv and ("preexec_fn" in wrapped) == caps.has_pdeathsig
    if sys.platform.startswith("linux"):
        assert caps.has_pdeathsig == (mode == "native")
        assert caps.has_subreaper == (mode == "native")


def test_missing_program_fails_at_spawn_not_in_a_launcher(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that does not exist must raise in Popen, as it would without a launcher."""
    # execvp reports EACCES, not ENOENT, when a PATH folder may not be searched (another user's
    # inherited PATH: /root/.cargo/bin under runuser); only the folders we may search are kept.
    path = [d for d in os.get_exec_path() if os.access(d or ".", os.X_OK)]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    argv = ["leakproof-no-such-program-7f3a"]
    opts = proctree.spawn_options("m", argv=argv)
    assert opts.argv == argv
    with pytest.raises(FileNotFoundError):
        subprocess.Popen(opts.argv, **opts)


def test_fallback_env_var_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(proctree.FALLBACK_ENV, "1")
    caps = proctree.capabilities()
    assert not caps.has_pdeathsig and not caps.has_subreaper
    assert not proctree.enable_subreaper()
    monkeypatch.setenv(proctree.FALLBACK_ENV, "0")
    assert proctree.capabilities().has_subreaper == sys.platform.startswith("linux")


def test_asyncio_subprocess_accepts_the_options(mode: str) -> None:
    async def go() -> tuple[str, bool]:
        opts = proctree.spawn_options("async-mark")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SHOW_ENV, stdout=asyncio.subprocess.PIPE, **opts
        )
        c = proctree.after_spawn(proc.pid, opts)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            c.close()
        own_group = sys.platform == "win32" or c.group == proc.pid
        return out.decode(), own_group

    out, own_group = asyncio.run(go())
    assert out == "async-mark"
    assert own_group


def test_after_spawn_of_exited_child_still_names_its_group(popens) -> None:
    opts = proctree.spawn_options("m")
    p = subprocess.Popen([sys.executable, "-c", "pass"], **opts)
    popens.append(p)
    c = proctree.after_spawn(p.pid, opts)
    p.wait(timeout=60)
    if sys.platform != "win32":
        assert c.group == p.pid
    assert c.proc_id is None or not psutil.pid_exists(p.pid) or not proctree.is_alive(c.proc_id)
    c.close()


def test_cli_help_is_usage_not_the_probe() -> None:
    # Before, arguments were ignored: --help printed the JSON (and spawned the probe's child).
    out = subprocess.run(
        [sys.executable, "-m", "proctree", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.startswith("usage: python -m proctree") and "{" not in out.stdout


def test_cli_reports_capabilities() -> None:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "proctree"], capture_output=True, timeout=120, check=True
    )
    info = json.loads(out.stdout)
    caps = proctree.capabilities()
    assert info["has_subreaper"] == caps.has_subreaper
    assert info["has_job_objects"] == (sys.platform == "win32")
    if sys.platform.startswith("linux"):
        assert info["environ_readable"] is True
