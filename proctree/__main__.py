"""`python -m proctree`: print which containment path this machine runs (JSON), for CI logs.

Probes, with a real child, whether another process's environment is readable here (macOS
often says no: then only argv tokens identify escapees).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import psutil

import proctree


def environ_readable() -> bool:
    opts = proctree.spawn_options("probe")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, **opts
    )
    c = proctree.after_spawn(child.pid, opts)
    try:
        return psutil.Process(child.pid).environ().get(proctree.MARK_ENV) == "probe"
    except psutil.Error:
        return False
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)
        c.close()


def main(argv: list[str] | None = None) -> int:
    # argparse for --help only: before, every argument was ignored and the probe ran
    argparse.ArgumentParser(
        prog="python -m proctree",
        description="Print, as JSON, the containment this machine gives: subreaper, "
        "parent-death signal, pidfd, job objects, whether another process's environment is "
        "readable, and whether PROCTREE_FALLBACK forces the macOS path.",
    ).parse_args(argv)
    info = dataclasses.asdict(proctree.capabilities())
    info["fallback_forced"] = proctree.fallback_forced()
    info["environ_readable"] = environ_readable()
    info["psutil"] = psutil.__version__
    info["python"] = sys.version.split()[0]
    json.dump(info, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
