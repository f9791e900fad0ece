"""Scenario spec grammar and the tolerant argv parser (pure functions, property-tested)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake_claude.args import parse
from fake_claude.scenario import (
    FLAG_WORDS,
    LEAVES,
    NAMES,
    PARAMS,
    POINTS,
    ScenarioError,
    draw_index,
    load_file,
    parse_spec,
    resolve_mix,
    validate_spec,
)

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=8)
number = st.integers(0, 10**4).map(str) | st.floats(0, 1e4).map(lambda f: f"{f:g}")
VALUES = {
    "text": token,
    "flag": st.sampled_from(FLAG_WORDS),
    "point": st.sampled_from(POINTS),
    "turn": st.integers(0, 99).map(str) | st.just("every"),
    "signal": st.sampled_from(["KILL", "SEGV", "abrt", "SIGTERM"]),
    "count": st.integers(0, 10**4).map(str),
    "code": st.integers(0, 255).map(str),
    "seconds": number,
    "mb": number,
    "leaf": st.sampled_from(LEAVES),
}


@st.composite
def part(draw):
    name = draw(st.sampled_from([n for n in NAMES if n != "mix"]))
    keys = draw(st.lists(st.sampled_from(list(PARAMS[name]) or [""]), unique=True, max_size=3))
    return name, {k: draw(VALUES[PARAMS[name][k]]) for k in keys if k}


@given(st.lists(part(), min_size=1, max_size=4, unique_by=lambda p: p[0]))
def test_spec_round_trips(parts):
    spec = "+".join(
        name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
        for name, params in parts
    )
    sc = parse_spec(spec)
    assert [n for n, _ in parts] == list(sc.parts)
    assert parse_spec(sc.spec()).parts == sc.parts


@pytest.mark.parametrize(
    "bad",
    [
        "nonsense", "hang:at=nowhere", "crash:code", "ok+bogus:x=1",
        # Parameters: each crashed every fake at its start, or was silently the default.
        "grandchild:n=abc", "grandchild:n=-3", "grandchild:n=1.5", "hang:foo=1",
        "hang:turn=first", "crash:signal=NOPE", "crash:code=256", "ballast:mb=nan",
        "escape:scrub=maybe", "slow:latency=-1", "ignore-eof:x=1",
    ],
)  # fmt: skip
def test_bad_specs_are_rejected(bad):
    with pytest.raises(ScenarioError):
        parse_spec(bad)
    with pytest.raises(ScenarioError):
        validate_spec(bad)


@pytest.mark.parametrize(
    "bad", ["mix:bogus=1", "mix:ok=0", "mix:ok=-1", "mix:ok=x", "mix:ok=nan", "mix:ok=inf"]
)
def test_mixes_that_cannot_draw_are_rejected_before_and_at_the_draw(bad):
    with pytest.raises(ScenarioError):
        validate_spec(bad)
    with pytest.raises(ScenarioError):  # the fake itself says so too, not a traceback
        resolve_mix(parse_spec(bad), "1", "k")


@pytest.mark.parametrize("spec", ["", " ", "ok+", "+", "+hang", "ok+ +hang"])
def test_a_spec_that_lost_a_part_is_refused_where_many_fakes_would_run_it(spec):
    # A soak's --scenarios "$UNSET" or "ok+": the fake itself reads them as `ok` (its default
    # when nothing is set), but a soak of them would test something the user did not ask for.
    parse_spec(spec)
    with pytest.raises(ScenarioError, match="empty"):
        validate_spec(spec)


@pytest.mark.skipif(sys.platform != "win32", reason="chain runs where there is fork")
@pytest.mark.parametrize("spec", ["chain", "ok+chain:depth=2", "mix:ok=1,chain=1"])
def test_chain_is_refused_on_windows(spec):
    # The fake skips it there (no fork): a soak of it tested nothing and passed.
    with pytest.raises(ScenarioError, match="Windows"):
        validate_spec(spec)


@pytest.mark.parametrize("good", ["mix", "mix:ok=1,hang=0", "ok+hang:at=mid-turn", "escape"])
def test_runnable_specs_validate(good):
    validate_spec(good)


@given(st.integers(0, 10**6), st.integers(0, 500))
def test_mix_draw_is_a_function_of_seed_and_key(seed, key):
    sc = parse_spec("mix:ok=1,hang=1,crash=1,grandchild=1")
    a = resolve_mix(sc, str(seed), str(key)).spec()
    b = resolve_mix(sc, str(seed), str(key)).spec()
    assert a == b
    assert a.split(":")[0] in {"ok", "hang", "crash", "grandchild"}


def test_draw_index_counts_up(tmp_path):
    ledger = str(tmp_path / "l.jsonl")
    assert [draw_index(ledger) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert draw_index(None) == 0


@given(st.text(max_size=20).filter(lambda v: not v.startswith("-")))
def test_unknown_flag_value_forms(value):
    a = parse(["--mystery=" + value, "--setting-sources", "", "--other", "x" + value])
    assert a.value("--mystery") == value
    assert a.value("--setting-sources") == ""
    assert a.value("--other") == "x" + value


def test_run_id_is_taken_from_argv():
    a = parse(["--fake-claude-run-id=abc123def456", "--verbose", "-p", "hi"])
    assert a.run_id == "abc123def456"
    assert a.has("--verbose", "-p") and a.positional == ["hi"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.json", '{"parts": [{"nam": "ok"}]}'),
        ("b.json", "[1, 2]"),
        ("c.json", "{not json"),
        ("d.toml", "spec = [1"),
    ],
)
def test_malformed_scenario_files_are_scenario_errors(tmp_path, name, content):
    """Before: the fake died with a KeyError or a decoder traceback instead of `bad scenario`."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ScenarioError):
        load_file(str(path))
    with pytest.raises(ScenarioError):
        load_file(str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    "flags",
    [["--scenario", "nosuch"], ["--scenario", "mix:ok=0"], ["--scenario", "grandchild:n=abc"]],
)
def test_shim_refuses_a_scenario_no_run_could_use(tmp_path, flags, capsys):
    from fake_claude.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["shim", str(tmp_path / "bin"), *flags])
    assert exc.value.code == 2
    assert "scenario" in capsys.readouterr().err
    assert not (tmp_path / "bin").exists()


