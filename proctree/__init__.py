"""proctree: contain, identify and end process trees on Linux, macOS and Windows.

The public interface; platform code lives in _posix/_linux/_darwin/_windows behind _platform.
"""

from __future__ import annotations

from ._caps import FALLBACK_ENV, Capabilities, capabilities, fallback_forced, force_fallback
from ._guardian import Guardian, start_guardian
from ._identity import CREATE_TIME_TOLERANCE, ProcId, identify, is_alive
from ._platform import enable_subreaper, is_subreaper
from ._scan import adopted_children, descendants, mark_matches, scan
from ._spawn import MARK_ENV, Containment, SpawnOptions, after_spawn, spawn_options
from ._terminate import (
    TerminationResult,
    aterminate_tree,
    reap_zombies,
    sweep,
    terminate_tree,
    wait_gone,
)

__all__ = [
    "CREATE_TIME_TOLERANCE",
    "FALLBACK_ENV",
    "Guardian",
    "MARK_ENV",
    "Capabilities",
    "Containment",
    "ProcId",
    "SpawnOptions",
    "TerminationResult",
    "adopted_children",
    "after_spawn",
    "aterminate_tree",
    "capabilities",
    "descendants",
    "enable_subreaper",
    "fallback_forced",
    "force_fallback",
    "identify",
    "is_alive",
    "is_subreaper",
    "mark_matches",
    "reap_zombies",
    "scan",
    "spawn_options",
    "start_guardian",
    "sweep",
    "terminate_tree",
    "wait_gone",
]
