"""Live behaviour: runs started while the dashboard is open, cancel and re-run from it."""

from __future__ import annotations

from tests.tui.conftest import FAILING, Bench, screen_text, screen_words, until
from tests.tui.helpers import dashboard
from tui.screens.modals import ConfirmScreen, HelpScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen


async def test_a_run_started_while_open_shows_its_steps_progress(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await until(pilot, lambda: "no runs yet" in screen_text(app))
        run, run_id = bench.start_held()
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: runs.table.row_count == 1, what="the new run")
        assert list(runs.table.row_keys) == [run_id]
        assert "running" in str(runs.table.row_cells(run_id)[0])
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen)
        screen = app.screen

        def states() -> list[str]:
            """The state column of steps 001, 002, 003, as the screen shows it."""
            shown = []
            for sid in ("001", "002", "003"):
                cells = screen.table.row_cells(sid)
                shown.append(str(cells[3]).split()[-1] if cells is not None else "")
            return shown

        # Each step ends when its gate opens: every state is on screen for as long as needed.
        def shown(*wanted: str, done: int) -> bool:
            return states() == list(wanted) and f"steps {done}/3 done" in screen_text(app)

        await until(pilot, lambda: shown("running", "pending", "pending", done=0), what="001")
        bench.open_gate(1)
        await until(pilot, lambda: shown("succeeded", "running", "pending", done=1), what="002")
        bench.open_gate(2)
        await until(pilot, lambda: states() == ["succeeded", "succeeded", "running"], what="003")
        bench.open_gate(3)
        await until(pilot, lambda: states() == ["succeeded"] * 3, what="every step done")
        await until(pilot, lambda: "steps 3/3 done" in screen_text(app))
        assert "✔ succeeded" in screen_text(app)
        assert run.join().run_id == run_id
        await pilot.press("escape")
        await until(pilot, lambda: "succeeded" in str(runs.table.row_cells(run_id)[0]))


async def test_cancel_a_running_run(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        run, run_id = bench.start_held()  # step 001 runs until its gate opens: after the cancel
        runs = app.screen
        await until(pilot, lambda: runs.table.row_count == 1, what="the run")
        await until(pilot, lambda: bench.step_states(run_id).get("001") == "running", what="001")
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
        # The executor stops the run: its waiting steps never start, while 001 still holds.
        await until(
            pilot,
            lambda: [bench.step_states(run_id).get(s) for s in ("002", "003")] == ["cancelled"] * 2,
            what="the waiting steps cancelled",
        )
        assert not bench.gate(1).exists()
        bench.open_gate(1)  # 001 may end now (a task that ignores cancellation)
        run.join()
        assert bench.services.metadata.get_run(run_id).status == "cancelled"
        for sid in ("002", "003"):
            step = bench.services.metadata.get_step(run_id, sid)
            assert step is not None and step.status == "cancelled" and step.started_at is None
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