def test_shim_into_a_file_is_a_usage_error(tmp_path, capsys):
    """It was a FileExistsError traceback."""
    from fake_claude.cli import main

    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["shim", str(afile)])
    assert exc.value.code == 2
    assert "is not a folder" in capsys.readouterr().err
    assert afile.read_text() == "mine"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--python", "/nonexistent/python3"], "--python /nonexistent/python3: not an executable"),
        (["--ledger", "/proc/self/none/ledger.jsonl"], "its folder cannot be made or written to"),
        (["--scenario", "mix:mix=1"], "a mix cannot hold another mix"),
    ],
)
def test_shim_refuses_settings_every_run_of_it_would_fail_on(tmp_path, flags, said, capsys):
    """They were written into the shim, and each run of it then failed (exec: not found, a
    ledger write error per line) or said `unknown scenario 'mix'` beside a list holding mix."""
    from fake_claude.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["shim", str(tmp_path / "bin"), *flags])
    assert exc.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "bin").exists()


def test_a_crash_by_kill_is_a_valid_spec_where_the_signal_module_lacks_sigkill(monkeypatch):
    # Windows' signal module has no SIGKILL or SIGHUP: there `crash:signal=KILL` (also a draw
    # of the default mix) was refused, or crashed the fake with an AttributeError.
    import signal

    from fake_claude.scenario import signal_number

    monkeypatch.delattr(signal, "SIGKILL")
    monkeypatch.delattr(signal, "SIGHUP", raising=False)
    validate_spec("crash:at=mid-turn,signal=KILL")
    validate_spec("crash:signal=SIGHUP")
    assert signal_number("kill") == 9 and signal_number("HUP") == 1
    assert signal_number("SEGV") == int(signal.SIGSEGV)
    with pytest.raises(ScenarioError):
        validate_spec("crash:signal=DFL")  # SIG_DFL is a handler, not a signal
