"""Report, plot and progress code paths a soak rarely takes: long ages, ERROR verdicts, rich
progress on a terminal-like stream, plain lines at their pace, an empty RSS plot."""

from __future__ import annotations

import io
import json
import time
from xml.etree import ElementTree as ET

import pytest

from harness import progress as progress_mod
from harness.census import ProcRecord
from harness.progress import Progress
from harness.report import (
    format_elapsed,
    leak_entry,
    leaks_table,
    markdown_summary,
    write_report,
    zombies_text,
)
from harness.report_assembly import print_summary


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "00:00"), (59.9, "00:59"), (61, "01:01"), (3661, "01:01:01"), (90061, "1-01:01:01")],
)
def test_format_elapsed_matches_ps(seconds, text):
    assert format_elapsed(seconds) == text


def _leak(pid: int = 4242, age: float = 90061.0) -> dict:
    rec = ProcRecord(
        pid=pid,
        create_time=1000.0,
        spawn_ts=1000.0,
        cmdline=["claude", "--fake-claude-run-id=abcdefabcdef"],
        role="main",
        scenario="ok",
        ppid=1,
        rss=10 * 1024 * 1024,
        status="sleeping",
        leak_reason="alive past grace",
    )
    return leak_entry(rec, "sess-1", now=1000.0 + age)


def test_leak_entry_and_table_show_age_rss_and_a_missing_command():
    entry = _leak()
    assert entry["age"] == 90061.0 and entry["session"] == "sess-1"
    assert entry["observed"] is False  # known from the ledger only: no psutil handle
    table = leaks_table([entry, {"pid": 7, "cmdline": [], "age": 5}])
    lines = table.splitlines()
    assert lines[0].split() == [
        "PID",
        "PPID",
        "RSS(KB)",
        "ELAPSED",
        "SESSION",
        "SCENARIO",
        "COMMAND",
    ]
    assert "4242" in lines[1] and "10240" in lines[1] and "1-01:01:01" in lines[1]
    assert lines[1].split()[4:6] == ["sess-1", "ok"]  # which session, which fault scenario
    assert lines[2].split() == ["7", "?", "0", "00:05", "-", "-", "?"]
    # The repro's tables: the five columns.
    only = {"pid": 7, "cmdline": ["claude"], "age": 5, "scenario": "ok"}
    bare = leaks_table([only], where=False)
    assert bare.splitlines()[0].split() == ["PID", "PPID", "RSS(KB)", "ELAPSED", "COMMAND"]
    # A soak that knows the scenario and no session (claude-mem 9.0.0 or 10.x): the scenario
    # is shown (the whole block was left out for want of a session).
    head = leaks_table([only]).splitlines()[0].split()
    assert head == ["PID", "PPID", "RSS(KB)", "ELAPSED", "SCENARIO", "COMMAND"]
    # Oldest first (as `ps` lists), not in the order the census judged them.
    newer, older = (
        {"pid": 1, "create_time": 2.0, "age": 1},
        {"pid": 2, "create_time": 1.0, "age": 2},
    )
    assert [row.split()[0] for row in leaks_table([newer, older]).splitlines()[1:]] == ["2", "1"]
    # Started in the same tick of create_time (10 ms): by pid, as `ps` lists them (a leaky soak's
    # leaks.txt listed 10247 before 10246, both of 1796101900.21).
    same = [{"pid": p, "create_time": 5.0, "age": 1} for p in (10247, 10246, 10248)]
    rows = leaks_table(same).splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["10246", "10247", "10248"]
    # A long command is cut to the width in its middle, and says so: its program and its last
    # arguments both tell rows apart (repro's rows all read `…_boot.py --fake-claude-run-i…`).
    long = {"pid": 8, "cmdline": ["claude", "--model", "x" * 300, "--resume", "abc"], "age": 1}
    (row,) = leaks_table([long], width=40).splitlines()[1:]
    assert row.endswith(" claude --model xxxx…" + "x" * 7 + " --resume abc"), row
    # leaks.txt is a file whose last column is COMMAND: whole.
    (row,) = leaks_table([long], width=None).splitlines()[1:]
    assert row.endswith(" ".join(long["cmdline"])), row


