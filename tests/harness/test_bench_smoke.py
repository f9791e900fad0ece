"""`python -m harness bench` at toy sizes: every part runs, prints its figures and writes them as
JSON, and leaves nothing running (the figures themselves are the benchmark's business)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.bench_http import http_round_trip

REPO = Path(__file__).resolve().parents[2]


def test_the_http_floor_measures_and_stops_its_server() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    floor = asyncio.run(http_round_trip(requests=300))
    assert floor["requests"] == 300
    # The server's CPU is read in clock ticks (10 ms): only the client's is sure to be > 0.
    assert floor["server_cpu_ms_per_request"] >= 0 and floor["client_cpu_ms_per_request"] > 0
    parts = floor["server_cpu_ms_per_request"] + floor["client_cpu_ms_per_request"]
    assert floor["round_trip_cpu_ms"] == pytest.approx(parts, abs=0.002)  # each part rounded
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_bench_parts_at_toy_sizes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "harness", "bench", "--only", "throughput", "--only", "census"]
    argv += ["--sessions", "3", "--rounds", "1", "--concurrency", "2"]
    argv += ["--census-procs", "6", "--census-samples", "2", "--json", str(out)]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    throughput = figures["throughput"]
    (round_,) = throughput["rounds"]
    assert round_["soak_verdict"] == "PASS" and round_["ratio"] > 0
    assert throughput["http_round_trip_floor"]["round_trip_cpu_ms"] > 0
    assert figures["census"]["sample_ms_p50"] > 0
    assert "throughput (soak vs bare fake loop):" in run.stdout
