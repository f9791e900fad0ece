"""Write an executable named `claude` that runs the fake with a run's settings baked in.

POSIX: a /bin/sh script that execs the interpreter by absolute path (`-I -S`: no site import,
so start-up stays close to a bare interpreter). Windows: `claude.cmd`.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path

from fake_claude import DEFAULT_VERSION, RUN_ID_FLAG

BOOT = Path(__file__).resolve().with_name("_boot.py")
SHORT_NAMES = {
    "scenario": "FAKE_CLAUDE_SCENARIO",
    "scenario_file": "FAKE_CLAUDE_SCENARIO_FILE",
    "seed": "FAKE_CLAUDE_SEED",
    "ledger": "FAKE_CLAUDE_LEDGER",
    "run_id": "FAKE_CLAUDE_RUN_ID",
    "version": "FAKE_CLAUDE_VERSION",
    "user_mcp_config": "FAKE_CLAUDE_USER_MCP_CONFIG",
}


def new_run_id() -> str:
    return secrets.token_hex(6)


def normalise_settings(settings: dict[str, str]) -> dict[str, str]:
    """Environment variables from settings given as FAKE_CLAUDE_* names or short names."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        if value is None:
            continue
        name = SHORT_NAMES.get(key, key)
        if not name.startswith("FAKE_CLAUDE_"):
            name = "FAKE_CLAUDE_" + name.upper()
        env[name] = str(value)
    if "FAKE_CLAUDE_LEDGER" in env:
        env["FAKE_CLAUDE_LEDGER"] = os.path.abspath(env["FAKE_CLAUDE_LEDGER"])
    if "FAKE_CLAUDE_SCENARIO_FILE" in env:
        env["FAKE_CLAUDE_SCENARIO_FILE"] = os.path.abspath(env["FAKE_CLAUDE_SCENARIO_FILE"])
    user_mcp = env.get("FAKE_CLAUDE_USER_MCP_CONFIG", "")
    if user_mcp and not user_mcp.lstrip().startswith("{"):  # a file, not JSON text
        env["FAKE_CLAUDE_USER_MCP_CONFIG"] = os.path.abspath(user_mcp)
    env.setdefault("FAKE_CLAUDE_RUN_ID", new_run_id())
    extra = _psutil_path()
    if extra:
        env.setdefault("FAKE_CLAUDE_SYS_PATH", extra)
    return env


def _psutil_path() -> str | None:
    # -S hides site-packages. Off Linux the fake needs psutil for create_time, and on 3.10 tomli
    # for TOML scenario files: point at the site-packages that holds them (searched last).
    import importlib.util

    spec = importlib.util.find_spec("psutil")
    if spec is None or not spec.origin:
        return None
    return str(Path(spec.origin).resolve().parent.parent)


def command_for(
    settings: dict[str, str], *, python: str = sys.executable
) -> tuple[list[str], dict[str, str]]:
    """(argv prefix, environment additions) that the shim would exec: for callers that want
    to start the fake without a shell or cmd.exe in between (on Windows, cmd.exe would be the
    process they hold, not the fake)."""
    env = normalise_settings(settings)
    run_flag = f"{RUN_ID_FLAG}={env['FAKE_CLAUDE_RUN_ID']}"
    if sys.platform == "win32" and python == sys.executable:
        # A venv's python.exe is a redirector that starts the base interpreter as a child;
        # the fake needs no venv (-I -S, explicit paths), so start the real one directly.
        python = getattr(sys, "_base_executable", None) or python
    return [os.path.abspath(python), "-I", "-S", str(BOOT), run_flag], env


def write_shim(
    directory: str | os.PathLike[str], settings: dict[str, str], *, python: str = sys.executable
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    argv, env = command_for(settings, python=python)
    python, run_flag = argv[0], argv[-1]
    if sys.platform == "win32":
        path = directory / "claude.cmd"
        lines = ["@echo off", "rem fake claude (fake-claude shim): settings baked in"]
        for k, v in sorted(env.items()):
            lines.append(f'set "{k}={v.replace("%", "%%")}"')
        lines.append(f'"{python}" -I -S "{BOOT}" {run_flag} %*')
        text = "\r\n".join(lines) + "\r\n"
    else:
        path = directory / "claude"
        lines = ["#!/bin/sh", "# fake claude (fake-claude shim): settings baked in"]
        for k, v in sorted(env.items()):
            lines.append(f"{k}={shlex.quote(v)}; export {k}")
        cmd = " ".join(shlex.quote(p) for p in (python, "-I", "-S", str(BOOT), run_flag))
        lines.append(f'exec {cmd} "$@"')
        text = "\n".join(lines) + "\n"
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def _scenario_problem(spec: str | None, scenario_file: str | None) -> str | None:
    from fake_claude.scenario import ScenarioError, load_file, validate_spec

    try:
        if scenario_file is not None:
            spec_from_file, _ = load_file(scenario_file)
            validate_spec(spec_from_file)
        if spec is not None:
            validate_spec(spec)
    except ScenarioError as exc:
        return f"scenario: {exc}"
    return None


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def shim_main(argv: list[str]) -> int:
    import argparse
    import shutil

    from cliargs import HelpFormatter, run_id_arg

    p = argparse.ArgumentParser(
        prog="fake-claude shim", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("dir", help="the folder to write DIR/claude into")
    p.add_argument(
        "--scenario", help="scenario spec, e.g. 'ignore-eof+grandchild:n=2' (default: ok)"
    )
    p.add_argument("--scenario-file", help="JSON or TOML scenario file instead of --scenario")
    p.add_argument("--seed", help="integer seed of every random choice")
    p.add_argument("--ledger", help="JSONL file the fake writes what it did to (default: none)")
    p.add_argument(
        "--run-id", type=run_id_arg, help="12 lowercase letters or digits (default: random)"
    )
    p.add_argument("--version", help=f"what `claude -v` prints (default: {DEFAULT_VERSION})")
    p.add_argument("--python", default=sys.executable, help="the interpreter that runs the fake")
    ns = p.parse_args(argv)
    problem = _scenario_problem(ns.scenario, ns.scenario_file)
    if problem:
        p.error(problem)  # a shim every run of which would fail: refused now, exit 2
    if Path(ns.dir).exists() and not Path(ns.dir).is_dir():
        p.error(f"{ns.dir} is not a folder: the shim is written as DIR/claude")
    # Each of these would make every run of the shim fail, long after it was written.
    if shutil.which(ns.python) is None:
        p.error(f"--python {ns.python}: not an executable file or a command on PATH")
    if ns.ledger and not _writable_folder(Path(ns.ledger).absolute().parent):
        p.error(f"--ledger {ns.ledger}: its folder cannot be made or written to")
    settings = {
        "scenario": ns.scenario,
        "scenario_file": ns.scenario_file,
        "seed": ns.seed,
        "ledger": ns.ledger,
        "run_id": ns.run_id,
        "version": ns.version,
    }
    try:
        path = write_shim(
            ns.dir, {k: v for k, v in settings.items() if v is not None}, python=ns.python
        )
    except OSError as exc:
        print(f"fake-claude shim: cannot write the shim in {ns.dir}: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