def test_leaks_are_aged_at_the_runs_last_judgement():
    """Three leaks of one create_time read 73.2, 72.3 and 71.2 s: each aged up to the moment the
    harness's sweep killed it, after the run was judged."""
    from harness.census import ProcRecord
    from harness.report import leak_entry

    judged = 1000.0
    ages = [
        leak_entry(ProcRecord(pid=p, create_time=900.0, spawn_ts=900.0, exited_at=killed), None,
                   now=judged)["age"]
        for p, killed in ((1, 1001.2), (2, 1002.3), (3, None))
    ]  # fmt: skip
    assert ages == [100.0, 100.0, 100.0]
    # One that exited before the judgement keeps its own lifetime.
    early = ProcRecord(pid=4, create_time=900.0, spawn_ts=900.0, exited_at=950.0)
    assert leak_entry(early, None, now=judged)["age"] == 50.0


def test_terminal_and_markdown_tables_say_how_many_leaks_they_leave_out():
    """A leaky soak of 30 sessions leaked 167 processes; the terminal showed 40 rows and the step
    summary 50, and neither said there were more: read as the whole list."""
    leaked = [
        {**_leak(pid=1000 + i), "create_time": 2000.0 - i}  # the census's order: newest first
        for i in range(45)
    ]
    report = _report("FAIL", leaked=leaked, leaked_count=45, reasons=["45 leaked"])
    out = io.StringIO()
    print_summary({**report, **_SUMMARY_FIELDS}, out)
    rows = [line for line in out.getvalue().splitlines() if line.split()[:1] == ["1044"]]
    # The oldest 40 of all 45 (not 40 of the census's order, sorted): pid 1044 is the oldest.
    assert rows, out.getvalue()
    assert "... and 5 more (leaks.txt lists them all)" in out.getvalue()
    assert "and 5 more" not in leaks_table(leaked)  # leaks.txt: every one, no such line
    assert "and" not in markdown_summary(report).split("```")[1]  # 45 <= 50: all of them


_SUMMARY_FIELDS = {
    "zombies": [],
    "escaped": [],
    "peak_descendants": 3,
    "descendants_baseline": 0,
    "descendants_end": 3,
    "sessions_per_s": 2.0,
    "rss": {},
}


def _report(verdict: str, **kw: object) -> dict:
    base = {
        "verdict": verdict,
        "target": "reference",
        "mode": "fixed",
        "sessions": 3,
        "completed": 2,
        "failed": 1,
        "leaked_count": 0,
        "leaked": [],
        "reasons": [],
        "duration_s": 1.5,
        "cleanup_latency_ms": {"n": 2, "p50": 3.0, "p99": 9.0},
    }
    base.update(kw)
    return base


