"""The RSS judgement on synthetic series: noise of live processes vs a rising floor."""

from __future__ import annotations

import random

from harness.verdict import (
    FAIL,
    MIN_SLOPE_POINTS,
    PASS,
    judge,
    least_squares_slope,
    slope_per_100_sessions,
    slopes_judged,
)

PROC_MB = 12.0  # size of one observer in these synthetic series


def _series(
    sessions: int, leak_per_session: float, seed: int = 3
) -> list[tuple[float, float, float]]:
    """(t, sessions_done, rss bytes): a base, 0-4 live observers at random, plus a leak."""
    rng = random.Random(seed)
    out = []
    for i in range(sessions * 4):
        done = i / 4
        live = rng.randrange(0, 5)
        mb = 50 + live * PROC_MB + leak_per_session * done
        out.append((float(i), done, mb * 1e6))
    return out


def test_least_squares_slope_recovers_a_line():
    xs = [float(x) for x in range(10)]
    assert abs(least_squares_slope(xs, [3 * x + 1 for x in xs]) - 3) < 1e-9
    assert least_squares_slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_floor_slope_ignores_live_process_churn():
    flat = slope_per_100_sessions(_series(300, 0.0))
    # Raw samples swing by whole processes; the floor stays flat.
    assert abs(flat["mb_per_100_sessions"]) < PROC_MB / 4


def test_floor_slope_sees_one_leaked_process_per_10_sessions():
    leak = PROC_MB / 10
    rising = slope_per_100_sessions(_series(300, leak))
    assert abs(rising["mb_per_100_sessions"] - leak * 100) < leak * 100 * 0.2


def _judge(**kw):
    base = dict(
        leaked_count=0,
        zombies_at_end=0,
        descendants_end=0,
        descendants_baseline=0,
        total_slope=0.0,
        worker_slope=0.0,
        slope_budget=16.0,
        slope_span=150,
        peak_total_mb=100.0,
        peak_budget_mb=1024.0,
        completed=10,
        worker_alive=True,
    )
    base.update(kw)
    return judge(**base)


def test_verdict_rules():
    assert _judge().verdict == PASS and _judge().exit_code == 0
    assert _judge(leaked_count=1).verdict == FAIL
    assert _judge(descendants_end=2).verdict == FAIL
    assert _judge(total_slope=17.0).verdict == FAIL
    assert _judge(total_slope=17.0, slope_span=10).verdict == PASS  # too short to judge
    assert _judge(total_slope=17.0, slope_points=5).verdict == PASS  # too few points to judge
    assert _judge(peak_total_mb=2000.0).verdict == FAIL
    assert _judge(zombies_at_end=1).verdict == FAIL
    assert _judge(worker_alive=False).exit_code == 1
    assert _judge(completed=0).exit_code == 2
    assert _judge(completed=0, worker_alive=False).exit_code == 2
    # Nothing completed, yet a leak was seen or the worker was held stopped: that is a FAIL
    # (it was an ERROR "nothing was tested" that hid the leak it listed).
    hung = _judge(completed=0, leaked_count=1)
    assert hung.verdict == FAIL and hung.reasons[0] == "no session completed", hung.reasons
    assert "1 process(es) leaked" in hung.reasons[1]
    assert _judge(completed=0, cut_short="the worker stayed stopped").verdict == FAIL
    # Sessions that completed without one claude started tested nothing; with the user's own
    # claude (no ledger) there is no count to judge.
    assert _judge(claude_starts=0).exit_code == 2
    assert _judge(claude_starts=None).verdict == PASS and _judge(claude_starts=1).verdict == PASS
    assert _judge(harness_errors=["boom"]).exit_code == 2
    assert _judge(interrupted=True).verdict == "interrupted"


def test_a_fast_run_with_few_samples_reports_its_slope_but_does_not_judge_it():
    """Fifty sessions in five samples: the floor has five points, not enough for a line."""
    pts = [(float(t), float(t * 10), 100e6 + (t % 2) * 40e6) for t in range(10)]
    slope = slope_per_100_sessions(pts)
    assert slope["sessions_span"] >= 40 and slope["floor_points"] <= 5
    assert slope["mb_per_100_sessions"] is not None
    assert not slopes_judged(slope["sessions_span"], slope["floor_points"], 40)
    assert slopes_judged(slope["sessions_span"], MIN_SLOPE_POINTS, 40)


