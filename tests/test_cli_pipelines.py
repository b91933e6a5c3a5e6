"""``wtm pipeline register|list|show|remove`` and ``wtm run NAME@CONSTRAINT``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runtime.cli import cli
from tests.conftest import TASKS

SUMS = """\
apiVersion: wtm/v1
kind: Pipeline
name: sums
version: {version}
description: Adds {b}.
inputs:
  x: {{schema: {{type: number}}}}
steps:
  - {{id: "001", task: add, with: {{a: $inputs.x, b: {b}}}}}
outputs:
  total: $001.sum
"""


@pytest.fixture
def env(tmp_path):
    environment = {"WTM_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    assert invoke(environment, "plugin", "install", str(TASKS / "add")).exit_code == 0
    return environment


def invoke(env, *args):
    return CliRunner().invoke(cli, list(args), env=env)


def write(tmp_path, version="1.0.0", b=1, name="sums.yaml"):
    path = tmp_path / name
    path.write_text(SUMS.format(version=version, b=b))
    return str(path)


def total(env, ref):
    result = invoke(env, "run", ref, "-i", "x=10", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["total"]


def test_register_then_run_by_name_and_constraint(env, tmp_path):
    first = invoke(env, "pipeline", "register", write(tmp_path, "1.0.0", 1))
    assert first.exit_code == 0 and "sums@1.0.0 registered (1 step, sha256:" in first.output
    invoke(env, "pipeline", "register", write(tmp_path, "2.0.0", 2, "sums2.yaml"))
    assert total(env, "sums") == 12  # the newest version
    assert total(env, "sums@^1") == 11
    assert total(env, "sums@1.0.0") == 11
    listed = json.loads(invoke(env, "pipeline", "list", "--json").output)
    assert [(p["name"], p["version"], p["steps"], list(p["inputs"])) for p in listed] == [
        ("sums", "1.0.0", 1, ["x"]),
        ("sums", "2.0.0", 1, ["x"]),
    ]
    shown = json.loads(invoke(env, "pipeline", "show", "sums@^1", "--json").output)
    assert shown["text"] == SUMS.format(version="1.0.0", b=1)
    assert "Adds 2." in invoke(env, "pipeline", "show", "sums").output


def test_the_same_version_with_other_content_needs_force(env, tmp_path):
    invoke(env, "pipeline", "register", write(tmp_path, "1.0.0", 1))
    again = invoke(env, "pipeline", "register", write(tmp_path, "1.0.0", 1))
    assert "already registered with the same content; nothing to do" in again.output
    other = write(tmp_path, "1.0.0", 5, "other.yaml")
    refused = invoke(env, "pipeline", "register", other)
    assert refused.exit_code == 2
    assert refused.output.strip().startswith(
        f"error: {other}: sums@1.0.0 is already registered with different content"
    )
    assert total(env, "sums") == 11  # nothing changed
    forced = invoke(env, "pipeline", "register", other, "--force")
    assert "sums@1.0.0 replaced (--force)" in forced.output
    assert total(env, "sums") == 15


def test_a_pipeline_with_errors_is_not_registered(env, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SUMS.format(version="1.0.0", b=1).replace("task: add", "task: nope"))
    result = invoke(env, "pipeline", "register", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:9:23: error: step 001: unknown task 'nope'")
    assert json.loads(invoke(env, "pipeline", "list", "--json").output) == []


def test_unknown_references_and_removal(env, tmp_path):
    missing = invoke(env, "run", "sums", "-i", "x=1")
    assert missing.exit_code == 2
    assert missing.output.strip() == (
        "error: sums: no such file, and no registered pipeline 'sums' "
        "(registered: none; see wtm pipeline register)"
    )
    invoke(env, "pipeline", "register", write(tmp_path))
    no_match = invoke(env, "run", "sums@^3", "-i", "x=1")
    assert no_match.output.strip() == (
        "error: sums@^3: no such file, and no version of pipeline sums matches '^3' "
        "(registered: 1.0.0)"
    )
    assert invoke(env, "pipeline", "remove", "sums").output.strip() == (
        "error: give the exact version to remove: NAME@VERSION"
    )
    assert invoke(env, "pipeline", "remove", "sums@1.0.0").output.strip() == "removed sums@1.0.0"
    gone = invoke(env, "pipeline", "remove", "sums@1.0.0")
    assert (gone.exit_code, gone.output.strip()) == (
        2,
        "error: pipeline sums@1.0.0 is not registered",
    )


def test_a_registered_pipeline_is_checked_again_when_run(env, tmp_path):
    invoke(env, "pipeline", "register", write(tmp_path))
    assert invoke(env, "plugin", "remove", "add@1.0.0").exit_code == 0
    result = invoke(env, "run", "sums", "-i", "x=1")
    assert result.exit_code == 2
    assert "pipeline:sums@1.0.0:9:" in result.output and "unknown task 'add'" in result.output
