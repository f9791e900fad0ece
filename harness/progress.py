"""Live progress of a soak: a rich display on a terminal, plain periodic lines elsewhere (CI)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

PLAIN_INTERVAL_S = 5.0


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


class Progress:
    """Call `update(snapshot)` often; it renders at its own pace."""

    def __init__(
        self,
        total: int | None,
        mode: str = "auto",
        stream: TextIO | None = None,
        time_box: float | None = None,
    ) -> None:
        self.total = total
        # A --duration run has no session total: the time it is boxed in is how far it got.
        self.time_box = time_box
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        self.mode = mode
        self.start = time.monotonic()
        self._last_plain = 0.0
        self._live: Live | None = None
        if mode == "rich":
            self._live = Live(
                self._table({}), console=Console(file=self.stream), refresh_per_second=4
            )
            self._live.start()

    def _table(self, snap: dict[str, Any]) -> Table:
        elapsed = time.monotonic() - self.start
        done = snap.get("sessions_done", 0)
        table = Table(title="leakproof soak", show_header=False, expand=False)
        table.add_column("what")
        table.add_column("value", justify="right")
        total = f"/{self.total}" if self.total else ""
        # Ended counts the failed too (the summary says completed and failed apart).
        table.add_row("sessions ended", f"{done}{total}  (failed {snap.get('failed', 0)})")
        table.add_row("live descendants", str(snap.get("live_descendants", 0)))
        leaked = snap.get("leaked", 0)
        table.add_row("leaked so far", f"[bold red]{leaked}[/]" if leaked else "0")
        table.add_row("RSS worker+descendants", _mb(snap.get("total_rss", 0)))
        table.add_row("RSS worker", _mb(snap.get("worker_rss", 0)))
        rate = done / elapsed if elapsed > 0 else 0.0
        table.add_row("elapsed", f"{elapsed:.0f} s{self._of_box()}  ({rate:.1f} sessions/s)")
        if snap.get("stage"):
            table.add_row("now", str(snap["stage"]))
        return table

    def line(self, snap: dict[str, Any]) -> str:
        elapsed = time.monotonic() - self.start
        total = f"/{self.total}" if self.total else ""
        return (
            f"[soak {elapsed:6.0f}s{self._of_box()}] "
            f"sessions ended {snap.get('sessions_done', 0)}{total} "
            f"(failed {snap.get('failed', 0)}) | live descendants {snap.get('live_descendants', 0)}"
            f" | leaked {snap.get('leaked', 0)} | RSS {_mb(snap.get('total_rss', 0))}"
            f" (worker {_mb(snap.get('worker_rss', 0))})"
            + (f" | {snap['stage']}" if snap.get("stage") else "")
        )

    def _of_box(self) -> str:
        return "" if self.time_box is None else f" of {self.time_box:.0f} s"

    def update(self, snap: dict[str, Any], force: bool = False) -> None:
        if self.mode == "rich" and self._live is not None:
            self._live.update(self._table(snap))
        elif self.mode == "plain":
            now = time.monotonic()
            if force or now - self._last_plain >= PLAIN_INTERVAL_S:
                self._last_plain = now
                print(self.line(snap), file=self.stream, flush=True)

    def close(self, snap: dict[str, Any] | None = None) -> None:
        if snap is not None:
            self.update(snap, force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
