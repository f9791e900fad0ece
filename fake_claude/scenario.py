"""Scenario specs: `name[:k=v,...]` parts joined by `+`, from FAKE_CLAUDE_SCENARIO or a file.

`mix` is resolved per process into one concrete part drawn from weights, from the seed and a draw
index (see `draw_index`), so a seeded soak replays the same multiset of behaviours.
"""

from __future__ import annotations

import math
import os
import sys

NAMES = (
    "ok",
    "slow",
    "hang",
    "ignore-eof",
    "ignore-sigterm",
    "grandchild",
    "escape",
    "chain",
    "crash",
    "exit-early",
    "garbage",
    "huge-line",
    "stdout-flood",
    "stderr-flood",
    "ballast",
    "headless",
    "mix",
)
POINTS = ("start", "before-init", "after-init", "mid-turn", "after-result")
# `chain` is a tool for probing a census (fake_claude/chain.py), named explicitly, and kept out
# of the default mix so that a seeded soak of `mix` replays as it did before it existed.
FAULTS = tuple(n for n in NAMES if n not in ("ok", "mix", "chain"))
# Bare `mix`: mostly healthy processes, every fault now and then.
DEFAULT_MIX = {"ok": 8, **{name: 1 for name in FAULTS}}


class ScenarioError(ValueError):
    pass


# The parameters each part reads (fake_claude/README.md) and what each must be. A typo or a bad
# value is refused where the spec is read: before, `grandchild:n=abc` crashed every fake at its
# start (a soak of it tested nothing and passed) and `hang:tunr=2` was silently the default.
_POINTED = {"at": "point", "turn": "turn"}
PARAMS: dict[str, dict[str, str]] = {
    "ok": {"tool": "text"},
    "slow": {"first": "seconds", "latency": "seconds", "jitter": "seconds", "turn": "turn"},
    "hang": _POINTED,
    "ignore-eof": {},
    "ignore-sigterm": {},
    "grandchild": {
        "n": "count",
        "ignore": "flag",
        "linger": "flag",
        "hop": "seconds",
        "headless": "flag",
        "scrub": "flag",
    },  # fmt: skip
    "escape": {
        "n": "count",
        "hop": "seconds",
        "scrub": "flag",
        "headless": "flag",
        "uncell": "flag",
    },
    "chain": {
        "depth": "count",
        "exit": "flag",
        "setsid": "flag",
        "quiet": "flag",
        "leaf": "leaf",
        "stop": "flag",
        "zombie": "count",
        "spawn": "seconds",
    },
    "crash": {**_POINTED, "code": "code", "signal": "signal"},
    "exit-early": {"code": "code"},
    "garbage": {**_POINTED, "lines": "count"},
    "huge-line": {**_POINTED, "mb": "mb"},
    "stdout-flood": {**_POINTED, "mb": "mb", "forever": "flag"},
    "stderr-flood": {**_POINTED, "mb": "mb"},
    "ballast": {"mb": "mb"},
    "headless": {},
}
LEAVES = ("keep", "blank", "tracker", "forkserver", "sleep")  # chain:leaf=, fake_claude/chain.py
FLAG_WORDS = ("0", "1", "false", "true", "no", "yes", "off", "on")


def _value_problem(kind: str, raw: str) -> str | None:
    """Why `raw` is not a value of `kind`, or None if it is."""
    if kind == "text":
        return None
    if kind == "flag":
        return None if raw.lower() in FLAG_WORDS else f"is not one of {'/'.join(FLAG_WORDS)}"
    if kind == "leaf":
        return None if raw in LEAVES else f"is not a leaf (known: {' '.join(LEAVES)})"
    if kind == "point":
        return None if raw in POINTS else f"is not a point (known: {' '.join(POINTS)})"
    if kind == "turn":
        ok = raw == "every" or (raw.isascii() and raw.isdigit())
        return None if ok else "is not a turn number (0 or every: each turn)"
    if kind == "signal":
        ok = signal_number(raw) is not None
        return None if ok else "is not a signal name (e.g. KILL, SEGV, ABRT)"
    try:
        value = float(raw)
    except ValueError:
        return "is not a number"
    if kind in ("count", "code") and (not value.is_integer() or value < 0):
        return "is not a whole number >= 0"
    if kind == "code" and value > 255:
        return "is not an exit code (0-255)"
    if not (math.isfinite(value) and value >= 0):
        return "is not a finite number >= 0"
    return None


