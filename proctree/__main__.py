"""`python -m proctree`: print which containment path this machine runs (JSON), for CI logs.

Probes, with a real child, whether another process's environment is readable here (macOS
often says no: then only argv tokens identify escapees).
"""

from __future__ import annotations

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


def main() -> int:
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
