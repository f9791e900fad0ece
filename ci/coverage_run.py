#!/usr/bin/env python3
"""The test suite under coverage, measured in every Python process it starts, then one report.

[tool.coverage.run] in pyproject.toml has `patch = ["subprocess", "_exit"]`: coverage starts itself
in every Python child (xdist workers, the worker daemon, the fake claude, its grandchildren) and
saves on os._exit and SIGTERM. Data files land next to COVERAGE_FILE and are combined here; the
floor is [tool.coverage.report] fail_under, over the modules that can run on this OS (the other
OSes' platform modules are left out of the report). Runs inside the tox env `coverage`.

Usage: python ci/coverage_run.py [pytest args]
       (default: -n auto --leak-check tests --ignore=tests/conformance --ignore=tests/claudemem)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTEST = [
    "-n",
    "auto",
    "--leak-check",
    "tests",
    "--ignore=tests/conformance",
    "--ignore=tests/claudemem",
]
# Platform modules of the other OSes cannot run here; each OS's CI job reports its own.
OTHER_OS = {
    "linux": "*/_windows.py,*/_*_windows.py,*/_darwin.py",
    "darwin": "*/_windows.py,*/_*_windows.py,*/_linux.py",
    "win32": "*/_posix.py,*/_*_posix.py,*/_linux.py,*/_darwin.py",
}


def coverage(*args: str, env: dict[str, str], check: bool = False) -> int:
    cmd = [sys.executable, "-m", "coverage", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=check).returncode


def main(argv: list[str]) -> int:
    env = dict(os.environ, COVERAGE_FILE=str(ROOT / ".coverage"))
    coverage("erase", env=env, check=True)
    tests_rc = coverage("run", "-m", "pytest", *(argv or DEFAULT_PYTEST), env=env)
    coverage("combine", "--quiet", env=env, check=True)
    omit = f"--omit={OTHER_OS.get(sys.platform, '')}"
    report_rc = coverage("report", omit, env=env)
    coverage("xml", "-q", omit, "-o", str(ROOT / "reports" / "coverage.xml"), env=env)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        table = subprocess.run(
            [sys.executable, "-m", "coverage", "report", omit, "--format=markdown"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        with open(summary, "a", encoding="utf-8") as out:
            out.write("## Coverage (every process)\n\n" + table + "\n")
    if tests_rc:
        print(f"ci/coverage_run.py: the tests failed (exit {tests_rc})", file=sys.stderr)
    return tests_rc or report_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
