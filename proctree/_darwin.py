"""macOS: no parent-death signal, no subreaper. Process groups plus sweeps by argv token.

Nothing here beyond the POSIX layer; this module exists so the macOS path is named and
tested as such (on Linux through force_fallback()).
"""

from __future__ import annotations


def enable_subreaper() -> bool:
    return False


def is_subreaper() -> bool:
    return False
