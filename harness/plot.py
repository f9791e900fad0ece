"""rss.png: RSS and live descendants over time, session starts and ends marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report import sessions_text, target_text  # noqa: E402


def plot_title(report: dict[str, Any]) -> str:
    """Verdict, target, and sessions as the terminal's summary counts them: completed of the
    run's, and failed (a lone count of the completed read as the run's size)."""
    return f"soak {report.get('verdict')}: {target_text(report)}, sessions {sessions_text(report)}"


def plot_rss(path: Path, report: dict[str, Any]) -> Path:
    fig = draw_rss(report)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# Ticks ~1 px wide on an axis ~850 px wide: past this many, they merge into one solid band (a
# 10-minute soak of 2875 sessions drew two bars with a few gaps), so the strip shows how many
# per time bin instead: stalls and bursts stay visible at any run length.
MAX_TICKS = 150
RATE_BINS = 120
STRIP_HEIGHT = 0.045  # of the axes' height


def _mark_strip(ax: Any, xs: list[float], low: float, color: str, what: str, span: float) -> None:
    """Session starts or ends along the bottom of `ax` from `low` (axes fraction) up: a tick
    each, or when too many for ticks, a bar per time bin as high as its count."""
    strip = ax.get_xaxis_transform()  # x in seconds, y in the axes' height
    if len(xs) <= MAX_TICKS or span <= 0:
        ax.vlines(xs, low, low + STRIP_HEIGHT, transform=strip, color=color, linewidth=0.8,
                  label=what)  # fmt: skip
        return
    width = span / RATE_BINS
    counts = [0] * RATE_BINS
    for x in xs:
        counts[min(RATE_BINS - 1, max(0, int(x / width)))] += 1
    top = max(counts)
    ax.stairs([low + STRIP_HEIGHT * c / top for c in counts],
              [i * width for i in range(RATE_BINS + 1)], baseline=low, fill=True,
              transform=strip, color=color,
              label=f"{what} per {width:.3g} s (full height: {top})")  # fmt: skip


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
            for key, low, color in (("starts", 0.0, "tab:green"), ("ends", 0.05, "tab:gray")):
                xs = [x - t0 for x in marks.get(key, [])]
                if xs:
                    _mark_strip(ax, xs, low, color, f"session {key}", max(ts[-1], max(xs)))
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
