"""`python -m harness`: a subcommand whose module is absent fails alone; usage errors; repro."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.cli import EXIT_HARNESS_ERROR, SUBCOMMANDS, main


def test_missing_subcommand_module_is_a_harness_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "ghost", ("harness._no_such_subcommand", "gone"))
    assert main(["ghost"]) == EXIT_HARNESS_ERROR
    assert capsys.readouterr().err == (
        "harness: the 'ghost' subcommand is not available: module harness._no_such_subcommand "
        "is missing from this installation\n"
    )
    # The other subcommands still parse: only the chosen one is imported.
    with pytest.raises(SystemExit) as exc:
        main(["repro", "--help"])
    assert exc.value.code == 0
    assert "--prompts" in capsys.readouterr().out


def test_a_broken_import_inside_a_subcommand_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lp_broken_subcommand.py").write_text("import lp_dependency_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(SUBCOMMANDS, "broken", ("lp_broken_subcommand", "imports what is absent"))
    with pytest.raises(ModuleNotFoundError) as exc:
        main(["broken"])
    assert exc.value.name == "lp_dependency_not_installed"


def test_repro_needs_two_prompts_to_show_growth(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["repro", "--prompts", "1"])
    assert exc.value.code == EXIT_HARNESS_ERROR
    assert "--prompts: must be >= 2, not 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["soak", "--sessions", "0"],
        ["soak", "--grace", "-1"],
        ["soak", "--duration", "nan"],
        ["soak", "--duration", "0m"],
        ["soak", "--sample-hz", "1"],
        ["bench", "--rounds", "0"],
        ["compare", "--concurrency", "0"],
        ["soak", "--mcp-servers", "-1"],
        ["repro", "--mcp-servers", "-1"],
    ],
)
def test_senseless_numbers_are_usage_errors(argv: list[str], capsys) -> None:
    """Before: --sessions 0 ran a soak of nothing and passed; --sample-hz 1 was a traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_HARNESS_ERROR
    assert "must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--scenarios", "nosuch", "unknown scenario 'nosuch'"),
        ("--scenarios", "ok=0", "every weight is 0"),
        ("--claude", "/nonexistent/claude", "not an executable file"),
        # A folder under a regular file: uncreatable everywhere (a path under /proc is
        # creatable on Windows, as C:\\proc\\...).
        ("--report", "{a_file}/sub", "cannot create the folder"),
        # Said as such: "cannot create the folder (File exists)" read as if a folder were there.
        ("--report", "{a_file}", "is a file, not a folder"),
    ],
)
def test_soak_refuses_what_cannot_test_anything_before_it_starts(
    option, value, says, capsys, tmp_path
):
    """Before: an unknown scenario made every fake exit with code 2, and the soak PASSed."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    value = value.format(a_file=a_file)
    t0 = time.monotonic()
    assert main(["soak", option, value, "--sessions", "2", "--progress", "none"]) == 2
    assert says in capsys.readouterr().err
    assert time.monotonic() - t0 < 30, "it ran the soak first"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX exec")
def test_soak_refuses_a_claude_the_kernel_cannot_exec(tmp_path, capsys) -> None:
    """`--claude ./script` without `#!`: every observer's exec failed ('Exec format error'),
    and the soak PASSed with a warning, having tested nothing of that claude."""
    claude = tmp_path / "noshebang"
    claude.write_text("echo hello\n")
    claude.chmod(0o755)
    assert main(["soak", "--claude", str(claude), "--sessions", "1", "--progress", "none"]) == 2
    assert f"--claude {claude}: the kernel cannot run it" in capsys.readouterr().err


def test_exec_problem_knows_scripts_and_binaries(tmp_path, monkeypatch) -> None:
    import proctree
    from proctree import _posix

    script, text = tmp_path / "script", tmp_path / "text"
    script.write_text("#!/bin/sh\nexit 0\n")
    text.write_text("exit 0\n")
    monkeypatch.setattr(_posix, "_BINFMT_MISC", str(tmp_path / "no-binfmt"))
    assert proctree.exec_problem(str(script)) is None
    assert proctree.exec_problem(os.path.realpath(sys.executable)) is None  # a binary
    assert "no '#!' line" in (proctree.exec_problem(str(text)) or "")
    # A `#!` interpreter that is itself a script runs if that one does (the kernel nests them).
    nested, broken = tmp_path / "nested", tmp_path / "broken"
    nested.write_text(f"#!{script}\n")
    broken.write_text(f"#!{text}\n")
    for path in (script, text, nested, broken):
        path.chmod(0o755)
    assert proctree.exec_problem(str(nested)) is None
    assert "no '#!' line" in (proctree.exec_problem(str(broken)) or "")
    # Formats registered with binfmt_misc may run anything: nothing is said then.
    (tmp_path / "binfmt").mkdir()
    for name in ("register", "status", "python3.11"):
        (tmp_path / "binfmt" / name).write_text("")
    monkeypatch.setattr(_posix, "_BINFMT_MISC", str(tmp_path / "binfmt"))
    assert proctree.exec_problem(str(text)) is None


def test_soak_mcp_servers_are_the_fakes(capsys) -> None:
    # With the user's own claude there is no fake to start them: said, not silently ignored.
    argv = ["soak", "--claude", sys.executable, "--mcp-servers", "1", "--sessions", "1"]
    assert main([*argv, "--progress", "none"]) == 2
    assert "cannot be used with --claude" in capsys.readouterr().err


def test_soak_claude_by_name_is_looked_up_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--claude NAME` finds NAME on PATH, as a shell would (it was taken as a relative path)."""
    from harness.soak_config import claude_path

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if sys.platform == "win32":  # found through PATHEXT
        exe = bin_dir / "my-claude.bat"
        exe.write_text("@exit /b 0\r\n")
    else:
        exe = bin_dir / "my-claude"
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(tmp_path)
    assert os.path.samefile(claude_path("my-claude"), exe)
    assert claude_path(str(Path("bin", exe.name))) == Path("bin", exe.name)  # a path stays one
    assert claude_path("not-on-path") == Path("not-on-path")
    assert main(["soak", "--claude", "not-on-path", "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert f"--claude not-on-path: not a command on PATH, nor an executable file {tmp_path}" in err
    if sys.platform != "win32":  # there an executable is one by its name's suffix
        exe.chmod(0o644)  # "./bin/my-claude": said with the folder it was looked for in
        assert main(["soak", "--claude", "./bin/my-claude", "--progress", "none"]) == 2
        assert f"--claude {exe}: not an executable file" in capsys.readouterr().err


def test_repro_from_the_command_line_says_ok(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("worker")
    assert main(["repro", "--prompts", "2", "--grace", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("after prompt") == 2
    assert out.rstrip().endswith("leak reproduced: yes; fix held: yes -> OK")


def test_a_soak_is_time_boxed_in_minutes_or_hours() -> None:
    """`soak --duration 10m` was a usage error ("expected a number"): a long soak is asked for
    in minutes or hours, not as a sum of seconds."""
    import argparse

    from harness import soak

    parser = argparse.ArgumentParser()
    soak.add_arguments(parser)
    assert parser.parse_args(["--duration", "10m"]).duration == 600
    assert parser.parse_args(["--duration", "1.5h"]).duration == 5400
    assert parser.parse_args(["--duration", "45"]).duration == 45
