"""The Runs screen: list, layout at 80x24 and wider, filter, empty store, store errors."""

from __future__ import annotations

from runtime.services import Services
from runtime.stores.errors import StoreError
from tests.tui.conftest import DIAMOND, Bench, Filled, screen_text, until
from tests.tui.helpers import dashboard
from tui.app import DashboardApp
from tui.screens.runs import RunsScreen


def runs_screen(app) -> RunsScreen:
    screen = app.screen
    assert isinstance(screen, RunsScreen), type(screen)
    return screen


async def test_runs_list_at_80x24(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: runs_screen(app).table.row_count == 3, what="3 runs")
        await until(pilot, lambda: "…" not in screen_text(app).splitlines()[3], what="counts")
        await until(pilot, lambda: "q Quit" in screen_text(app).splitlines()[-1], what="footer")
        lines = screen_text(app).splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        assert lines[0].startswith(" wtm ") and "1 Runs" in lines[0] and "? help" in lines[0]
        assert "3 runs" in lines[1]
        header = lines[2].split()
        assert header == ["STATUS", "RUN", "PIPELINE", "STARTED", "DURATION", "STEPS"]
        rows = {line.split()[3]: line for line in lines[3:6]}
        assert set(rows) == {"faces@1.0.0", "failing@1.0.0", "diamond@1.0.0"}
        assert "✔ succeeded" in rows["diamond@1.0.0"] and "4/4" in rows["diamond@1.0.0"]
        assert "✘ failed" in rows["failing@1.0.0"] and "3/3 ✘1" in rows["failing@1.0.0"]
        assert filled.diamond[-8:] in rows["diamond@1.0.0"]
        assert lines[3].split()[3] == "faces@1.0.0", "newest run first"
        footer = lines[-1]
        for key in ("/ Search", "s Status", "x Cancel", "R Re-run", "c Copy ID", "? Help"):
            assert key in footer, footer
        svg = app.export_screenshot()
        assert "failing@1.0.0" in svg and "STEPS" in svg


async def test_wide_terminal_shows_full_run_ids(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: filled.diamond in screen_text(app), what="full run ID")
        text = screen_text(app)
        assert filled.failing in text and filled.faces in text
        # The store label grows from "store not open yet" to the path: a relayout later.
        await until(
            pilot,
            lambda: f"{filled.bench.home.name}/wtm.db" in screen_text(app).splitlines()[0],
            what="the store path in the top bar",
        )


async def test_status_filter_and_search(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = runs_screen(app)
        await until(pilot, lambda: screen.table.row_count == 3)
        await pilot.press("s")  # active
        assert screen.filter.status == "active"
        assert "no runs match status=active" in screen_text(app)
        for _ in range(4):  # running, pending, succeeded, failed
            await pilot.press("s")
        assert screen.filter.status == "failed"
        assert screen.table.row_keys == [filled.failing]
        await pilot.press("escape")
        assert screen.table.row_count == 3
        await pilot.press("slash")
        await pilot.press(*"diamond")
        assert screen.filter.text == "diamond", "typed keys go to the search box, not to bindings"
        assert screen.table.row_keys == [filled.diamond]
        await pilot.press("enter")
        assert app.focused is screen.table
        assert "search='diamond'" in screen.filter.describe()
        await pilot.press("escape")
        assert screen.table.row_count == 3 and screen.filter.text == ""
        await pilot.press("slash", *"x=1")  # inputs are searched too
        assert screen.table.row_keys == [filled.diamond]


async def test_copy_run_id(filled: Filled) -> None:
    app = dashboard(filled.bench)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = runs_screen(app)
        await until(pilot, lambda: screen.table.row_count == 3)
        await pilot.press("c")
        assert app.clipboard == filled.faces
        await pilot.press("down", "c")
        assert app.clipboard == filled.failing


async def test_empty_store_says_how_to_start(bench: Bench) -> None:
    app = dashboard(bench)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "no runs yet: try wtm demo" in screen_text(app))
        assert not runs_screen(app).table.display
        await pilot.press("2")
        await until(pilot, lambda: "no step has run yet" in screen_text(app))
        assert "Celery events are not connected yet" in screen_text(app)
        await pilot.press("3")
        await until(pilot, lambda: "add" in screen_text(app), what="test plugins listed")


async def test_store_error_shows_banner_and_retries(bench: Bench) -> None:
    bench.run("diamond", DIAMOND, {"x": 2})
    # Opening the store and reading it fail apart: after a failed read the app reopens the
    # store, so a read error that also broke opening would show for one retry only.
    state = {"opens": 0, "open_broken": True, "read_broken": False}

    def flaky() -> Services:
        state["opens"] += 1
        if state["open_broken"]:
            raise StoreError("sqlite:///nowhere: unable to open database file")
        services = bench.open_services()
        real = services.metadata.list_runs

        def list_runs(*args, **kwargs):
            if state["read_broken"]:
                raise StoreError("database disk image is malformed")
            return real(*args, **kwargs)

        services.metadata.list_runs = list_runs  # type: ignore[method-assign]
        return services

    app = DashboardApp(flaky, interval=0.05, workdir=bench.folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "store error: sqlite:///nowhere" in screen_text(app))
        assert state["opens"] >= 1
        state["open_broken"] = False
        await until(pilot, lambda: runs_screen(app).table.row_count == 1, what="recovery")
        await until(pilot, lambda: "store error" not in screen_text(app), what="banner hidden")
        state["read_broken"] = True
        await until(pilot, lambda: "database disk image is malformed" in screen_text(app))
        assert runs_screen(app).table.row_count == 1, "the last data stays on screen"
        assert "showing data from" in screen_text(app)
        state["read_broken"] = False
        await until(pilot, lambda: "store error" not in screen_text(app), what="banner gone")
