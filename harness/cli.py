"""`python -m harness` command line: one subcommand per module.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`.
Modules are imported lazily so that a missing optional part (e.g. `compare`) only breaks its own
subcommand, with a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from cliargs import HelpFormatter
from harness.interrupts import term_as_interrupt

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "soak": ("harness.soak", "run many sessions against a worker; census, verdict, report"),
    "repro": ("harness.repro", "reproduce claude-mem #603: leaky worker beside fixed worker"),
    "bench": ("harness.bench", "print the harness's speed figures"),
    "compare": ("harness.compare", "compare the reference worker with the real claude-mem"),
    "sweep": ("harness.sweep", "end what runs of a harness killed outright left behind"),
}
# The subcommands that start runs: each first ends what earlier runs killed outright left.
STARTS_RUNS = ("soak", "repro", "bench", "compare")

EXIT_HARNESS_ERROR = 2


def _load(name: str) -> ModuleType | None:
    module_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only swallow the absence of the subcommand's own module, not a broken import inside it.
        if exc.name != module_name:
            raise
        return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # Only the chosen subcommand's module is imported (keeps start-up fast, isolates failures).
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=HelpFormatter,
        )
        if name == chosen:
            parser.set_defaults(_subparser=p)
            module = _load(name)
            if module is not None:
                module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, with its own usage (not the top level's)
        getattr(args, "_subparser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    module = getattr(args, "_module", None)
    if module is None:
        print(
            f"harness: the '{args.command}' subcommand is not available: module "
            f"{SUBCOMMANDS[args.command][0]} is missing from this installation",
            file=sys.stderr,
        )
        return EXIT_HARNESS_ERROR
    term_as_interrupt()
    if args.command in STARTS_RUNS:
        from harness.sweep import sweep_before_start

        sweep_before_start()
    return int(module.run(args))
