"""Install bun and claude-mem from npm into a private cache folder, never touching the real HOME.

npm writes to `$HOME/.npm` and reads `$HOME/.npmrc`; both are redirected into the cache folder so an
install leaves the user's HOME alone. claude-mem is installed with `--ignore-scripts
--legacy-peer-deps` (without them the install can spin for many minutes); bun's own postinstall is
not needed either because the npm `bun` package ships the binary as `bin/bun.exe` on every OS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.target import TargetError

_SOURCE_TREE = Path(__file__).resolve().parent.parent
_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?$")
INSTALL_TIMEOUT_S = 600.0


class InstallError(TargetError):
    """npm is missing, or an install did not produce what we need."""


@dataclass(frozen=True)
class Installed:
    bun: Path
    plugin: Path  # the folder holding scripts/worker-service.cjs
    version: str


def cache_dir() -> Path:
    """LEAKPROOF_CLAUDE_MEM_CACHE, else .cache/claude-mem in the source tree (or the cwd when
    installed as a wheel): never under HOME, so nothing of claude-mem lands in the real HOME."""
    env = os.environ.get("LEAKPROOF_CLAUDE_MEM_CACHE")
    if env:
        return Path(env)
    base = _SOURCE_TREE if (_SOURCE_TREE / "pyproject.toml").is_file() else Path.cwd()
    return base / ".cache" / "claude-mem"


def npm_path() -> str | None:
    return shutil.which("npm") or shutil.which("npm.cmd")


def why_unavailable() -> str | None:
    """A sentence saying why claude-mem cannot be installed or run here, or None if it can."""
    if shutil.which("node") is None and shutil.which("node.exe") is None:
        return "node is not on PATH (claude-mem and bun come from npm)"
    if npm_path() is None:
        return "npm is not on PATH (claude-mem and bun come from npm)"
    return None


def _npm_env(root: Path) -> dict[str, str]:
    # Everything npm would write under HOME goes into the cache instead.
    home = root / "npm-home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(home),
            "USERPROFILE": str(home),
            "npm_config_cache": str(home / ".npm"),
            "npm_config_userconfig": str(home / ".npmrc"),
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
        }
    )
    return env


def _npm_install(folder: Path, spec: str, extra: list[str], root: Path) -> None:
    npm = npm_path()
    if npm is None:
        raise InstallError(
            f"npm is not on PATH, and {spec} is not in the cache {root} yet: install Node.js "
            "with npm (`python3 ci/install_node.py` does), or set LEAKPROOF_CLAUDE_MEM_CACHE to "
            "a cache that holds it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true}\n', encoding="utf-8")
    cmd = [npm, "install", spec, "--no-save", *extra]
    try:
        proc = subprocess.run(
            cmd,
            cwd=folder,
            env=_npm_env(root),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm install {spec} timed out after {INSTALL_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise InstallError(f"npm install {spec} failed ({proc.returncode}): " + " | ".join(tail))


def bun_binary(root: Path | None = None) -> Path | None:
    root = root or cache_dir()
    base = root / "bun" / "node_modules" / "bun" / "bin"
    for name in ("bun.exe", "bun"):
        cand = base / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


@contextlib.contextmanager
def _removed_if_failed(folder: Path) -> Iterator[None]:
    """A folder an install makes is removed if the install fails: a version that does not
    exist (a typo) leaves no folder behind in the cache."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def ensure_bun(root: Path | None = None) -> Path:
    root = root or cache_dir()
    found = bun_binary(root)
    if found is None:
        with _removed_if_failed(root / "bun"):
            _npm_install(root / "bun", "bun", [], root)
            found = bun_binary(root)
            if found is None:
                raise InstallError(f"npm installed bun but no binary under {root / 'bun'}")
    return found


def plugin_dir(version: str, root: Path | None = None) -> Path:
    root = root or cache_dir()
    return root / version / "node_modules" / "claude-mem" / "plugin"


def installed_version(plugin: Path) -> str | None:
    """The version a plugin folder declares.

    plugin.json first: in the v9.0.0 tag plugin/package.json still says 8.5.10.
    """
    manifests = (
        plugin / ".claude-plugin" / "plugin.json",
        plugin.parent / "package.json",
        plugin / "package.json",
    )
    for manifest in manifests:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data.get("version"), str):
            return data["version"]
    return None


def ensure_claude_mem(version: str, root: Path | None = None) -> Installed:
    """Install (once) claude-mem VERSION and bun into the cache; return their paths."""
    if not _VERSION_RE.match(version):
        raise InstallError(
            f"not a version: {version!r}; give one npm has, in full, e.g. 13.25.3 "
            "(`npm view claude-mem versions` lists them)"
        )
    root = root or cache_dir()
    plugin = plugin_dir(version, root)
    if not (plugin / "scripts" / "worker-service.cjs").is_file():
        with _removed_if_failed(root / version):
            _npm_install(
                root / version,
                f"claude-mem@{version}",
                ["--ignore-scripts", "--legacy-peer-deps"],
                root,
            )
            if not (plugin / "scripts" / "worker-service.cjs").is_file():
                raise InstallError(f"claude-mem@{version} installed without plugin/scripts")
    return Installed(bun=ensure_bun(root), plugin=plugin, version=version)


def is_cached(version: str, root: Path | None = None) -> bool:
    root = root or cache_dir()
    plugin = plugin_dir(version, root)
    return (plugin / "scripts" / "worker-service.cjs").is_file() and bun_binary(root) is not None


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.claude_mem_install [--skip-if-unavailable] VERSION...`: install into
    the cache, print paths. Exit 3 without node or npm (0 with --skip-if-unavailable, which
    says SKIPPED and why: the tests then skip, or fail under CI=true), 1 if an install fails."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.claude_mem_install",
        description="Install claude-mem (and bun) from npm into the private cache "
        f"({cache_dir()}, or $LEAKPROOF_CLAUDE_MEM_CACHE), never the real HOME, and print "
        "each build's plugin folder and bun. Exit 1 if an install fails, 3 without node or npm.",
    )
    parser.add_argument(
        "--skip-if-unavailable",
        action="store_true",
        help="without node or npm, say SKIPPED and why, and exit 0",
    )
    parser.add_argument("versions", nargs="+", metavar="VERSION", help="npm version, e.g. 13.25.3")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, or a usage error: main() returns its exit code
        return int(exc.code or 0)
    skip, versions = args.skip_if_unavailable, args.versions
    reason = why_unavailable()
    if reason:
        if skip:
            print(f"SKIPPED claude-mem install: {reason}")
            return 0
        print(f"cannot install: {reason}", file=sys.stderr)
        return 3
    for version in versions:
        try:
            inst = ensure_claude_mem(version)
        except InstallError as exc:
            print(f"claude-mem {version}: {exc}", file=sys.stderr)
            return 1
        print(f"claude-mem {inst.version}: plugin={inst.plugin} bun={inst.bun}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
