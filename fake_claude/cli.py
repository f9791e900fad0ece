"""`fake-claude` / `python -m fake_claude`: the fake claude CLI's entry point."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fake_claude import DEFAULT_VERSION

if TYPE_CHECKING:
    from fake_claude.args import Args
    from fake_claude.context import Context
    from fake_claude.transcripts import NoConversation


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "shim":
        from fake_claude.shim import shim_main

        return shim_main(argv[1:])
    if argv and argv[0] == "selfcheck":
        from fake_claude.selfcheck import selfcheck_main

        return selfcheck_main(argv[1:])

    from fake_claude.args import parse

    args = parse(argv)
    if args.has("-v", "--version"):
        version = os.environ.get("FAKE_CLAUDE_VERSION") or DEFAULT_VERSION
        sys.stdout.write(f"{version} (Claude Code)\n")
        return 0
    if args.has("-h", "--help"):
        sys.stdout.write(
            "Usage: claude [options] [prompt]  (fake-claude: a stand-in for tests)\n"
            "  fake-claude shim DIR [--scenario S] [--seed N] [--ledger PATH] [--run-id ID]\n"
            "  fake-claude selfcheck   (smoke test of the main behaviours)\n"
            "Settings come from FAKE_CLAUDE_* variables (a shim bakes them in): scenario, seed,\n"
            "ledger, run id; every scenario and its parameters: fake_claude/README.md\n"
        )
        return 0
    return run_main_process(args, argv)


def run_main_process(args, argv: list[str]) -> int:
    from fake_claude.context import Context
    from fake_claude.identity import ledger_fields
    from fake_claude.ledger import Ledger
    from fake_claude.lifecycle import exit_now, install_signal_policy
    from fake_claude.messages import new_uuid
    from fake_claude.scenario import ScenarioError, draw_index, load_file, parse_spec, resolve_mix

    env = os.environ
    run_id = args.run_id or env.get("FAKE_CLAUDE_RUN_ID") or None
    ledger = Ledger(env.get("FAKE_CLAUDE_LEDGER"), run_id)
    seed = env.get("FAKE_CLAUDE_SEED", "0")
    try:
        spec = env.get("FAKE_CLAUDE_SCENARIO", "")
        if env.get("FAKE_CLAUDE_SCENARIO_FILE"):
            spec, file_seed = load_file(env["FAKE_CLAUDE_SCENARIO_FILE"])
            if file_seed is not None and "FAKE_CLAUDE_SEED" not in env:
                seed = file_seed
        scenario = parse_spec(spec or "ok")
        draw = draw_index(ledger.path) if scenario.has("mix") else 0
        # With a ledger, the draw index tells processes apart reproducibly; argv may hold
        # random session ids (--resume), so it only stands in when there is no ledger.
        key = str(draw) if ledger.path else " ".join(argv)
        scenario = resolve_mix(scenario, seed, key)
    except (ScenarioError, OSError, ValueError) as exc:
        sys.stderr.write(f"fake-claude: bad scenario: {exc}\n")
        return 2
    ctx = Context(args, scenario, ledger, seed, draw)
    from fake_claude.transcripts import NoConversation, Transcript, choose, projects_dir

    projects, cwd = projects_dir(env, ledger.path), os.getcwd()
    no_conversation: NoConversation | None = None
    try:
        session_id, source = choose(args, projects, cwd, new_uuid)
    except NoConversation as exc:  # said and exited 1 once the start is in the ledger
        session_id, source, no_conversation = new_uuid(), None, exc
    keep = not args.has("--no-session-persistence")
    mirror = None
    if args.has("--session-mirror") and args.value("--output-format") == "stream-json":
        from fake_claude.stdio import send
        from fake_claude.transcripts import sdk_projects_dir

        def mirror(path: str, entries: list[dict]) -> None:
            send({"type": "transcript_mirror", "filePath": path, "entries": entries})

        mirror_root: str | None = sdk_projects_dir(env)
    else:
        mirror_root = None
    ctx.transcript = Transcript(projects, cwd, session_id, source, keep, mirror, mirror_root)
    install_signal_policy(ledger, scenario.has("ignore-sigterm"))
    ledger.write(
        "start",
        ppid=os.getppid(),
        **(ledger_fields() if ledger.path else {}),
        argv=list(sys.orig_argv),
        scenario=scenario.spec(),
        role="main",
        session_id=session_id,
        parent_pid=None,
    )
    if args.value("--json-schema") is not None:
        from fake_claude.schema import SchemaError, load

        try:
            ctx.schema = load(args.value("--json-schema") or "")
        except SchemaError as exc:  # the real CLI refuses a bad option before any turn
            sys.stderr.write(f"Error: {exc}\n")
            exit_now(ledger, 1)
    if no_conversation is not None:  # the real CLI: before any turn or MCP server
        sys.stderr.write(f"{no_conversation}\n")
        _startup_failure_result(args, env, session_id, no_conversation)
        exit_now(ledger, 1)
    if scenario.has("exit-early"):
        ledger.write("misbehave", what="exit-early", at="start")
        exit_now(ledger, int(scenario.num("exit-early", "code", 1)))
    if scenario.has("ballast"):
        from fake_claude.faults import hold_ballast

        hold_ballast(scenario.num("ballast", "mb", 64))
    if scenario.has("grandchild") or scenario.has("escape"):
        from fake_claude.children import start_children

        start_children(ctx)
    if scenario.has("chain") and sys.platform != "win32":
        from fake_claude import chain

        chain.start(ctx)
    from fake_claude.faults import at_point

    at_point(ctx, "start", 0, session_id)
    if scenario.has("headless"):
        from fake_claude.headless import go_headless

        # Does not return: the work's thread leaves the process.
        go_headless(ledger, lambda: serve(ctx, args, session_id))
    return serve(ctx, args, session_id)


def serve(ctx: Context, args: Args, session_id: str) -> int:
    """The one turn of print mode, or the stream-json session."""
    from fake_claude.lifecycle import exit_now

    if args.has("-p", "--print") and args.value("--input-format") != "stream-json":
        from fake_claude.oneshot import run_oneshot
        from fake_claude.stdio import StdoutClosed

        try:
            code = run_oneshot(ctx, session_id)
        except StdoutClosed:  # `claude -p ... | head`: the reader left; exit as on EPIPE, quietly
            code = 1
        exit_now(ctx.ledger, code)
    from fake_claude.session import run_session

    return run_session(ctx, session_id)


def _startup_failure_result(
    args: Args, env: os._Environ[str] | dict[str, str], session_id: str, exc: NoConversation
) -> None:
    """The zeroed error result the real CLI (2.1.334) writes on stdout before it exits on a
    known startup failure, with `startup_failure_reason`: only in stream-json, and, for a
    failure like this one that otherwise ends with stderr alone, only when the host sets
    CLAUDE_CODE_STARTUP_FAILURE_RESULTS (the TS SDK 0.3.334's types say so; no SDK sets it)."""
    wanted = env.get("CLAUDE_CODE_STARTUP_FAILURE_RESULTS", "").strip().lower()
    if exc.reason is None or wanted not in ("1", "true", "yes", "on"):
        return
    if args.value("--output-format") != "stream-json":
        return
    from fake_claude import messages as m
    from fake_claude.stdio import send

    model = args.value("--model") or "claude-sonnet-4-5"
    res = m.result(session_id, subtype="error_during_execution", is_error=True, text=None,
                   duration_ms=0, num_turns=0, model=model, input_tokens=0, output_tokens=0,
                   errors=[str(exc)], total_cost_usd=0.0)  # fmt: skip
    send({**res, "startup_failure_reason": exc.reason})
