"""Settings of one worker run: the command-line flags and their defaults."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# claude-mem 9.0.0's observer model and tool deny-list (SDKAgent.ts), kept verbatim so the
# argv our worker spawns matches the real one.
DEFAULT_MODEL = "claude-sonnet-4-5"
DISALLOWED_TOOLS = (
    "Bash,Read,Write,Edit,Grep,Glob,WebFetch,WebSearch,Task,NotebookEdit,AskUserQuestion,TodoWrite"
)
MAX_BODY_BYTES = 1024 * 1024
# A stdout line longer than this is a session error, never unbounded memory.
MAX_LINE_BYTES = 4 * 1024 * 1024


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

    @property
    def db_path(self) -> Path:
        return self.data_dir / "worker.db"

    @property
    def info_path(self) -> Path:
        return self.data_dir / "worker.json"
