#!/usr/bin/env python3
"""Run tox from a private bootstrap venv, so a fresh machine needs nothing but Python.

Usage: python3 ci/tox.py -e py   (any tox arguments are passed through)
"""

from __future__ import annotations

import os
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


def ensure_tox() -> Path:
    py = _venv_python(BOOT)
    if not py.exists():
        print(f"ci/tox.py: creating {BOOT} with {TOX_REQ}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOT)
    probe = subprocess.run([str(py), "-c", "import tox"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TOX_REQ],
            check=True,
        )
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
