"""`python -m proctree.bench` runs and says what its ending time holds."""

from __future__ import annotations

import subprocess
import sys


def test_bench_runs_and_says_the_grace_is_an_upper_bound() -> None:
    # It printed "171 ms including a 200 ms stdin grace": a grace is waited only while
    # something is left, so the ending often takes less than it.
    done = subprocess.run(
        [sys.executable, "-m", "proctree.bench", "-n", "2", "--repeat", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "0 survivors" in text
    assert "waits up to a 200 ms grace" in text and "including a" not in text
