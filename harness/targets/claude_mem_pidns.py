"""Contain a claude-mem worker in a PID namespace of its own (Linux, util-linux `unshare`).

Some builds kill processes that are not their own (10.6.3's orphan reaper SIGKILLs every orphaned
`claude.*output-format` on the machine every 30 s; 9.0.0 kills every `chroma-mcp`). Run in a new
PID namespace with a private /proc (`unshare --pid --fork --mount-proc --kill-child`), the worker's
`ps` lists only its own processes and it cannot signal anything outside. The network namespace is
shared, so the harness still reaches it on 127.0.0.1.

Tree on the host: unshare -> init (`_pidns_init.py`, PID 1 inside) -> bun -> observers. Killing
the init (by PID, from outside) makes the kernel kill everything in the namespace.

Inside, the fake's ledger records namespace PIDs. `LedgerTranslator` rewrites each event's pid,
ppid and parent_pid to host PIDs (matched through NSpid in /proc/<pid>/status and create_time)
before the census reads it, so the census sees the same identities as psutil on the host.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

import proctree

INIT = Path(__file__).resolve().with_name("_pidns_init.py")
PROBE_TIMEOUT_S = 20.0
CT_TOLERANCE = 0.01
BASE_FLAGS = ("--pid", "--fork", "--mount-proc", "--kill-child")
USERNS_FLAGS = ("--user", "--map-root-user")
_PROBE_CODE = (
    "import os,sys;"
    "sys.exit(0 if os.getpid()==1 and [p for p in os.listdir('/proc') if p.isdigit()]==['1']"
    " else 3)"
)
_probe_cache: tuple[tuple[str, ...] | None, str] | None = None
_probe_lock = threading.Lock()


def probe(refresh: bool = False) -> tuple[tuple[str, ...] | None, str]:
    """(unshare argv prefix, how) when a PID namespace works here, else (None, why not). Cached."""
    global _probe_cache
    with _probe_lock:
        if _probe_cache is None or refresh:
            _probe_cache = _probe()
        return _probe_cache


def _probe() -> tuple[tuple[str, ...] | None, str]:
    if not sys.platform.startswith("linux"):
        return None, f"PID namespaces are Linux only (this is {sys.platform})"
    if os.environ.get("LEAKPROOF_NO_PID_NAMESPACE") == "1":
        return None, "LEAKPROOF_NO_PID_NAMESPACE=1"
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "util-linux `unshare` is not on PATH"
    variants = [BASE_FLAGS, USERNS_FLAGS + BASE_FLAGS]
    if os.geteuid() != 0:
        variants = [USERNS_FLAGS + BASE_FLAGS]
    errors = []
    for flags in variants:
        argv = (unshare, *flags)
        try:
            res = subprocess.run(
                [*argv, sys.executable, "-I", "-S", "-c", _PROBE_CODE],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{shlex.join(flags)}: {exc}")
            continue
        if res.returncode == 0:
            how = "as root" if USERNS_FLAGS[0] not in flags else "in a user namespace"
            return argv, f"unshare {' '.join(flags)} ({how})"
        err = res.stderr.decode(errors="replace").strip().splitlines()
        errors.append(f"{' '.join(flags)}: exit {res.returncode} {err[-1] if err else ''}".strip())
    return None, "unshare could not make a PID namespace here: " + "; ".join(errors)


def wrap(prefix: tuple[str, ...], argv: list[str]) -> list[str]:
    """The command that runs argv under a namespace init (never as PID 1 itself)."""
    return [*prefix, sys.executable, "-I", "-S", str(INIT), *argv]


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def ns_pids(pid: int) -> list[int]:
    """NSpid of a host PID: its PID in each namespace from the host's down to its own."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def find_init(unshare_pid: int, timeout: float = 10.0) -> psutil.Process | None:
    """The namespace's init: the child unshare forked, once it is in a PID namespace of its own."""
    deadline = time.monotonic() + timeout
    outer = pid_ns(unshare_pid)
    while time.monotonic() < deadline:
        try:
            for child in psutil.Process(unshare_pid).children():
                ns = pid_ns(child.pid)
                if ns is not None and ns != outer and ns_pids(child.pid)[-1:] == [1]:
                    return child
        except psutil.Error:
            return None
        time.sleep(0.02)
    return None


