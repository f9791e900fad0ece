"""Start-up benchmark: spawn -> initialize reply, and peak RSS, as ratios to `python -c pass`.

    python -m fake_claude.bench [--runs N] [--scenario S]

Runs alternate between the baseline and the fake so both see the same machine load; medians
are reported. Target: both ratios <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cliargs import COUNT, HelpFormatter

INIT = (
    json.dumps(
        {"type": "control_request", "request_id": "bench", "request": {"subtype": "initialize"}}
    )
    + "\n"
).encode()
SDK_ARGV = ["--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]


# The memory baseline: `python -c pass` that stays alive long enough to be measured.
IDLE_BASELINE = "import sys; sys.stdout.write('r\\n'); sys.stdout.flush(); sys.stdin.buffer.read()"


def peak_rss(pid: int) -> int:
    """Peak RSS so far in bytes (Linux VmHWM; Windows peak working set; else current RSS).

    Not wait4's ru_maxrss: on Linux it also counts the parent's pages copied before exec.
    """
    if sys.platform.startswith("linux"):
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    import psutil

    info = psutil.Process(pid).memory_info()
    return int(getattr(info, "peak_wset", info.rss))


def baseline_time() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def measure(cmd: list[str], first: bytes | None, expect: bytes) -> tuple[float, int]:
    """Spawn, optionally write `first`, wait for a line containing `expect`; (seconds, peak)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if first:
            proc.stdin.write(first)
            proc.stdin.flush()
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        if expect not in line:
            raise RuntimeError(f"unexpected first line: {line[:200]!r}")
        peak = peak_rss(proc.pid)
        proc.stdin.close()
        if proc.wait(timeout=60) != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}")
        return elapsed, peak
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fake_claude.bench", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("--runs", type=COUNT, default=40, help="start-ups timed per side")
    p.add_argument("--scenario", default="ok", help="the fake's scenario")
    ns = p.parse_args(argv)

    from fake_claude.scenario import ScenarioError, validate_spec
    from fake_claude.shim import write_shim

    try:
        validate_spec(ns.scenario)
    except ScenarioError as exc:
        p.error(f"--scenario {ns.scenario!r}: {exc}")

    with tempfile.TemporaryDirectory(prefix="fake-claude-bench-") as tmp:
        shim = write_shim(tmp, {"scenario": ns.scenario, "ledger": os.path.join(tmp, "l.jsonl")})
        variants = {
            "shim (python -I -S)": [str(shim), *SDK_ARGV],
            "python -m fake_claude": [sys.executable, "-m", "fake_claude", *SDK_ARGV],
        }
        base_t: list[float] = []
        base_m: list[int] = []
        res: dict[str, tuple[list[float], list[int]]] = {k: ([], []) for k in variants}
        measure(variants["shim (python -I -S)"], INIT, b'"bench"')  # warm the page cache
        for _ in range(ns.runs):
            base_t.append(baseline_time())
            base_m.append(measure([sys.executable, "-c", IDLE_BASELINE], None, b"r")[1])
            for name, cmd in variants.items():
                t, m = measure(cmd, INIT, b'"request_id":"bench"')
                res[name][0].append(t)
                res[name][1].append(m)
    bt, bm = statistics.median(base_t), statistics.median(base_m)
    print(f"interpreter: {sys.executable} ({sys.version.split()[0]}), runs: {ns.runs} each")
    print(f"{'':28}{'spawn->reply':>14}{'ratio':>8}{'peak RSS':>12}{'ratio':>8}")
    print(f"{'python -c pass':28}{bt * 1000:>11.1f} ms{'1.00':>8}{bm / 2**20:>9.1f} MiB{'1.00':>8}")
    for name, (ts, ms) in res.items():
        t, rss = statistics.median(ts), statistics.median(ms)
        rt = t / bt
        rm = (rss / bm) if bm else float("nan")
        print(f"{name:28}{t * 1000:>11.1f} ms{rt:>8.2f}{rss / 2**20:>9.1f} MiB{rm:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
