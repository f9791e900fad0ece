"""The soak's workload: deterministic sessions derived from the seed."""

from __future__ import annotations

import random

from harness.target import SessionSpec

_TOOLS = ("Read", "Edit", "Bash", "Grep", "Write", "Glob")
_VERBS = ("fix", "explain", "refactor", "test", "document", "speed up")
_THINGS = ("the parser", "the session manager", "the reaper", "the cache", "the CLI", "the hooks")


def make_session(
    index: int, run_id: str, seed: int, prompts: int, observations: int
) -> SessionSpec:
    rng = random.Random(f"{seed}:{index}")
    texts = [
        f"Please {rng.choice(_VERBS)} {rng.choice(_THINGS)} (session {index}, prompt {k + 1})"
        for k in range(prompts)
    ]
    return SessionSpec(
        index=index,
        content_session_id=f"soak-{run_id}-{index:06d}",
        project=f"leakproof-soak-{index % 7}",
        prompts=texts,
        observations_per_prompt=observations,
        extra={"seed": f"{seed}:{index}"},
    )


def make_observation(session: SessionSpec, prompt_no: int, k: int) -> dict:
    """Tool use k of prompt prompt_no, as a PostToolUse hook would post it."""
    rng = random.Random(f"{session.extra.get('seed', session.index)}:{prompt_no}:{k}")
    tool = rng.choice(_TOOLS)
    path = f"src/module_{rng.randrange(100)}.py"
    return {
        "tool_name": tool,
        "tool_input": {"file_path": path} if tool != "Bash" else {"command": f"pytest -k t{k}"},
        "tool_response": f"{tool} on {path}: " + "ok " * rng.randrange(1, 40),
    }
