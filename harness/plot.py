"""rss.png: RSS and live descendants over time, session starts and ends marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report import target_text  # noqa: E402


def plot_title(report: dict[str, Any]) -> str:
    """Verdict, target, and sessions as the terminal's summary counts them: completed of the
    run's, and failed (a lone count of the completed read as the run's size)."""
    return (
        f"soak {report.get('verdict')}: {target_text(report)}, sessions "
        f"{report.get('completed')}/{report.get('sessions')} (failed {report.get('failed')}) "
        "(green: starts, grey: ends)"
    )


def plot_rss(path: Path, report: dict[str, Any]) -> Path:
    rss = report.get("rss") or {}
    samples = rss.get("samples") or []
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    try:
        if samples:
            t0 = samples[0]["t"]
            ts = [s["t"] - t0 for s in samples]
            ax.plot(ts, [s["total_mb"] for s in samples], label="worker + descendants RSS (MB)")
            ax.plot(ts, [s["worker_mb"] for s in samples], label="worker RSS (MB)")
            ax.set_xlabel("seconds since start")
            ax.set_ylabel("MB")
            ax2 = ax.twinx()
            ax2.step(
                ts,
                [s["descendants"] for s in samples],
                where="post",
                color="tab:red",
                alpha=0.6,
                label=f"live descendants (idle baseline {report.get('descendants_baseline', '?')}: "
                "the worker's own helpers)",
            )
            ax2.set_ylabel("live descendants")
            ax2.yaxis.set_major_locator(MaxNLocator(integer=True))  # processes come whole
            marks = rss.get("session_marks") or {}
            for x in marks.get("starts", []):
                ax.axvline(x - t0, color="tab:green", alpha=0.08, linewidth=0.6)
            for x in marks.get("ends", []):
                ax.axvline(x - t0, color="tab:gray", alpha=0.08, linewidth=0.6)
            lines = ax.get_legend_handles_labels()
            lines2 = ax2.get_legend_handles_labels()
            ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
        ax.set_title(plot_title(report))
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
