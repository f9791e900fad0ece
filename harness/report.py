"""Writing a soak report folder: report.json, leaks.txt, rss.png, junit.xml, step summary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import proctree
from harness.census import ProcRecord
from harness.text import printable, printable_argv
from harness.verdict import MIN_SLOPE_POINTS, RUNNING


def format_elapsed(seconds: float) -> str:
    """ps's ELAPSED format: [[dd-]hh:]mm:ss."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours:02d}:{minutes:02d}:{s:02d}"
    return f"{minutes:02d}:{s:02d}"


def leak_entry(
    rec: ProcRecord, session: str | None, now: float | None = None, exited_as: str = ""
) -> dict[str, Any]:
    """One process as the report lists it, with the status it was last seen in. `exited_as`:
    that of one last seen as a zombie (a leak the harness ended at the run's end reads
    "exited", not "zombie": the report's `zombies` are the zombies the run left)."""
    now = proctree.now() if now is None else now
    # Its age at `now` (a soak's: its last judgement), or when it exited before then: a leak
    # the harness's sweep ended later would otherwise be aged up to its kill, each to another
    # moment.
    end = now if rec.exited_at is None else min(rec.exited_at, now)
    return {
        "pid": rec.pid,
        "create_time": rec.create_time,
        "ppid": rec.ppid,
        "rss": rec.rss,
        "age": round(max(0.0, end - rec.spawn_ts), 3),
        "cmdline": printable_argv(rec.cmdline),
        "scenario": rec.scenario,
        "role": rec.role,
        "session": session,
        "escaped": rec.escaped,
        "reason": rec.leak_reason,
        # seen live in the process table (False: known from the ledger only)
        "observed": rec.proc is not None,
        "status": exited_as if exited_as and rec.status == "zombie" else rec.status,
    }


# Why a process the census never saw is in the report's leaks (see swept_leak_entry).
UNSEEN_REASON = "alive after the worker's stop and the grace; unseen by the census until then"


