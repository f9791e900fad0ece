"""The shared argparse types, and every bench's command line refusing senseless numbers."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cliargs import COUNT, NON_NEGATIVE, POSITIVE, float_at_least, path_arg

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (COUNT, ["1", "300"], ["0", "-1", "1.5", "x", ""]),
        (NON_NEGATIVE, ["0", "0.5", "5"], ["-0.1", "nan", "inf", "soon"]),
        (POSITIVE, ["0.001", "3"], ["0", "-1", "nan"]),
        (float_at_least(2.0), ["2", "4.5"], ["1.99"]),
        (path_arg, ["reports/x", "."], ["", "  "]),  # "": an unset variable, not the cwd
    ],
)
def test_types_accept_and_refuse(parse, good, bad):
    for text in good:
        parse(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["worker.bench", "--claude", "claude", "--concurrency", "0"],  # was a hang
        ["fake_claude.bench", "--runs", "0"],  # was a traceback
        ["fake_claude.bench", "--scenario", "nosuch"],  # was a traceback
        ["proctree.bench", "--repeat", "0"],  # was a traceback
        ["proctree.bench_spawn", "--spawns", "0"],
        ["harness", "soak", "--report", ""],  # wrote the report into the current folder
        ["harness", "bench", "--json", ""],
    ],
)
def test_benches_refuse_senseless_arguments(argv):
    run = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "error:" in run.stderr and "Traceback" not in run.stderr
