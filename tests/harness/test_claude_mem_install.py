"""claude-mem's installer against a stand-in `npm` on PATH: install plan, private HOME, errors.

The stand-in is a real executable (a Python script) that lays out what `npm install` would
(`node_modules/claude-mem/plugin/scripts/worker-service.cjs`, `node_modules/bun/bin/bun.exe`) and
records each call with the environment it got, so the tests see exactly what the installer ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import claude_mem_install as install

# argv[1:] is "install SPEC --no-save ...". FAKE_NPM_MODE: ok | fail | hang | empty.
_FAKE_NPM = """\
import json, os, sys, time
from pathlib import Path
log = Path(os.environ["FAKE_NPM_LOG"])
with log.open("a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                         "env": {k: os.environ.get(k) for k in (
                             "HOME", "USERPROFILE", "npm_config_cache",
                             "npm_config_userconfig", "npm_config_audit")}}) + "\\n")
mode = os.environ.get("FAKE_NPM_MODE", "ok")
if mode == "fail":
    sys.stderr.write("npm ERR! code E404\\nnpm ERR! 404 Not Found - claude-mem@0.0.0\\n")
    sys.exit(1)
if mode == "hang":
    time.sleep(120)
if mode == "empty":
    sys.exit(0)
spec = sys.argv[2]
name, _, version = spec.partition("@")
mods = Path.cwd() / "node_modules"
if name == "bun":
    exe = mods / "bun" / "bin" / "bun.exe"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\\n")
    exe.chmod(0o755)
else:
    plugin = mods / name / "plugin"
    (plugin / "scripts").mkdir(parents=True, exist_ok=True)
    (plugin / "scripts" / "worker-service.cjs").write_text("// worker\\n")
    (plugin / ".claude-plugin").mkdir(exist_ok=True)
    (plugin / ".claude-plugin" / "plugin.json").write_text(json.dumps({"version": version}))
"""


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a stand-in node and npm; returns npm's call log."""
    if sys.platform == "win32":
        pytest.skip("the stand-in npm is a POSIX script (#! line)")
    bindir = tmp_path / "bin"
    _exe(bindir / "node", "#!/bin/sh\nexit 0\n")
    _exe(bindir / "npm", f"#!{sys.executable}\n{_FAKE_NPM}")
    log = tmp_path / "npm-calls.jsonl"
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    monkeypatch.delenv("FAKE_NPM_MODE", raising=False)
    return log


