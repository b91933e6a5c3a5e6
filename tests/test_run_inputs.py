"""Pipeline inputs as ``wtm run`` takes them (issue 13): strings are values, only
``format: file`` inputs name files, every input is checked before a run exists, and
user data is printed as it is, never read as markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runtime.cli import cli
from tests.conftest import ROOT, TASKS

GREET = """\
apiVersion: wtm/v1
kind: Pipeline
name: hello
version: 1.0.0
inputs:
  name: {schema: {type: string, minLength: 1}}
  code: {schema: {type: string, pattern: "^[0-9]+$", maxLength: 3}, default: "1"}
steps:
  - {id: "001", task: greet, with: {name: $inputs.name}}
outputs:
  greeting: $001.greeting
"""

DETECT = """\
apiVersion: wtm/v1
kind: Pipeline
name: count
version: 1.0.0
inputs:
  image: {schema: {type: string, format: file}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image}}
outputs:
  count: $001.count
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {"WTM_HOME": str(tmp_path / "home")}
    for plugin in (ROOT / "examples/greet", TASKS / "detect"):
        result = CliRunner().invoke(cli, ["plugin", "install", str(plugin)], env=env)
        assert result.exit_code == 0, result.output
    (tmp_path / "greet.yaml").write_text(GREET)
    (tmp_path / "detect.yaml").write_text(DETECT)
    return env


def wtm(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def greeting(env: dict[str, str], tmp_path: Path, name: str) -> str:
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "-i", f"name={name}", "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["greeting"])


def recorded_runs(env: dict[str, str]) -> list[dict[str, object]]:
    return list(json.loads(wtm(env, "runs", "list", "--json").stdout))


def one_error_line(result: Result) -> str:
    """The single line a refused command printed (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    return lines[0]


def test_a_string_input_naming_a_file_stays_the_string(env: dict[str, str], tmp_path: Path) -> None:
    Path("README").write_text("not to be read")  # in the current folder, as in the report
    assert greeting(env, tmp_path, "README") == "Hello, README!"


def test_a_string_input_longer_than_a_file_name_is_a_value(
    env: dict[str, str], tmp_path: Path
) -> None:
    name = "x" * 300  # over the 255 bytes a file name may have
    assert greeting(env, tmp_path, name) == f"Hello, {name}!"


def test_a_file_input_is_made_absolute_and_must_exist(env: dict[str, str], tmp_path: Path) -> None:
    Path("faces.txt").write_text("a\nb\n")
    result = wtm(env, "run", str(tmp_path / "detect.yaml"), "-i", "image=faces.txt", "--json")
    assert result.exit_code == 0, result.output
    [run] = recorded_runs(env)
    assert run["inputs"] == {"image": str(Path("faces.txt").resolve())}
    missing = wtm(env, "run", str(tmp_path / "detect.yaml"), "-i", "image=nowhere.txt")
    assert one_error_line(missing) == "error: input 'image': no such file: 'nowhere.txt'"
    folder = wtm(env, "run", str(tmp_path / "detect.yaml"), "-i", f"image={tmp_path}")
    assert "a folder, not a file" in one_error_line(folder)
    long = wtm(env, "run", str(tmp_path / "detect.yaml"), "-i", "image=" + "y" * 300)
    line = one_error_line(long)
    assert "no such file: 'yyyy" in line and line.endswith("...") and len(line) < 100
    assert len(recorded_runs(env)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "code=not-a-number"], "error: input 'code' at $: 'not-a-number' is too long"),
        (["-i", "code=12x"], "error: input 'code' at $: '12x' does not match '^[0-9]+$'"),
        (["-i", "name="], "error: input 'name' at $: '' should be non-empty"),
    ],
)
def test_pipeline_inputs_are_checked_before_a_run_is_created(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "-i", "name=a", *args)
    assert one_error_line(result) == message
    assert recorded_runs(env) == []


def test_each_line_of_a_jsonl_batch_is_checked_before_any_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    batch = tmp_path / "names.jsonl"
    batch.write_text('{"name": "a"}\n5\n')
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "--batch", str(batch))
    assert one_error_line(result) == f"error: {batch}:2: expected a JSON object of inputs, got int"
    batch.write_text('{"name": "a"}\n{"name": "b", "code": "1234"}\n')
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "--batch", str(batch))
    assert one_error_line(result) == f"error: {batch}:2: input 'code' at $: '1234' is too long"
    batch.write_text('{"name": "a", "other": 1}\n')
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "--batch", str(batch))
    assert "the pipeline has no input 'other'" in one_error_line(result)
    assert recorded_runs(env) == []


def test_user_data_is_printed_as_it_is_never_as_markup(env: dict[str, str], tmp_path: Path) -> None:
    result = wtm(env, "run", str(tmp_path / "greet.yaml"), "-i", "name=[/x] [bold]:smile:")
    assert result.exit_code == 0, result.output
    assert "Hello, [/x] [bold]:smile:!" in result.output
    [run] = recorded_runs(env)
    shown = wtm(env, "runs", "show", str(run["run_id"]))
    assert shown.exit_code == 0 and "[/x] [bold]:smile:" in shown.output, shown.output
    lineage = wtm(env, "lineage", str(run["run_id"]))
    assert lineage.exit_code == 0, lineage.output
    bad_name = wtm(env, "run", str(tmp_path / "greet.yaml"), "-i", "[/x]=1")
    assert one_error_line(bad_name).startswith("error: --input '[/x]': the pipeline has no input")


def test_a_plugin_description_is_printed_as_it_is(env: dict[str, str], tmp_path: Path) -> None:
    plugin = tmp_path / "marked"
    plugin.mkdir()
    lines = (ROOT / "examples/greet/manifest.yaml").read_text().splitlines()
    renamed = ["name: marked" if line == "name: greet" else line for line in lines]
    marked = [
        "description: '[/x] [red]Greet someone'" if line.startswith("description:") else line
        for line in renamed
    ]
    (plugin / "manifest.yaml").write_text("\n".join(marked) + "\n")
    (plugin / "plugin.py").write_text((ROOT / "examples/greet/plugin.py").read_text())
    assert wtm(env, "plugin", "install", str(plugin)).exit_code == 0
    shown = wtm(env, "plugin", "show", "marked")
    assert shown.exit_code == 0 and "[/x] [red]Greet someone" in shown.output, shown.output


def test_a_stored_manifest_no_longer_valid_is_one_line(env: dict[str, str]) -> None:
    """A record installed before durations were bounded (``timeout: .inf``)."""
    import math
    import sqlite3

    with sqlite3.connect(Path(env["WTM_HOME"]) / "wtm.db") as db:
        [(raw,)] = db.execute("SELECT manifest FROM plugins WHERE name = 'greet'")
        manifest = {**json.loads(raw), "timeout": math.inf}
        db.execute("UPDATE plugins SET manifest = ? WHERE name = 'greet'", [json.dumps(manifest)])
    line = one_error_line(wtm(env, "plugin", "show", "greet"))
    assert line.startswith("error: greet@1.0.0: its stored manifest is no longer valid (timeout")
