"""``wtm run`` as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runtime.cli import cli
from tests.conftest import ROOT, TASKS
from tests.services import free_port

PIPELINE = """\
apiVersion: wtm/v1
kind: Pipeline
name: sums
version: 1.0.0
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x, b: 1}}
outputs:
  total: $001.sum
"""


@pytest.fixture
def env(tmp_path):
    return {"WTM_HOME": str(tmp_path / "home")}


@pytest.fixture
def pipeline(tmp_path, env):
    runner = CliRunner()
    assert runner.invoke(cli, ["plugin", "install", str(TASKS / "add")], env=env).exit_code == 0
    path = tmp_path / "sums.yaml"
    path.write_text(PIPELINE)
    return str(path)


def invoke(env, *args):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_run_prints_clean_json_and_writes_output(env, pipeline, tmp_path):
    out = tmp_path / "result.json"
    result = invoke(
        env, "run", pipeline, "-i", "x=41", "--json", "--pool", "thread", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["total"] == 42
    assert json.loads(out.read_text()) == document


def test_failed_run_exits_1(env, pipeline, tmp_path):
    untyped = tmp_path / "untyped.yaml"  # the step, not the pipeline, refuses "oops"
    untyped.write_text(PIPELINE.replace("x: {schema: {type: number}}", "x: {schema: {}}"))
    batch = tmp_path / "inputs.jsonl"
    batch.write_text('{"x": 1}\n{"x": "oops"}\n')
    result = invoke(env, "run", str(untyped), "--batch", str(batch), "--json", "--pool", "thread")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    assert [r["processing_summary"]["status"] for r in runs] == ["succeeded", "failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "y=1"], "error: --input 'y': the pipeline has no input 'y' (inputs: x)"),
        (["-i", "x"], "error: --input 'x': write NAME=VALUE"),
        (["-i", "x=not-json"], "error: --input x: 'not-json' is not a JSON value"),
        ([], "error: missing input 'x': pass --input x=VALUE"),
        (["-i", 'x="1"'], "error: input 'x' at $: '1' is not of type 'number'"),
        (
            ["-o", "no-such-folder/r.json", "-i", "x=1"],
            "error: --output no-such-folder/r.json: no folder 'no-such-folder' to write into",
        ),
        (
            ["--batch", "nothing-here/*.png", "--batch-input", "x"],
            "error: --batch 'nothing-here/*.png': no files match",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(env, pipeline, args, message):
    result = invoke(env, "run", pipeline, *args)
    assert result.exit_code == 2
    assert result.output.strip() == message


def test_dead_broker_is_one_line_and_quick(env, pipeline):
    broker = f"redis://:secret@127.0.0.1:{free_port()}/0"
    result = invoke(env, "run", pipeline, "-i", "x=1", "--executor", "celery", "--broker", broker)
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot reach the broker at redis://:****@127.0.0.1:")
    assert "secret" not in result.output and len(result.output.strip().splitlines()) == 1


def test_uninstalled_task_gets_an_install_hint(env):
    result = CliRunner().invoke(
        cli, ["run", str(ROOT / "manifests/face_pipeline.yaml"), "-i", "image_path=x.png"], env=env
    )
    assert result.exit_code == 2
    assert "unknown task 'face_detection'" in result.output
    assert "hint: install it with: wtm plugin install" in result.output