def _calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_install_once_into_the_cache_with_a_private_home(npm: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    assert not install.is_cached("13.25.3", root)
    inst = install.ensure_claude_mem("13.25.3", root)
    assert inst.version == "13.25.3"
    assert inst.plugin == root / "13.25.3" / "node_modules" / "claude-mem" / "plugin"
    assert inst.bun == root / "bun" / "node_modules" / "bun" / "bin" / "bun.exe"
    assert install.installed_version(inst.plugin) == "13.25.3"
    assert install.is_cached("13.25.3", root)

    calls = _calls(npm)
    assert [c["argv"][:2] for c in calls] == [["install", "claude-mem@13.25.3"], ["install", "bun"]]
    assert calls[0]["argv"][2:] == ["--no-save", "--ignore-scripts", "--legacy-peer-deps"]
    assert calls[0]["cwd"] == str(root / "13.25.3")
    assert calls[1]["cwd"] == str(root / "bun")
    home = str(root / "npm-home")
    for call in calls:  # npm never sees the real HOME, nor writes its cache or rc file there
        assert call["env"] == {
            "HOME": home,
            "USERPROFILE": home,
            "npm_config_cache": str(Path(home) / ".npm"),
            "npm_config_userconfig": str(Path(home) / ".npmrc"),
            "npm_config_audit": "false",
        }
    assert json.loads((root / "13.25.3" / "package.json").read_text()) == {"private": True}

    # Cached: a second call runs npm no more.
    assert install.ensure_claude_mem("13.25.3", root) == inst
    assert len(_calls(npm)) == 2


def test_not_a_version_is_refused_before_npm_runs(npm: Path, tmp_path: Path) -> None:
    for bad in ("latest", "13.25", "1.2.3; rm -rf /", "../13.25.3"):
        with pytest.raises(install.InstallError, match="not a version"):
            install.ensure_claude_mem(bad, tmp_path / "cache")
    assert _calls(npm) == []


def test_npm_failure_names_the_spec_and_the_tail_of_its_output(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_MODE", "fail")
    with pytest.raises(install.InstallError) as err:
        install.ensure_claude_mem("0.0.0", tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith("npm install claude-mem@0.0.0 failed (1): ")
    assert "npm ERR! code E404 | npm ERR! 404 Not Found - claude-mem@0.0.0" in msg
    # Before: the failed version's folder stayed in the cache, empty but for a package.json.
    assert not (tmp_path / "cache" / "0.0.0").exists()
    # A folder that was there before the failed install is left as it was.
    kept = tmp_path / "cache" / "0.0.1"
    kept.mkdir(parents=True)
    with pytest.raises(install.InstallError):
        install.ensure_claude_mem("0.0.1", tmp_path / "cache")
    assert kept.is_dir()


def test_an_install_that_leaves_no_plugin_or_no_bun_is_an_error(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_MODE", "empty")  # npm exits 0 but installs nothing
    root = tmp_path / "cache"
    with pytest.raises(install.InstallError, match=r"claude-mem@1\.2\.3 installed without plugin"):
        install.ensure_claude_mem("1.2.3", root)
    with pytest.raises(install.InstallError, match="npm installed bun but no binary"):
        install.ensure_bun(root)
    assert install.bun_binary(root) is None
    assert not (root / "1.2.3").exists() and not (root / "bun").exists()


def test_npm_that_hangs_is_cut_at_the_install_timeout(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_MODE", "hang")
    monkeypatch.setattr(install, "INSTALL_TIMEOUT_S", 1.0)
    with pytest.raises(install.InstallError, match=r"npm install bun timed out after 1 s"):
        install.ensure_bun(tmp_path / "cache")  # subprocess.run kills and reaps the stand-in


def test_without_node_or_npm_nothing_can_be_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert install.why_unavailable() == "node is not on PATH (claude-mem and bun come from npm)"
    assert install.main(["13.25.3"]) == 3
    assert "cannot install: node is not on PATH" in capsys.readouterr().err
    # tox -e claude-mem-tests: the install step skips; the tests then say why (or fail in CI).
    assert install.main(["--skip-if-unavailable", "13.25.3"]) == 0
    assert capsys.readouterr().out == "SKIPPED claude-mem install: node is not on PATH " + (
        "(claude-mem and bun come from npm)\n"
    )
    with pytest.raises(install.InstallError, match="npm is not on PATH") as err:
        install.ensure_bun(tmp_path / "cache")
    # What is missing, and what to do (it said "npm is not on PATH" and no more).
    assert f"bun is not in the cache {tmp_path / 'cache'} yet" in str(err.value)
    assert "python3 ci/install_node.py" in str(err.value)

    if sys.platform != "win32":
        _exe(empty / "node", "#!/bin/sh\nexit 0\n")
        assert install.why_unavailable() == "npm is not on PATH (claude-mem and bun come from npm)"


def test_main_installs_each_version_and_prints_its_paths(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install.main([]) == 2
    assert "usage: python -m harness.claude_mem_install [-h] [--skip-if-unavailable]" in (
        capsys.readouterr().err
    )

    root = tmp_path / "cache"
    monkeypatch.setenv("LEAKPROOF_CLAUDE_MEM_CACHE", str(root))
    assert install.cache_dir() == root
    assert install.why_unavailable() is None
    assert install.main(["10.6.3", "13.25.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    bun = root / "bun" / "node_modules" / "bun" / "bin" / "bun.exe"
    assert out == [
        f"claude-mem {v}: plugin={root / v / 'node_modules' / 'claude-mem' / 'plugin'} bun={bun}"
        for v in ("10.6.3", "13.25.3")
    ]
    # bun is installed once for both versions.
    assert [c["argv"][1] for c in _calls(npm)] == ["claude-mem@10.6.3", "bun", "claude-mem@13.25.3"]


def test_default_cache_is_in_the_source_tree_never_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A source checkout keeps it in its tree; an installed wheel (as in tox's py env, where
    the module lives in site-packages) in the working directory; never under HOME."""
    monkeypatch.delenv("LEAKPROOF_CLAUDE_MEM_CACHE", raising=False)
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "cwd"
    checkout.mkdir()
    elsewhere.mkdir()
    (checkout / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(install, "_SOURCE_TREE", checkout)
    assert install.cache_dir() == checkout / ".cache" / "claude-mem"
    monkeypatch.setattr(install, "_SOURCE_TREE", tmp_path / "site-packages")
    assert install.cache_dir() == elsewhere / ".cache" / "claude-mem"


def test_help_is_usage_not_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    # Before, "--help" was taken for a version: exit 1, "not a version: '--help'".
    assert install.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m harness.claude_mem_install") and "VERSION" in out
    assert install.main(["--bogus", "13.25.3"]) == 2


def test_installed_version_prefers_plugin_json_and_skips_bad_manifests(tmp_path: Path) -> None:
    plugin = tmp_path / "claude-mem" / "plugin"
    (plugin / ".claude-plugin").mkdir(parents=True)
    assert install.installed_version(plugin) is None  # no manifest at all

    (plugin / "package.json").write_text(json.dumps({"version": "8.5.10"}))
    assert install.installed_version(plugin) == "8.5.10"
    (plugin.parent / "package.json").write_text(json.dumps({"version": 9}))  # not a string
    assert install.installed_version(plugin) == "8.5.10"
    (plugin.parent / "package.json").write_text(json.dumps({"version": "9.0.0-beta.1"}))
    assert install.installed_version(plugin) == "9.0.0-beta.1"
    (plugin / ".claude-plugin" / "plugin.json").write_text("{not json")
    assert install.installed_version(plugin) == "9.0.0-beta.1"
    (plugin / ".claude-plugin" / "plugin.json").write_text(json.dumps({"version": "9.0.0"}))
    # In the v9.0.0 tag plugin/package.json still says 8.5.10: plugin.json wins.
    assert install.installed_version(plugin) == "9.0.0"


def test_bun_binary_must_be_executable(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("no executable bit on Windows")
    base = tmp_path / "bun" / "node_modules" / "bun" / "bin"
    base.mkdir(parents=True)
    (base / "bun.exe").write_text("")
    assert install.bun_binary(tmp_path) is None  # present but not executable
    _exe(base / "bun", "#!/bin/sh\n")
    assert install.bun_binary(tmp_path) == base / "bun"
    os.chmod(base / "bun.exe", 0o755)
    assert install.bun_binary(tmp_path) == base / "bun.exe"


def test_main_says_which_install_failed_and_exits_1(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEAKPROOF_CLAUDE_MEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_NPM_MODE", "fail")
    assert install.main(["--skip-if-unavailable", "13.25.3"]) == 1  # node is there: no skip
    err = capsys.readouterr().err
    assert err.startswith("claude-mem 13.25.3: npm install claude-mem@13.25.3 failed (1): ")
    assert "404 Not Found" in err


def test_soak_with_a_wrong_version_says_so_once_and_what_to_give(
    npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LEAKPROOF_CLAUDE_MEM=13.25 python -m harness soak --target claude-mem`: one line saying
    what is wrong and what to give; it printed the error with a traceback, twice."""
    monkeypatch.setenv("LEAKPROOF_CLAUDE_MEM", "13.25")
    monkeypatch.setenv("LEAKPROOF_CLAUDE_MEM_CACHE", str(tmp_path / "cache"))
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--target", "claude-mem", "--sessions", "2"]
        + ["--progress", "none", "--no-plot", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.count("not a version: '13.25'") == 1, out
    assert "npm view claude-mem versions" in out
    assert "Traceback" not in out
    assert "Traceback" not in (report / "report.json").read_text()
    assert _calls(npm) == []
