"""tests/conftest.py's end-of-session guard, run for real in an inner pytest session."""

from __future__ import annotations

from pathlib import Path

import pytest
from leakcheck_helpers import wait_until_gone

pytest_plugins = ["pytester"]

SUITE_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

LEAKY = """
import subprocess, sys

def test_leaks_without_leak_check():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_process_surviving_the_run_fails_it_and_is_killed(
    pytester: pytest.Pytester, marker: str, workers: list[str]
) -> None:
    pytester.makeconftest(SUITE_CONFTEST.read_text())
    pytester.makepyfile(test_leaky=LEAKY.format(marker=marker))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 process(es) of this test run survived it*", f"*{marker}*"])
    assert wait_until_gone(marker) == []


def test_a_clean_run_passes(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makeconftest(SUITE_CONFTEST.read_text())
    pytester.makepyfile(
        test_clean=LEAKY.format(marker=marker)
        .replace("subprocess.Popen(", "subprocess.run(timeout=60, args=")
        .replace("time.sleep(600)", "pass")
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
