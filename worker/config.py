"""Settings of one worker run: the command-line flags and their defaults."""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import proctree
from worker.slots import DEFAULT_MAX_OBSERVERS, DEFAULT_OBSERVER_SHARE_S

# claude-mem 9.0.0's observer model and tool deny-list (SDKAgent.ts), kept verbatim so the
# argv our worker spawns matches the real one.
DEFAULT_MODEL = "claude-sonnet-4-5"
DISALLOWED_TOOLS = (
    "Bash,Read,Write,Edit,Grep,Glob,WebFetch,WebSearch,Task,NotebookEdit,AskUserQuestion,TodoWrite"
)
MAX_BODY_BYTES = 1024 * 1024
# A stdout line longer than this is a session error, never unbounded memory.
MAX_LINE_BYTES = 4 * 1024 * 1024
# Below these a hook's body or an observer's init line no longer fits: nothing would work.
MIN_BODY_BYTES = MIN_LINE_BYTES = 1024
# A connection idle this long (no request yet, or none since the last answer) is closed, and a
# request body must arrive within it: a stalled client holds no socket or handler for ever.
DEFAULT_CLIENT_TIMEOUT_S = 30.0


def default_data_dir() -> Path:
    """The user's data folder, per OS, the way desktop tools place theirs."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "leakproof-worker"


@dataclass(frozen=True)
class WorkerConfig:
    mode: str = "fixed"
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = Path()
    claude: str = "claude"
    model: str = DEFAULT_MODEL
    grace: float = 5.0
    idle_timeout: float = 180.0
    reap_interval: float = 5.0
    turn_timeout: float = 120.0
    max_attempts: int = 2
    max_body: int = MAX_BODY_BYTES
    max_line: int = MAX_LINE_BYTES
    max_observers: int = DEFAULT_MAX_OBSERVERS
    observer_share: float = DEFAULT_OBSERVER_SHARE_S
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT_S
    db_busy_timeout: float = 5.0
    # POSIX: the read end of a pipe only our parent writes to; EOF = the parent is gone, stop.
    lifeline_fd: int | None = None

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why these settings cannot run a worker (flag names, as a user gave them), or None."""
        if not is_loopback(self.host):
            # The API is unauthenticated and spawns processes: it must not be reachable from
            # another machine.
            return f"--host {self.host}: the worker serves loopback only (127.0.0.1, ::1)"
        if not 0 <= self.port <= 65535:
            return f"--port {self.port}: not a TCP port (0 picks a free one)"
        for flag, value, zero_ok in (
            ("--grace", self.grace, True),
            ("--idle-timeout", self.idle_timeout, False),
            ("--reap-interval", self.reap_interval, False),
            ("--turn-timeout", self.turn_timeout, False),
            ("--db-busy-timeout", self.db_busy_timeout, False),
            ("--client-timeout", self.client_timeout, False),
            ("--observer-share", self.observer_share, True),
        ):
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                least = ">= 0" if zero_ok else "> 0"
                return f"{flag} {value:g}: seconds must be a finite number {least}"
        if self.lifeline_fd is not None:
            if sys.platform == "win32":
                return "--lifeline-fd: POSIX only (on Windows the parent's job object ends us)"
            from proctree import lifeline_problem

            problem = lifeline_problem(self.lifeline_fd)
            if problem:
                return f"--lifeline-fd {self.lifeline_fd}: {problem}"
        if self.max_attempts < 1:
            return f"--max-attempts {self.max_attempts}: must be >= 1"
        if self.max_body < MIN_BODY_BYTES:
            return f"--max-body {self.max_body}: must be >= {MIN_BODY_BYTES} bytes"
        if self.max_line < MIN_LINE_BYTES:
            return f"--max-line {self.max_line}: must be >= {MIN_LINE_BYTES} bytes"
        if self.max_observers < 1:
            return f"--max-observers {self.max_observers}: must be >= 1"
        return None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "worker.db"

    @property
    def info_path(self) -> Path:
        return self.data_dir / "worker.json"


def claude_command(claude: str) -> str:
    """--claude as a spawn must be given it. Windows: CreateProcess adds only `.exe` to a name
    without a suffix, so a `claude.cmd` (npm's, the fake's shim) that shutil.which finds through
    PATHEXT, and claude_problem so passes, failed every spawn ("cannot find the file"): the
    file found is run instead. Elsewhere the spawn looks the name up itself."""
    if sys.platform == "win32":
        found = shutil.which(claude)
        if found is not None:
            return found
    return claude


def claude_problem(claude: str) -> str | None:
    """Why `--claude` cannot start an observer (every session would fail later), or None.

    shutil.which makes the spawn's own test: a path must be an executable file, a bare name is
    looked up on PATH."""
    found = shutil.which(claude)
    if found is not None:
        cannot = proctree.exec_problem(found)
        return f"--claude {claude}: {cannot}" if cannot else None
    if os.path.dirname(claude):
        return f"--claude {claude}: not an executable file"
    return f"--claude {claude}: not found on PATH (give its path)"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
