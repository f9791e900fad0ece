"""`python -m worker status|stop`: the worker that serves a data dir, asked about or stopped.

The worker is found by its `worker.json` (pid, create_time and boot, so that a pid reused since
by another program is never taken for it, nor signalled), and spoken to over its HTTP API:
`stop` asks `POST /api/admin/shutdown`, so the worker ends its observers as on SIGTERM, and
falls back to SIGTERM (POSIX) only when the API does not answer.

POSIX: the process worker.json names must run as the user who owns the file (the worker writes
it as itself). Run as root against another user's data dir, a file naming any process it likes
(root's own) would otherwise have root report and signal that process. A worker stopped by
SIGSTOP answers nothing: both say so at once, and `stop` follows its SIGTERM with a SIGCONT.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

import proctree
from worker.config import is_loopback
from worker.store import OPEN_STATES

# Exit codes as LSB init scripts' `status`: 0 running, 3 not running (also: worker.json names a
# process that is not the worker that wrote it), 4 unknown (a worker.json that cannot be read:
# its worker may run); 1 running but not answering its API (stopped by SIGSTOP, say) or, for
# `stop`, not stopped within --timeout.
RUNNING, NOT_ANSWERING, NOT_RUNNING, UNKNOWN = 0, 1, 3, 4
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Found:
    """What worker.json says and whether the process it names still runs."""

    info: dict[str, Any]
    ident: proctree.ProcId | None  # None: that worker is gone (or ran before this boot)

    @property
    def url(self) -> str:
        return f"http://{self.info['host']}:{self.info['port']}"


@dataclass(frozen=True)
class NotFound:
    """Why no worker can be spoken to, and the exit code that says so."""

    reason: str
    code: int


def find(data_dir: Path) -> Found | NotFound:
    """The worker of `data_dir`, or why there is none to speak of."""
    path = data_dir / "worker.json"
    try:
        with path.open(encoding="utf-8") as file:
            # The owner of the file read, not of whatever holds the name a moment later.
            owner = os.fstat(file.fileno()).st_uid
            info = json.loads(file.read())
        pid, created = int(info["pid"]), float(info["create_time"])
        str(info["host"]), int(info["port"])
    except FileNotFoundError:
        return NotFound(f"no worker is running for {data_dir} (no worker.json there)", NOT_RUNNING)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A worker may run (one from before create_time was written, say): not "none runs".
        return NotFound(
            f"{path} cannot be read as a worker's ({type(exc).__name__}: {exc}): whether a "
            "worker runs is unknown",
            UNKNOWN,
        )
    ident = proctree.recorded(pid, created, info.get("boot"))
    if ident is not None and not proctree.is_alive(ident):
        ident = None
    if ident is not None and sys.platform != "win32":  # Windows: no uids (the ACL guards it)
        try:
            proc = ident.process()
            uid = None if proc is None else proc.uids().real
        except psutil.NoSuchProcess:
            uid = None
        except psutil.Error as exc:
            return NotFound(
                f"the owner of pid {pid} cannot be read ({exc}): whether it is the "
                f"worker that wrote {path} is unknown",
                UNKNOWN,
            )
        if uid is None:
            ident = None  # gone since
        elif uid != owner:
            return NotFound(
                f"no worker is running for {data_dir} as far as {path} tells: it names pid "
                f"{pid}, which is not the worker that wrote it (the process runs as "
                f"{_user(uid)}, the file is {_user(owner)}'s): it is neither reported nor "
                "signalled",
                NOT_RUNNING,
            )
    if ident is not None and _holds_other_files(ident, data_dir / "worker.db"):
        return NotFound(
            f"no worker is running for {data_dir}: {path} names pid {pid}, a worker that does "
            f"not have {data_dir / 'worker.db'} open (a worker.json copied from another data "
            "dir?): it is neither reported nor signalled",
            NOT_RUNNING,
        )
    return Found(info, ident)


def _holds_other_files(ident: proctree.ProcId, db_path: Path) -> bool:
    """Whether the process worker.json names has files open, none of them this database: the
    worker of another data dir (a copy of a live one's names it; `stop` of the copy stopped the
    original). A worker has its database open from before worker.json is written until after
    it is removed. False where that cannot be told (no files listed, not allowed to look;
    Windows, where psutil may list only some of a process's files)."""
    if sys.platform == "win32":
        return False
    proc = ident.process()
    try:
        opened = _open_paths(proc) if proc is not None else []
        db_file = db_path.stat()
    except psutil.Error:
        return False
    except OSError:  # no database here at all
        return bool(opened)
    return bool(opened) and not _among(opened, db_file)


def _user(uid: int) -> str:
    if sys.platform == "win32":  # no callers there; pwd is POSIX only
        return f"uid {uid}"
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _frozen(ident: proctree.ProcId) -> bool:
    """Stopped by SIGSTOP (or SIGTSTP, Ctrl-Z): it answers nothing, and acts on no signal but
    SIGKILL and SIGCONT until it runs again. Windows: suspended (psutil says stopped too)."""
    proc = ident.process()
    try:
        return proc is not None and proctree.status(proc) == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def _stopped_how() -> str:
    # Windows has no SIGSTOP: psutil reads a suspended process (all threads) as stopped.
    return "suspended" if sys.platform == "win32" else "stopped (SIGSTOP, or Ctrl-Z)"


def _resume_hint(pid: int) -> str:
    if sys.platform == "win32":
        return f"resuming pid {pid} (psutil.Process({pid}).resume(), say) lets it answer"
    return f"`kill -CONT {pid}` resumes it"


def _why_unsent(ident: proctree.ProcId) -> str:
    """Why a signal to a process that still runs was refused (send_* said False)."""
    proc = ident.process()
    if proc is None:
        return "it is gone"
    if sys.platform != "win32":
        try:
            uid = proc.uids().real
        except psutil.Error:
            uid = None
        if uid is not None and os.geteuid() not in (0, uid):
            return f"not permitted: it runs as {_user(uid)}, this command as {_user(os.geteuid())}"
    return "not permitted"


def _term(ident: proctree.ProcId) -> tuple[str, bool]:
    """SIGTERM, and SIGCONT after it if the worker is stopped (a stopped process acts on the
    SIGTERM only once it runs again): what was done, said, and whether SIGTERM was refused."""
    if sys.platform == "win32":
        return "no signal sent", False
    if not proctree.send_term(ident):
        if not proctree.is_alive(ident):  # it ended after its API failed: nothing to refuse
            return "it exited meanwhile", False
        return f"SIGTERM could not be sent ({_why_unsent(ident)})", True
    if not _frozen(ident):
        return "sent SIGTERM", False
    if proctree.send_cont(ident):
        return "sent SIGTERM, then SIGCONT so that it acts on it", False
    return (
        f"sent SIGTERM, but SIGCONT could not be sent ({_why_unsent(ident)}): it acts on the "
        f"SIGTERM once `kill -CONT {ident.pid}` resumes it"
    ), False


def _listens(found: Found) -> bool | None:
    """Whether the worker process holds a listening socket on worker.json's port (None: cannot
    tell, another user's process on macOS say). A file naming the right process may still name
    another program's port, one of root's own services when root reads another user's file."""
    proc = None if found.ident is None else found.ident.process()
    if proc is None:
        return None
    listing = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
    try:
        sockets = listing(kind="inet")
    except psutil.Error:
        return None
    port = int(found.info["port"])
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr[1] == port for s in sockets)


