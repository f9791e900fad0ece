"""`python -m worker serve [flags]`: the reference worker daemon; `status` and `stop` ask about
or stop the one serving a data dir."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from cliargs import POSITIVE, HelpFormatter
from worker.config import WorkerConfig, claude_command, claude_problem, default_data_dir

# The flags' defaults are WorkerConfig's: written once.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorkerConfig)}

# (flag, type, help) of the flags that set a WorkerConfig field of the same name.
SETTINGS: list[tuple[str, type, str]] = [
    ("--host", str, "loopback address to listen on"),
    ("--port", int, "TCP port; 0 picks a free one (written to DATA_DIR/worker.json once ready)"),
    ("--claude", str, "the claude to spawn (path or name)"),
    ("--model", str, "the observers' --model"),
    ("--grace", float, "seconds between an observer's stdin EOF, SIGTERM to its tree and SIGKILL"),
    ("--idle-timeout", float, "seconds an observer with no work is kept before it is ended"),
    ("--reap-interval", float, "seconds between sweeps for what outlived its session"),
    ("--turn-timeout", float, "seconds one observer turn may take before it fails"),
    ("--max-attempts", int, "failed turns a queued message gets before it is failed for good"),
    ("--max-body", int, "largest hook body, bytes"),
    ("--max-line", int, "longest observer output line, bytes (longer: the turn fails)"),
    ("--observer-share", float, "seconds an observer keeps its slot while other sessions wait "
     "for one; then it gives way after its current turn"),
    ("--client-timeout", float, "seconds a client connection may stay idle, and may take to "
     "send a request body"),
    ("--max-observers", int, "observers alive at once, across sessions (fixed mode); one more "
     "ends the longest-idle observer, or waits for a slot"),
    ("--db-busy-timeout", float, "seconds a store call waits for another process's lock before "
     "it fails (the worker serves on meanwhile)"),
]  # fmt: skip

STATUS_HELP = (
    "say whether a worker serves the data dir (exit 0) and what it holds; exit 3 if none runs "
    "(or worker.json names a process of another user than the file's), 1 if it runs but does "
    "not answer (or is stopped by SIGSTOP), 4 if its worker.json cannot be read"
)
STOP_HELP = (
    "stop the worker serving the data dir as SIGTERM would (its observers ended first; one "
    "stopped by SIGSTOP is sent SIGCONT after the SIGTERM); exit 0 once it is gone or if none "
    "ran, 1 if it still runs, 4 if its worker.json cannot be read"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the worker in the foreground",
        formatter_class=HelpFormatter,
    )
    serve.add_argument(
        "--mode",
        choices=("fixed", "leaky"),
        default=DEFAULTS["mode"],
        help="fixed: every observer's tree is ended; leaky: claude-mem 9.0.0's, which never "
        "ends them (issue #603)",
    )
    # (flag, type, help): each WorkerConfig field of the flag's name, its default the field's
    for flag, kind, text in SETTINGS:
        default = DEFAULTS[flag[2:].replace("-", "_")]
        serve.add_argument(flag, type=kind, default=default, help=text)
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="the database and worker.json live here",
    )
    serve.add_argument(
        "--lifeline-fd",
        type=int,
        default=None,
        help="POSIX: an inherited pipe's read end; when its writer (the parent) is gone, stop "
        "as on SIGTERM (what a harness or supervisor passes, so we never outlive it)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="the log's threshold (to stderr)",
    )
    status = sub.add_parser(
        "status",
        help=STATUS_HELP,
        description=STATUS_HELP,
        formatter_class=HelpFormatter,
    )
    stop = sub.add_parser(
        "stop",
        help=STOP_HELP,
        description=STOP_HELP,
        formatter_class=HelpFormatter,
    )
    for control in (status, stop):
        control.add_argument(
            "--data-dir", type=Path, default=default_data_dir(), help="the worker's data dir"
        )
    stop.add_argument(
        "--timeout",
        type=POSITIVE,
        default=60.0,
        help="seconds to wait for the worker to exit (it ends each observer first: up to twice "
        "its --grace)",
    )
    stop.add_argument(
        "--kill",
        action="store_true",
        help="SIGKILL the worker if it has not exited by then (exit 1 without it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command != "serve":
        from worker import control

        data_dir = args.data_dir.resolve()
        if args.command == "status":
            return control.status(data_dir)
        return control.stop(data_dir, args.timeout, args.kill)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Settings that cannot run a worker: a usage error, like argparse's.
    try:
        cfg = _config(args)
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        problem = claude_problem(cfg.claude)
    if problem:
        print(f"python -m worker serve: error: {problem}", file=sys.stderr)
        return 2
    from worker.service import StartError, WorkerService

    async def serve() -> WorkerService:
        service = WorkerService(cfg)
        await service.run()
        return service

    try:
        service = asyncio.run(serve())
    except StartError as exc:
        logging.getLogger("worker").error("%s", exc)
        return 2
    code = 1 if service.lost else 0  # it stopped on its own, saying why
    if cfg.mode == "leaky":
        from worker.leaky import exit_leaving_children

        exit_leaving_children(code)
    return code


def _config(args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        mode=args.mode,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir.resolve(),
        claude=claude_command(args.claude),
        model=args.model,
        grace=args.grace,
        idle_timeout=args.idle_timeout,
        reap_interval=args.reap_interval,
        turn_timeout=args.turn_timeout,
        max_attempts=args.max_attempts,
        max_body=args.max_body,
        max_line=args.max_line,
        max_observers=args.max_observers,
        client_timeout=args.client_timeout,
        observer_share=args.observer_share,
        db_busy_timeout=args.db_busy_timeout,
        lifeline_fd=args.lifeline_fd,
    )


if __name__ == "__main__":
    sys.exit(main())
