"""A soak's settings: SoakConfig, its defaults and the checks made before a run, the flags
shared with compare, and the fake's shim that carries the settings to each fake claude."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import proctree
from cliargs import NON_NEGATIVE, NON_NEGATIVE_INT
from harness import report_lock
from harness.report import begin_report
from harness.runs import under_way
from harness.verdict import DEFAULT_MIN_SLOPE_SPAN, DEFAULT_SLOPE_BUDGET_MB, RUNNING


def default_concurrency() -> int:
    # Sessions mostly wait on HTTP and on the fake; two per core keeps the cores busy.
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


# Default peak budget for worker + descendants, MB. Why: at the default concurrency a fixed worker
# holds at most ~concurrency observers (a fake plus its grandchildren, each a small interpreter)
# plus itself; 1 GB is several times that, yet 40x under the 44 GB of issue #603.
DEFAULT_PEAK_BUDGET_MB = 1024.0

# The reference worker's limit on one observer turn. The fake answers at once, and a hung one
# holds its session for a turn timeout: 120 s (the worker's default, like claude-mem's) would make
# a soak of hundreds of sessions take hours. A real claude asks a model, which takes that long.
FAKE_TURN_TIMEOUT_S = 10.0
CLAUDE_TURN_TIMEOUT_S = 120.0


@dataclass
class SoakConfig:
    target: str = "reference"
    mode: str = "fixed"
    sessions: int = 300
    concurrency: int = field(default_factory=default_concurrency)
    prompts: int = 2
    observations: int = 3
    scenarios: str = "mix"  # FAKE_CLAUDE_SCENARIO: the fake's default mix of every fault
    seed: int = 1
    grace: float = 5.0  # a survivor this long after its session's end is leaked
    duration: float | None = None  # time-boxed soak instead of N sessions
    rss_budget: float = DEFAULT_SLOPE_BUDGET_MB  # MB per 100 sessions (2nd-half slope)
    rss_peak: float | None = DEFAULT_PEAK_BUDGET_MB  # MB, worker + descendants
    # MB, worker + descendants: no new session past it (None: twice rss_peak; 0: never)
    rss_stop: float | None = None
    rss_min_span: int = DEFAULT_MIN_SLOPE_SPAN  # sessions in the 2nd half before slopes count
    turn_timeout: float | None = None  # the reference worker's, s (None: see turn_timeout_s)
    report: Path | None = None
    worker_grace: float = 0.5  # the worker's own escalation step (--grace of the worker)
    reap_interval: float = 1.0
    sample_hz: float = 4.0
    progress: str = "auto"  # auto | rich | plain | none
    run_id: str | None = None
    keep_work_dir: bool = False
    plot: bool = True
    target_options: dict[str, Any] = field(default_factory=dict)
    # The user's own `claude` executable instead of the fake (no ledger, no run token): the
    # census then counts the worker's new descendants (targets that allow it, e.g. reference).
    claude: Path | None = None
    # Make the harness process a subreaper (Linux) so orphans of the worker's tree stay
    # countable; the command does this with --claude (it is a process of its own), a library
    # caller (e.g. inside a test runner) decides.
    adopt_orphans: bool = False
    # Stdio MCP servers every fake starts as its children, standing in for the user's own MCP
    # config that a real `claude` loads unless given --strict-mcp-config (claude-mem < 13 did
    # not give it): each leaked observer then leaks these too. `stubborn` ones ignore stdin EOF
    # and SIGTERM, so only a tree kill ends them once their fake is gone.
    mcp_servers: int = 0
    mcp_server_mode: str = "polite"  # polite | stubborn

    def rss_stop_mb(self) -> float | None:
        """Past this RSS (worker + descendants) no new session starts: a leaking worker would
        otherwise take the machine's memory (the leaky worker: 3 GB by session 107 of 300)."""
        if self.rss_stop is None:
            return None if self.rss_peak is None else 2 * self.rss_peak
        return self.rss_stop or None

    def turn_timeout_s(self) -> float:
        if self.turn_timeout is not None:
            return self.turn_timeout
        return FAKE_TURN_TIMEOUT_S if self.claude is None else CLAUDE_TURN_TIMEOUT_S

    def target_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"mode": self.mode}
        if self.target == "reference":
            kw.update(
                worker_grace=self.worker_grace,
                reap_interval=self.reap_interval,
                turn_timeout=self.turn_timeout_s(),
            )
        kw.update(self.target_options)
        return kw


def scenario_spec(scenarios: str) -> str:
    """Bare weights (`ok=4,escape=1`) mean a mix of those; anything else is a fake spec."""
    if "=" in scenarios and ":" not in scenarios:
        return "mix:" + scenarios
    return scenarios


MCP_SERVER_FLAGS = {"polite": (), "stubborn": ("--ignore-eof", "--ignore-sigterm")}


def write_run_shim(work_dir: Path, run_id: str, config: SoakConfig, ledger: Path) -> Path:
    from fake_claude.shim import write_shim

    settings = {
        "FAKE_CLAUDE_SCENARIO": scenario_spec(config.scenarios),
        "FAKE_CLAUDE_SEED": str(config.seed),
        "FAKE_CLAUDE_LEDGER": str(ledger),
        "FAKE_CLAUDE_RUN_ID": run_id,
    }
    if config.mcp_servers:
        from fake_claude.mcp_server import mcp_config

        flags = MCP_SERVER_FLAGS[config.mcp_server_mode]
        path = work_dir / "user-mcp.json"
        path.write_text(json.dumps(mcp_config(config.mcp_servers, *flags)), encoding="utf-8")
        settings["FAKE_CLAUDE_USER_MCP_CONFIG"] = str(path)
    return write_shim(work_dir / "bin", settings)


