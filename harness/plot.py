"""rss.png: RSS and live descendants over time, session starts and ends marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report import target_text  # noqa: E402


def plot_title(report: dict[str, Any]) -> str:
    """Verdict, target, and sessions as the terminal's summary counts them: completed of the
    run's, and failed (a lone count of the completed read as the run's size)."""
    return (
        f"soak {report.get('verdict')}: {target_text(report)}, sessions "
        f"{report.get('completed')}/{report.get('sessions')} (failed {report.get('failed')})"
    )


def plot_rss(path: Path, report: dict[str, Any]) -> Path:
    fig = draw_rss(report)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def draw_rss(report: dict[str, Any]) -> Figure:
    """The figure of rss.png (the caller closes it)."""
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
            if any(s.get("leaked") for s in samples):
                ax2.step(ts, [s.get("leaked", 0) for s in samples], where="post",
                         color="black", linestyle="--", label="leaked so far")  # fmt: skip
            # Starts and ends as ticks along the bottom, not lines across the plot: full-height
            # lines faint enough not to hide the curves could not be seen at 40 sessions.
            marks = rss.get("session_marks") or {}
            for axis in (ax, ax2):  # room below the curves for the ticks
                lo, hi = axis.get_ylim()
                axis.set_ylim(lo - 0.12 * (hi - lo), hi)
            strip = ax.get_xaxis_transform()  # x in seconds, y in the axes' height
            for key, low, color in (("starts", 0.0, "tab:green"), ("ends", 0.05, "tab:gray")):
                xs = [x - t0 for x in marks.get(key, [])]
                if xs:
                    ax.vlines(xs, low, low + 0.045, transform=strip, color=color, linewidth=0.8,
                              label=f"session {key[:-1]}s")  # fmt: skip
            lines = ax.get_legend_handles_labels()
            lines2 = ax2.get_legend_handles_labels()
            # Below the plot: inside it, the legend hid the RSS peak of a short run.
            fig.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower center", ncol=3,
                       fontsize=8)  # fmt: skip
        ax.set_title(plot_title(report), fontsize=10)
        fig.tight_layout(rect=(0, 0.12 if samples else 0, 1, 1))
    except BaseException:
        plt.close(fig)
        raise
    return fig