def _call(found: Found, method: str, route: str) -> dict[str, Any]:
    if not is_loopback(str(found.info["host"])):
        # The worker serves loopback only; the port check below looks at the port alone.
        raise OSError(f"worker.json's host {found.info['host']} is not a loopback address")
    if _listens(found) is False:
        raise OSError(f"pid {found.info['pid']} does not listen on port {found.info['port']}")
    request = urllib.request.Request(
        found.url + route, method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:  # noqa: S310 - loopback, ours
        body: dict[str, Any] = json.loads(answer.read())
        return body


def _span(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _tally(counts: object) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def status(data_dir: Path) -> int:
    found = find(data_dir)
    if _none_serves(found):
        starting = _starting(data_dir)
        if starting is not None:
            print(
                f"worker pid {starting.pid} is starting for {data_dir}: it serves once its "
                "start-up (reaping what earlier runs left) is done"
            )
            return NOT_ANSWERING
    if isinstance(found, NotFound):
        print(found.reason)
        if found.code == NOT_RUNNING:
            _say_left_behind(data_dir)
        return found.code
    pid = found.info["pid"]
    if found.ident is None:
        print(
            f"no worker is running for {data_dir}: worker.json names pid {pid}, which is gone "
            "(it did not stop cleanly; the next start sweeps what it left)"
        )
        _say_left_behind(data_dir)
        return NOT_RUNNING
    if _frozen(found.ident):  # its API would keep us the whole HTTP timeout for nothing
        print(
            f"worker pid {pid} runs but is {_stopped_how()}: it answers nothing; "
            f"{_resume_hint(pid)}"
        )
        return NOT_ANSWERING
    try:
        stats = _call(found, "GET", "/api/stats")
    except (OSError, ValueError) as exc:
        print(f"worker pid {pid} runs but does not answer at {found.url}: {exc}")
        return NOT_ANSWERING
    observers = stats.get("observers", {})
    live = observers.get("live")
    limit = observers.get("limit")
    print(
        f"worker pid {pid} ({stats.get('mode')} mode) serving {found.url}, "
        f"up {_span(stats.get('uptime', 0))}"
    )
    print(f"  data dir: {data_dir}")
    print(f"  observers: {live} live" + (f" of at most {limit}" if limit is not None else ""))
    for what in ("sessions", "queue"):
        print(f"  {what}: {_tally(stats.get(what))}")
    print(f"  rss: {stats['rss'] / 2**20:.1f} MB" if stats.get("rss") else "  rss: unknown")
    return RUNNING


def _none_serves(found: Found | NotFound) -> bool:
    """worker.json names no live worker (none there, or its pid is gone)."""
    if isinstance(found, NotFound):
        return found.code == NOT_RUNNING
    return found.ident is None


def _starting(data_dir: Path) -> proctree.ProcId | None:
    """A worker of this data dir that has begun its run but not yet written worker.json: its
    start-up (the restart reaping of a killed worker's leftovers, a stopped guardian's last
    sweep) can take seconds. Its run's row names it (pid, create_time); taken only if that
    process runs `worker serve` as the database's owner with this very database open, as the
    rows are no proof (an observer may write them; a copied data dir names its original's)."""
    db_path = data_dir / "worker.db"
    try:
        db_file = db_path.stat()
        with _read_only(db_path) as db:
            rows = db.execute(
                "SELECT pid, create_time, boot FROM runs WHERE ended IS NULL ORDER BY id DESC"
            ).fetchall()
    except (OSError, sqlite3.Error):
        return None
    for pid, created, boot in rows:
        ident = proctree.recorded(int(pid), float(created), boot)
        proc = None if ident is None or not proctree.is_alive(ident) else ident.process()
        if proc is not None and _serves(proc, db_file):
            return ident
    return None


def _read_only(db_path: Path) -> contextlib.closing[sqlite3.Connection]:
    """The worker's database, opened so that nothing is written (nor created)."""
    uri = f"{db_path.as_uri()}?mode=ro"
    return contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0))


