"""The shared argparse types, and every bench's command line refusing senseless numbers."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cliargs import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    HelpFormatter,
    duration_arg,
    float_at_least,
    path_arg,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (COUNT, ["1", "300"], ["0", "-1", "1.5", "x", ""]),
        (NON_NEGATIVE, ["0", "0.5", "5"], ["-0.1", "nan", "inf", "soon"]),
        (POSITIVE, ["0.001", "3"], ["0", "-1", "nan"]),
        (float_at_least(2.0), ["2", "4.5"], ["1.99"]),
        (path_arg, ["reports/x", "."], ["", "  "]),  # "": an unset variable, not the cwd
        (duration_arg, ["600", "0.5", "90s", "10m", "1.5h"], ["0", "0m", "-1m", "m", "10d", "nan"]),
    ],
)
def test_types_accept_and_refuse(parse, good, bad):
    for text in good:
        parse(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_duration_reads_units():
    # A long soak is asked for as `--duration 10m`: that was a usage error.
    assert [duration_arg(t) for t in ("600", "90s", "10m", "1.5h")] == [600, 90, 600, 5400]


def _run_module(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["worker.bench", "--claude", "claude", "--concurrency", "0"],  # was a hang
        ["fake_claude.bench", "--runs", "0"],  # was a traceback
        ["fake_claude.bench", "--scenario", "nosuch"],  # was a traceback
        ["proctree.bench", "--repeat", "0"],  # was a traceback
        ["proctree.bench_spawn", "--spawns", "0"],
        ["worker.bench_strays", "--grace", "-1"],
        ["harness", "soak", "--report", ""],  # wrote the report into the current folder
        ["harness", "bench", "--json", ""],
    ],
)
def test_benches_refuse_senseless_arguments(argv):
    run = _run_module(argv)
    assert run.returncode == 2, run.stderr
    assert "error:" in run.stderr and "Traceback" not in run.stderr


def _entries_without_help(text: str) -> list[str]:
    """The flags and positionals a --help lists with no text beside or under them."""
    entries: list[list[str]] = []
    listing = False
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):  # "options:", "positional arguments:"
            listing = True
        elif listing and line.startswith("  ") and not line.startswith("   "):
            entries.append([line.strip()])  # a new entry: "--flag METAVAR  its help"
        elif listing and line.startswith("   ") and entries:
            entries[-1].append(line.strip())
    # help is two spaces past the name (or on the lines below it); "-h, --help" has its own
    return [e[0] for e in entries if len(e) == 1 and "  " not in e[0]]


@pytest.mark.parametrize(
    "argv",
    [
        ["harness", "soak"],
        ["harness", "repro"],
        ["harness", "bench"],
        ["harness", "compare"],
        ["harness", "sweep"],
        ["harness.claude_mem_install"],
        ["worker", "serve"],
        ["worker.bench"],
        ["fake_claude", "shim"],
        ["fake_claude", "selfcheck"],
        ["fake_claude.bench"],
        ["fake_claude.mcp_server"],
        ["proctree"],
        ["proctree.bench"],
        ["proctree.bench_spawn"],
        ["worker.bench_strays"],
    ],
)
def test_every_flag_says_what_it_does(argv):
    # Before, a dozen flags (bench's --census-procs, compare's --reap-wait, worker.bench's all)
    # showed only their name in --help, and so no default either.
    run = _run_module([*argv, "--help"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")
    assert _entries_without_help(run.stdout) == []
    assert "(default: None)" not in run.stdout


def test_help_shows_a_default_of_zero():
    # The formatter skipped any default == False, so 0 (worker --port, soak --mcp-servers) too.
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="TCP port")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = parser.format_help()
    assert "TCP port (default: 0)" in " ".join(text.split())
    assert "a switch (default" not in " ".join(text.split())