def members(ns: str) -> list[psutil.Process]:
    """Every host process in the PID namespace `ns` (as `readlink /proc/<pid>/ns/pid`)."""
    out = []
    for pid in psutil.pids():
        if pid_ns(pid) == ns:
            try:
                out.append(psutil.Process(pid))
            except psutil.Error:
                continue
    return out


def redirect_shim(shim: Path, ledger: Path, new_ledger: Path, out_dir: Path) -> Path | None:
    """A copy of the run's POSIX shim whose ledger is `new_ledger`; None if it has no such line."""
    try:
        text = shim.read_text(encoding="utf-8")
    except OSError:
        return None
    old = f"FAKE_CLAUDE_LEDGER={shlex.quote(str(ledger))}; export FAKE_CLAUDE_LEDGER"
    if old not in text:
        return None
    new = f"FAKE_CLAUDE_LEDGER={shlex.quote(str(new_ledger))}; export FAKE_CLAUDE_LEDGER"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / shim.name
    path.write_text(text.replace(old, new), encoding="utf-8")
    path.chmod(0o755)
    return path


class LedgerTranslator:
    """Copies the fake's namespace ledger to the run's ledger with host PIDs.

    A start event is written once its process is found on the host (NSpid and create_time); an
    event whose process is already gone cannot be placed and is dropped (counted): the census
    then knows that process from the process table only, as for any process without a ledger.
    """

    def __init__(self, source: Path, dest: Path, ns: str, interval: float = 0.05) -> None:
        self.source, self.dest, self.ns, self.interval = source, dest, ns, interval
        self.map: dict[int, tuple[int, float]] = {}  # namespace pid -> (host pid, create_time)
        self.translated = 0
        self.dropped = 0
        self._offset = 0
        self._partial = b""
        self._pending: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pidns-ledger", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.pump(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.pump()
            except Exception:  # noqa: BLE001 - a bad line must not end the translation
                self.dropped += 1

    def _refresh(self) -> None:
        for proc in members(self.ns):
            nspid = ns_pids(proc.pid)
            if not nspid:
                continue
            try:
                self.map[nspid[-1]] = (proc.pid, proctree.create_time(proc))
            except psutil.Error:
                continue

    def _host(self, ns_pid: object, ct: float | None) -> int | None:
        if not isinstance(ns_pid, int):
            return None
        known = self.map.get(ns_pid)
        if known is None or (ct is not None and abs(known[1] - ct) > CT_TOLERANCE):
            self._refresh()
            known = self.map.get(ns_pid)
        if known is None or (ct is not None and abs(known[1] - ct) > CT_TOLERANCE):
            return None
        return known[0]

    def _read(self) -> list[dict]:
        try:
            with open(self.source, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        out = []
        for raw in lines:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def pump(self, final: bool = False) -> None:
        events = self._read()
        if not events:
            return
        lines = []
        for ev in events:
            start = ev.get("event") == "start"
            ct = ev.get("create_time") if start else None
            shift = proctree.clock_offset(ev.get("boot")) if start else 0.0
            if isinstance(ct, (int, float)) and shift is not None:
                ct = float(ct) + shift  # in this process's terms (the fake's boot time may differ)
            else:
                ct = None
            host = self._host(ev.get("pid"), ct)
            if host is None:
                self.dropped += 1
                continue
            ev["ns_pid"] = ev["pid"]
            ev["pid"] = host
            for key in ("ppid", "parent_pid"):
                value = ev.get(key)
                if isinstance(value, int) and value > 0:
                    ev[key] = self._host(value, None) or 0
            lines.append(json.dumps(ev, separators=(",", ":")) + "\n")
        if lines:
            with open(self.dest, "ab") as fh:  # one write: the census may be reading
                fh.write("".join(lines).encode())
            self.translated += len(lines)
