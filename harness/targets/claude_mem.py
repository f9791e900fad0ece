"""The real claude-mem worker (bun + the plugin's worker-service.cjs) as a soak target.

`ClaudeMemTarget(version="13.25.3")` installs claude-mem from npm into a private cache;
`ClaudeMemTarget(plugin=Path(".../plugin"))` uses a plugin folder (e.g. a checkout of v9.0.0).
Each run gets its own HOME under the run's work dir with `~/.claude-mem/settings.json` (free port,
127.0.0.1, CLAUDE_CODE_PATH = the run's fake shim, Chroma off). The worker runs in the foreground
(`--daemon`) in its own process group and is ended by identity, with everything carrying the run id;
sessions are driven the way that build's hooks drive them (see claude_mem_flow.py).

A build that kills processes which are not its own (10.6.3's orphan reaper, 9.0.0's chroma-mcp
sweep) runs in a PID namespace of its own when this machine allows one (claude_mem_pidns.py):
`isolation: pid-namespace`. Where it does not, such a build is refused unless the user opts in.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import proctree
from harness import claude_mem_install as install
from harness.target import (
    RunContext,
    SessionSpec,
    SpawnedProcess,
    Target,
    TargetError,
    WorkerHandle,
)
from harness.targets import claude_mem_pidns as pidns
from harness.targets.claude_mem_flow import HookFlow, detect_flow, major_version
from harness.targets.claude_mem_reap import ReapTracker
from harness.workload import make_observation

ISOLATIONS = ("auto", "pid-namespace", "none")
START_TIMEOUT_S = 120.0  # 9.0.0 waits for its MCP server before it reports ready; loaded machine
STOP_GRACE_S = 5.0
RUN_ID_FLAG = "--fake-claude-run-id="
DEFAULT_MODEL = "claude-sonnet-4-5"
# Settings the run owns. CLAUDE_MEM_DATA_DIR moves the worker's data (its database, logs and
# settings.json, which 13.x reads from there) out of the run's temporary HOME, into the user's
# real ~/.claude-mem if that is what is given; CLAUDE_CODE_PATH would replace the fake `claude`.
RUN_SETTINGS = {
    "CLAUDE_MEM_DATA_DIR": "the worker's data stays in the run's temporary HOME, so that no "
    "real ~/.claude-mem is read or written",
    "CLAUDE_CODE_PATH": "the observers are the run's fake claude, which the census counts",
}


class ClaudeMemError(TargetError):
    """The worker could not be prepared, started or driven."""


class UnsafeVersionRefused(ClaudeMemError):
    """The build kills processes that are not its own; refused without an explicit opt-in."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something already holds 127.0.0.1:PORT (a listener: bind fails even with
    SO_REUSEADDR, which a worker's listen sets too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def real_home() -> Path | None:
    """The user's real HOME, from the account database where there is one (HOME can lie)."""
    if sys.platform != "win32":
        import pwd

        try:
            return Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
        except KeyError:  # a uid with no account (a container's)
            pass
    home = os.environ.get("USERPROFILE") or os.environ.get("HOME")
    return Path(home).resolve() if home else None


