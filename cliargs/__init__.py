"""argparse types shared by every command line of the project (harness, worker, the benches): a
value that cannot make sense (0 sessions, a negative grace, NaN) is a usage error at once (exit 2),
not a run that tests nothing, a hang or a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def float_at_least(minimum: float, *, exclusive: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if exclusive else '>='} {minimum:g}, not {value:g}"
            )
        return value

    parse.__name__ = f"number{'>' if exclusive else '>='}{minimum:g}"
    return parse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help for every command line: the description as written (its usage lines and
    paragraphs kept), and each flag's default where it has one and its help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        # `is`, not `in`: a default of 0 (== False) is a default worth showing
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.default is argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


COUNT = int_at_least(1)  # sessions, prompts, rounds, concurrency
NON_NEGATIVE_INT = int_at_least(0)  # observations per prompt, a span that may be 0
NON_NEGATIVE = float_at_least(0.0)  # a grace, a wait, a budget: 0 allowed
POSITIVE = float_at_least(0.0, exclusive=True)  # an interval, a duration, a peak

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration_arg(text: str) -> float:
    """A time box in seconds (--duration): `600`, or with a unit, `90s`, `10m`, `1.5h`. A long
    soak is asked for in minutes or hours; `10m` was a usage error, and `600` a sum to do."""
    body = text.strip().lower()
    scale = _UNIT_S.get(body[-1:], None)
    if scale is not None:
        body = body[:-1]
    try:
        float(body)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds, or a number with a unit (90s, 10m, 1.5h), not {text!r}"
        ) from None
    return POSITIVE(body) * (scale or 1.0)  # its own word on 0, -1 or nan


duration_arg.__name__ = "duration"


def run_id_arg(text: str) -> str:
    """A run id (--run-id): 12 lowercase letters or digits, as the harness makes them. It names
    temp folders and argv tokens, so a slash or a space would break them."""
    if len(text) == 12 and text.isascii() and text.isalnum() and text == text.lower():
        return text
    raise argparse.ArgumentTypeError(f"expected 12 lowercase letters or digits, not {text!r}")


def path_arg(text: str) -> Path:
    """A file or folder to write (--report, --json, --out): an empty value (an unset shell
    variable) would be the current folder, where a report clears files of the same names."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, not an empty value")
    return Path(text)
