"""Fixtures for the conformance tests: the real TS Agent SDKs (installed on demand), run ids,
shims of the fake, and cleanup of every process a test's run left behind."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conformance_support import NODE_DIR, TS_SDKS, end_run

MIN_NODE_MAJOR = 18
STAMP = NODE_DIR / "node_modules" / ".leakproof-installed"


@pytest.fixture(autouse=True, scope="session")
def _claude_config_of_the_runs_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The SDKs write under the Claude config folder (TS 0.1.76 flushes its debug log to
    `<config>/debug/<id>.txt` when a driver runs past a second), and so do the fake's
    conversations: a folder of this run's, never the user's own ~/.claude."""
    if os.environ.get("CLAUDE_CONFIG_DIR"):
        yield
        return
    patch = pytest.MonkeyPatch()
    patch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path_factory.mktemp("claude-config")))
    try:
        yield
    finally:
        patch.undo()


def _missing(reason: str) -> None:
    # .ci/run installs node (ci/install_node.sh), so in CI a missing node is a real failure.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)", pytrace=False)
    pytest.skip(reason)


def _lock_digest() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


class _InstallLock:
    """Inter-process lock (xdist workers share one node_modules): an O_EXCL file."""

    def __init__(self, path: Path, timeout: float = 600.0) -> None:
        self.path, self.timeout = path, timeout

    def __enter__(self) -> None:
        end = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return
            except FileExistsError:
                if self._stale() or time.monotonic() > end:
                    self.path.unlink(missing_ok=True)
                    continue
                time.sleep(0.2)

    def _stale(self) -> bool:
        try:
            pid = int(self.path.read_text() or "0")
        except (OSError, ValueError):
            return False
        import psutil

        return pid > 0 and not psutil.pid_exists(pid)

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def node_sdks() -> Path:
    """node_modules with both pinned TS SDKs, installed by `npm ci --omit=optional` if needed."""
    if sys.platform == "win32":
        pytest.skip(
            "node cannot spawn the fake's claude.cmd without a shell (CVE-2024-27980 fix), "
            "and the TS SDK spawns non-.js paths directly"
        )
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _missing("node and npm are needed for the TypeScript Agent SDK conformance tests")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        _missing(f"node >= {MIN_NODE_MAJOR} is needed, found {version.stdout.strip()}")
    digest = _lock_digest()
    # The lock lives outside the tree (npm ci empties node_modules; no untracked file if killed).
    tag = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:12]
    # tests/conftest.py gives each session a TMPDIR of its own; the lock is shared across them.
    outer_tmp = os.environ.get("LEAKPROOF_OUTER_TMPDIR") or tempfile.gettempdir()
    with _InstallLock(Path(outer_tmp) / f"leakproof-npm-{tag}.lock"):
        if not (STAMP.exists() and STAMP.read_text() == digest):
            # npm ci: exactly the lock file's versions; optional deps are the bundled native CLI.
            done = subprocess.run(
                [npm, "ci", "--omit=optional", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stderr[-3000:]}")
            STAMP.write_text(digest)
    for sdk in TS_SDKS:
        assert (NODE_DIR / "node_modules" / sdk / "sdk.mjs").is_file(), sdk
    return NODE_DIR / "node_modules"


_RUN_IDS: set[str] = set()


@pytest.fixture
def run_id() -> Iterator[str]:
    """A fresh run id; at teardown every process still carrying it is ended (by PID)."""
    rid = secrets.token_hex(6)
    _RUN_IDS.add(rid)
    yield rid
    end_run(rid)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, `timeout`) unwinds like Ctrl-C, so the cleanup below still runs.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Also after Ctrl-C or a crash mid-test: end whatever this session's run ids left behind.
    for rid in sorted(_RUN_IDS):
        end_run(rid)


@pytest.fixture
def make_fake(tmp_path: Path, run_id: str) -> Callable[..., tuple[Path, Path]]:
    """make_fake(scenario) -> (shim path, ledger path) for this test's run id."""
    from fake_claude.shim import write_shim

    def make(scenario: str = "ok", name: str = "fake", seed: int = 1) -> tuple[Path, Path]:
        ledger = tmp_path / f"{name}.ledger.jsonl"
        shim = write_shim(
            tmp_path / name,
            {
                "scenario": scenario,
                "seed": str(seed),
                "ledger": str(ledger),
                "run_id": run_id,
            },
        )
        return shim, ledger

    return make
