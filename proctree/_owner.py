"""Whose a process is: another user's process carrying our token or mark is not ours.

A token or mark is text anyone can put in an argv (a run id chosen by hand, a copy of a command
line), so finding one in another user's process proves nothing. Without privilege a process
starts none whose real uid differs from its own (a set-user-ID program keeps its caller's real
uid) and may not signal one that changed it: such a process is never ours to count or end.
"""

from __future__ import annotations

import os
import sys

import psutil


def privileged() -> bool:
    """Root (POSIX): may signal, and may have started, processes of any user."""
    return sys.platform != "win32" and os.geteuid() == 0


def of_another_user(proc: psutil.Process) -> bool:
    """True if proc's real uid is not ours. False where uids are unknown (Windows, where a job
    holds the tree) or unreadable, or proc is gone (the caller's own reads tell it so)."""
    if sys.platform == "win32":
        return False
    try:
        real = proc.uids().real
    except (psutil.Error, AttributeError):
        return False
    return real != os.getuid()


def not_ours(proc: psutil.Process) -> bool:
    """Another user's process that we, unprivileged, could not have started nor may end. Root
    keeps every process it finds: its observers may run as another user (a daemon that drops
    privileges for the agents it starts)."""
    return not privileged() and of_another_user(proc)