def _fast_run(
    seed: int,
    leak_mb_per_100: float = 0.0,
    leaking_procs: bool = False,
    *,
    proc_mb: tuple[float, float] = (3, 12),
    samples: int = 30,
    sessions_per_sample: float = 10.0,
) -> list:
    """A fast soak: by default 300 sessions at 10 per sample (30 samples), 0-8 observers alive
    at each, each 3-12 MB; (t, sessions_done, rss bytes, live count)."""
    rng = random.Random(seed)
    out = []
    for i in range(samples):
        done = i * sessions_per_sample
        # Leaking: one more process every 20 sessions, little churn beside it.
        live = int(done / 20) + rng.randrange(0, 2) if leaking_procs else rng.randrange(0, 9)
        mb = 50 + sum(rng.uniform(*proc_mb) for _ in range(live)) + leak_mb_per_100 * done / 100
        out.append((i * 0.25, done, mb * 1e6, float(live)))
    return out


def test_a_fast_runs_churn_is_no_growth_at_a_constant_live_count():
    """A bench soak FAILed on the floor's slope: 15 samples, one per bucket, each as many
    observers as happened to be alive. Told the live count, the fit sees no growth."""
    budget = 16.0
    floor_fails = 0
    for seed in range(50):
        pts = _fast_run(seed)
        slope = slope_per_100_sessions(pts)
        assert slope["method"] == "constant live count"
        assert slopes_judged(slope["sessions_span"], slope["points"])
        assert abs(slope["mb_per_100_sessions"]) < budget, (seed, slope)
        floor = slope_per_100_sessions([p[:3] for p in pts])  # without the counts
        floor_fails += floor["mb_per_100_sessions"] > budget
    assert floor_fails > 0, "the floor alone never failed here: this test shows nothing"


def test_growth_at_a_constant_live_count_is_seen_in_a_fast_run():
    for seed in range(50):
        slope = slope_per_100_sessions(_fast_run(seed, leak_mb_per_100=40.0))
        assert slope["mb_per_100_sessions"] > 16.0, (seed, slope)


def test_a_live_count_that_rises_with_the_sessions_falls_back_to_the_floor():
    """Leaked processes: the count and the sessions cannot be told apart."""
    slope = slope_per_100_sessions(_fast_run(1, leaking_procs=True))
    assert slope["method"] == "floor"
    assert slope["mb_per_100_sessions"] == slope["floor_mb_per_100_sessions"] > 16.0


def test_a_few_big_processes_late_in_the_run_are_no_growth():
    """The default soak's fault mix: a memory-holding fake (150 MB) alive at some samples near
    the end tilts the fit at a constant count, which assumes processes of one size; the floor
    is not fooled, and the lower estimate is judged."""
    rng = random.Random(5)
    pts = []
    for i in range(300):
        done = i * 1.0
        live = rng.randrange(0, 9)
        mb = 50 + live * 10.0
        if i > 240 and rng.random() < 0.3:
            live, mb = live + 1, mb + 150.0
        pts.append((i * 0.25, done, mb * 1e6, float(live)))
    slope = slope_per_100_sessions(pts)
    assert slope["constant_count_mb_per_100_sessions"] > 16.0, slope  # fooled
    assert slope["method"] == "floor" and slope["mb_per_100_sessions"] < 16.0, slope
    assert slopes_judged(slope["sessions_span"], slope["points"])


def _sparse_run(seed: int, leak_mb_per_100: float = 0.0) -> list:
    """A faster soak still: 15 samples in the 2nd half, 0-8 observers alive, each anywhere from
    starting up (5 MB) to mid-turn (40 MB)."""
    return _fast_run(seed, leak_mb_per_100, proc_mb=(5, 40))


def _judged(slope: dict) -> str:
    return _judge(total_slope=slope["lower_bound_mb_per_100_sessions"]).verdict


def test_noise_a_sparse_run_cannot_tell_from_growth_is_not_judged_growth():
    """The bench's fixed worker FAILed once on 20 MB/100 sessions from 15 samples of unequal
    processes: the verdict judges the estimate less its noise (a one-sided 95% bound)."""
    point_fails = 0
    for seed in range(100):
        slope = slope_per_100_sessions(_sparse_run(seed))
        assert slope["stderr_mb_per_100_sessions"] > 0, slope
        point_fails += slope["mb_per_100_sessions"] > 16.0
        assert _judged(slope) == PASS, (seed, slope)
    assert point_fails > 0, "the point estimate never crossed the budget: this test shows nothing"


def test_growth_well_above_the_noise_still_fails_a_sparse_run():
    for seed in range(100):
        slope = slope_per_100_sessions(_sparse_run(seed, leak_mb_per_100=150.0))
        assert _judged(slope) == FAIL, (seed, slope)


def test_a_long_run_judges_growth_just_above_the_budget():
    """Many samples make the error small: 25 MB/100 sessions is caught, not excused as noise."""
    pts = _fast_run(7, 25.0, proc_mb=(5, 40), samples=600, sessions_per_sample=0.5)
    slope = slope_per_100_sessions(pts)
    assert _judged(slope) == FAIL, slope