def _serves(proc: psutil.Process, db_file: os.stat_result) -> bool:
    """Whether it runs `python -m worker serve` with that database file open, and (POSIX) as
    its owner: root asking about another user's data dir would otherwise signal whatever that
    user's rows name."""
    try:
        argv = proc.cmdline()
        if sys.platform != "win32" and proc.uids().real != db_file.st_uid:
            return False
        opened = _open_paths(proc)
    except psutil.Error:
        return False
    if not any(argv[i : i + 3] == ["-m", "worker", "serve"] for i in range(len(argv))):
        return False
    return _among(opened, db_file)


def _open_paths(proc: psutil.Process) -> list[str]:
    """The paths of the regular files it has open (raises psutil.Error)."""
    return [f.path for f in proc.open_files()]


def _among(paths: list[str], db_file: os.stat_result) -> bool:
    """Whether one of these paths is that very file (by device and inode: any path to it)."""
    return any(_same_file(path, db_file) for path in paths)


def _same_file(path: str, db_file: os.stat_result) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (db_file.st_dev, db_file.st_ino)


def _say_left_behind(data_dir: Path) -> None:
    """No worker runs: say what its database still holds for the next start (a user of a
    worker killed with work queued was told only that it is gone): queued messages, which the
    next start works, and observers of earlier runs that still run, which it ends."""
    queued, sessions, running = _left_behind(data_dir / "worker.db")
    if queued:
        print(
            f"  queued: {queued} message(s) of {sessions} session(s), kept in its database: "
            "the next start works them"
        )
    if running:
        pids = ", ".join(str(p.pid) for p in running[:10]) + (", ..." if len(running) > 10 else "")
        print(
            f"  still running: {len(running)} observer(s) of earlier runs (pid {pids}): the "
            "next start ends them"
        )


