#!/usr/bin/env python3
"""Print a soak report folder's verdict and its leaks.txt (the CI step that runs on failure).

Usage: python ci/soak_report.py [REPORT_DIR]   (default: reports/soak; stdlib only)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("verdict", "target", "mode", "sessions", "completed", "failed", "leaked_count")


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "reports/soak")
    report = folder / "report.json"
    if not report.exists():
        print(f"ci/soak_report.py: no {report} (the soak did not get far enough to write it)")
        return 1
    data = json.loads(report.read_text(encoding="utf-8"))
    print("  ".join(f"{key}={data.get(key)}" for key in KEYS))
    for name in ("zombies", "escaped"):
        if data.get(name):
            print(f"{name}: {json.dumps(data[name])[:2000]}")
    leaks = folder / "leaks.txt"
    if leaks.exists():
        print(f"--- {leaks} ---")
        print(leaks.read_text(encoding="utf-8"))
    return 0 if data.get("verdict") == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