# A fixed worker's samples (t s, sessions done, worker+descendants MB, live descendants): 80
# sessions of a `soak --duration 2m` run under a memory-churning neighbour, replayed as a run of
# their own (its 2nd half spans 61 sessions in 26 samples, so it is judged). Nothing grew: the
# last samples hold bigger observers (the fault mix's memory holders, observers mid-turn).
FIXED_WINDOW = [
    (0.0, 506, 106.95, 4), (0.29, 506, 171.66, 8), (0.57, 507, 147.54, 5),
    (0.83, 507, 147.54, 5), (1.09, 507, 121.71, 5), (1.37, 508, 122.68, 5),
    (1.64, 510, 111.16, 5), (1.92, 512, 132.83, 6), (2.19, 513, 140.03, 5),
    (2.45, 513, 140.03, 5), (2.7, 513, 120.8, 5), (2.95, 513, 120.8, 5),
    (3.21, 513, 120.8, 5), (3.46, 513, 123.29, 5), (3.73, 513, 123.29, 5),
    (3.98, 513, 123.29, 5), (4.25, 513, 123.29, 5), (4.51, 513, 123.3, 5),
    (4.76, 515, 116.87, 5), (5.02, 516, 135.49, 6), (5.28, 517, 129.93, 7),
    (5.54, 517, 117.85, 5), (5.79, 517, 117.85, 5), (6.06, 517, 123.44, 5),
    (6.31, 519, 153.67, 8), (6.58, 523, 116.66, 5), (6.83, 529, 130.62, 6),
    (7.11, 533, 166.8, 9), (7.37, 537, 158.86, 8), (7.63, 539, 134.27, 7),
    (7.9, 541, 121.96, 5), (8.15, 543, 119.47, 5), (8.42, 545, 122.11, 5),
    (8.68, 545, 121.93, 5), (8.94, 545, 121.93, 5), (9.2, 545, 136.41, 5),
    (9.46, 546, 136.43, 5), (9.74, 546, 136.43, 5), (10.0, 548, 135.65, 6),
    (10.26, 551, 147.92, 7), (10.52, 552, 135.59, 6), (10.78, 552, 123.32, 5),
    (11.03, 553, 111.03, 4), (11.29, 556, 156.36, 5), (11.55, 559, 122.45, 5),
    (11.8, 563, 120.15, 5), (12.06, 568, 128.67, 6), (12.33, 573, 150.83, 6),
    (12.59, 579, 143.73, 6), (12.85, 580, 152.87, 6), (13.1, 584, 189.56, 6),
]  # fmt: skip


def test_a_fixed_workers_big_observers_at_the_edge_are_no_growth():
    """This window FAILed at a constant live count, 53 +- 15 MB/100 sessions (lower bound
    22.7 > 16), its floor too sparse to be judged: the error assumed every sample equally
    noisy, while the last one, the fit's strongest lever, held the biggest observers."""
    pts = [(t, done, mb * 1e6, float(live)) for t, done, mb, live in FIXED_WINDOW]
    slope = slope_per_100_sessions(pts)
    assert slope["method"] == "constant live count", slope
    assert slopes_judged(slope["sessions_span"], slope["points"]), slope
    assert slope["mb_per_100_sessions"] > 16.0, slope  # the point estimate alone would FAIL
    assert _judged(slope) == PASS, slope


def _edge_run(seed: int, leak_mb_per_100: float = 0.0) -> list:
    """52 samples, 2.2 sessions apart (the 2nd half spans 55 sessions in 26 samples), 3-7
    observers of 8-20 MB alive at each; in the last two a bigger one (+30-60 MB), as when a
    memory-holding fake is among the last sessions driven."""
    rng = random.Random(seed)
    out = []
    for i in range(52):
        done = i * 2.2
        live = rng.randrange(3, 8)
        mb = 50 + sum(rng.uniform(8, 20) for _ in range(live)) + leak_mb_per_100 * done / 100
        if i >= 50:
            mb += rng.uniform(30, 60)
        out.append((i * 0.25, done, mb * 1e6, float(live)))
    return out


def test_big_processes_in_the_last_samples_are_no_growth():
    """Measured before the fix: 14 of these 200 runs FAILed (0 with HC3 errors)."""
    for seed in range(200):
        slope = slope_per_100_sessions(_edge_run(seed))
        assert slopes_judged(slope["sessions_span"], slope["points"]), slope
        assert _judged(slope) == PASS, (seed, slope)


def test_growth_beside_big_processes_in_the_last_samples_still_fails():
    for seed in range(200):
        assert _judged(slope_per_100_sessions(_edge_run(seed, 60.0))) == FAIL, seed
