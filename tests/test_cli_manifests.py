"""``wtm validate``, ``wtm schema``, ``wtm graph`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from runtime.cli import cli
from tests.conftest import ROOT, TASKS
from tests.test_validate import GOOD


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_validate_good_files(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    result = run(
        "validate", "--task-path", str(TASKS), str(path), str(TASKS / "detect/manifest.yaml")
    )
    assert result.exit_code == 0, result.output
    assert f"ok {path}: Pipeline faces@1.0.0: 3 steps in 2 stages, 5 edges" in result.output
    assert "Task detect@1.2.0: 2 inputs, 2 outputs" in result.output


def test_validate_bad_file_exits_2_with_positions(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        GOOD.replace('id: "003"', 'id: "002"').replace("$001.faces_array}", "$001.boxes}")
    )
    result = run("validate", "--task-path", str(TASKS), str(path))
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines == [
        f"{path}:13:57: error: step 002 (describe@1.0.0): step 001 (detect@1.2.0) has no output "
        "port 'boxes' (outputs: faces_array, count)",
        f"{path}:14:9: error: duplicate step ID '002' (first used by step #2)",
    ]


def test_validate_unreadable_inputs_never_traceback(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "empty.yaml").write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "validate",
            str(tmp_path / "bin.yaml"),
            str(tmp_path / "empty.yaml"),
            str(tmp_path / "nope.yaml"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{tmp_path}/bin.yaml:1:1: error: binary file, not YAML text",
        f"{tmp_path}/empty.yaml:1:1: error: file is empty",
        f"{tmp_path}/nope.yaml:1:1: error: cannot read: No such file or directory",
        f"{tmp_path}:1:1: error: is a directory, not a manifest file",
    ]
    assert "4 of 4 file(s) invalid" in result.stderr


def test_validate_warning_keeps_exit_0(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        GOOD.replace(
            "inputs:\n  image_path: {schema: {type: string}}",
            "inputs:\n  image_path: {schema: {type: string}}\n  spare: {schema: {type: string}}",
        )
    )
    result = run("validate", "--task-path", str(TASKS), str(path))
    assert result.exit_code == 0
    assert f"{path}:7:3: warning: pipeline input 'spare' is never used" in result.output


def test_schema_prints_json():
    result = run("schema", "pipeline")
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "wtm Pipeline manifest"
    assert run("schema", "job").exit_code == 2


def test_graph_json_and_tree(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    data = json.loads(run("graph", "--task-path", str(TASKS), "--json", str(path)).output)
    assert data["stages"] == [["001"], ["002", "003"]]
    assert "output_001_faces_array -> input_003_faces_array" in data["edges"]
    tree = run("graph", "--task-path", str(TASKS), str(path))
    assert tree.exit_code == 0
    assert "stage 2 (parallel)" in tree.output
    assert "003 describe@2.1.0 foreach $001.faces_array" in tree.output


def test_graph_of_bad_pipeline_exits_2(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace("task: detect@^1", "task: detect@^7"))
    result = run("graph", "--task-path", str(TASKS), str(path))
    assert result.exit_code == 2
    assert "no version of 'detect' satisfies '^7'" in result.output


def test_shipped_manifests_validate():
    files = [
        str(p)
        for p in [
            *ROOT.glob("manifests/*.yaml"),
            *ROOT.glob("plugins/*/manifest.yaml"),
            *ROOT.glob("examples/*/manifest.yaml"),
        ]
    ]
    result = run("validate", *files)
    assert result.exit_code == 0, result.output