def claude_path(value: str) -> Path:
    """--claude: a bare name is looked up on PATH, as a shell would (`--claude claude`)."""
    path = Path(value)
    if path.name == value and not path.exists():
        found = shutil.which(value)
        if found:
            return Path(found)
    return path


def config_problem(config: SoakConfig) -> str | None:
    """What makes this configuration unable to test anything, found before anything starts."""
    if config.claude is None:
        from fake_claude.scenario import ScenarioError, validate_spec

        try:
            validate_spec(scenario_spec(config.scenarios))
        except ScenarioError as exc:
            return f"--scenarios {config.scenarios!r}: {exc}"
    else:
        if config.scenarios != SoakConfig.scenarios:
            return "--scenarios picks the fake's behaviour: it cannot be used with --claude"
        claude = Path(config.claude)
        where = claude.absolute()  # said in full: Path drops the "./" of "./claude"
        found = shutil.which(str(where))  # an executable file, as a spawn tests it
        if found is None:
            if len(claude.parts) == 1:  # a name: claude_path found it nowhere on PATH either
                return f"--claude {claude}: not a command on PATH, nor an executable file {where}"
            return f"--claude {where}: not an executable file (a path, or a command on PATH)"
        # Every observer's exec would fail, and a soak of them tested nothing yet passed.
        cannot = proctree.exec_problem(found)
        if cannot:
            return f"--claude {where}: {cannot}"
        if config.mcp_servers:
            return "--mcp-servers gives the fake MCP servers: it cannot be used with --claude"
    if config.turn_timeout is not None and config.target != "reference":
        return "--turn-timeout is the reference worker's limit (claude-mem's worker has its own)"
    settings = config.target_options.get("settings") or {}
    if settings and config.target != "claude-mem":
        return "--claude-mem-setting is for --target claude-mem (the real worker's settings)"
    for key, value in settings.items():
        if not key or not value:
            return f"--claude-mem-setting needs KEY=VALUE, not {key!r}"
    if config.mcp_server_mode not in MCP_SERVER_FLAGS:
        return f"--mcp-server-mode {config.mcp_server_mode!r}: polite or stubborn"
    return None


def report_dir_problem(report: Path | None, run_id: str) -> str | None:
    """Checked before the run: a report folder that cannot be made would otherwise fail only
    after the whole soak."""
    if report is None:
        return None
    if Path(report).exists() and not Path(report).is_dir():
        return f"--report {report}: is a file, not a folder"
    try:
        Path(report).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--report {report}: cannot create the folder ({exc.strerror or exc})"
    if not os.access(report, os.W_OK):
        return f"--report {report}: the folder is not writable"
    writer = _writing_there(Path(report))
    if writer is not None:
        return f"--report {report}: run {writer} is writing its report there"
    # Held to the run's end (report_lock.release): a run started at the same moment has not
    # written its record yet, so the check above cannot see it.
    if not report_lock.take(Path(report)):
        writer = _writing_there(Path(report)) or "of another harness"
        return f"--report {report}: run {writer} is writing its report there"
    try:
        begin_report(Path(report), run_id)
    except OSError as exc:
        report_lock.release(Path(report))
        where = f": {exc.filename}" if exc.filename else ""
        return f"--report {report}: cannot write the report there ({exc.strerror or exc}{where})"
    return None


def run_id_problem(run_id: str) -> str | None:
    """A --run-id that a live run on this machine already has: refused before anything starts
    (its report folder included), since this run would count that run's processes as its own
    and its exit sweep would kill them."""
    other = under_way(run_id)
    if other is None:
        return None
    return f"--run-id {run_id}: a run with this id is under way (harness pid {other.owner_pid})"


def _writing_there(report: Path) -> str | None:
    """The run (`<run id> (harness pid N)`) that is under way with its report in this folder:
    two runs there would each take away the other's files and one's verdict would be read as
    the other's."""
    try:
        earlier = json.loads((report / "report.json").read_text(encoding="utf-8"))
        run_id = str(earlier["run_id"]) if earlier.get("verdict") == RUNNING else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    other = under_way(run_id) if run_id else None
    return None if other is None else f"{run_id} (harness pid {other.owner_pid})"


def add_grace_arguments(
    parser: argparse.ArgumentParser,
    *,
    grace: float | None = None,
    worker_grace: float | None = None,
) -> None:
    """--grace and/or --worker-grace (soak, repro, bench, compare), each with its default here."""
    for flag, default, text in (
        ("--grace", grace, "seconds after a session's end before a survivor counts as leaked"),
        (
            "--worker-grace",
            worker_grace,
            "the fixed worker's wait between EOF, SIGTERM and SIGKILL",
        ),
    ):
        if default is not None:
            parser.add_argument(flag, type=NON_NEGATIVE, default=default, help=text)


def add_mcp_arguments(parser: argparse.ArgumentParser) -> None:
    """--mcp-servers and --mcp-server-mode (soak and compare): into SoakConfig's fields."""
    d = SoakConfig()
    parser.add_argument(
        "--mcp-servers",
        type=NON_NEGATIVE_INT,
        default=d.mcp_servers,
        metavar="N",
        help="every fake starts N stdio MCP servers as its children, as a real claude does with "
        "the user's MCP config (without --strict-mcp-config): a leaked observer leaks them too",
    )
    parser.add_argument(
        "--mcp-server-mode",
        choices=sorted(MCP_SERVER_FLAGS),
        default=d.mcp_server_mode,
        help="polite: they exit at stdin EOF; stubborn: they ignore it and SIGTERM",
    )