def _left_behind(db_path: Path) -> tuple[int, int, list[proctree.ProcId]]:
    """(messages queued or claimed, their sessions, observers of earlier runs still running),
    read without writing (no database, or one that cannot be read now: nothing to say)."""
    if not db_path.is_file():
        return 0, 0, []
    marks = ",".join("?" * len(OPEN_STATES))
    try:
        with _read_only(db_path) as db:
            queued, sessions = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT session_id) FROM pending_messages "
                "WHERE status IN ('pending','processing')"
            ).fetchone()
            rows = db.execute(
                "SELECT p.pid, p.create_time, r.boot FROM processes p JOIN runs r "
                f"ON r.id=p.run_id WHERE p.state IN ({marks})",  # noqa: S608 - placeholders
                OPEN_STATES,
            ).fetchall()
    except sqlite3.Error:
        return 0, 0, []
    # Exact identities (pid and create_time, read with the run's boot time): a pid another
    # program holds since is not reported.
    running = [
        ident
        for pid, created, boot in sorted(rows)
        if (ident := proctree.recorded(int(pid), float(created), boot)) is not None
        and proctree.is_alive(ident)
    ]
    return int(queued), int(sessions), running


def stop(data_dir: Path, timeout: float, kill: bool) -> int:
    found = find(data_dir)
    starting = _starting(data_dir) if _none_serves(found) else None
    if starting is not None:
        # Not serving yet: no API to ask. Before, "nothing to stop" (exit 0), and the worker
        # went on to serve. SIGTERM: it stops once its start-up is done (before its handler is
        # set, nothing of it has started yet).
        if sys.platform == "win32":
            print(f"worker pid {starting.pid} is starting: stop it once it serves", file=sys.stderr)
            return NOT_ANSWERING
        how, refused = _term(starting)
        return _until_gone(starting, f"it is starting (not serving yet); {how}", refused,
                           timeout, kill)  # fmt: skip
    if isinstance(found, NotFound):
        print(found.reason, file=sys.stderr if found.code == UNKNOWN else sys.stdout)
        return 0 if found.code == NOT_RUNNING else found.code
    if found.ident is None:
        print(f"no worker is running for {data_dir}: nothing to stop")
        return 0
    ident = found.ident
    if _frozen(ident):
        # Its API cannot answer (a request would wait out the HTTP timeout): SIGTERM, which it
        # acts on (ending its observers) once the SIGCONT after it lets it run.
        how, refused = _term(ident)
        how = f"it is {_stopped_how()}, answering nothing; " + how
    else:
        try:
            _call(found, "POST", "/api/admin/shutdown")
            how, refused = "asked it to shut down", False
        except (OSError, ValueError) as exc:
            # A worker whose loop is stuck still runs its signal handler once the loop moves.
            how, refused = _term(ident)
            how = f"its API did not answer ({exc}); " + how
    return _until_gone(ident, how, refused, timeout, kill)


def _until_gone(ident: proctree.ProcId, how: str, refused: bool, timeout: float, kill: bool) -> int:
    """After the ask (`how`): wait for the worker to exit, and SIGKILL it with --kill."""
    if refused:  # neither the API nor SIGTERM reached it: no use waiting
        print(f"worker pid {ident.pid}: {how}", file=sys.stderr)
        if not kill:
            print(f"worker pid {ident.pid} still runs", file=sys.stderr)
            return NOT_ANSWERING
        return _kill(ident, "")
    print(
        f"worker pid {ident.pid}: {how}; waiting up to {timeout:g} s for it to end its "
        "observers and exit"
    )
    if not proctree.wait_gone([ident], timeout):
        print(f"worker pid {ident.pid} stopped")
        return 0
    if kill:
        return _kill(ident, f" within {timeout:g} s")
    print(
        f"worker pid {ident.pid} is still running after {timeout:g} s; `--kill` ends it "
        "(a fixed worker's observers end with it)",
        file=sys.stderr,
    )
    return NOT_ANSWERING


def _kill(ident: proctree.ProcId, waited: str) -> int:
    """--kill: SIGKILL, and whether it went out and ended the worker, said."""
    if not proctree.send_kill(ident):
        if not proctree.is_alive(ident):  # it ended between the wait and the kill
            print(f"worker pid {ident.pid} stopped (just before SIGKILL)")
            return 0
        print(
            f"worker pid {ident.pid} did not stop{waited}, and SIGKILL could not be sent to it "
            f"({_why_unsent(ident)})",
            file=sys.stderr,
        )
        return NOT_ANSWERING
    if not proctree.wait_gone([ident], HTTP_TIMEOUT_S):
        print(f"worker pid {ident.pid} did not stop{waited}: killed (SIGKILL)")
        return 0
    print(
        f"worker pid {ident.pid} still runs {HTTP_TIMEOUT_S:g} s after SIGKILL (stuck in the "
        "kernel?)",
        file=sys.stderr,
    )
    return NOT_ANSWERING