def test_error_verdict_writes_an_error_case_and_a_warning_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report = _report(
        "ERROR",
        reasons=["harness error: boom", "worker died"],
        rss={"peak_total_mb": 81.9, "peak_budget_mb": 1024.0},
        work_dir="/tmp/kept",
    )
    paths = write_report(tmp_path / "out", report, plot=True)

    case = ET.parse(paths["junit.xml"]).getroot()
    assert case.get("errors") == "1" and case.get("failures") == "0"
    error = case.find("testcase/error")
    assert error is not None and error.get("message") == "harness error: boom; worker died"
    assert json.loads(case.find("testcase/system-out").text)["failed"] == 1

    md = summary.read_text(encoding="utf-8")
    assert md.startswith("## ⚠️ Soak ERROR: reference (fixed)")
    assert "- harness error: boom" in md and "- worker died" in md
    assert "cleanup latency ms: p50 3.0 " in md
    assert "peak 81.9 MB (budget 1024.0)" in md and "`/tmp/kept`" in md  # as the terminal says
    # No samples: the plot is still written (title only), never a crash.
    assert paths["rss.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["report.json"].read_text())["verdict"] == "ERROR"
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_fail_summary_lists_leaks_and_plot_draws_samples(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    t0 = time.time()
    samples = [
        {"t": t0 + i, "total_mb": 50.0 + i, "worker_mb": 40.0, "descendants": i % 3}
        for i in range(6)
    ]
    report = _report(
        "FAIL",
        leaked=[_leak(pid=99)],
        leaked_count=1,
        reasons=["1 leaked"],
        rss={
            "samples": samples,
            "session_marks": {"starts": [t0 + 1, t0 + 2], "ends": [t0 + 3]},
            "total_slope": {"mb_per_100_sessions": 1.0},
        },
    )
    paths = write_report(tmp_path / "fail", report, plot=True)
    assert paths["rss.png"].stat().st_size > 0
    assert "99" in paths["leaks.txt"].read_text()
    assert ET.parse(paths["junit.xml"]).getroot().get("failures") == "1"
    md = markdown_summary(report)
    assert md.startswith("## ❌ Soak FAIL") and "```" in md and "1-01:01:01" in md
    assert "worker+descendants 1.0 MB/100 sessions" in md


def test_the_plot_title_counts_sessions_as_the_summary_does():
    """A leaky soak of 40 sessions, one failed, was titled '39 sessions' (the completed ones)."""
    from harness.plot import plot_title

    title = plot_title(_report("FAIL", mode="leaky", sessions=40, completed=39, failed=1))
    assert title == "soak FAIL: reference (leaky), sessions 39/40 (failed 1)", title


def test_the_plot_marks_sessions_and_leaks_where_they_can_be_seen():
    """Session starts and ends were lines across the plot at alpha 0.08 (not to be seen at 40
    sessions), the leaked count was never drawn, and the legend inside the plot hid a short
    run's RSS peak."""
    import matplotlib.pyplot as plt

    from harness.plot import draw_rss

    samples = [
        {"t": 100.0 + i, "total_mb": 50.0 + i, "worker_mb": 40.0, "descendants": 1 + i,
         "leaked": i}
        for i in range(5)
    ]  # fmt: skip
    report = _report("FAIL", mode="leaky")
    report["rss"] = {"samples": samples,
                     "session_marks": {"starts": [100.5, 101.5], "ends": [102.5]}}  # fmt: skip
    fig = draw_rss(report)
    try:
        (legend,) = fig.legends  # the figure's, below the plot; none inside it
        labels = [text.get_text() for text in legend.get_texts()]
        assert {"session starts", "session ends", "leaked so far"} <= set(labels), labels
        assert all(axis.get_legend() is None for axis in fig.axes)
    finally:
        plt.close(fig)


def test_the_session_marks_of_a_long_run_stay_legible():
    """A 10-minute soak's 2875 session starts, a tick each, drew one solid bar along the bottom
    of rss.png: no burst or stall could be seen. Past what the axis has room for, the strip
    draws a count per time bin: never more marks than ~3 pixels each, and the gaps stay."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from harness.plot import draw_rss

    samples = [{"t": 100.0 + i, "total_mb": 50.0, "worker_mb": 40.0, "descendants": 1}
               for i in range(600)]  # fmt: skip
    # 2400 starts over 600 s, none in 300-360 s (a stall), then the ends 0.5 s later.
    starts = [100.0 + i / 4 for i in range(2400) if not 300 <= i / 4 < 360]
    report = _report("PASS")
    ends = [x + 0.5 for x in starts]
    report["rss"] = {"samples": samples, "session_marks": {"starts": starts, "ends": ends}}
    fig = draw_rss(report)
    try:
        (ax, _) = fig.axes
        fig.canvas.draw()
        room = ax.get_window_extent().width / 3
        ticks = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert all(len(c.get_segments()) <= room for c in ticks), [
            len(c.get_segments()) for c in ticks
        ]
        labels = [text.get_text() for text in fig.legends[0].get_texts()]
        assert any(t.startswith("session starts") for t in labels), labels
        assert any(t.startswith("session ends") for t in labels), labels
        # The stall still reads as a stall: the strip is empty at 330 s, drawn either side.
        bars = [p for p in ax.patches if p.get_label().startswith("session starts")]
        (bar,) = bars
        heights, edges = bar.get_data().values, bar.get_data().edges
        at = {
            x: heights[max(i for i, e in enumerate(edges[:-1]) if e <= x)] for x in (100, 330, 500)
        }
        assert at[330] == 0 and at[100] > 0 and at[500] > 0, at
    finally:
        plt.close(fig)


def test_the_step_summary_says_why_a_session_failed():
    """A leaky soak's session whose queue never drained: the terminal named it ('failed
    sessions: 1; the first: session 33: DrainTimeout ...'), the step summary only counted it."""
    failure = "session 33: DrainTimeout: worker session id 64: queue not drained after 60s"
    md = markdown_summary(_report("FAIL", failed=1, failures=[failure]))
    assert f"- failed sessions: 1; the first: {failure}" in md.splitlines()


def test_zombies_are_counted_as_the_verdict_counts_them():
    """The summary said "zombies 2" beside a reason of "1 zombie(s) left unreaped": the list
    holds every zombie seen, also one reaped after all."""
    zombies = [{**_leak(pid=7), "reaped": True}, {**_leak(pid=8), "reaped": False}]
    assert zombies_text(zombies) == "1 (1 more reaped late)"
    assert zombies_text(zombies[1:]) == "1" and zombies_text([]) == "0"
    assert "| 1 (1 more reaped late) |" in markdown_summary(_report("FAIL", zombies=zombies))


def test_junit_carries_the_warnings_of_a_pass(tmp_path, monkeypatch):
    """`soak --claude /bin/true` PASSes with a warning that nothing worked: the terminal, the
    report and the step summary said so, junit.xml (what a CI test report shows) did not."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    warning = "no queued message was processed (200 failed): every observer failed"
    paths = write_report(tmp_path / "w", _report("PASS", warnings=[warning]), plot=False)
    case = ET.parse(paths["junit.xml"]).getroot().find("testcase")
    assert case is not None and case.find("failure") is None and case.find("error") is None
    assert json.loads(case.find("system-out").text)["warnings"] == [warning]
    assert [e.text for e in case.findall("system-err")] == [f"warning: {warning}"]


def test_junit_failure_of_rss_growth_says_why_not_an_empty_table(tmp_path, monkeypatch):
    """A soak that FAILed on its worker's RSS growth alone wrote a failure whose body was the
    header of an empty leaks table: the CI view showed "PID PPID RSS(KB) ..." and nothing else."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    why = "RSS of worker grows >= 30.9 MB/100 sessions (the estimate less 2 standard errors)"
    paths = write_report(tmp_path / "g", _report("FAIL", reasons=[why]), plot=False)
    failure = ET.parse(paths["junit.xml"]).getroot().find("testcase/failure")
    assert failure is not None and failure.text == f"{why}\n", failure.text
    leaky = _report("FAIL", reasons=["1 process(es) leaked", why], leaked=[_leak()])
    paths = write_report(tmp_path / "l", leaky, plot=False)
    text = ET.parse(paths["junit.xml"]).getroot().find("testcase/failure").text
    assert text.startswith(f"1 process(es) leaked\n{why}\n\n"), text
    assert text.splitlines()[3].split()[:2] == ["PID", "PPID"] and " 4242 " in text, text


def test_write_report_without_plot_has_no_png(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    paths = write_report(tmp_path / "np", _report("PASS"), plot=False)
    assert "rss.png" not in paths and not (tmp_path / "np" / "rss.png").exists()
    assert "<failure" not in paths["junit.xml"].read_text()


SNAP = {
    "sessions_done": 4,
    "failed": 1,
    "live_descendants": 2,
    "leaked": 3,
    "total_rss": 120_000_000,
    "worker_rss": 40_000_000,
}


def test_rich_progress_renders_a_table_and_stops():
    stream = io.StringIO()
    prog = Progress(10, mode="rich", stream=stream)
    try:
        assert prog._live is not None
        prog.update(SNAP)
    finally:
        prog.close(SNAP)
    assert prog._live is None
    out = stream.getvalue()
    assert "leakproof soak" in out and "4/10" in out and "120 MB" in out


def test_auto_progress_is_plain_off_a_terminal_and_rate_limited(monkeypatch):
    stream = io.StringIO()
    prog = Progress(None, mode="auto", stream=stream)
    assert prog.mode == "plain"
    prog.update(SNAP)  # first line at once
    prog.update(SNAP)  # within the interval: nothing
    assert len(stream.getvalue().splitlines()) == 1
    monkeypatch.setattr(progress_mod, "PLAIN_INTERVAL_S", 0.0)
    prog.update({**SNAP, "sessions_done": 5})
    prog.close({**SNAP, "sessions_done": 6})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "sessions ended 6 (failed 1)" in lines[-1] and "leaked 3" in lines[-1]
    assert "/" not in lines[-1].split("ended")[1].split()[0]  # no total without one


def test_progress_says_why_a_time_boxed_run_goes_on():
    """Before: a --duration 12 soak printed lines for 24 s with no word on why (its sessions in
    flight were finishing, then their processes had their grace)."""
    from harness.soak import SoakRun, _stage
    from harness.soak_config import SoakConfig

    run = SoakRun(SoakConfig(duration=12.0, grace=5.0))
    run.started, run.completed, run.failed = 5, 1, 1
    assert _stage(run) == ""  # still starting sessions
    run.no_more = True
    assert _stage(run) == "time is up: finishing 3 session(s) in flight"
    run.completed = 4
    assert _stage(run) == "settling: up to 5 s for the last processes to go"
    counted = SoakRun(SoakConfig(sessions=5))
    counted.started, counted.no_more = 5, True
    assert _stage(counted).startswith("all started: finishing 5")
    stream = io.StringIO()
    Progress(None, mode="plain", stream=stream).update({**SNAP, "stage": _stage(run)})
    assert stream.getvalue().rstrip().endswith("| settling: up to 5 s for the last processes to go")


def test_progress_of_a_time_boxed_run_says_how_far_it_got():
    """Before: a --duration 600 soak's lines read "[soak 287s] sessions ended 1243": no total,
    and nothing said how much of the run was left."""
    stream = io.StringIO()
    prog = Progress(None, mode="plain", stream=stream, time_box=600.0)
    prog.update(SNAP)
    assert stream.getvalue().startswith("[soak      0s of 600 s] sessions ended 4 "), stream
    rich = io.StringIO()
    table = Progress(None, mode="rich", stream=rich, time_box=600.0)
    try:
        table.update(SNAP)
    finally:
        table.close(SNAP)
    assert "0 s of 600 s" in rich.getvalue()


def test_progress_names_a_session_long_in_flight():
    """Before: a leaky soak whose observers hang showed the same line for a minute per session
    (the harness waits up to the drain timeout for the queue, then gives the session up)."""
    import time

    from harness.soak import SLOW_SESSION_S, SoakRun, _stage
    from harness.soak_config import SoakConfig

    run = SoakRun(SoakConfig(sessions=10))
    run.drain_timeout = 60.0
    run.started = 2
    now = time.monotonic()
    run.in_flight = {4: now - 1.0, 3: now - SLOW_SESSION_S - 20.0}
    stage = _stage(run)
    assert stage.startswith("session 3 in flight for 3"), stage  # the oldest, 35 s
    given_up = "(one whose queue does not move for 60 s is given up; each message may take 2 turns"
    assert given_up + " of up to 10 s)" in stage, stage
    run.in_flight = {4: now - 1.0}
    assert _stage(run) == ""  # none slow: nothing said
    run.in_flight, run.no_more = {3: now - SLOW_SESSION_S - 1.0}, True
    assert _stage(run).startswith("all started: finishing 2 session(s) in flight; session 3 ")


def test_an_escapee_last_seen_a_zombie_reads_exited_once_gone():
    """Before: an escapee the harness's sweep ended read `status: zombie` in the report (its
    last sample), though nothing was left; one still a zombie (held elsewhere) says so."""
    import subprocess
    import sys

    import psutil
    from soak_helpers import wait_for

    from harness.report_assembly import _still_there

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        proc = psutil.Process(child.pid)
        create_time = proc.create_time()
        wait_for(lambda: proc.status() == psutil.STATUS_ZOMBIE, 30.0, "the child's exit")
        rec = ProcRecord(pid=child.pid, create_time=create_time, spawn_ts=create_time,
                         cmdline=["claude"], role="escapee", status="zombie")  # fmt: skip
        assert _still_there(rec)  # a zombie is still there: it reads "zombie"
        assert leak_entry(rec, "s", exited_as="")["status"] == "zombie"
    finally:
        child.wait(timeout=30)
    assert not _still_there(rec)  # reaped: gone
    assert leak_entry(rec, "s", exited_as="exited")["status"] == "exited"


def test_an_unwritable_step_summary_loses_only_the_summary(tmp_path, monkeypatch, capsys):
    """Before: a stale GITHUB_STEP_SUMMARY path raised after the whole soak."""
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "such" / "dir" / "s.md"))
    paths = write_report(tmp_path / "out", _report("PASS"), plot=False)
    assert json.loads(paths["report.json"].read_text())["verdict"] == "PASS"
    assert "GITHUB_STEP_SUMMARY" in capsys.readouterr().err


def test_summaries_say_what_was_not_measured_instead_of_printing_none():
    """A short run's slopes (a 2nd half of a few sessions) and a leaky run's latency (no session
    ended all its processes) printed as `-818.43 +- 114.822` and `p50 None ... (n=0)`."""
    from harness.report import latency_text, slopes_text

    short = {
        "slopes_judged": False,
        "min_sessions_span_judged": 50,
        "budget_mb_per_100_sessions": 16.0,
        "total_slope": {"mb_per_100_sessions": -818.43, "sessions_span": 7},
        "worker_slope": {"mb_per_100_sessions": 0.2, "sessions_span": 7},
    }
    text = slopes_text(short)
    assert text == (
        "RSS slope 2nd half: not judged (its 2nd half by time spans 7 sessions, fewer than 50 "
        "(--rss-min-span): run more sessions or a longer --duration)"
    )
    # Long enough, too few points: says that, not 'it spans 60 sessions, fewer than 50, or ...'.
    sparse = {
        **short,
        "total_slope": {"mb_per_100_sessions": 1.0, "sessions_span": 60, "points": 4},
        "worker_slope": {"mb_per_100_sessions": 0.2, "sessions_span": 60, "points": 12},
    }
    assert slopes_text(sparse) == "RSS slope 2nd half: not judged (4 points, fewer than 10)"
    judged = {**short, "slopes_judged": True}
    assert slopes_text(judged) == (
        "RSS slope 2nd half: worker+descendants -818.43 MB/100 sessions, worker 0.2 (budget 16.0)"
    )
    none = {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    assert latency_text(none) == "none measured (no session's processes were all gone)"
    assert latency_text({"n": 2, "p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0}) == (
        "p50 1.0 p95 2.0 p99 3.0 max 4.0 (n=2)"
    )
    report = _report("FAIL", rss=short, cleanup_latency_ms=none)
    md = markdown_summary(report)
    assert f"{text}; cleanup latency ms: none measured" in md and "-818" not in md


def test_a_leak_last_seen_as_a_zombie_reads_exited_among_the_leaks():
    """A leak the harness ended at the run's end was listed as "zombie" (with the RSS it had
    alive) while the report's `zombies` was empty."""
    rec = ProcRecord(pid=5, create_time=1.0, spawn_ts=1.0, status="zombie", exited_at=9.0)
    assert leak_entry(rec, None, exited_as="exited")["status"] == "exited"
    assert leak_entry(rec, None)["status"] == "zombie"  # as the zombies lists show it
    rec.status = "sleeping"  # last seen alive: said as seen
    assert leak_entry(rec, None, exited_as="exited")["status"] == "sleeping"


@pytest.mark.parametrize("blocked", ["report.json", "leaks.txt"])
def test_a_report_that_cannot_be_written_leaves_no_file_saying_pass(tmp_path, monkeypatch, blocked):
    """Written after the run (a full disk, a folder made meanwhile where a file goes): junit.xml
    and rss.png said PASS when report.json failed. Every file that can be written says ERROR."""
    from harness.report_assembly import write_report_or_error

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)  # cannot be written
    report = _report("PASS", reasons=[])
    write_report_or_error(out, report, plot=True)
    assert report["verdict"] == "ERROR" and report["exit_code"] == 2
    assert (
        f"the report could not be written: [Errno 21] Is a directory: '{out}"
        in (report["reasons"][-1 if blocked == "leaks.txt" else -2])
    )
    case = ET.parse(out / "junit.xml").getroot()
    assert case.get("errors") == "1", ET.tostring(case)
    assert (out / "rss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if blocked == "report.json":
        assert report["report_json_written"] is False
    else:
        assert json.loads((out / "report.json").read_text())["verdict"] == "ERROR"


def test_slopes_are_judged_up_to_the_last_sessions_start_not_a_hung_ones_end():
    """A 100-session soak whose last session hung until it was given up 60 s later: the drain
    was the whole 2nd half by time, and its slope 'spans 1 sessions' (never judged in CI)."""
    from harness.census import Sample
    from harness.report_assembly import driven_samples

    starts = [100.0 + i * 0.1 for i in range(100)]  # 10 s of starts
    samples = [
        Sample(t=100.0 + k * 0.25, sessions_done=min(99, int(k * 0.25 * 10)), total_rss=1,
               worker_rss=1, descendants=1, live_run=1, leaked=0)
        for k in range(int(70 / 0.25))
    ]  # fmt: skip
    driven = driven_samples(samples, starts, drive_end=170.0, t_first=starts[0])
    assert driven[0].t == 100.0 and driven[-1].t <= starts[-1]
    assert driven[-1].sessions_done >= 95  # the 2nd half by time now spans sessions


def test_a_latency_of_zero_says_the_processes_were_gone_by_the_sessions_end():
    """The fixed worker ends an observer before its SessionEnd call returns: p50 0.0 read as
    a figure not measured (a soak under stress, 2026-12-03)."""
    from harness.report import latency_text

    lat = {"n": 300, "p50": 0.0, "p95": 0.0, "p99": 12.5, "max": 40.1, "gone_by_end": 291}
    assert latency_text(lat) == (
        "p50 0.0 p95 0.0 p99 12.5 max 40.1 (n=300, 291 of them gone by their session's end)"
    )
    assert latency_text({**lat, "gone_by_end": 0}).endswith("(n=300)")
