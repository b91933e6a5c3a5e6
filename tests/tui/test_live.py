"""Live behaviour: runs started while the dashboard is open, cancel and re-run from it."""

from __future__ import annotations

from tests.tui.conftest import FAILING, SLOW, Bench, screen_text, screen_words, until
from tests.tui.helpers import dashboard
from tui.screens.modals import ConfirmScreen, HelpScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen


async def test_a_run_started_while_open_shows_its_steps_progress(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await until(pilot, lambda: "no runs yet" in screen_text(app))
        thread = bench.run_in_background("slow", SLOW)
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: runs.table.row_count == 1, timeout=5, what="the new run")
        [run_id] = runs.table.row_keys
        assert "running" in screen_text(app)
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen)
        screen = app.screen
        seen: dict[str, set[str]] = {"001": set(), "002": set(), "003": set()}

        def record() -> bool:
            for sid, states in seen.items():
                cells = screen.table.row_cells(sid)
                if cells is not None:
                    states.add(str(cells[3]).split()[-1])
            return "succeeded" in seen["003"]

        await until(pilot, record, timeout=10, what="step 003 to succeed")
        thread.join(5)
        assert {"pending", "running"} & seen["003"], seen
        assert "running" in seen["002"] or "running" in seen["003"], seen
        assert "✔ succeeded" in screen_text(app)
        await until(pilot, lambda: "steps 3/3 done" in screen_text(app))
        await pilot.press("escape")
        await until(pilot, lambda: "succeeded" in str(runs.table.row_cells(run_id)[0]))


async def test_cancel_a_running_run(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        thread = bench.run_in_background("slow", SLOW)
        runs = app.screen
        await until(pilot, lambda: runs.table.row_count == 1, timeout=5, what="the run")
        [run_id] = runs.table.row_keys
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert f"Cancel run {run_id}?" in screen_text(app)
        await pilot.press("n")
        assert app.screen is runs
        assert bench.services.metadata.get_run(run_id).status == "running"
        await pilot.press("x", "y")
        await until(
            pilot,
            lambda: "cancelled" in str(runs.table.row_cells(run_id)[0]),
            what="the cancelled status",
        )
        thread.join(10)
        assert not thread.is_alive()
        steps = {s.step_id: s.status for s in bench.services.metadata.list_steps(run_id)}
        assert "cancelled" in steps.values() and steps["003"] == "cancelled"
        await pilot.press("x")
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: f"run {run_id} is already cancelled" in app.notices)


async def test_rerun_a_failed_run(bench: Bench) -> None:
    failed = bench.run("failing", FAILING, {"value": "again"}).run_id
    app = dashboard(bench)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        runs = app.screen
        await until(pilot, lambda: runs.table.row_count == 1)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        text = screen_text(app)
        assert "Re-run failing@1.0.0 with the same inputs?" in text
        assert "wtm run manifests/failing.yaml --input value=again" in text
        await pilot.press("y")
        await until(pilot, lambda: runs.table.row_count == 2, timeout=20, what="the re-run")
        new = next(k for k in runs.table.row_keys if k != failed)
        assert runs.table.keys[0] == new, "the new run is on top"
        record = bench.services.metadata.get_run(new)
        assert record.inputs == {"value": "again"} and record.pipeline == "failing"
        await until(
            pilot,
            lambda: f"re-run of {failed} finished: the new run failed" in app.notices,
            timeout=20,
        )


async def test_rerun_needs_the_manifest(bench: Bench) -> None:
    failed = bench.run("failing", FAILING, {"value": "x"}).run_id
    (bench.folder / "manifests" / "failing.yaml").unlink()
    app = dashboard(bench)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        runs = app.screen
        await until(pilot, lambda: runs.table.row_count == 1)
        await pilot.press("enter", "R")
        await until(
            pilot,
            lambda: any(
                n.startswith(f"cannot re-run {failed}: no manifests/") for n in app.notices
            ),
        )
        assert "start the dashboard in the project folder" in screen_words(app)
        assert not isinstance(app.screen, ConfirmScreen)


async def test_help_lists_every_key(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(100, 50)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = screen_text(app)
        for wanted in (
            "Runs view",
            "Workers view",
            "Plugins view",
            "Search",
            "Status",
            "Clear filter",
            "Cancel",
            "Re-run",
            "Copy ID",
            "Lineage",
            "Open step",
            "All edges",
            "Load value",
            "Copy value ID",
            "Expand all",
            "Quit",
        ):
            assert wanted in help_text, wanted
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
