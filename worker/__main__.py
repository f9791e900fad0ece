"""`python -m worker serve [flags]`: the reference worker daemon."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from worker.config import WorkerConfig, claude_problem, default_data_dir

# The flags' defaults are WorkerConfig's: written once.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorkerConfig)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the worker in the foreground")
    serve.add_argument("--mode", choices=("fixed", "leaky"), default=DEFAULTS["mode"])
    serve.add_argument("--host", default=DEFAULTS["host"])
    serve.add_argument("--port", type=int, default=DEFAULTS["port"])
    serve.add_argument("--data-dir", type=Path, default=None)
    serve.add_argument(
        "--claude", default=DEFAULTS["claude"], help="the claude to spawn (path or name)"
    )
    serve.add_argument("--model", default=DEFAULTS["model"])
    serve.add_argument(
        "--grace", type=float, default=DEFAULTS["grace"], help="seconds per escalation stage"
    )
    serve.add_argument("--idle-timeout", type=float, default=DEFAULTS["idle_timeout"])
    serve.add_argument("--reap-interval", type=float, default=DEFAULTS["reap_interval"])
    serve.add_argument("--turn-timeout", type=float, default=DEFAULTS["turn_timeout"])
    serve.add_argument("--max-attempts", type=int, default=DEFAULTS["max_attempts"])
    serve.add_argument("--max-body", type=int, default=DEFAULTS["max_body"])
    serve.add_argument("--max-line", type=int, default=DEFAULTS["max_line"])
    serve.add_argument(
        "--observer-share",
        type=float,
        default=DEFAULTS["observer_share"],
        help="seconds an observer keeps its slot while other sessions wait for one; then it "
        "gives way after its current turn (default %(default)s)",
    )
    serve.add_argument(
        "--client-timeout",
        type=float,
        default=DEFAULTS["client_timeout"],
        help="seconds a client connection may stay idle, and may take to send a request body "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--max-observers",
        type=int,
        default=DEFAULTS["max_observers"],
        help="observers alive at once, across sessions (fixed mode); one more ends the "
        "longest-idle observer, or waits for a slot (default %(default)s)",
    )
    serve.add_argument(
        "--lifeline-fd",
        type=int,
        default=None,
        help="POSIX: an inherited pipe's read end; when its writer (the parent) is gone, stop "
        "as on SIGTERM (what a harness or supervisor passes, so we never outlive it)",
    )
    serve.add_argument(
        "--db-busy-timeout",
        type=float,
        default=DEFAULTS["db_busy_timeout"],
        help="seconds a store call waits for another process's lock before it fails (the "
        "worker serves on meanwhile)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        data_dir=(args.data_dir or default_data_dir()).resolve(),
        claude=args.claude,
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
