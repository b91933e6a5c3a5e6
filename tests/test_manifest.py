"""Loading manifests: format errors with positions, hostile input, the shipped schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from runtime.manifest import (
    PipelineManifest,
    TaskManifest,
    format_schema,
    load_manifest,
    parse_duration,
)
from runtime.problems import ManifestError
from runtime.yamlsource import load_yaml
from tests.conftest import ROOT

TASK = """\
apiVersion: wtm/v1
kind: Task
name: greet
version: 1.0.0
entrypoint: plugin
timeout: 1500ms
retries: {max: 2, backoff: 1s}
requirements: [numpy>=2, {requirement: fer==25.10.3, no_deps: true, module: fer}]
inputs:
  name: {schema: {type: string}}
  loud: {schema: {type: boolean}, default: false}
outputs:
  greeting: {schema: {type: string}}
"""


def load_text(tmp_path: Path, text: str | bytes, name: str = "m.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_manifest(path)


def problem_of(tmp_path: Path, text: str | bytes) -> tuple[int, int, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(tmp_path, text)
    first = caught.value.problems[0]
    assert first.severity == "error"
    return first.line, first.column, first.message


def test_task_model(tmp_path):
    task = load_text(tmp_path, TASK)
    assert isinstance(task, TaskManifest)
    assert task.key == "greet@1.0.0"
    assert task.timeout == 1.5
    assert (task.max_retries, task.retry_backoff) == (2, 1.0)
    assert task.inputs["name"].required and not task.inputs["loud"].required
    assert task.requirements[1].no_deps and task.requirements[1].module == "fer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (2, 2.0), ("1.5s", 1.5)],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("old", "new", "position", "message"),
    [
        (
            "version: 1.0.0",
            "version: 1.0",
            (4, 10),
            "version must be a semantic version like 1.0.0 (quote it if YAML reads it as a number); "
            "got a number",
        ),
        (
            "name: greet",
            "name: Greet!",
            (3, 7),
            "name must be lowercase letters, digits and underscores, starting with a letter; "
            'got "Greet!"',
        ),
        (
            "timeout: 1500ms",
            "timeout: soon",
            (6, 10),
            'timeout must be a duration like 500ms, 30s, 5m or 1h; got "soon"',
        ),
        (
            "entrypoint: plugin\n",
            "entrypoint: plugin\ncolour: red\n",
            (6, 1),
            "unknown field 'colour' in manifest (allowed: apiVersion, cache, description, entrypoint, "
            "inputs, kind, name, outputs, requirements, retries, timeout, version)",
        ),
        (
            "  name: {schema: {type: string}}",
            "  name: {description: x}",
            (10, 9),
            "inputs.name: missing required field 'schema'",
        ),
        (
            "  name: {schema",
            "  Bad-Name: {schema",
            (10, 3),
            "inputs: name 'Bad-Name' port names are lowercase letters, digits and underscores",
        ),
        ("kind: Task", "kind: Job", (2, 7), "kind must be Task or Pipeline; got 'Job'"),
        ("apiVersion: wtm/v1", "apiVersion: wtm/v2", (1, 13), "apiVersion must be 'wtm/v1'"),
        (
            "retries: {max: 2,",
            "retries: {max: -1,",
            (7, 16),
            "retries.max: -1 is less than the minimum of 0",
        ),
    ],
)
def test_task_format_errors(tmp_path, old, new, position, message):
    assert old in TASK
    line, column, text = problem_of(tmp_path, TASK.replace(old, new))
    assert ((line, column), text) == (position, message)


def test_missing_top_level_field(tmp_path):
    text = TASK.replace("entrypoint: plugin\n", "")
    assert problem_of(tmp_path, text) == (1, 1, "manifest: missing required field 'entrypoint'")


def test_step_id_must_be_quoted(tmp_path):
    text = (ROOT / "manifests/face_pipeline.yaml").read_text().replace('id: "001"', "id: 001")
    line, column, message = problem_of(tmp_path, text)
    assert (line, column) == (14, 9)
    assert message == (
        'steps.0.id must be a string of letters, digits and dashes, like "001" '
        "(quote numbers); got an integer"
    )


def test_bad_reference_syntax(tmp_path):
    text = (ROOT / "manifests/face_pipeline.yaml").read_text()
    text = text.replace(
        "image_path: $inputs.image_path\n      detector", "image_path: $inputs\n      detector"
    )
    line, column, message = problem_of(tmp_path, text)
    assert (line, column) == (17, 19)
    assert message == "'$inputs' is not a reference like $inputs.NAME or $STEP_ID.PORT"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"   \n\n", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary file, not YAML text"),
        (b"name: \xff\xfe", "not UTF-8 text (byte 6)"),
        (b"- just\n- a list\n", "a manifest is a YAML mapping (key: value)"),
        (b"just a string", "a manifest is a YAML mapping (key: value)"),
        (
            b"kind: Task\nkind: Task\n",
            "invalid YAML: while constructing a mapping found duplicate key "
            '"kind" with value "Task" (original value: "Task")',
        ),
        (
            b"a: [1, 2\n",
            "invalid YAML: while parsing a flow sequence expected ',' or ']', but got "
            "'<stream end>'",
        ),
    ],
)
def test_hostile_or_broken_files(tmp_path, content, message):
    assert problem_of(tmp_path, content)[2] == message


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
        f"*a{i - 1}, *a{i - 1}]"
        for i in range(1, 12)
    ]
    line, column, message = problem_of(tmp_path, "\n".join(lines))
    assert (line, column) == (1, 5)  # the anchored node that is used again
    assert message == "YAML aliases of mappings or lists are not allowed"


def test_deep_nesting_is_refused(tmp_path):
    text = "a: " + "[" * 5000 + "]" * 5000
    assert problem_of(tmp_path, text)[2] == "nesting deeper than 64 levels"


def test_huge_file_is_refused(tmp_path):
    text = "a: " + "x" * (2 << 20)
    assert problem_of(tmp_path, text) == (1, 1, "file is larger than 1048576 bytes")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ManifestError, match="cannot read: No such file"):
        load_manifest(tmp_path / "missing.yaml")
    with pytest.raises(ManifestError, match="is a directory"):
        load_manifest(tmp_path)


def test_positions_are_one_based():
    located = load_yaml("x.yaml", "a: 1\nb:\n  - x\n  - {c: 2}\n")
    assert located.where(("b", 1, "c")) == (4, 9)
    assert located.where(("b", 1, "c"), at_key=True) == (4, 6)
    assert located.where(("b", 7)) == (3, 3)


def shipped_manifests() -> list[Path]:
    return sorted(
        [
            *ROOT.glob("manifests/*.yaml"),
            *ROOT.glob("plugins/*/manifest.yaml"),
            *ROOT.glob("examples/*/manifest.yaml"),
        ]
    )


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_schemas_validate_shipped_manifests(path):
    data = load_yaml(path).data
    jsonschema.Draft202012Validator(format_schema(data["kind"])).validate(data)
    assert isinstance(load_manifest(path), TaskManifest | PipelineManifest)


@pytest.mark.parametrize("kind", ["task", "pipeline"])
def test_format_schemas_are_valid_json_schema(kind):
    schema = format_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads((ROOT / f"runtime/schemas/{kind}.schema.json").read_text()) == schema


def test_non_string_keys_are_named_as_json_would(tmp_path):
    text = TASK.replace("entrypoint: plugin\n", "entrypoint: plugin\nnull: 1\n")
    line, column, message = problem_of(tmp_path, text)
    assert (line, column) == (6, 1)
    assert message.startswith("unknown field 'null' in manifest")
