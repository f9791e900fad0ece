"""What the current platform can do, and the switch that forces the portable fallback."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

FALLBACK_ENV = "PROCTREE_FALLBACK"

_forced_fallback = False


@dataclass(frozen=True)
class Capabilities:
    has_subreaper: bool
    has_pdeathsig: bool
    has_job_objects: bool
    has_process_groups: bool
    has_pidfd: bool
    platform: str


def force_fallback(on: bool = True) -> None:
    """Disable subreaper, pdeathsig and cgroup cells so Linux runs the path macOS depends on."""
    global _forced_fallback
    _forced_fallback = on


def fallback_forced() -> bool:
    if _forced_fallback:
        return True
    return os.environ.get(FALLBACK_ENV, "").strip() not in ("", "0", "false", "no")


def capabilities() -> Capabilities:
    linux = sys.platform.startswith("linux")
    windows = sys.platform == "win32"
    native = linux and not fallback_forced()
    return Capabilities(
        has_subreaper=native,
        has_pdeathsig=native,
        has_job_objects=windows,
        has_process_groups=not windows,
        has_pidfd=linux and hasattr(os, "pidfd_open"),
        platform=sys.platform,
    )
