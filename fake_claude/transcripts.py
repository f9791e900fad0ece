"""The fake's conversations on disk, kept as the real CLI keeps them, so that `--resume`,
`--continue` and `--session-id` find (or fail to find) a conversation as the real CLI does.

One JSONL file per session, `<config>/projects/<cwd, sanitised>/<session id>.jsonl`, a line per
user prompt and per reply. `<config>` is `$CLAUDE_CONFIG_DIR` when set (the SDKs' session
listing reads the same place), else `<ledger>.claude` beside the fake's ledger, else
`fake-claude-uid<uid>` (Windows: `fake-claude-<user>`) in the temporary folder: never the
user's own `~/.claude`, whose resume list a fake's sessions would fill.
`--no-session-persistence` writes nothing, as in the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: every fake's start-up would import collections
    from collections.abc import Callable

    # Mirrors a transcript's new lines (`--session-mirror`): (the file's path, its entries).
    Mirror = Callable[[str, list[dict]], None]

# Paths are plain strings here: pathlib would add to every fake's start-up (its imports).

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
MAX_KEY = 200  # the CLI's longest project folder name before it appends a hash
# The lines of a conversation: a new one goes on from the last of these. Others carry a uuid
# too (the SDKs' fork_session writes its `custom-title` with one) but are no message to follow.
MESSAGE_TYPES = frozenset({"user", "assistant", "system", "attachment", "progress"})
NOT_A_UUID = (
    "Error: --resume requires a valid session ID or session title when used with --print. "
    'Usage: claude -p --resume <session-id|title>. Provided value "{}" is not a UUID and does '
    "not match any session title."
)


class NoConversation(Exception):
    """The session asked for cannot be had: the real CLI's message, then exit 1. `reason`: the
    result's `startup_failure_reason` for it, where the real CLI has one."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def projects_dir(env: os._Environ[str] | dict[str, str], ledger_path: str | None) -> str:
    if env.get("CLAUDE_CONFIG_DIR"):
        return os.path.join(env["CLAUDE_CONFIG_DIR"], "projects")
    if ledger_path:
        return os.path.join(ledger_path + ".claude", "projects")
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"fake-claude-{_user_key()}", "projects")


def _user_key() -> str:
    """Who we are, for a folder in the shared temporary folder. POSIX: the uid, never a name
    from $USER/$LOGNAME (getpass's first source), which an environment passed on from another
    user names wrongly (`su -p`, a container's USER=root for uid 1001): its transcripts went
    into that user's folder, where it may not write, or where the next run, with other
    variables, did not look, and `--resume` found nothing. Windows: its temporary folder is the
    user's own already."""
    if sys.platform != "win32":
        return f"uid{os.getuid()}"
    import getpass

    try:
        return project_key(getpass.getuser())
    except (KeyError, OSError):
        return "user"


def project_key(cwd: str) -> str:
    """The CLI's folder name for a project: every character not a letter or digit becomes
    `-`; a longer name is cut and given a hash of the whole path."""
    key = re.sub(r"[^a-zA-Z0-9]", "-", cwd)
    if len(key) <= MAX_KEY:
        return key
    h = 0
    for ch in cwd:  # a JavaScript string hash, as a 32-bit signed integer
        h = ((h << 5) - h + ord(ch)) & 0xFFFFFFFF
    h = abs(h - (1 << 32) if h >= 1 << 31 else h)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while h:
        h, r = divmod(h, 36)
        out = digits[r] + out
    return f"{key[:MAX_KEY]}-{out or '0'}"


def find(projects: str, session_id: str) -> str | None:
    """The transcript of `session_id` in any project."""
    try:
        folders = os.listdir(projects)
    except OSError:
        return None
    for folder in folders:
        path = os.path.join(projects, folder, f"{session_id}.jsonl")
        if os.path.isfile(path):
            return path
    return None


def latest(projects: str, cwd: str) -> str | None:
    """The most recent conversation of this project (what `--continue` goes on with)."""
    folder = os.path.join(projects, project_key(cwd))
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".jsonl")]
    except OSError:
        return None
    dated = []
    for name in names:
        try:
            dated.append((os.stat(os.path.join(folder, name)).st_mtime, name))
        except OSError:
            continue
    return os.path.join(folder, max(dated)[1]) if dated else None


