"""The texts of the leak check's reports: the table of leaks and the notes under it."""

from __future__ import annotations

from harness.leak_tracker import SWEEP_S, Leak


def format_leaks(leaks: list[Leak], *, header: str, killed: bool, spared: int = 0) -> str:
    lines = [header]
    by_owner: dict[str, list[Leak]] = {}
    for leak in sorted(leaks, key=lambda item: item.create_time):
        by_owner.setdefault(leak.owner, []).append(leak)
    for owner, group in by_owner.items():
        lines.append(f"started by {owner}:")
        lines.append(f"  {'PID':>7} {'PPID':>7} {'AGE':>8}  COMMAND")
        for leak in group:
            cmd = leak.cmdline if len(leak.cmdline) <= 300 else leak.cmdline[:297] + "..."
            state = "(stopped) " if leak.stopped else ""
            lines.append(f"  {leak.pid:>7} {leak.ppid:>7} {leak.age_s:>7.1f}s  {state}{cmd}")
    if spared and killed:
        lines.append("leak-check killed the others.")
    elif not spared or spared < len(leaks):  # all spared: the note that follows says why
        lines.append("leak-check killed them." if killed else "leak-check left them running.")
    return "\n".join(lines)


# Said once under a test's leaks: what a reader can do about them.
FIX_HINT = (
    "hint: end what the test starts before it returns (terminate() or kill(), then wait()), or "
    "in a fixture's teardown; a process meant to outlive its test: leak_check.ignore(pid), or "
    "@pytest.mark.leak_check(enabled=False) on the test"
)


def stopped_note(leaks: list[Leak]) -> list[str]:
    """Why the processes marked (stopped) are still there: none, or one note."""
    stopped = sum(1 for leak in leaks if leak.stopped)
    if not stopped:
        return []
    return [
        f"note: {stopped} of them were stopped when judged (SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU "
        "for a background process that used the terminal, or a tracer): a stopped process "
        "does not end on SIGTERM or EOF until it is continued (SIGCONT), only on SIGKILL"
    ]


def held_note(held: dict[int, str]) -> str:
    pids = ", ".join(f"{pid} ({kind})" for pid, kind in sorted(held.items()))
    return (
        f"note: leak-check left {len(held)} of them running: a live object still holds each "
        f"({pids}), so later tests may still use them (a cache, or a session-wide object that "
        "this test filled); they are ended at the session's end. If nothing reuses them, end "
        "them in the test (terminate() and join() or wait() on the object that holds each); if "
        "the object is meant to serve the whole session (a pool, loky's reusable executor), "
        "make it in a session-scoped fixture that ends it at its teardown: what it starts is "
        "then the fixture's, not the test's that first used it"
    )


def survivors_note(survivors: list[Leak]) -> str:
    shown = "; ".join(f"{leak.pid} ({leak.cmdline[:80]})" for leak in survivors[:5])
    more = f" and {len(survivors) - 5} more" if len(survivors) > 5 else ""
    return (
        f"note: {len(survivors)} of them or of their lineage still ran after leak-check's "
        f"sweep ({SWEEP_S:g} s): {shown}{more}"
    )


def gc_note(collected: list[Leak]) -> str:
    pids = ", ".join(str(leak.pid) for leak in collected)
    return (
        f"note: {len(collected)} of them ({pids}) ended only when leak-check ran gc.collect(): "
        "the test left the object that owned them (a pexpect spawn, an asyncio subprocess "
        "transport, ...) unclosed in a reference cycle; close it (or wait for its process) "
        "before the test ends"
    )
