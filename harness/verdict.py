"""The verdict: exact leak census plus bounded RSS, turned into PASS / FAIL.

RSS is judged by the least-squares slope over the second half of the run (after warm-up, as
psleak-style checkers do), per 100 sessions (the lower of two estimates that noise fools in
different ways, less its standard error: see slope_per_100_sessions), and by its peak; never by
one sample.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

PASS, FAIL, ERROR, INTERRUPTED = "PASS", "FAIL", "ERROR", "interrupted"
# In report.json while a run goes on (or after its harness was killed): not a verdict.
RUNNING = "running"
EXIT_CODES = {PASS: 0, FAIL: 1, ERROR: 2, INTERRUPTED: 130}

# Default slope budget, MB per 100 sessions, for both the worker alone and worker+descendants.
# Why 16: the census already catches every leaked process exactly; the slope catches memory that
# grows *inside* live processes. One leaked fake observer is a Python interpreter (>= ~10 MB), one
# real leaked observer ~370 MB (issue #603), so 16 MB/100 sessions is below "one small leak per
# 100 sessions" yet above the sampling noise of a worker whose live children come and go.
DEFAULT_SLOPE_BUDGET_MB = 16.0
# Below this many sessions in the 2nd half, a per-100-sessions slope extrapolates warm-up and
# noise; it is reported but not judged.
DEFAULT_MIN_SLOPE_SPAN = 50
# Nor below this many points in the fit: a fast run can put 50 sessions into a second half of
# five samples, and a line through five noisy sums says nothing (measured: +-50 MB).
MIN_SLOPE_POINTS = 10
FLOOR_BUCKETS = 20
SAMPLES_PER_BUCKET = 3  # fewer buckets in a sparse run: a floor needs samples to be one
# Above this squared correlation of sessions and live count the two cannot be told apart.
MAX_COUNT_COLLINEARITY = 0.8
# The slope judged is the estimate minus this many standard errors (`_hc3_stderr`): a one-sided
# bound at >= 95% for every fit judged (>= MIN_SLOPE_POINTS points: t(0.95, 7 dof) = 1.89). A
# fast run of 15 noisy samples measured 20 MB/100 sessions of churn with a standard error of 10;
# a long run's error is small, so real growth still fails it.
LOWER_BOUND_STDERRS = 2.0


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    fit = _line_fit(xs, ys)
    return None if fit is None else fit[0]


def _hc3_stderr(
    gains: Sequence[float], leverages: Sequence[float], residuals: Sequence[float]
) -> float:
    """The standard error of a least-squares coefficient that does not assume every sample
    equally noisy (HC3, MacKinnon and White's heteroskedasticity-consistent estimator, the one
    advised for small samples): the sum of (g_i e_i / (1 - h_i))^2, g_i being how much sample
    i moves the coefficient per unit of y (row i of (X'X)^-1 X'), e_i its residual and h_i its
    leverage.

    Why not the textbook s^2 (X'X)^-1: the summed RSS of the live processes is not one level
    plus even noise. Its spread depends on which processes are alive (the fault mix holds 150
    MB in a few), and a sample at the window's edge with a few big processes in it both pulls
    the line most and has the biggest residual. The textbook error, averaging the residuals
    over every sample, called such a tilt growth: a fixed worker's 80-session window (26
    samples, its last ones holding big observers) read 53 +- 15 MB/100 sessions at a constant
    count, lower bound 22.7 > 16, a FAIL; HC3 puts its error at 25 (lower bound 2.3)."""
    var = 0.0
    for g, h, e in zip(gains, leverages, residuals, strict=True):
        var += (g * e / max(1.0 - h, 1e-9)) ** 2
    return math.sqrt(var)


def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(slope, its standard error: `_hc3_stderr`) of the least-squares line; None below 3
    points."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    dxs = [x - mx for x in xs]
    residuals = [y - my - b * dx for dx, y in zip(dxs, ys, strict=True)]
    gains = [dx / sxx for dx in dxs]
    leverages = [1 / n + dx * dx / sxx for dx in dxs]
    return b, _hc3_stderr(gains, leverages, residuals)


def second_half(points: Sequence[Sequence[float]]) -> list[Sequence[float]]:
    """Points are (t, sessions_done, value[, live]); keep those in the 2nd half of the time span."""
    if not points:
        return []
    t0, t1 = points[0][0], points[-1][0]
    mid = t0 + (t1 - t0) / 2
    return [p for p in points if p[0] >= mid]


def slope_given_count(
    xs: Sequence[float], ls: Sequence[float], ys: Sequence[float]
) -> tuple[float, float] | None:
    """The coefficient of x in the least-squares fit y = a + b*x + c*l, and its standard error.

    x is sessions done, l the live descendants at the sample, y the summed RSS: c absorbs what
    the processes alive at that instant weigh, so b is the growth at a constant process count.
    None when x and l cannot be told apart (the count itself rises with the sessions, as when
    processes leak) or there are too few points.
    """
    n = len(xs)
    if n < 4:
        return None
    mx, ml, my = sum(xs) / n, sum(ls) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sll = sum((v - ml) ** 2 for v in ls)
    if sxx <= 0:
        return None
    if sll <= 0:
        return _line_fit(xs, ys)  # the count never changed: the plain line
    sxl = sum((x - mx) * (v - ml) for x, v in zip(xs, ls, strict=True))
    if sxl * sxl > MAX_COUNT_COLLINEARITY * sxx * sll:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sly = sum((v - ml) * (y - my) for v, y in zip(ls, ys, strict=True))
    det = sxx * sll - sxl * sxl
    b = (sxy * sll - sly * sxl) / det
    c = (sly * sxx - sxy * sxl) / det
    # (X'X)^-1 of the centred (x, l) is [[sll, -sxl], [-sxl, sxx]] / det.
    centred = [(x - mx, v - ml) for x, v in zip(xs, ls, strict=True)]
    residuals = [y - my - b * dx - c * dl for (dx, dl), y in zip(centred, ys, strict=True)]
    gains = [(sll * dx - sxl * dl) / det for dx, dl in centred]
    leverages = [
        1 / n + (sll * dx * dx - 2 * sxl * dx * dl + sxx * dl * dl) / det for dx, dl in centred
    ]
    return b, _hc3_stderr(gains, leverages, residuals)


def _floor_slope(
    xs: Sequence[float], ys: Sequence[float], buckets: int
) -> tuple[tuple[float, float] | None, int]:
    """Fit (slope, stderr) of the minimum of each bucket of sessions, and how many buckets had
    a point."""
    span = (max(xs) - min(xs)) if xs else 0
    if span <= 0:
        return None, 0
    lo = min(xs)
    width = span / buckets
    mins: dict[int, tuple[float, float]] = {}
    for x, y in zip(xs, ys, strict=True):
        b = min(buckets - 1, int((x - lo) / width))
        if b not in mins or y < mins[b][1]:
            mins[b] = (lo + (b + 0.5) * width, y)
    pts = sorted(mins.values())
    return _line_fit([p[0] for p in pts], [p[1] for p in pts]), len(pts)


def slope_per_100_sessions(points: Sequence[Sequence[float]], buckets: int = FLOOR_BUCKETS) -> dict:
    """The RSS slope over the 2nd half, in MB per 100 sessions, as the verdict judges it.

    Live observers come and go, so the summed RSS swings by whole processes between samples. Two
    estimates of growth, each fooled by something else:
    - the floor: the slope of the minimum of each bucket of sessions (what stays when the tree
      is idle); fooled by sparse samples (a bucket of one sample is just as many observers as
      happened to be alive), so it needs >= SAMPLES_PER_BUCKET samples per bucket;
    - at a constant live count (points of four: `slope_given_count`); fooled by processes of
      unequal size (a fault mix holding memory in a few of them), and not defined when the count
      rises with the sessions.
    Growth raises both, so the lower of those with enough points is taken, and the verdict
    judges its lower bound (LOWER_BOUND_STDERRS standard errors below it). `raw` is the plain
    slope of every sample. More processes is not judged here: the census names every leaked one,
    and the verdict wants the descendant count back at its idle baseline.
    """
    half = second_half(points)
    xs = [p[1] for p in half]
    ys = [p[2] / 1e6 for p in half]
    raw = least_squares_slope(xs, ys)
    floor, floor_points = _floor_slope(
        xs, ys, min(buckets, max(3, len(half) // SAMPLES_PER_BUCKET))
    )
    given = None
    if half and all(len(p) > 3 for p in half):
        given = slope_given_count(xs, [p[3] for p in half], ys)
    estimates = [(floor, "floor", floor_points), (given, "constant live count", len(half))]
    known = [(fit[0], fit[1], name, n) for fit, name, n in estimates if fit is not None]
    usable = [e for e in known if e[3] >= MIN_SLOPE_POINTS]
    nothing: list[tuple[float | None, float | None, str, int]] = [(None, None, "none", 0)]
    judged, stderr, method, points_used = min(usable or known or nothing)
    return {
        "mb_per_100_sessions": _per_100(judged),
        # What the verdict compares with the budget: growth the noise cannot explain.
        "lower_bound_mb_per_100_sessions": None
        if judged is None or stderr is None
        else _per_100(judged - LOWER_BOUND_STDERRS * stderr),
        "stderr_mb_per_100_sessions": _per_100(stderr),
        "method": method,
        "raw_mb_per_100_sessions": _per_100(raw),
        "floor_mb_per_100_sessions": _per_100(floor[0] if floor else None),
        "constant_count_mb_per_100_sessions": _per_100(given[0] if given else None),
        "samples": len(half),
        "floor_points": floor_points,
        "points": points_used,
        "sessions_span": (max(xs) - min(xs)) if xs else 0,
    }


def _per_100(per_session: float | None) -> float | None:
    return None if per_session is None else round(per_session * 100, 3)


def slopes_judged(span: float, points: int, min_span: float = DEFAULT_MIN_SLOPE_SPAN) -> bool:
    """Whether the 2nd half is long enough, in sessions and in points, for its slope to count."""
    return span >= min_span and points >= MIN_SLOPE_POINTS


@dataclass
class Verdict:
    verdict: str
    reasons: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def worker_death(exit_status: int | None) -> str:
    """`the worker died during the run`, with how when known (Popen's returncode)."""
    text = "the worker died during the run"
    if exit_status is None:
        return text
    if exit_status < 0:
        try:
            name = signal.Signals(-exit_status).name
        except ValueError:
            name = f"signal {-exit_status}"
        return f"{text} (killed by {name})"
    return f"{text} (exit code {exit_status})"


def judge(
    *,
    leaked_count: int,
    unseen_count: int = 0,
    zombies_at_end: int,
    descendants_end: int,
    descendants_baseline: int,
    total_slope: float | None,
    worker_slope: float | None,
    slope_budget: float,
    slope_span: float = float("inf"),
    min_slope_span: float = DEFAULT_MIN_SLOPE_SPAN,
    slope_points: int = MIN_SLOPE_POINTS,
    peak_total_mb: float,
    peak_budget_mb: float | None,
    completed: int,
    claude_starts: int | None = None,
    worker_alive: bool,
    worker_exit: int | None = None,
    cut_short: str | None = None,
    harness_errors: Sequence[str] = (),
    interrupted: bool = False,
) -> Verdict:
    if interrupted:
        return Verdict(INTERRUPTED, ["interrupted before the run finished"])
    if harness_errors:
        return Verdict(ERROR, [f"harness error: {e}" for e in harness_errors])
    died = None if worker_alive else worker_death(worker_exit)
    if completed == 0 and not (leaked_count or unseen_count or zombies_at_end or cut_short):
        # The worker's death is most often why: say so beside it.
        return Verdict(ERROR, ["no session completed: nothing was tested", *filter(None, [died])])
    if claude_starts == 0:
        # Hooks answer before the queue is worked, so a worker whose every spawn fails still
        # completes sessions: with no process to end, "nothing leaked" would prove nothing.
        return Verdict(ERROR, [
            f"no claude ever started in {completed} completed session(s): the worker's spawns "
            "failed (see its log), so nothing was tested", *filter(None, [died])])  # fmt: skip
    # No session completed, yet processes leaked or the worker was held stopped: that was
    # tested, and failed (an ERROR "nothing was tested" hid a leak it listed).
    reasons = ["no session completed"] if completed == 0 else []
    if leaked_count:
        reasons.append(f"{leaked_count} process(es) leaked (alive past their session's end+grace)")
    if unseen_count:
        reasons.append(
            f"{unseen_count} process(es) of the run outlived the worker's stop by more than the "
            "grace, unseen by the census until the harness's exit sweep ended them (in leaks.txt)"
        )
    if zombies_at_end:
        reasons.append(f"{zombies_at_end} zombie(s) left unreaped")
    if descendants_end > descendants_baseline:
        reasons.append(
            f"worker descendants did not return to idle baseline "
            f"({descendants_end} > {descendants_baseline})"
        )
    if died:
        reasons.append(died)
    if cut_short:
        reasons.append(cut_short)
    judged = slopes_judged(slope_span, slope_points, min_slope_span)
    for name, slope in (("worker+descendants", total_slope), ("worker", worker_slope)):
        if judged and slope is not None and slope > slope_budget:
            reasons.append(
                # Rounded down: the bound is a floor, and 0.158 read ">= 0.2".
                f"RSS of {name} grows >= {math.floor(slope * 100) / 100:g} MB/100 sessions "
                f"(the estimate less "
                f"{LOWER_BOUND_STDERRS:g} standard errors) > budget {slope_budget:g}"
            )
    if peak_budget_mb is not None and peak_total_mb > peak_budget_mb:
        reasons.append(f"peak RSS {peak_total_mb:.0f} MB > budget {peak_budget_mb:g} MB")
    return Verdict(FAIL if reasons else PASS, reasons)