def _check_params(name: str, params: dict[str, str]) -> None:
    allowed = PARAMS.get(name)
    if allowed is None:  # mix: its weights are checked by _mix_weights
        return
    for key, raw in params.items():
        kind = allowed.get(key)
        if kind is None:
            known = " ".join(allowed) or "none"
            raise ScenarioError(f"{name}: unknown parameter {key!r} (known: {known})")
        problem = _value_problem(kind, raw)
        if problem:
            raise ScenarioError(f"{name}:{key}={raw!r} {problem}")


class Scenario:
    """Parts in order; a name given twice merges its parameters (the later one wins)."""

    __slots__ = ("parts",)

    def __init__(self, parts: dict[str, dict[str, str]] | None = None) -> None:
        self.parts: dict[str, dict[str, str]] = parts or {}

    def has(self, name: str) -> bool:
        return name in self.parts

    def param(self, name: str, key: str, default: str) -> str:
        return self.parts.get(name, {}).get(key, default)

    def num(self, name: str, key: str, default: float) -> float:
        raw = self.parts.get(name, {}).get(key)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise ScenarioError(f"{name}:{key}={raw!r} is not a number") from None

    def flag(self, name: str, key: str, default: bool = False) -> bool:
        raw = self.parts.get(name, {}).get(key)
        if raw is None:
            return default
        return raw.lower() not in ("0", "false", "no", "off", "")

    def spec(self) -> str:
        out = []
        for name, params in self.parts.items():
            if params:
                out.append(name + ":" + ",".join(f"{k}={v}" for k, v in params.items()))
            else:
                out.append(name)
        return "+".join(out) or "ok"


def parse_spec(spec: str) -> Scenario:
    scenario = Scenario()
    for raw in spec.split("+"):
        raw = raw.strip()
        if not raw:
            continue
        name, _, rest = raw.partition(":")
        name = name.strip()
        if name not in NAMES:
            raise ScenarioError(f"unknown scenario {name!r} (known: {' '.join(NAMES)})")
        params = scenario.parts.setdefault(name, {})
        for item in rest.split(","):
            item = item.strip()
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq:
                raise ScenarioError(f"{name}: expected key=value, got {item!r}")
            params[key.strip()] = value.strip()
    for name, params in scenario.parts.items():
        _check_params(name, params)
    return scenario


def load_file(path: str) -> tuple[str, str | None]:
    """(spec, seed or None) from a JSON or TOML scenario file.

    Accepted shapes: {"spec": "a+b:k=v"} or {"parts": [{"name": "a", "k": "v"}, ...]},
    plus an optional "seed". A file that cannot be read or has another shape: ScenarioError.
    """
    try:
        return _load_file(path)
    except ScenarioError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ScenarioError(f"scenario file {path}: {type(exc).__name__}: {exc}") from None


def _load_file(path: str) -> tuple[str, str | None]:
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".toml"):
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        data = tomllib.loads(raw.decode())
    else:
        import json

        data = json.loads(raw)
    seed = data.get("seed")
    if "spec" in data or "scenario" in data:
        spec = str(data.get("spec", data.get("scenario")))
    else:
        parts = []
        for part in data.get("parts", []):
            part = dict(part)
            name = str(part.pop("name"))
            params = ",".join(f"{k}={v}" for k, v in part.items())
            parts.append(f"{name}:{params}" if params else name)
        spec = "+".join(parts) or "ok"
    return spec, None if seed is None else str(seed)


def draw_index(ledger_path: str | None) -> int:
    """A per-process index for mix draws, unique within a ledger's run.

    One byte is appended to `<ledger>.draws`; with O_APPEND the offset after the write is this
    process's slot, so concurrent fakes get distinct indices without locks (POSIX; Windows'
    O_APPEND is a seek and a write, not one step, so there the ledger's lock is taken).
    """
    if not ledger_path:
        return 0
    path = ledger_path + ".draws"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":
            from fake_claude._lock_windows import locked_append

            locked_append(fd, path, b".")
        else:
            os.write(fd, b".")
        return os.lseek(fd, 0, os.SEEK_CUR) - 1
    finally:
        os.close(fd)


