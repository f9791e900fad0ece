"""Misbehaviour at named points: hang, crash, garbage, huge-line, stdout-flood, stderr-flood,
ballast."""

from __future__ import annotations

import sys
import time

from fake_claude.context import Context
from fake_claude.lifecycle import die_by_signal, exit_now
from fake_claude.stdio import write_bytes

MiB = 1 << 20
_ballast: list[bytearray] = []  # kept referenced for the life of the process

# Default point for each fault that has one.
DEFAULT_AT = {
    "hang": "mid-turn",
    "crash": "mid-turn",
    "garbage": "mid-turn",
    "huge-line": "mid-turn",
    "stdout-flood": "mid-turn",
    "stderr-flood": "start",
}


def idle_forever() -> None:
    """Block without using CPU; signal handlers still run (and may exit)."""
    # POSIX signals interrupt sleep; on Windows handlers run only between sleeps, so keep short.
    step = 0.25 if sys.platform == "win32" else 3600.0
    while True:
        time.sleep(step)


def hold_ballast(mb: float) -> None:
    # Repetition writes every byte, so every page is really resident (calloc'd zeros are not).
    _ballast.append(bytearray(b"\x01") * int(mb * MiB))


def flood_stderr(mb: float) -> None:
    line = b"fake-claude: stderr-flood " + b"#" * 100 + b"\n"
    block = line * (65536 // len(line))
    left = int(mb * MiB)
    while left > 0:
        chunk = block[:left] if left < len(block) else block
        write_bytes(chunk, fd=2)
        left -= len(chunk)


GARBAGE_LINES = (
    b"this line is not JSON at all",
    b'{"type":"assistant","message":{"role":"assistant","content":[{"type":"te',
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"type": "result", "subtype": ',
)


def garbage(n: int) -> None:
    out = b"".join(GARBAGE_LINES[i % len(GARBAGE_LINES)] + b"\n" for i in range(n))
    write_bytes(out)


def _assistant_line(session_id: str, text: str) -> bytes:
    import json

    from fake_claude import messages

    msg = messages.assistant(
        session_id, "claude-sonnet-4-5", [{"type": "text", "text": text}], messages.new_id("msg_")
    )
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def huge_line(session_id: str, mb: float) -> None:
    write_bytes(_assistant_line(session_id, "x" * int(mb * MiB)))


def flood_stdout(session_id: str, mb: float, forever: bool) -> None:
    """Valid assistant lines of about 1 KiB: mb MiB of them, or without end. A reader that
    stops reading holds the fake in its write (a pipe's back-pressure); one that reads on
    must bound what it keeps."""
    line = _assistant_line(session_id, "flood " + "~" * 1000)
    block = line * max(1, 65536 // len(line))
    left = int(mb * MiB)
    while forever or left > 0:
        chunk = block if forever or left >= len(block) else line * -(-left // len(line))
        write_bytes(chunk)
        left -= len(chunk)


def at_point(ctx: Context, point: str, turn: int, session_id: str | None) -> None:
    """Run every fault whose `at` is `point` (and whose `turn` matches, for turn points)."""
    sc = ctx.scenario
    for name, default_at in DEFAULT_AT.items():
        if not sc.has(name) or sc.param(name, "at", default_at) != point:
            continue
        if point in ("mid-turn", "after-result"):
            want = sc.param(name, "turn", "1")
            if want not in ("0", "every") and str(turn) != want:
                continue
        ctx.ledger.write("misbehave", what=name, at=point)
        if name == "hang":
            idle_forever()
        elif name == "crash":
            sig = sc.param("crash", "signal", "")
            if sig:
                die_by_signal(ctx.ledger, sig)
            exit_now(ctx.ledger, int(sc.num("crash", "code", 1)))
        elif name == "garbage":
            garbage(int(sc.num("garbage", "lines", 4)))
        elif name == "huge-line":
            huge_line(session_id or "", sc.num("huge-line", "mb", 8.0))
        elif name == "stdout-flood":
            flood_stdout(
                session_id or "",
                sc.num("stdout-flood", "mb", 2.0),
                sc.flag("stdout-flood", "forever"),
            )
        elif name == "stderr-flood":
            flood_stderr(sc.num("stderr-flood", "mb", 4.0))
