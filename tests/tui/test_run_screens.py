"""Drilling down: a run's stage table and edges, a step's values and error, lineage."""

from __future__ import annotations

import time

from textual.widgets import Tree

from runtime.lineage import lineage
from tests.tui.conftest import FACES, Bench, Filled, has_line, screen_text, until
from tests.tui.helpers import dashboard
from tui.screens.lineage import LineageScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.screens.step import StepScreen
from tui.widgets import CRUMB


async def open_run(pilot, app, run_id: str) -> RunScreen:
    """Select ``run_id`` in the runs list and press enter."""
    runs = app.screen
    assert isinstance(runs, RunsScreen)
    await until(pilot, lambda: run_id in runs.table.row_keys, what=f"run {run_id}")
    await until(pilot, lambda: all(s.counts for s in app.runs.values()), what="step counts")
    runs.table.move_cursor(row=runs.table.keys.index(run_id))
    await pilot.press("enter")
    await until(
        pilot,
        lambda: isinstance(app.screen, RunScreen) and app.screen.table.row_count,
        what="run screen",
    )
    return app.screen


def walk(node) -> list[str]:
    found = [node.value.value_id]
    for source in node.sources:
        found += walk(source)
    return found


async def test_run_detail_shows_stages_states_and_edges(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(pilot, app, filled.diamond)
        lines = screen_text(app).splitlines()
        assert all(len(line) <= 80 for line in lines)
        assert f"{CRUMB} run {filled.diamond[-8:]}" in lines[0]
        assert "✔ succeeded  diamond@1.0.0  run " + filled.diamond in lines[1]
        assert "steps 4/4 done" in lines[2] and "inputs x=1" in lines[3]
        header = lines[4].split()
        assert header == ["STAGE", "STEP", "TASK", "STATE", "TRY", "WORKER", "DURATION"]
        table = [line.split() for line in lines[5:9]]
        assert [(row[0], row[1], row[2]) for row in table] == [
            ("1", "001", "add"),
            ("2", "002", "add"),
            ("2", "003", "add"),
            ("3", "004", "add"),
        ]
        assert all("succeeded" in line for line in lines[5:9])
        text = screen_text(app)
        assert "data flow of step 001" in text
        assert has_line(text, "out", "output_001_sum", "→", "input_002_a")
        assert has_line(text, "in", "pipeline_input_x", "→", "input_001_a")
        await pilot.press("G")  # step 004: two edges in
        text = screen_text(app)
        assert "data flow of step 004" in text
        assert has_line(text, "in", "output_002_sum", "→", "input_004_a")
        assert has_line(text, "in", "output_003_sum", "→", "input_004_b")
        assert has_line(text, "out none")
        await pilot.press("e")
        assert "all 5 data-flow edges" in screen_text(app)
        await pilot.press("c")
        assert app.clipboard == filled.diamond
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_foreach_chunks_show_under_their_step(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run(pilot, app, filled.faces)
        await until(pilot, lambda: screen.table.row_count == 42, what="2 steps + 40 chunks")
        assert screen.table.keys[:4] == ["001", "002", "002[0]", "002[1]"]
        assert screen.table.keys[-1] == "002[39]"
        assert "└ 002[0]" in screen_text(app)


async def test_failed_step_shows_error_and_traceback(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 32)) as pilot:
        run = await open_run(pilot, app, filled.failing)
        text = screen_text(app)
        assert "✘ failed" in text and "✔ succeeded" in text and "↷ skipped" in text
        assert "1 failed" in text and "planned failure on attempt 3" in text
        await pilot.press("enter")  # step 001, the failed one
        await until(
            pilot,
            lambda: isinstance(app.screen, StepScreen) and "planned failure" in screen_text(app),
            what="step screen",
        )
        text = screen_text(app)
        assert "✘ failed  step 001  fail_until@1.0.0  attempt 3" in text
        assert "RuntimeError: planned failure on attempt 3" in text
        assert "Traceback" in text or "raise RuntimeError" in text, "the traceback tail"
        assert "input_001_value" in text, "inputs of a failed step are shown by data"
        await pilot.press("escape")
        assert app.screen is run
        await pilot.press("G")  # 003 was skipped
        await pilot.press("enter")
        await until(pilot, lambda: "skipped: step 001 failed" in screen_text(app))


async def test_step_values_and_lineage(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 36)) as pilot:
        await open_run(pilot, app, filled.diamond)
        await pilot.press("G", "enter")  # step 004
        await until(
            pilot,
            lambda: isinstance(app.screen, StepScreen) and app.screen.table.row_count == 3,
            what="values of 004",
        )
        step = app.screen
        assert step.table.keys == ["input_004_a", "input_004_b", "output_004_sum"]
        text = screen_text(app)
        assert "✔ succeeded  step 004  add@1.0.0" in text
        assert "add_input_004, add_output_004" in text
        assert has_line(text, "in", "a", "input_004_a", "12")  # (1 + 1) + 10
        assert has_line(text, "out", "sum", "output_004_sum", "114")
        await pilot.press("G")
        assert has_line(screen_text(app), "from input_004_a, input_004_b")
        await pilot.press("c")
        assert app.clipboard == "output_004_sum"
        await pilot.press("l")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, LineageScreen) and app.screen.query_one(Tree).root.children
            ),
            what="lineage tree",
        )
        shown = []

        def collect(node) -> None:
            if node.data is not None:
                shown.append(node.data.value.value_id)
            for child in node.children:
                collect(child)

        collect(app.screen.query_one(Tree).root)
        expected = walk(lineage(filled.bench.services.metadata, filled.diamond, "output_004_sum"))
        assert set(shown) == set(expected)
        assert "pipeline_input_x" in shown
        text = screen_text(app)
        assert "output_001_sum" in text and "pipeline input" in text
        assert "↑ expanded above" in text, "the diamond's shared source is expanded once"
        await pilot.press("down", "c")
        assert app.clipboard in shown
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StepScreen), what="producing step")
        await pilot.press("2")
        assert app.current_mode == "workers"
        await pilot.press("1")
        assert isinstance(app.screen, StepScreen), "each view keeps where it was"
        await pilot.press("1")
        assert isinstance(app.screen, RunsScreen), "1 again goes back to the runs list"


