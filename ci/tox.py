#!/usr/bin/env python3
"""Run tox from a private bootstrap venv, so a fresh machine needs nothing but Python.

Usage: python3 ci/tox.py -e py   (any tox arguments are passed through)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOT = ROOT / ".cache" / "tox-bootstrap"
TOX_REQ = "tox>=4.11"


def _venv_python(path: Path) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return path / sub / exe


def _imports(py: Path, module: str) -> bool:
    if not py.exists():
        return False
    return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0


def _create_boot() -> None:
    print(f"ci/tox.py: creating {BOOT} with {TOX_REQ}", flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOT)
    except subprocess.CalledProcessError:
        # Left half made (a python, no pip), it would fail every later run in the same way.
        shutil.rmtree(BOOT, ignore_errors=True)
        sys.exit(
            "ci/tox.py: Python's venv could not install pip (ensurepip); "
            "on Debian/Ubuntu: apt install python3-venv"
        )


def ensure_tox() -> Path:
    py = _venv_python(BOOT)
    # A bootstrap without tox and without pip (a failed ensurepip left it so) is made again:
    # before, each later run failed in it with "No module named pip" until it was removed.
    if not _imports(py, "tox") and not _imports(py, "pip"):
        _create_boot()
    if not _imports(py, "tox"):
        cmd = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TOX_REQ]
        code = subprocess.run(cmd).returncode
        if code != 0:
            sys.exit(f"ci/tox.py: pip could not install {TOX_REQ} into {BOOT} (exit {code})")
    return py


def main(argv: list[str]) -> int:
    py = ensure_tox()
    # A Ctrl-C at the terminal reaches tox (and what it runs) too: this wrapper waits for tox
    # to finish (a soak ends its processes and writes its report) and passes its exit code
    # on, instead of dying first with a traceback. A handler, not SIG_IGN, which tox would
    # inherit.
    interrupted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    code = subprocess.run([str(py), "-m", "tox", *argv], cwd=ROOT).returncode
    # tox says 1 for a run the user interrupted; say 130, as the harness itself does
    return 130 if interrupted and code != 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