def _stem(path: str) -> str:
    return os.path.basename(path)[: -len(".jsonl")]


def choose(args, projects: str, cwd: str, new_uuid) -> tuple[str, str | None]:
    """(this process's session id, the transcript it goes on from) from argv, or raise
    NoConversation with the real CLI's words."""
    resume = args.value("--resume", "-r")
    wanted = args.value("--session-id")
    fork = args.has("--fork-session")
    if wanted is not None:
        if not UUID_RE.match(wanted):
            raise NoConversation("Error: Invalid session ID. Must be a valid UUID.")
        if not (fork and resume == wanted) and find(projects, wanted) is not None:
            raise NoConversation(f"Error: Session ID {wanted} is already in use.")
    source = None
    if resume is not None:
        if not UUID_RE.match(resume):
            raise NoConversation(NOT_A_UUID.format(resume))
        source = find(projects, resume)
        if source is None:
            raise NoConversation(
                f"No conversation found with session ID: {resume}", "resume_target_not_found"
            )
    elif args.has("--continue", "-c"):
        source = latest(projects, cwd)
        if source is None:
            raise NoConversation("No conversation found to continue")
    if wanted:
        return wanted, source
    if source is not None and not fork:
        return _stem(source), source
    return new_uuid(), source


def sdk_projects_dir(env: os._Environ[str] | dict[str, str]) -> str:
    """Where the SDKs look for the real CLI's transcripts (and key a session store's entries
    by): `$CLAUDE_CONFIG_DIR/projects`, else `~/.claude/projects`."""
    config = env.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")
    return os.path.join(config, "projects")


class Transcript:
    """Appends the session's messages to its file (made at the first one). With a `mirror`
    (the SDK's session store, `--session-mirror`), every line written is also handed to it,
    under the path the real CLI would have written (`mirror_root` in place of `projects`:
    the SDK keys a store's entries by it, and the fake never writes to the user's own)."""

    def __init__(
        self,
        projects: str,
        cwd: str,
        session_id: str,
        source: str | None,
        keep: bool,
        mirror: Mirror | None = None,
        mirror_root: str | None = None,
    ) -> None:
        self.cwd = cwd
        self.session_id = session_id
        self.path = os.path.join(projects, project_key(cwd), f"{session_id}.jsonl")
        self.keep = keep
        self._source = source if source is not None and source != self.path else None
        self.parent: str | None = None
        if source is not None:
            self.parent = _last_uuid(source)
        self._projects = projects
        self._mirror = mirror
        self._mirror_root = mirror_root or projects

    def mirrored(self, path: str, entries: list[dict]) -> None:
        """Hand lines written to `path` (this transcript or one beside it) to the mirror."""
        if self._mirror is not None and entries:
            rel = os.path.relpath(path, self._projects)
            self._mirror(os.path.join(self._mirror_root, rel), entries)

    def add(self, kind: str, message: dict, uuid: str, version: str) -> None:
        if not self.keep:
            return
        line = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": version,
            "type": kind,
            "message": message,
            "uuid": uuid,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        entries: list[dict] = []
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            if self._source is not None:  # a fork starts as a copy of what it goes on from
                with open(self._source, "rb") as src, open(self.path, "ab") as dst:
                    copied = src.read()
                    dst.write(copied)
                self._source = None
                if self._mirror is not None:  # the store gets the whole new session
                    entries = _entries(copied)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        except OSError:
            self.keep = False  # as a CLI on a full disk: the conversation goes on unsaved
            return
        self.parent = uuid
        if self._mirror is not None:
            self.mirrored(self.path, [*entries, line])


def _entries(data: bytes) -> list[dict]:
    """The JSON objects among a transcript's lines (a torn last line is not one)."""
    out = []
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _last_uuid(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    for line in reversed(_entries(data)):
        if line.get("type") in MESSAGE_TYPES and isinstance(line.get("uuid"), str):
            return line["uuid"]
    return None
