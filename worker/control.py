"""`python -m worker status|stop`: the worker that serves a data dir, asked about or stopped.

The worker is found by its `worker.json` (pid, create_time and boot, so that a pid reused since
by another program is never taken for it, nor signalled), and spoken to over its HTTP API:
`stop` asks `POST /api/admin/shutdown`, so the worker ends its observers as on SIGTERM, and
falls back to SIGTERM (POSIX) only when the API does not answer.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proctree

# Exit codes as LSB init scripts' `status`: 0 running, 3 not running, 4 unknown (a worker.json
# that cannot be read: its worker may run); 1 running but not answering its API (or, for
# `stop`, not stopped within --timeout).
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
        info = json.loads(path.read_text(encoding="utf-8"))
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
    return Found(info, ident)


def _call(found: Found, method: str, route: str) -> dict[str, Any]:
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
    if isinstance(found, NotFound):
        print(found.reason)
        return found.code
    pid = found.info["pid"]
    if found.ident is None:
        print(
            f"no worker is running for {data_dir}: worker.json names pid {pid}, which is gone "
            "(it did not stop cleanly; the next start sweeps what it left)"
        )
        return NOT_RUNNING
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


def stop(data_dir: Path, timeout: float, kill: bool) -> int:
    found = find(data_dir)
    if isinstance(found, NotFound):
        print(found.reason, file=sys.stderr if found.code == UNKNOWN else sys.stdout)
        return 0 if found.code == NOT_RUNNING else found.code
    if found.ident is None:
        print(f"no worker is running for {data_dir}: nothing to stop")
        return 0
    ident = found.ident
    try:
        _call(found, "POST", "/api/admin/shutdown")
        how = "asked it to shut down"
    except (OSError, ValueError) as exc:
        # A worker whose loop is stuck still runs its signal handler once the loop moves.
        sent = sys.platform != "win32" and proctree.send_term(ident)
        how = f"its API did not answer ({exc}); " + ("sent SIGTERM" if sent else "no signal sent")
    print(
        f"worker pid {ident.pid}: {how}; waiting up to {timeout:g} s for it to end its "
        "observers and exit"
    )
    if not proctree.wait_gone([ident], timeout):
        print(f"worker pid {ident.pid} stopped")
        return 0
    if kill:
        proctree.send_kill(ident)
        if not proctree.wait_gone([ident], HTTP_TIMEOUT_S):
            print(f"worker pid {ident.pid} did not stop within {timeout:g} s: killed (SIGKILL)")
            return 0
        print(
            f"worker pid {ident.pid} still runs {HTTP_TIMEOUT_S:g} s after SIGKILL (stuck in the "
            "kernel?)",
            file=sys.stderr,
        )
        return NOT_ANSWERING
    print(
        f"worker pid {ident.pid} is still running after {timeout:g} s; `--kill` ends it "
        "(a fixed worker's observers end with it)",
        file=sys.stderr,
    )
    return NOT_ANSWERING
