"""``wtm runs watch RUN_ID``: a live table until the run ends, and its exit codes."""

from __future__ import annotations

import time

from click.testing import CliRunner

from runtime.cli.dashboard import watch
from tests.tui.conftest import DIAMOND, FAILING, SLOW, Bench


def run_watch(bench: Bench, *args: str):
    runner = CliRunner()
    return runner.invoke(
        watch, [*args, "--interval", "0.1"], env={"WTM_HOME": str(bench.home), "COLUMNS": "120"}
    )


def test_succeeded_run_exits_0_with_its_table(bench: Bench) -> None:
    run_id = bench.run("diamond", DIAMOND, {"x": 1}).run_id
    result = run_watch(bench, run_id)
    assert result.exit_code == 0, result.output
    assert f"✔ succeeded  diamond@1.0.0  run {run_id}" in result.output
    for header in ("stage", "step", "task", "state", "try", "worker", "duration"):
        assert header in result.output
    assert result.output.count("✔ succeeded") == 5  # the run and its 4 steps
    assert "4/4 steps done" in result.output


def test_failed_run_exits_1_with_its_error(bench: Bench) -> None:
    run_id = bench.run("failing", FAILING, {"value": "v"}).run_id
    result = run_watch(bench, run_id, "--quiet")
    assert result.exit_code == 1, result.output
    assert "✘ failed" in result.output and "↷ skipped" in result.output
    assert "RuntimeError: planned failure on attempt 3" in result.output


def test_unknown_run_exits_2(bench: Bench) -> None:
    result = run_watch(bench, "no-such-run")
    assert result.exit_code == 2
    assert "no run 'no-such-run'" in result.output


def test_follows_a_live_run_to_its_end(bench: Bench) -> None:
    before = bench.run_ids()
    thread = bench.run_in_background("slow", SLOW)
    deadline = time.monotonic() + 5
    while not bench.run_ids() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    [run_id] = bench.run_ids() - before
    result = run_watch(bench, run_id)
    thread.join(5)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    running = [line for line in lines if "● running on" in line]
    done = [line for line in lines if "✔ succeeded in" in line]
    assert {line.split()[1] for line in running} >= {"002", "003"}, result.output
    assert {line.split()[1] for line in done} == {"001", "002", "003"}, result.output


def test_cancelled_run_exits_1(bench: Bench) -> None:
    before = bench.run_ids()
    thread = bench.run_in_background("slow", SLOW)
    deadline = time.monotonic() + 5
    while not bench.run_ids() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    [run_id] = bench.run_ids() - before
    bench.services.metadata.update_run(run_id, status="cancelled")
    thread.join(5)
    result = run_watch(bench, run_id)
    assert result.exit_code == 1, result.output
    assert "⊘ cancelled" in result.output
