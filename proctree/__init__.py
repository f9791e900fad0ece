"""proctree: contain, identify and end process trees on Linux, macOS and Windows.

The public interface; platform code lives in _posix/_linux/_darwin/_windows behind _platform.

    proctree.enable_subreaper()                      # Linux: orphans of our trees come to us
    proctree.enable_cgroups(label)                   # Linux, where allowed: a cgroup per tree
    guardian = proctree.start_guardian(mark)         # ends our trees if we are kill -9ed
    opts = proctree.spawn_options(f"{mark}:{session}", argv=argv)
    proc = await asyncio.create_subprocess_exec(*opts.argv, stdin=PIPE, stdout=PIPE, **opts)
    c = proctree.after_spawn(proc.pid, opts)         # at once: Windows resumes the child here
    guardian.watch(c)
    ...
    res = await proctree.aterminate_tree(c.proc_id, group=c, mark=c.mark, grace=5.0,
                                         close_stdin=proc.stdin, own_child=True)
    c.close()
    proctree.sweep(mark=mark, exclude={live roots})  # periodically: what outlived its session

A daemon that should stop (ending its trees) when its parent dies, however that dies, takes a
Lifeline (POSIX): proctree.Lifeline() in the parent, proctree.watch_lifeline(fd, ...) in the child.

Identity is (pid, create_time) everywhere, create_time from proctree.create_time(proc) (it
does not move when the wall clock is set); no signal goes to a process not verified as ours
at that moment. Capabilities: capabilities(); force_fallback() / PROCTREE_FALLBACK=1 turns
subreaper and pdeathsig off so Linux runs the macOS path.
"""

from __future__ import annotations

from ._caps import FALLBACK_ENV, Capabilities, capabilities, fallback_forced, force_fallback
from ._guardian import Guardian, guardian_args, start_guardian
from ._identity import (
    CREATE_TIME_TOLERANCE,
    ProcId,
    boot_stamp,
    clock_offset,
    create_time,
    identify,
    now,
    recorded,
)
from ._lifeline import Lifeline, lifeline_problem, watch_lifeline
from ._liveness import (
    cmdline,
    environ,
    exited,
    is_alive,
    listed_cmdline,
    running_view,
    shown_argv,
    status,
)
from ._owner import not_ours, of_another_user
from ._platform import (
    cgroups_enabled,
    disable_cgroups,
    enable_cgroups,
    enable_subreaper,
    end_stale_cells,
    exec_problem,
    group_of,
    is_subreaper,
    pdeathsig_method,
    send_cont,
    send_kill,
    send_term,
    session_of,
)
from ._platform import send_stop as stop
from ._python import ask_to_stop, python_command
from ._scan import adopted_children, descendants, mark_matches, marker_of, scan, subtree_pids
from ._spawn import MARK_ENV, Containment, SpawnOptions, after_spawn, spawn_options
from ._terminate import (
    TerminationResult,
    aterminate_tree,
    born_since,
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
    "Lifeline",
    "ProcId",
    "SpawnOptions",
    "TerminationResult",
    "adopted_children",
    "after_spawn",
    "ask_to_stop",
    "aterminate_tree",
    "boot_stamp",
    "born_since",
    "capabilities",
    "cgroups_enabled",
    "clock_offset",
    "cmdline",
    "create_time",
    "descendants",
    "disable_cgroups",
    "enable_cgroups",
    "enable_subreaper",
    "end_stale_cells",
    "exec_problem",
    "group_of",
    "environ",
    "exited",
    "fallback_forced",
    "force_fallback",
    "guardian_args",
    "identify",
    "is_alive",
    "is_subreaper",
    "lifeline_problem",
    "listed_cmdline",
    "mark_matches",
    "not_ours",
    "now",
    "of_another_user",
    "marker_of",
    "pdeathsig_method",
    "python_command",
    "reap_zombies",
    "recorded",
    "running_view",
    "scan",
    "send_cont",
    "send_kill",
    "send_term",
    "session_of",
    "spawn_options",
    "start_guardian",
    "shown_argv",
    "status",
    "stop",
    "subtree_pids",
    "sweep",
    "terminate_tree",
    "wait_gone",
    "watch_lifeline",
]
