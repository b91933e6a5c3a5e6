"""``wtm run --no-cache``, ``wtm cache stats|clear``, and cached steps in ``wtm runs show``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runtime.cli import cli
from tests.conftest import TASKS

PIPELINE = """\
apiVersion: wtm/v1
kind: Pipeline
name: squares
version: 1.0.0
inputs:
  probe: {schema: {type: string}}
steps:
  - {id: "001", task: square, with: {xs: [1, 2], probe: $inputs.probe}}
outputs:
  ys: $001.ys
"""


@pytest.fixture
def env(tmp_path):
    return {"WTM_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def invoke(env, *args):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def run(tmp_path, env):
    assert invoke(env, "plugin", "install", str(TASKS / "square")).exit_code == 0
    path = tmp_path / "squares.yaml"
    path.write_text(PIPELINE)
    probe = tmp_path / "probe"
    probe.mkdir()

    def go(*flags):
        result = invoke(env, "run", str(path), "-i", f"probe={probe}", "--json", *flags)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["processing_summary"]

    go.executions = lambda: len(list(probe.iterdir()))
    go.path, go.probe = str(path), probe
    return go


def test_a_second_run_is_served_and_no_cache_runs_again(run, env):
    first = run()
    second = run()
    assert run.executions() == 1
    assert second["steps"]["001"]["cached"] == 1 and second["sequential_time"] == 0
    shown = invoke(env, "runs", "show", second["run_id"]).output
    assert "succeeded (cached)" in shown
    assert f"001: served from the cache, computed by run {first['run_id']}/001" in shown
    text = invoke(env, "run", run.path, "-i", f"probe={run.probe}").output
    assert "1 call served from the step cache" in text and "1 (1 cached)" in text
    third = run("--no-cache")
    assert run.executions() == 2 and third["steps"]["001"]["cached"] == 0


def test_cache_stats_and_clear(run, env):
    assert invoke(env, "cache", "stats").output.strip() == "the step cache is empty"
    run()
    run()
    stats = json.loads(invoke(env, "cache", "stats", "--json").output)
    assert [(s["task"], s["entries"], s["hits"]) for s in stats] == [("square", 1, 1)]
    assert "square@1.0.0" in invoke(env, "cache", "stats").output
    assert invoke(env, "cache", "clear", "--older-than", "1d").output.strip() == (
        "removed 0 cached results"
    )
    assert invoke(env, "cache", "clear", "--task", "square@1.0.0").output.strip() == (
        "removed 1 cached result"
    )
    run()
    assert run.executions() == 2


def test_a_bad_age_is_one_line(env):
    result = CliRunner().invoke(cli, ["cache", "clear", "--older-than", "soon"], env=env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --older-than: expected an age like 12h, 7d or 2w, got 'soon'"
    ]
