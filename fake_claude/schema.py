"""Structured output (`--json-schema`): a value that satisfies the caller's JSON schema.

The real CLI makes the model answer in the schema's shape and puts the parsed value in the
result's `structured_output`. The fake has no model, so it builds the smallest value the common
schema keywords allow, with the reply text in the first free string, so the value both
validates and says which prompt it answers.
"""

from __future__ import annotations

import json
from typing import Any

# A schema nested deeper than this is answered with null where it goes on: a hostile schema
# must not take the fake into a RecursionError.
MAX_DEPTH = 32


class SchemaError(ValueError):
    """--json-schema is not a JSON object."""


def load(text: str) -> dict:
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"--json-schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise SchemaError("--json-schema must be a JSON object")
    return schema


def instance(schema: dict, text: str) -> Any:
    """A value valid against `schema` (the keywords below; others are ignored)."""
    slot = [text]  # the reply text goes into the first free string only
    return _value(schema, schema, slot, 0)


def _value(schema: Any, root: dict, slot: list[str], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _value(_resolve(root, ref), root, slot, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if key == "allOf":
                return _value(_merge(options), root, slot, depth + 1)
            return _value(options[0], root, slot, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        # Every listed property, required first: a caller that reads an optional field too
        # finds it.
        names = required + [p for p in props if p not in required]
        return {n: _value(props.get(n, {}), root, slot, depth + 1) for n in names}
    if kind == "array":
        low_items = _int(schema, "minItems", 1)
        count = max(0, min(max(low_items, 1), _int(schema, "maxItems", low_items), 100))
        return [_value(schema.get("items"), root, slot, depth + 1) for _ in range(count)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        number = low if isinstance(low, (int, float)) and not isinstance(low, bool) else 0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            number += 1
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = slot.pop() if slot else "fake"
    text = text.ljust(min(_int(schema, "minLength", 0), 10_000), ".")
    longest = schema.get("maxLength")
    return text[:longest] if isinstance(longest, int) else text


def _int(schema: dict, key: str, default: int) -> int:
    value = schema.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _merge(parts: list) -> dict:
    """allOf: one schema with every part's keywords, properties and required names united."""
    merged: dict = {}
    props: dict = {}
    required: list = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        merged.update(part)
        if isinstance(part.get("properties"), dict):
            props.update(part["properties"])
        required += [r for r in part.get("required") or [] if r not in required]
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    return merged


def _resolve(root: dict, ref: str) -> Any:
    """A local reference (#/$defs/x, #/definitions/x); anything else resolves to nothing."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
