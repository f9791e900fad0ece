"""One boot time per run, so that a process's create_time does not move when the clock is set.

On Linux a process's start is kept in ticks since boot, and psutil's create_time adds the boot
time that /proc/stat reports at the moment of the call (btime). btime is the wall clock minus the
time since boot, so a step of the wall clock (NTP's first sync, a VM restored from a snapshot,
`date -s`) moves it, and with it the create_time of every process, old ones included: a process
read before and after the step no longer matches its own identity (pid, create_time).

So each process reads btime once and keeps it, and hands it to the processes it starts through
LEAKPROOF_BOOT_TIME (`<boot id> <btime>`, a `stamp`), so that a whole run (harness, worker,
guardian, fakes) computes the same create_time for the same process, before and after a step;
`now()` is the time on that clock, for timestamps compared with create_times. A value from
another boot (a stale export) is ignored. Records read later by a process outside the run keep
their writer's stamp, and `offset` translates their create_times. macOS and Windows keep the
start as wall-clock time in the kernel, fixed at birth; this module is for Linux.

Pure standard library: the fake `claude` imports it on its start-up path, without psutil.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

ENV = "LEAKPROOF_BOOT_TIME"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"

_pinned: float | None = None
_boot: list[str | None] = []  # the boot id, once read


def _boot_id() -> str | None:
    if not _boot:
        try:
            with open(_BOOT_ID, encoding="ascii") as f:
                _boot.append(f.read().strip() or None)
        except OSError:
            _boot.append(None)
    return _boot[0]


def _parse(value: str | None, boot_id: str | None) -> float | None:
    """The boot time in a `<boot id> <btime>` value, if it was taken during boot `boot_id`."""
    fields = (value or "").split()
    if boot_id is None or len(fields) != 2 or fields[0] != boot_id:
        return None
    try:
        btime = float(fields[1])
    except ValueError:
        return None
    return btime if btime > 0 else None


def boot_time(read_btime: Callable[[], float]) -> float:
    """This run's boot time (seconds since the epoch): inherited, or read once with `read_btime`
    and then exported to every process started from here on."""
    global _pinned
    if _pinned is None:
        boot_id = _boot_id()
        btime = _parse(os.environ.get(ENV), boot_id)  # inherited
        if btime is None:
            btime = read_btime()
            if boot_id is not None:
                os.environ[ENV] = f"{boot_id} {btime!r}"
        _pinned = btime
    return _pinned


def stamp(read_btime: Callable[[], float]) -> str | None:
    """This process's boot time with the boot's id, for a record that a process outside the run
    reads later (see `offset`); None off Linux."""
    btime = boot_time(read_btime)
    boot_id = _boot_id()
    return None if boot_id is None else f"{boot_id} {btime!r}"


def offset(stamp: str | None, read_btime: Callable[[], float]) -> float | None:
    """What to add to a create_time that a process with boot time `stamp` wrote, to compare it
    with ours: 0.0 when that cannot be known (no stamp: off Linux, an older record; no boot id
    here); None if it was written during another boot, when no process it names can still run."""
    mine = _boot_id()
    fields = (stamp or "").split()
    if mine is None or len(fields) != 2:
        return 0.0
    if fields[0] != mine:
        return None
    theirs = _parse(stamp, mine)
    return 0.0 if theirs is None else boot_time(read_btime) - theirs


def now(read_btime: Callable[[], float]) -> float:
    """The time now on create_time's clock: on Linux the run's boot time plus the time since boot,
    which a step of the wall clock does not move either (and which, unlike time.time(), a process
    started now has as its create_time, to a clock tick); time.time() elsewhere."""
    if sys.platform.startswith("linux"):
        return boot_time(read_btime) + time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()
