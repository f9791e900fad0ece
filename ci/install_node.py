#!/usr/bin/env python3
"""Make sure node and npm (node >= 18) are present for the TypeScript conformance tests.

Usage: python3 ci/install_node.py      (.ci/run calls it before the conformance env)

Does nothing when a suitable node and npm are on PATH. Otherwise installs them with the system's
package manager: apt-get on Debian/Ubuntu (after `apt-get update`; sudo when not root), Homebrew
on macOS. On Windows the TS tests are skipped (node cannot spawn the fake's claude.cmd without a
shell), so nothing is installed there. Exit status 1 if node is still missing afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

MIN_MAJOR = 18


def node_major() -> int | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True)
    try:
        return int(done.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return None


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, env=env)


def install_apt() -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*prefix, "apt-get", "update", "-q"], env)
    run(
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "nodejs", "npm"],
        env,
    )


def main() -> int:
    major = node_major()
    if major is not None and major >= MIN_MAJOR:
        print(f"install_node: node {major}.x and npm already present")
        return 0
    if sys.platform == "win32":
        print("install_node: Windows, TS conformance tests are skipped there; nothing to do")
        return 0
    try:
        if sys.platform == "darwin" and shutil.which("brew"):
            run(["brew", "install", "node"])
        elif shutil.which("apt-get"):
            install_apt()
        else:
            print("install_node: no apt-get or brew; install node >= 18 by hand", file=sys.stderr)
            return 1
    except subprocess.CalledProcessError as exc:
        print(f"install_node: {exc}", file=sys.stderr)
        return 1
    major = node_major()
    if major is None or major < MIN_MAJOR:
        found = "none" if major is None else f"{major}.x"
        print(f"install_node: need node >= {MIN_MAJOR} with npm, found {found}", file=sys.stderr)
        return 1
    print(f"install_node: node {major}.x installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