def validate_spec(spec: str) -> None:
    """Raise ScenarioError if `spec` cannot run: for callers that start many fakes with it (a
    soak), so that a typo fails at once rather than as every fake exiting with code 2.

    Stricter than the fake's own reading: an empty spec or an empty part (`ok+`, an unset shell
    variable) is refused here, as it most likely lost the part that was meant."""
    parts = spec.split("+")
    if any(not part.strip() for part in parts):
        where = "is empty" if len(parts) == 1 else f"has an empty part: {spec!r}"
        raise ScenarioError(f"the scenario spec {where} (write `ok` for a well-behaved fake)")
    scenario = parse_spec(spec)
    drawn: list[str] = []
    if scenario.has("mix"):
        names, weights = _mix_weights(scenario)
        drawn = [n for n, w in zip(names, weights, strict=True) if w > 0]
    if sys.platform == "win32" and (scenario.has("chain") or "chain" in drawn):
        # The fake skips it there: a soak of it would test nothing it was asked to.
        raise ScenarioError("chain needs fork (POSIX): it does not run on Windows")


def _mix_weights(scenario: Scenario) -> tuple[list[str], list[float]]:
    weights = scenario.parts["mix"] or {k: str(v) for k, v in DEFAULT_MIX.items()}
    names, values = [], []
    for name, raw in weights.items():
        if name == "mix":
            raise ScenarioError("mix: a mix cannot hold another mix")
        if name not in NAMES:
            known = " ".join(n for n in NAMES if n != "mix")
            raise ScenarioError(f"mix: unknown scenario {name!r} (known: {known})")
        try:
            weight = float(raw)
        except ValueError:
            raise ScenarioError(f"mix: weight of {name} is not a number: {raw!r}") from None
        if not (math.isfinite(weight) and weight >= 0):
            raise ScenarioError(f"mix: weight of {name} must be a finite number >= 0: {raw!r}")
        names.append(name)
        values.append(weight)
    if not sum(values) > 0:
        raise ScenarioError("mix: every weight is 0, so no scenario can be drawn")
    return names, values


def resolve_mix(scenario: Scenario, seed: str, key: str) -> Scenario:
    """Replace `mix` by one drawn part (other parts stay). Deterministic in (seed, key)."""
    if not scenario.has("mix"):
        return scenario
    import random  # lazily: only mixes pay for it

    names, values = _mix_weights(scenario)
    rng = random.Random(f"mix:{seed}:{key}")
    name = rng.choices(names, weights=values)[0]
    params: dict[str, str] = {}
    if name == "hang":
        params["at"] = rng.choice(("before-init", "mid-turn", "after-result"))
    elif name == "crash":
        params["at"] = rng.choice(("after-init", "mid-turn", "after-result"))
        if rng.random() < 0.5:
            params["signal"] = rng.choice(("KILL", "SEGV", "ABRT"))
        else:
            params["code"] = str(rng.choice((1, 2, 3)))
    elif name == "grandchild":
        params["n"] = str(rng.randint(1, 3))
        params["ignore"] = str(rng.randint(0, 1))
    parts: dict[str, dict[str, str]] = {}
    for existing, p in scenario.parts.items():
        if existing == "mix":
            parts.setdefault(name, {}).update(params)
        else:
            parts.setdefault(existing, {}).update(p)
    return Scenario(parts)


# POSIX numbers of the signals a crash may name that Windows' signal module lacks: a spec (or
# a mix's draw) means the same everywhere, and Windows stands in with an exit code.
_POSIX_ONLY_SIGNALS = {"HUP": 1, "QUIT": 3, "KILL": 9}


def signal_number(name: str) -> int | None:
    """The number of signal `name` (KILL, SIGKILL, segv...), or None if it names none."""
    import signal

    short = name.upper().removeprefix("SIG")
    number = getattr(signal, "SIG" + short, None)
    if isinstance(number, int) and short.isalpha():
        return int(number)
    return _POSIX_ONLY_SIGNALS.get(short)
