"""Structured output (`--json-schema`): the value validates against the caller's schema, in a
real fake process and for the schema keywords callers use."""

from __future__ import annotations

import json
import subprocess

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="the test extra installs jsonschema")

from fake_helpers import DEADLINE, SDK_ARGV  # noqa: E402

from fake_claude.schema import MAX_DEPTH, SchemaError, instance, load  # noqa: E402
from fake_claude.shim import write_shim  # noqa: E402

SCHEMAS = [
    {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]},
    {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 40},
            "count": {"type": "integer", "minimum": 5},
            "ratio": {"type": "number", "exclusiveMinimum": 0},
            "done": {"type": "boolean"},
            "kind": {"enum": ["bugfix", "feature"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "none": {"type": "array", "maxItems": 0},
            "note": {"type": ["string", "null"]},
            "fixed": {"const": 7},
        },
        "required": ["title", "count", "kind", "tags"],
        "additionalProperties": False,
    },
    {
        "$defs": {
            "fact": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            }
        },  # fmt: skip
        "type": "object",
        "properties": {"facts": {"type": "array", "items": {"$ref": "#/$defs/fact"}}},
        "required": ["facts"],
    },
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    },  # fmt: skip
    {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "array", "items": {"type": "number", "minimum": -3}},
    {"type": "string", "default": "given"},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_the_value_validates(schema: dict) -> None:
    value = instance(schema, "the reply text")
    jsonschema.validate(value, schema)


def test_the_reply_text_lands_in_the_first_free_string() -> None:
    schema = SCHEMAS[0]
    assert instance(schema, "what was observed") == {"summary": "what was observed"}


def test_a_self_referencing_schema_ends() -> None:
    # "#" points at the whole schema: without the depth limit this recurses for ever.
    schema = {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}
    value = instance(schema, "x")
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and depth <= MAX_DEPTH + 1


@pytest.mark.parametrize("text", ["[1", "3", '"a string"', "{" * 100_000])
def test_a_bad_schema_is_refused(text: str) -> None:
    with pytest.raises(SchemaError):
        load(text)


def test_the_result_carries_structured_output(spawn) -> None:
    schema = SCHEMAS[1]
    fake = spawn(args=[*SDK_ARGV, "--json-schema", json.dumps(schema)])
    fake.initialize()
    msgs = fake.turn("count the things in this prompt")
    result = msgs[-1]
    assert result["type"] == "result" and result["subtype"] == "success"
    jsonschema.validate(result["structured_output"], schema)
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_without_a_schema_there_is_no_structured_output(spawn) -> None:
    fake = spawn()
    fake.initialize()
    assert "structured_output" not in fake.turn("hello")[-1]
    fake.close_stdin()
    assert fake.wait_exit() == 0


def test_print_mode_json_carries_it_and_a_bad_schema_exits_1(tmp_path, run_id) -> None:
    shim = str(write_shim(tmp_path, {"run_id": run_id}))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    out = subprocess.run(
        [shim, "-p", "--output-format", "json", "--json-schema", json.dumps(schema), "hi"],
        capture_output=True, text=True, timeout=DEADLINE, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["structured_output"] == {"n": 0}
    bad = subprocess.run(
        [shim, "-p", "--json-schema", "{not json", "hi"],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert bad.returncode == 1 and "--json-schema is not valid JSON" in bad.stderr
    assert bad.stdout == ""


def test_a_schema_in_the_initialize_request_is_used(spawn) -> None:
    # TS SDK >= 0.3 also sends the schema in the initialize request.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake = spawn()
    request = {"subtype": "initialize", "hooks": None, "jsonSchema": schema}
    fake.send({"type": "control_request", "request_id": "init1", "request": request})
    fake.read_until(lambda m: m.get("type") == "control_response", "the initialize reply")
    assert fake.turn("how many")[-1]["structured_output"] == {"n": 0}
    fake.close_stdin()
    assert fake.wait_exit() == 0