async def test_run_lineage_of_final_values(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 36)) as pilot:
        await open_run(pilot, app, filled.faces)
        await pilot.press("l")
        await until(
            pilot,
            lambda: (
                "output_002_described[39]" in screen_text(app)
                or "output_002_described" in screen_text(app)
            ),
            what="tree",
        )
        text = screen_text(app)
        assert "lineage of run" in text and "output_001_count" in text


async def test_hundreds_of_steps_stay_responsive(bench: Bench) -> None:
    faces = bench.folder / "many.txt"
    faces.write_text("face\n" * 300)
    run_id = bench.run("many", FACES, {"image_path": str(faces)}).run_id
    app = dashboard(bench)
    async with app.run_test(size=(80, 24)) as pilot:
        started = time.perf_counter()
        screen = await open_run(pilot, app, run_id)
        await until(pilot, lambda: screen.table.row_count == 302, what="302 rows")
        assert time.perf_counter() - started < 3.0
        started = time.perf_counter()
        screen.refresh_data()
        assert time.perf_counter() - started < 0.05, "a poll's refresh is cheap"
        assert screen.table.last_written == 0, "a quiet poll writes no cell"
        screen.refresh_data(full=True)
        assert screen.table.last_written == 0, "even a full refresh writes only changes"
        await pilot.press("G")
        assert screen.table.current_key == "002[299]"
        await until(pilot, lambda: "002[299]" in screen_text(app), what="scrolled to the end")
        await pilot.press("g", "down", "down")
        assert screen.table.current_key == "002[0]"
        await pilot.press("enter")
        await until(
            pilot,
            lambda: isinstance(app.screen, StepScreen) and app.screen.table.row_count == 3,
            what="chunk values",
        )
        assert "input_002_faces_array[0]" in screen_text(app)


async def test_large_values_are_shown_by_reference_and_load_on_demand(
    small_inline_bench: Bench,
) -> None:
    bench = small_inline_bench
    faces = bench.folder / "five.txt"
    faces.write_text("face\n" * 5)
    run_id = bench.run("faces", FACES, {"image_path": str(faces)}).run_id
    app = dashboard(bench)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run(pilot, app, run_id)
        screen.table.move_cursor(row=screen.table.keys.index("002"))
        await pilot.press("enter")
        await until(
            pilot,
            lambda: isinstance(app.screen, StepScreen) and app.screen.table.row_count == 11,
            what="5 chunks x 2 inputs + the gathered output",
        )
        await pilot.press("G")
        assert app.screen.table.current_key == "output_002_described"
        text = screen_text(app)
        assert has_line(text, "out", "output_002_described", "stored by reference")
        assert "artifact://" in text and "press v to load it" in text
        await pilot.press("v")
        await until(pilot, lambda: "loaded from artifact://" in screen_text(app))
        assert "press v to load it" not in screen_text(app)


async def test_open_a_run_at_start(filled: Filled) -> None:
    app = dashboard(filled.bench, open_run=filled.failing)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "✘ failed  failing@1.0.0" in screen_text(app))
        assert isinstance(app.screen, RunScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


MARKED = """
inputs:
  v: {schema: {}}
steps:
  - {id: "001", task: add, with: {a: $inputs.v}}
"""


async def test_user_data_is_shown_as_it_is_never_as_markup(bench: Bench) -> None:
    """An error quoting an input like ``[/x]`` (Rich's closing tag) shows as it is (#13)."""
    session = bench.run("marked", MARKED, {"v": "[/x] [red]"})
    app = dashboard(bench, open_run=session.run_id)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "'[/x] [red]' is not of type" in screen_text(app))
        await pilot.press("enter")  # the step: its input value is a table cell
        await until(
            pilot,
            lambda: isinstance(app.screen, StepScreen) and '"[/x] [red]"' in screen_text(app),
            what="the step's input value",
        )
