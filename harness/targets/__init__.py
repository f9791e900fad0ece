"""Registry of soak targets: `get_target(name, **options)`.

Targets are imported lazily so a target with extra requirements (e.g. bun for the real claude-mem)
does not burden the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.target import Target

# name -> "module:Class"
TARGETS: dict[str, str] = {
    "reference": "harness.targets.reference:ReferenceTarget",
    "claude-mem": "harness.targets.claude_mem:ClaudeMemTarget",
}


class UnknownTarget(LookupError):
    pass


def available() -> list[str]:
    return sorted(TARGETS)


def get_target(name: str, **options: Any) -> Target:
    try:
        spec = TARGETS[name]
    except KeyError:
        raise UnknownTarget(f"unknown target {name!r}; known: {', '.join(available())}") from None
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownTarget(f"target {name!r} is not installed ({module_name} missing)") from None
    cls = getattr(module, class_name)
    return cls(**options)