class ClaudeMemTarget(Target):
    name = "claude-mem"

    def __init__(
        self,
        version: str | None = None,
        plugin: str | os.PathLike[str] | None = None,
        *,
        allow_foreign_kill: bool = False,
        allow_chroma_kill: bool = False,  # older name of allow_foreign_kill
        reap_wait: float = 0.0,
        grace: float = 5.0,
        settings: dict[str, str] | None = None,
        cache: str | os.PathLike[str] | None = None,
        bun: str | os.PathLike[str] | None = None,
        start_timeout: float = START_TIMEOUT_S,
        mode: str | None = None,  # SoakConfig passes the reference's mode; claude-mem has none
        isolation: str | None = None,  # auto (default) | pid-namespace | none
    ) -> None:
        del mode
        if version is None and plugin is None:
            # `python -m harness soak --target claude-mem` has no flag for these.
            version = os.environ.get("LEAKPROOF_CLAUDE_MEM") or None
            plugin = os.environ.get("LEAKPROOF_CLAUDE_MEM_PLUGIN") or None
        if (version is None) == (plugin is None):
            raise ValueError(
                "claude-mem target: give exactly one of version (npm, LEAKPROOF_CLAUDE_MEM) or "
                "plugin (a plugin folder or checkout, LEAKPROOF_CLAUDE_MEM_PLUGIN); e.g. "
                "LEAKPROOF_CLAUDE_MEM=13.25.3 python -m harness soak --target claude-mem "
                "(docs/claude-mem.md)"
            )
        for key in settings or {}:
            if key in RUN_SETTINGS:
                raise ValueError(
                    f"--claude-mem-setting {key}: set by the harness for every run "
                    f"({RUN_SETTINGS[key]}); leave it out"
                )
        self.version = version
        self.plugin = Path(plugin).resolve() if plugin is not None else None
        self.allow_foreign_kill = (
            allow_foreign_kill
            or allow_chroma_kill
            or os.environ.get("LEAKPROOF_ALLOW_FOREIGN_KILL") == "1"
        )
        isolation = isolation or os.environ.get("LEAKPROOF_CLAUDE_MEM_ISOLATION") or "auto"
        if isolation not in ISOLATIONS:
            raise ValueError(f"claude-mem isolation must be one of {ISOLATIONS}, not {isolation!r}")
        # auto: a PID namespace for builds that kill foreign processes; pid-namespace: always;
        # none: never (such a build then needs allow_foreign_kill).
        self.isolation = isolation
        self.isolation_used: str | None = None  # "pid-namespace" or "none", known after resolve()
        self.isolation_note = ""
        self._ns_prefix: tuple[str, ...] | None = None
        self._ns_init: psutil.Process | None = None
        self._ns: str | None = None
        self._translator: pidns.LedgerTranslator | None = None
        self.namespace_stop: dict | None = None
        self.reap_wait = reap_wait
        self.grace = grace  # for time-to-reap's "alive past grace" count (soak's --grace)
        self.settings_overrides = dict(settings or {})
        self.cache = Path(cache) if cache is not None else None
        self.bun = Path(bun) if bun is not None else None
        self.start_timeout = start_timeout
        self.flow: HookFlow | None = None
        self.handle: WorkerHandle | None = None
        self.home: Path | None = None
        self.tracker: ReapTracker | None = None
        self.db_ids: dict[str, int] = {}
        self.reap: dict | None = None
        self.reported_version: str | None = None  # what the running worker says (/api/version)
        # Tells apart two builds that declare one version (9.0.0 and a fix branch of it).
        self.note = ""
        self.worker_exit: int | None = None
        self.stop_result: dict | None = None
        self._proc: subprocess.Popen[Any] | None = None
        self._containment: proctree.Containment | None = None
        self._token: str | None = None
        self._log: Any = None
        self._cwd = "/tmp"
        self._obs_counter = 0

    @property
    def label(self) -> str:
        # The build's own manifest first: v9.0.0's worker reports "8.5.9" from /api/version.
        version = self.version or self._plugin_version() or self.reported_version
        label = f"claude-mem {version or self.plugin}"
        return f"{label} ({self.note})" if self.note else label

    @property
    def namespace_init(self) -> psutil.Process | None:
        """The PID namespace's init (host view) while the worker runs in one, else None."""
        return self._ns_init

    def source_name(self) -> str:
        """Where the build comes from, in a word: npm, or its checkout's (or folder's) name."""
        if self.plugin is None:
            return "npm"
        return self.plugin.parent.name if self.plugin.name == "plugin" else self.plugin.name

    def _plugin_folder(self) -> Path | None:
        if self.plugin is None:
            return None
        if (self.plugin / "plugin" / "scripts" / "worker-service.cjs").is_file():
            return self.plugin / "plugin"  # a checkout's root was given
        return self.plugin

    def _plugin_version(self) -> str | None:
        folder = self._plugin_folder()
        return install.installed_version(folder) if folder else None

    # -- preparation -------------------------------------------------------------------------
    def resolve(self) -> tuple[Path, Path]:
        """(bun, plugin folder), installing from npm into the cache when needed.

        A build that would kill foreign processes is refused before it is ever started.
        """
        plugin: Path | None
        if self.version is not None:
            plugin = install.plugin_dir(self.version, self.cache)
            if not (plugin / "scripts" / "worker-service.cjs").is_file():
                plugin = install.ensure_claude_mem(self.version, self.cache).plugin
        else:
            plugin = self._plugin_folder()
            assert plugin is not None
            if not (plugin / "scripts" / "worker-service.cjs").is_file():
                raise ClaudeMemError(f"{plugin} has no scripts/worker-service.cjs")
        self.flow = detect_flow(plugin)
        version = self.version or install.installed_version(plugin)
        kills = list(self.flow.foreign_kills)
        if not kills and major_version(version) == 9:
            kills.append("is a 9.x build (9.0.0 kills every chroma-mcp on the machine)")
        self.isolation_used, self.isolation_note, self._ns_prefix = "none", "", None
        contain = ""
        if self.isolation == "pid-namespace" or (self.isolation == "auto" and kills):
            prefix, how = pidns.probe()
            if prefix is not None:
                self.isolation_used, self._ns_prefix = "pid-namespace", prefix
                self.isolation_note = how + (
                    f"; it {'; and '.join(kills)}, and sees and can signal only its own"
                    if kills
                    else ""
                )
            elif self.isolation == "pid-namespace":
                raise ClaudeMemError(f"isolation pid-namespace asked for, but {how}")
            else:
                self.isolation_note = f"no PID namespace: {how}"
                contain = f"It would run contained in a PID namespace, but {how}. "
        if kills and self.isolation_used == "none":
            if not self.allow_foreign_kill:
                raise UnsafeVersionRefused(
                    f"claude-mem {version or plugin} {'; and '.join(kills)}. Those processes are "
                    f"not its own. {contain}Refused; pass --allow-foreign-kill (or "
                    "LEAKPROOF_ALLOW_FOREIGN_KILL=1) only on a machine where nothing else could "
                    "match (e.g. a disposable CI runner)."
                )
            self.isolation_note = (self.isolation_note + "; " if self.isolation_note else "") + (
                "foreign kills allowed by the user"
            )
        bun = self.bun if self.bun is not None else install.ensure_bun(self.cache)
        return bun, plugin

    def _port(self) -> int:
        """The worker's port: the user's CLAUDE_MEM_WORKER_PORT setting if given (it must be
        free: the harness would otherwise wait on a port the worker never listens on, or drive
        whatever else answers there), else a free one."""
        asked = self.settings_overrides.get("CLAUDE_MEM_WORKER_PORT")
        if asked is None:
            return free_port()
        if not asked.isdigit() or not 0 < int(asked) < 65536:
            raise ClaudeMemError(
                f"CLAUDE_MEM_WORKER_PORT={asked!r} is not a port number; leave the setting out "
                "and the harness picks a free port"
            )
        if port_in_use(int(asked)):
            raise ClaudeMemError(
                f"CLAUDE_MEM_WORKER_PORT={asked}: 127.0.0.1:{asked} is already in use (another "
                "claude-mem worker?); pick a free port, or leave the setting out and the harness "
                "picks one"
            )
        return int(asked)

    def _write_home(self, ctx: RunContext, port: int, claude: Path | None = None) -> Path:
        home = (ctx.work_dir / "claude-mem-home").resolve()
        real = real_home()
        if real is not None and home == real:
            raise ClaudeMemError(f"refusing to use the real HOME {real}")
        data = home / ".claude-mem"
        data.mkdir(parents=True, exist_ok=True)
        settings = {
            "CLAUDE_MEM_WORKER_PORT": str(port),
            "CLAUDE_MEM_WORKER_HOST": "127.0.0.1",
            "CLAUDE_CODE_PATH": str(claude or ctx.claude_path),
            "CLAUDE_MEM_CHROMA_ENABLED": "false",  # else 13.x spawns `uvx chroma-mcp`
            "CLAUDE_MEM_MODEL": DEFAULT_MODEL,
            "CLAUDE_MEM_TELEMETRY": "false",
        }
        settings.update(self.settings_overrides)
        (data / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        return home

    def _env(self, home: Path, bun: Path, claude: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the user's Claude / claude-mem setup may steer the worker. Nor a
            # terminal's size: a daemon has none, and claude-mem's reapers parse `ps -eo ...args`,
            # which COLUMNS truncates (pytest-xdist sets COLUMNS=80 in its workers: 10.6.3's
            # orphan reaper then never sees `claude ... --output-format` in a long command line).
            if not k.startswith(("CLAUDE_", "ANTHROPIC_", "XDG_"))
            and k not in ("HOME", "COLUMNS", "LINES")
        }
        path = os.pathsep.join([str(claude.parent), str(bun.parent), env.get("PATH", "")])
        env.update(
            {
                "HOME": str(home),
                "USERPROFILE": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "PATH": path,
                "DO_NOT_TRACK": "1",
                "CLAUDE_MEM_TELEMETRY": "false",
            }
        )
        return env

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, ctx: RunContext) -> WorkerHandle:
        bun, plugin = await asyncio.to_thread(self.resolve)
        self._token = RUN_ID_FLAG + ctx.run_id
        self._cwd = str(ctx.work_dir)
        port = self._port()
        self.home = self._write_home(ctx, port)
        log_path = ctx.work_dir / "claude-mem-worker.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        mark = f"claude-mem-target:{os.getpid()}:{ctx.run_id}"
        claude = ctx.claude_path
        ns_ledger = ctx.work_dir / "ledger-pidns.jsonl"
        if self._ns_prefix is not None:
            # Inside, the fake records namespace PIDs: it writes to a ledger of its own, which
            # the translator copies to the run's ledger with host PIDs.
            shim = pidns.redirect_shim(
                ctx.claude_path, ctx.ledger_path, ns_ledger, ctx.work_dir / "bin-pidns"
            )
            if shim is not None:
                claude = shim
                self._write_home(ctx, port, claude)
        opts = proctree.spawn_options(mark, env=self._env(self.home, bun, claude))
        argv = [str(bun), str(plugin / "scripts" / "worker-service.cjs"), "--daemon"]
        if self._ns_prefix is not None:
            argv = pidns.wrap(self._ns_prefix, argv)
        print(
            f"{self.label}: isolation: {self.isolation_used} ({self.isolation_note})"
            if self.isolation_note
            else f"{self.label}: isolation: {self.isolation_used}",
            file=sys.stderr,
            flush=True,
        )
        # Spawned from the event loop's thread: on Linux pdeathsig follows the spawning thread.
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(self.home),
            **opts,
        )
        self._containment = proctree.after_spawn(self._proc.pid, opts)
        if self._ns_prefix is not None:
            self._ns_init = await asyncio.to_thread(pidns.find_init, self._proc.pid)
            if self._ns_init is None:
                await self.stop()
                raise ClaudeMemError(f"{self.label}: the PID namespace's init did not appear")
            self._ns = pidns.pid_ns(self._ns_init.pid)
            if claude != ctx.claude_path and self._ns is not None:
                self._translator = pidns.LedgerTranslator(ns_ledger, ctx.ledger_path, self._ns)
                self._translator.start()
        self.tracker = ReapTracker(self._token)
        self.tracker.start()
        base_url = f"http://127.0.0.1:{port}"
        try:
            await self._wait_ready(base_url, log_path)
        except BaseException:
            await self.stop()
            raise
        root = self._containment.proc_id
        self.handle = WorkerHandle(
            base_url=base_url,
            pid=self._proc.pid,
            create_time=root.create_time if root else proctree.now(),
            mode=self.label,
            log_path=log_path,
            core=self._core(),
        )
        return self.handle

    def _core(self) -> tuple[int, float] | None:
        """In a PID namespace, the worker itself (bun running worker-service.cjs, the oldest
        if there are more) under the unshare and init that the harness started: its own RSS is
        the worker's, which the wrapper's 2 MB are not."""
        if self._ns is None:
            return None
        workers = []
        for proc in pidns.members(self._ns):
            try:
                if any(arg.endswith("worker-service.cjs") for arg in proc.cmdline()):
                    workers.append((proctree.create_time(proc), proc.pid))
            except psutil.Error:
                continue
        if not workers:
            return None
        create_time, pid = min(workers)
        return pid, create_time

    async def _wait_ready(self, base_url: str, log_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last = ""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise ClaudeMemError(
                        f"{self.label} exited with {self._proc.returncode} before it was ready; "
                        f"{self._logs_tail(log_path)}"
                    )
                try:
                    async with http.get(base_url + "/api/readiness") as resp:
                        last = f"{resp.status} {(await resp.text())[:200]}"
                        if resp.status == 200:
                            await self._read_version(http, base_url)
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise ClaudeMemError(
            f"{self.label} not ready after {self.start_timeout:.0f}s (last: {last}); "
            f"{self._logs_tail(log_path)}"
        )

    def _logs_tail(self, log_path: Path) -> str:
        """What the worker said: its output, which is mostly empty, and its own log under the
        run's HOME, where 9.0.0 to 13.x write why they failed (e.g. 9.0.0 without node:
        `Executable not found in $PATH: "node"`). Named within the run's work folder, which is
        moved into the report folder afterwards (the report names it)."""
        files = [log_path]
        logs = self.home / ".claude-mem" / "logs" if self.home is not None else None
        if logs is not None and logs.is_dir():
            files += sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime)[-1:]
        parts: list[str] = []
        for path in files:
            text = _tail(path)
            if text.strip():
                name = (
                    path.relative_to(log_path.parent)
                    if path.is_relative_to(log_path.parent)
                    else path
                )
                parts.append(f"{name}:\n{text}")
        if not parts:
            return f"the worker wrote no log ({log_path.name} in the run's work folder is empty)"
        return "its log in the run's work folder, " + "\n".join(parts)

    async def _read_version(self, http: aiohttp.ClientSession, base_url: str) -> None:
        try:
            async with http.get(base_url + "/api/version") as resp:
                data = await resp.json(content_type=None)
            self.reported_version = str(data.get("version")) if isinstance(data, dict) else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self.reported_version = None

    async def wait_reaped(self, timeout: float) -> dict:
        """Let the worker end its observers on its own (up to timeout); return time-to-reap."""
        if self.tracker is None:
            return {}
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                break
            # Done once nothing of the run has been alive for a few samples: a process that
            # appears as the workload ends is seen by the next sample, not missed.
            if self.tracker.alive() > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 3 * self.tracker.interval:
                break
            await asyncio.sleep(0.25)
        self.tracker.sample()
        self.reap = self.tracker.report(self.grace)
        self.reap["waited_s"] = round(timeout - max(0.0, deadline - time.monotonic()), 2)
        return self.reap

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if self.reap_wait > 0 and proc.poll() is None:
            await self.wait_reaped(self.reap_wait)
        self.worker_exit = proc.poll()  # not None: the worker died before we stopped it
        if self.tracker is not None:
            if self.reap is None:
                self.tracker.sample()
                self.reap = self.tracker.report(self.grace)
            self.tracker.stop()
        if self._ns_init is not None:
            self.namespace_stop = await asyncio.to_thread(self._end_namespace, STOP_GRACE_S)
        if self._translator is not None:
            self._translator.stop()
        containment = self._containment
        if containment is not None and containment.proc_id is not None:
            # The whole group, everything marked, and every process of this run (13.x puts each
            # observer in a group of its own, so the worker's group alone would miss them).
            res = await proctree.aterminate_tree(
                containment.proc_id,
                group=containment.group,
                mark=containment.mark,
                token=self._token,
                grace=STOP_GRACE_S,
            )
            self.stop_result = {
                "term": len(res.term),
                "kill": len(res.kill),
                "survivors": [(p.pid, p.create_time) for p in res.survivors],
                "seconds": round(res.elapsed, 3),
            }
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait)
        # Only now: until the worker is gone, a second Ctrl-C must find it for stop_now.
        self._proc = None
        if containment is not None:
            containment.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _end_namespace(self, grace: float) -> dict:
        """End the PID namespace by its init's PID: SIGTERM (forwarded to the worker; the init
        exits with it), then SIGKILL. Once the init is gone the kernel kills every process left
        in the namespace; wait until none is."""
        init, ns = self._ns_init, self._ns
        assert init is not None
        out: dict[str, Any] = {"init_pid": init.pid, "signal": None}
        t0 = time.monotonic()
        for sig, wait in (("term", grace), ("kill", grace)):
            try:
                if sig == "term":
                    init.terminate()  # psutil checks the identity (pid + create time) first
                else:
                    init.kill()
                out["signal"] = sig
            except psutil.NoSuchProcess:
                break
            try:
                init.wait(timeout=wait)
                break
            except psutil.TimeoutExpired:
                continue
        deadline = time.monotonic() + grace
        left = pidns.members(ns) if ns else []
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = pidns.members(ns) if ns else []
        out["left_in_namespace"] = len(left)
        out["seconds"] = round(time.monotonic() - t0, 3)
        return out

    def stop_now(self) -> None:
        """Synchronous last resort (interpreter exit)."""
        proc, containment = self._proc, self._containment
        if proc is None or containment is None or containment.proc_id is None:
            return
        if self._ns_init is not None:
            self._end_namespace(1.0)
        proctree.terminate_tree(
            containment.proc_id,
            group=containment.group,
            mark=containment.mark,
            token=self._token,
            grace=1.0,
        )
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    # -- driving -----------------------------------------------------------------------------
    async def _post(self, http: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.handle is not None, "start() first"
        async with http.post(self.handle.base_url + path, json=body) as resp:
            text = await resp.text()
            if resp.status // 100 != 2:
                raise ClaudeMemError(f"POST {path} -> {resp.status}: {text[:300]}")
        try:
            data = json.loads(text) if text else {}
        except ValueError as exc:
            raise ClaudeMemError(f"POST {path}: not JSON: {text[:300]}") from exc
        return data if isinstance(data, dict) else {"value": data}

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.flow is not None
        if self.flow.platform_source:
            body["platformSource"] = self.flow.platform_source
        return body

    async def drive_prompt(self, session: SessionSpec, http: Any, prompt_no: int) -> int:
        """One UserPromptSubmit with its PostToolUse calls and its Stop, as the hooks post them."""
        assert self.flow is not None and self.tracker is not None
        key = session.content_session_id
        prompt = session.prompts[prompt_no - 1]
        init = await self._post(
            http,
            "/api/sessions/init",
            self._body({"contentSessionId": key, "project": session.project, "prompt": prompt}),
        )
        if "sessionDbId" not in init:
            raise ClaudeMemError(f"/api/sessions/init answered without sessionDbId: {init}")
        db_id = int(init["sessionDbId"])
        self.db_ids[key] = db_id
        self.tracker.session_db_id(key, db_id)
        step2 = self.flow.two_step_init and not (
            init.get("skipped") and init.get("reason") == "private"
        )
        if step2 and self.flow.skip_step2_if_injected and init.get("contextInjected"):
            step2 = False
        if step2:
            text = prompt[1:] if prompt.startswith("/") else prompt
            number = int(init.get("promptNumber", prompt_no))
            await self._post(
                http, f"/sessions/{db_id}/init", {"userPrompt": text, "promptNumber": number}
            )
        for k in range(session.observations_per_prompt):
            obs = make_observation(session, prompt_no, k)
            self._obs_counter += 1
            body = {"contentSessionId": key, **obs, "cwd": self._cwd}
            if self.flow.platform_source:
                # 13.x drops a second observation with the same tool_use_id as a duplicate.
                body["tool_use_id"] = f"toolu_{key}_{prompt_no}_{k}_{self._obs_counter}"
            await self._post(http, "/api/sessions/observations", self._body(body))
        await self._post(
            http,
            "/api/sessions/summarize",
            self._body({"contentSessionId": key, "last_assistant_message": f"Done {prompt_no}."}),
        )
        return db_id

    async def end_session(self, session: SessionSpec, http: Any) -> None:
        """SessionEnd as that build's hook posts it (9.0.0 has none; 10.6.3's never posts)."""
        assert self.flow is not None
        key = session.content_session_id
        if self.flow.session_end == "session-end":
            body = {"contentSessionId": key, "reason": "exit", "cwd": self._cwd}
            await self._post(http, "/api/sessions/session-end", self._body(body))
        elif self.flow.session_end == "complete":
            await self._post(http, "/api/sessions/complete", {"contentSessionId": key})

    async def drive_session(self, session: SessionSpec, http: Any) -> None:
        assert self.tracker is not None, "start() first"
        self.tracker.session_started(session.content_session_id)
        try:
            for prompt_no in range(1, len(session.prompts) + 1):
                await self.drive_prompt(session, http, prompt_no)
            await self.end_session(session, http)
        finally:
            self.tracker.session_ended(session.content_session_id)

    async def session_processes(self, session: SessionSpec, http: Any) -> list[SpawnedProcess]:
        """Observers of this session, where the worker's layout says (13.x: per-session cwd)."""
        if self.tracker is None:
            return []
        self.tracker.sample()
        return self.tracker.processes_of(session.content_session_id)

    def facts(self) -> dict[str, Any]:
        return {
            "reported_version": self.reported_version,
            "hook_flow": self.flow.label if self.flow else None,
            "isolation": self.isolation_used,
            "isolation_note": self.isolation_note,
        }

    def extra_report(self) -> dict:
        """What only this target knows: the build, its hook flow, time-to-reap."""
        return {
            "target": self.label,
            **self.facts(),
            "home": str(self.home) if self.home else None,
            "worker_exit_before_stop": self.worker_exit,
            "time_to_reap": self.reap,
            "namespace_stop": self.namespace_stop,
            "ledger_translation": {
                "translated": self._translator.translated,
                "dropped": self._translator.dropped,
            }
            if self._translator is not None
            else None,
            "stop": self.stop_result,
        }


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
