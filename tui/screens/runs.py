"""The Runs screen: every recent run, newest first, filtered by status and text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center
from textual.widgets import DataTable, Input, Static

from tui.format import clock, duration, parse_time, run_seconds, status_text
from tui.poller import RunSummary
from tui.query import RunFilter
from tui.screens.base import LiveScreen
from tui.widgets import LiveTable, Row

NARROW = 100
"""Below this width run IDs show their last 8 characters, like short commit hashes."""
PIPELINE_WIDTH = 26

COLUMNS = [
    ("status", "STATUS"),
    ("run", "RUN"),
    ("pipeline", "PIPELINE"),
    ("started", "STARTED"),
    ("duration", "DURATION"),
    ("steps", "STEPS"),
]


def newest_first(summary: RunSummary) -> tuple[float, str]:
    """Sort key of a run in the list."""
    when = parse_time(summary.record.created_at)
    return (-when.timestamp() if when else 0.0, summary.run_id)


def steps_cell(summary: RunSummary) -> Text:
    """``2/3`` steps finished, with failures in red; ``…`` until counted."""
    counts = summary.counts
    if counts is None:
        return Text("…", style="dim")
    text = Text(f"{counts.done}/{counts.total}")
    if counts.failed:
        text.append(f" ✘{counts.failed}", style="red")
    return text


def run_row(summary: RunSummary, narrow: bool, now: datetime) -> Row:
    """The cells of one run."""
    run = summary.record
    pipeline = f"{run.pipeline}@{run.pipeline_version}"
    if narrow and len(pipeline) > PIPELINE_WIDTH:
        pipeline = pipeline[: PIPELINE_WIDTH - 1] + "…"
    return (
        status_text(run.status),
        Text(run.run_id[-8:] if narrow else run.run_id, style="cyan"),
        pipeline,
        clock(run.started_at or run.created_at, now),
        duration(run_seconds(run, now)),
        steps_cell(summary),
    )


class RunsScreen(LiveScreen):
    """Recent runs; enter opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open run"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("s", "cycle_status", "Status"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("x", "cancel", "Cancel"),
        Binding("R", "rerun", "Re-run"),
        Binding("c", "copy", "Copy ID"),
        Binding("l", "lineage", "Lineage"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = RunFilter()
        self._narrow: bool | None = None

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="search runs: ID, pipeline, input, error…", id="search")
        yield Static(id="filter-bar")
        yield LiveTable(COLUMNS, id="runs")
        with Center(id="empty-box"):
            yield Static(id="empty")

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one("#empty-box").display = False
        self.query_one(LiveTable).focus()
        self._show_empty("loading runs…")

    @property
    def table(self) -> LiveTable:
        return self.query_one("#runs", LiveTable)

    # data

    def _visible(self) -> dict[str, RunSummary]:
        return {k: s for k, s in self.dash.runs.items() if self.filter.matches(s.record)}

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        narrow = self.app.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.table.reset()
            full = True
        now = datetime.now(UTC)
        runs = self.dash.runs
        rank = lambda key: newest_first(runs[key])  # noqa: E731
        if full:
            visible = self._visible()
            self.table.sync({k: run_row(s, narrow, now) for k, s in visible.items()}, rank)
        else:
            touched = self.dash.changed_runs | {k for k, s in runs.items() if s.active}
            gone = [k for k in self.table.row_keys if k not in runs]
            rows: dict[str, Row] = {}
            for key in touched:
                summary = runs.get(key)
                if summary is None or not self.filter.matches(summary.record):
                    gone.append(key)
                else:
                    rows[key] = run_row(summary, narrow, now)
            self.table.discard(gone)
            self.table.upsert(rows, rank)
        self._update_bar()

    def _update_bar(self) -> None:
        total = len(self.dash.runs)
        shown = self.table.row_count
        active = sum(1 for s in self.dash.runs.values() if s.active)
        bar = Text.assemble(
            ("status ", "dim"),
            (self.filter.status, "bold"),
            ("  search ", "dim"),
            (self.filter.text.strip() or "—", "bold" if self.filter.words else "dim"),
            ("  │  ", "dim"),
            f"{shown} of {total} runs" if self.filter.active else f"{total} runs",
            ("  │  ", "dim"),
            (f"{active} active", "yellow" if active else "dim"),
        )
        self.query_one("#filter-bar", Static).update(bar)
        if not self.dash.loaded:
            return
        if total == 0:
            self._show_empty(
                Text.assemble(
                    ("no runs yet: try wtm demo\n\n", "bold"),
                    ("runs started with wtm run show up here within a second\n", "dim"),
                    (f"store: {self.dash.store_url}", "dim"),
                )
            )
        elif shown == 0:
            self._show_empty(
                Text.assemble(
                    (f"no runs match {self.filter.describe()}\n\n", "bold"),
                    ("esc clears the filter, s changes the status", "dim"),
                )
            )
        else:
            self._show_empty(None)

    def _show_empty(self, message: Text | str | None) -> None:
        box = self.query_one("#empty-box")
        box.display = message is not None
        self.table.display = message is None
        if message is not None:
            self.query_one("#empty", Static).update(message)

    # selection

    def current(self) -> RunSummary | None:
        """The run under the cursor."""
        key = self.table.current_key
        return self.dash.runs.get(key) if key else None

    @on(DataTable.RowSelected, "#runs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        summary = self.current()
        if summary is not None:
            self.dash.open_run(summary.run_id)

    # filter

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.filter = RunFilter(self.filter.status, event.value)
        self.refresh_data(full=True)

    @on(Input.Submitted, "#search")
    def _search_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#search", Input).display = False
        self.table.focus()

    def action_cycle_status(self) -> None:
        self.filter = self.filter.next_status()
        self.refresh_data(full=True)

    def action_clear_filter(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        search.display = False
        self.filter = RunFilter()
        self.table.focus()
        self.refresh_data(full=True)

    # actions on the run under the cursor

    def _with_run(self, action: str, *args: Any) -> None:
        summary = self.current()
        if summary is None:
            self.notify("no run selected", severity="warning")
            return
        getattr(self.dash, action)(summary.run_id, *args)

    def action_cancel(self) -> None:
        self._with_run("cancel_run")

    def action_rerun(self) -> None:
        self._with_run("rerun")

    def action_copy(self) -> None:
        summary = self.current()
        if summary is not None:
            self.copy(summary.run_id, "run ID")

    def action_lineage(self) -> None:
        self._with_run("open_lineage")