def swept_leak_entry(killed: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A process of the run that the exit sweep killed and the census had no record of, as the
    report lists a leak (its facts as the sweep read them, stopped before its kill)."""
    rec = ProcRecord(
        pid=killed["pid"],
        create_time=killed["create_time"],
        spawn_ts=killed["create_time"],
        cmdline=killed.get("cmdline") or [],
        ppid=killed.get("ppid"),
        status="killed",
        leak_reason=UNSEEN_REASON,
    )
    # Seen live by the sweep; an RSS it could not read stays unknown (None), not 0.
    return {**leak_entry(rec, None, now), "rss": killed.get("rss"), "observed": True}


def leaks_table(
    leaked: list[dict[str, Any]],
    width: int | None = 200,
    limit: int | None = None,
    *,
    where: bool = True,
    middle: bool = True,
) -> str:
    """PID PPID RSS ELAPSED COMMAND, as in issue #603's table; a soak's leaks also say their
    session and fault scenario where known (to tell which kind of session leaks without
    report.json; a claude-mem 9.0.0 or 10.x run knows the scenario only). `where=False`: the
    issue's five columns alone (the repro's tables).
    `width`: the longest COMMAND shown (None: whole, as in leaks.txt, where it is the last column),
    cut in its middle (`middle`) or at its end.
    `limit`: the oldest that many, and a last line saying how many more leaks.txt lists."""
    cols: list[tuple[str, int]] = []
    for key in ("session", "scenario") if where else ():
        if any(e.get(key) for e in leaked):
            size = max([len(str(e.get(key) or "-")) for e in leaked] + [len(key)])
            cols.append((key, min(size, 40)))
    head = "".join(f" {key.upper():<{size}}" for key, size in cols)
    lines = [f"{'PID':>8} {'PPID':>8} {'RSS(KB)':>9} {'ELAPSED':>10}{head} COMMAND"]
    # Oldest first, as they were started (`ps` order), not in the order the census judged them.
    # Within a tick of create_time (10 ms) by pid, as `ps` lists them.
    rows = sorted(
        leaked, key=lambda e: (e.get("create_time") is None, e.get("create_time") or 0, e["pid"])
    )
    for e in rows[:limit]:
        cmd = " ".join(e.get("cmdline") or []) or "?"  # leak_entry: printable
        cmd = cmd if width is None else _cut(cmd, width, middle=middle)
        extra = "".join(f" {_cut(str(e.get(key) or '-'), size):<{size}}" for key, size in cols)
        lines.append(
            f"{e['pid']:>8} {e.get('ppid') or '?':>8} {int(e.get('rss') or 0) // 1024:>9} "
            f"{format_elapsed(e.get('age') or 0):>10}{extra} {cmd}"
        )
    if len(rows) > len(lines) - 1:
        lines.append(f"... and {len(rows) - (len(lines) - 1)} more (leaks.txt lists them all)")
    return "\n".join(lines) + "\n"


def _cut(text: str, size: int, *, middle: bool = False) -> str:
    """At most `size` characters; a cut one says so, so that a cut argument is not read as the
    real one. `middle`: cut in the middle, since a command's program and its last arguments both
    tell processes apart (an interpreter's long path alike in every row, a `--resume ID` at the
    end)."""
    if len(text) <= size:
        return text
    head = (size - 1) // 2 if middle else size - 1
    return text[:head] + "…" + text[len(text) - (size - 1 - head) :]


def target_text(report: dict[str, Any]) -> str:
    """The target, with its mode where it has one: "reference (fixed)", "claude-mem"."""
    mode = report.get("mode")
    return f"{report.get('target')} ({mode})" if mode else str(report.get("target"))


def write_junit(path: Path, report: dict[str, Any]) -> None:
    verdict = report["verdict"]
    suite = ET.Element(
        "testsuite",
        name="leakproof-soak",
        tests="1",
        failures="1" if verdict == "FAIL" else "0",
        errors="1" if verdict not in ("PASS", "FAIL") else "0",
        time=f"{report.get('duration_s', 0):.3f}",
    )
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"soak.{report.get('target')}",
        name=f"{report.get('mode') or report.get('target')}-{report.get('sessions')}-sessions",
        time=f"{report.get('duration_s', 0):.3f}",
    )
    message = printable("; ".join(report.get("reasons", [])) or verdict)
    if verdict == "FAIL":
        el = ET.SubElement(case, "failure", message=message)
        # The body is what a CI test view shows first: the reasons, one a line, then the leaks
        # when there are any (a FAIL on RSS growth alone showed an empty table's header).
        reasons = "".join(f"{printable(r)}\n" for r in report.get("reasons", []))
        leaked = report.get("leaked") or []
        el.text = reasons + (f"\n{leaks_table(leaked, width=None)}" if leaked else "")
    elif verdict != "PASS":
        ET.SubElement(case, "error", message=message)
    ET.SubElement(case, "system-out").text = json.dumps(
        {
            k: report.get(k)
            for k in ("leaked_count", "completed", "failed", "cleanup_latency_ms", "warnings")
        }
    )
    # What makes a verdict weaker than it looks (a PASS in which no observer worked), where a CI
    # test report shows it: a passed case's system-out is often not shown.
    if warnings := report.get("warnings"):
        ET.SubElement(case, "system-err").text = "\n".join(
            f"warning: {printable(w)}" for w in warnings
        )
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


# What a target's containment facts name, in the words a reader knows them by.
_HELD_BY = (
    ("subreaper", "subreaper"),
    ("observer_subreapers", "observer subreapers"),
    ("pdeathsig", "parent-death signal"),
    ("cgroups", "cgroup cells"),
    ("guardian", "guardian"),
)


def facts_text(facts: dict[str, Any]) -> str:
    """One line on what the target said about itself ('' when it said nothing)."""
    parts = []
    for key, value in facts.items():
        if key == "containment" and isinstance(value, dict):
            held = [name for k, name in _HELD_BY if value.get(k)]
            parts.append(f"containment: {', '.join(held) or 'none'}")
        elif value not in (None, "", [], {}):
            parts.append(f"{key.replace('_', ' ')}: {printable(str(value))}")
    return "; ".join(parts)


def _slope_text(slope: dict[str, Any]) -> str:
    """`12.3 +- 4.5`: the estimate and its standard error (the verdict judges estimate - 2 SE)."""
    if slope.get("stderr_mb_per_100_sessions") is None:
        return str(slope.get("mb_per_100_sessions"))
    return f"{slope['mb_per_100_sessions']} +- {slope['stderr_mb_per_100_sessions']}"


def peak_text(rss: dict[str, Any]) -> str:
    """`peak N MB (budget B)`, or "" when no peak was measured."""
    peak = rss.get("peak_total_mb")
    if peak is None:
        return ""
    budget = rss.get("peak_budget_mb")
    return f"peak {peak} MB ({'no budget' if budget is None else f'budget {budget}'})"


def slopes_text(rss: dict[str, Any]) -> str:
    """The 2nd half's RSS slopes, or why they were not judged (the figures of a short 2nd half
    mean nothing: they stay in report.json, out of the summaries)."""
    total, worker = rss.get("total_slope") or {}, rss.get("worker_slope") or {}
    if not rss.get("slopes_judged", True) or total.get("mb_per_100_sessions") is None:
        span = min(total.get("sessions_span") or 0, worker.get("sessions_span") or 0)
        min_span = rss.get("min_sessions_span_judged")
        points = min(total.get("points") or 0, worker.get("points") or 0)
        # Which of the two it was (verdict.slopes_judged): the run's figures say.
        if min_span is not None and span < min_span:
            why = (f"its 2nd half by time spans {span:g} sessions, fewer than {min_span:g} "
                   "(--rss-min-span): run more sessions or a longer --duration")  # fmt: skip
        elif "points" in total and points < MIN_SLOPE_POINTS:
            why = f"{points} points, fewer than {MIN_SLOPE_POINTS}"
        else:
            why = "too short, or too few samples"
        return f"RSS slope 2nd half: not judged ({why})"
    return (
        f"RSS slope 2nd half: worker+descendants {_slope_text(total)} MB/100 sessions, worker "
        f"{_slope_text(worker)} (budget {rss.get('budget_mb_per_100_sessions')})"
    )


def latency_text(lat: dict[str, Any]) -> str:
    """Cleanup latency percentiles (ms), or why there are none."""
    if not lat.get("n"):
        return "none measured (no session's processes were all gone)"
    figures = " ".join(f"{k} {lat.get(k)}" for k in ("p50", "p95", "p99", "max"))
    counts = f"n={lat['n']}"
    if lat.get("gone_by_end"):
        counts += f", {lat['gone_by_end']} of them gone by their session's end"
    missing = lat.get("not_measured") or 0
    if missing:
        return (f"{figures} ({counts}; {missing} more session(s) not measured: their "
                "processes were not all seen gone while the run was judged)")  # fmt: skip
    return f"{figures} ({counts})"


def cut_off(report: dict[str, Any]) -> int:
    """Sessions started that neither completed nor failed: an interrupt or a harness error cut
    them off (the worker still ended them, so the cleanup-latency line counts them)."""
    done = (report.get("completed") or 0) + (report.get("failed") or 0)
    return max(0, (report.get("started") or 0) - done)


def sessions_text(report: dict[str, Any]) -> str:
    """Sessions completed of those asked for, failed, and cut off."""
    cut = cut_off(report)
    cut_text = f", {cut} more started and cut off" if cut else ""
    return (f"{report.get('completed')}/{report.get('sessions')} "
            f"(failed {report.get('failed')}{cut_text})")  # fmt: skip


def zombies_text(zombies: list[dict[str, Any]]) -> str:
    """Those left unreaped (what the verdict counts), and how many more were reaped late."""
    late = sum(1 for z in zombies if z.get("reaped"))
    left = len(zombies) - late
    return f"{left} ({late} more reaped late)" if late else str(left)


def kept_work_text(report: dict[str, Any]) -> str:
    """What a kept work folder holds: no ledger after a `--claude` run (its claude writes none)."""
    own_claude = (report.get("config") or {}).get("claude")
    return f"worker log, database{'' if own_claude else ', ledger'}"


def markdown_summary(report: dict[str, Any]) -> str:
    icon = {"PASS": "✅", "FAIL": "❌"}.get(report["verdict"], "⚠️")
    lat = report.get("cleanup_latency_ms") or {}
    rss = report.get("rss") or {}
    lines = [
        f"## {icon} Soak {report['verdict']}: {target_text(report)}",
        "",
        "| sessions | completed | failed | leaked | zombies | escaped | peak descendants |",
        "|---|---|---|---|---|---|---|",
        f"| {report.get('sessions')} | {report.get('completed')} | {report.get('failed')} | "
        f"{report.get('leaked_count')} | {zombies_text(report.get('zombies', []))} | "
        f"{len(report.get('escaped', []))} | {report.get('peak_descendants')} |",
        "",
        f"{'; '.join(filter(None, [slopes_text(rss), peak_text(rss)]))}; "
        f"cleanup latency ms: {latency_text(lat)}; {report.get('sessions_per_s')} sessions/s.",
    ]
    if cut := cut_off(report):
        lines += ["", f"{cut} more session(s) started and were cut off before they completed."]
    if report.get("work_dir"):
        lines += ["", f"Work folder kept ({kept_work_text(report)}): `{report['work_dir']}`"]
    facts = facts_text(report.get("target_facts") or {})
    if facts:
        lines += ["", f"Target: {facts}."]
    for reason in report.get("reasons", []):
        lines.append(f"- {reason}")
    if report.get("failures"):  # as the terminal says it
        first = printable(report["failures"][0])
        lines.append(f"- failed sessions: {report.get('failed')}; the first: {first}")
    for warning in report.get("warnings", []):
        lines.append(f"- warning: {warning}")
    if report.get("leaked"):
        lines += ["", "```", leaks_table(report["leaked"], limit=50).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Whole or not at all: a half-written report must never be read."""
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(report, indent=2, default=str))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def begin_report(directory: Path, run_id: str) -> None:
    """Before a run: take away an earlier run's files and say in report.json that this one has
    not finished. An interrupt or a kill before the end then leaves no earlier verdict to be read
    as this run's. OSError if report.json cannot be written (found before the run, not after)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("leaks.txt", "junit.xml", "rss.png"):
        (directory / name).unlink(missing_ok=True)
    write_json(directory / "report.json", {
        "verdict": RUNNING, "run_id": run_id, "started": round(proctree.now(), 3),
        "reasons": ["the run has not finished (or its harness was killed): not a result"],
    })  # fmt: skip


def write_report(
    directory: Path, report: dict[str, Any], plot: bool = True, best_effort: bool = False
) -> dict[str, Path]:
    """report.json, leaks.txt, junit.xml, rss.png and the CI summary; OSError if one of the
    files cannot be written (report.json, written last, then is not). `best_effort`: write each
    file that can be, raise nothing (after a failure, to make the others say so too)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "report.json": directory / "report.json",
        "leaks.txt": directory / "leaks.txt",
        "junit.xml": directory / "junit.xml",
    }

    def plot_or_remove() -> None:
        if plot:
            from harness.plot import plot_rss

            paths["rss.png"] = plot_rss(directory / "rss.png", report)
        else:
            # An earlier run's plot beside this run's report would be read as this run's.
            (directory / "rss.png").unlink(missing_ok=True)

    steps = [
        lambda: paths["leaks.txt"].write_text(
            leaks_table(report.get("leaked", []), width=None), "utf-8"
        ),
        lambda: write_junit(paths["junit.xml"], report),
        plot_or_remove,
        # Last: when another file cannot be written, the report that is written says so instead.
        lambda: write_json(paths["report.json"], report),
    ]
    for step in steps:
        try:
            step()
        except OSError:
            if not best_effort:
                raise
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown_summary(report))
        except OSError as exc:  # the report itself is written; only the CI summary is lost
            print(f"harness: GITHUB_STEP_SUMMARY {summary}: cannot append ({exc})", file=sys.stderr)
    return paths
