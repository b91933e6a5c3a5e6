"""A run's screen: its summary, its steps as a stage table, and the data flow of a step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from runtime.stores.metadata import NO_ITEM, RunRecord, StepRecord
from tui.flow import all_edges, split_edge, stages, step_flow
from tui.format import (
    clock,
    duration,
    inputs_line,
    run_seconds,
    status_text,
    step_label,
    step_seconds,
    step_status_text,
)
from tui.poller import StepCounts, StepKey
from tui.screens.base import LiveScreen
from tui.widgets import LiveTable, Row

NARROW = 100
COLUMNS = [
    ("stage", "STAGE"),
    ("step", "STEP"),
    ("task", "TASK"),
    ("state", "STATE"),
    ("attempt", "TRY"),
    ("worker", "WORKER"),
    ("duration", "DURATION"),
]


def row_key(key: StepKey) -> str:
    """The table key of a step execution: ``003`` or ``003[4]``."""
    return step_label(*key)


def step_row(step: StepRecord, stage: int | None, narrow: bool, now: datetime) -> Row:
    """The cells of one step execution; foreach chunks are indented under their step."""
    chunk = step.item != NO_ITEM
    task = step.task if narrow else f"{step.task}@{step.task_version}"
    return (
        "" if chunk or stage is None else str(stage),
        Text(
            f" └ {step_label(step.step_id, step.item)}" if chunk else step.step_id,
            style="dim" if chunk else "bold",
        ),
        Text(task, style="dim") if chunk else task,
        step_status_text(step),
        str(step.attempt) if step.started_at else "",
        step.worker or "",
        duration(step_seconds(step, now)),
    )


def summary_text(run: RunRecord, counts: StepCounts, now: datetime) -> Group:
    """The lines above the stage table: status, pipeline, timing, progress, inputs, error.

    Each line is cut to the width rather than wrapped, so the table does not jump;
    only the error may take two lines.
    """
    head = Text.assemble(
        status_text(run.status),
        "  ",
        (f"{run.pipeline}@{run.pipeline_version}", "bold"),
        "  run ",
        (run.run_id, "cyan"),
        (f"  {run.executor}", "dim"),
    )
    progress = Text.assemble(
        ("started ", "dim"),
        clock(run.started_at or run.created_at, now),
        ("  duration ", "dim"),
        duration(run_seconds(run, now)),
        ("  steps ", "dim"),
        f"{counts.done}/{counts.total} done",
    )
    if counts.running:
        progress.append(f", {counts.running} running", style="yellow")
    if counts.failed:
        progress.append(f", {counts.failed} failed", style="red")
    inputs = Text.assemble(("inputs ", "dim"), inputs_line(run.inputs) or "none")
    lines = [head, progress, inputs]
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    if run.error:
        error = run.error if len(run.error) < 160 else run.error[:159] + "…"
        lines.append(Text(error, style="red"))
    return Group(*lines)


def flow_text(step_id: str, steps: list[StepRecord]) -> Group:
    """The edges into and out of a step, aligned on the arrow."""
    flow = step_flow(step_id, steps)
    lines = [Text(f"data flow of step {step_id}", style="bold")]
    width = max((len(split_edge(e)[0]) for e in (*flow.incoming, *flow.outgoing)), default=0)
    for label, edges, style in (("in ", flow.incoming, "green"), ("out", flow.outgoing, "cyan")):
        for edge in edges:
            source, target = split_edge(edge)
            lines.append(
                Text.assemble(
                    (label + " ", "dim"), (source.ljust(width), style), (" → ", "dim"), target
                )
            )
        if not edges:
            lines.append(Text(f"{label} none", style="dim"))
    return Group(*lines)


def edges_text(steps: list[StepRecord]) -> Group:
    """Every edge of the run."""
    edges = all_edges(steps)
    width = max((len(split_edge(e)[0]) for e in edges), default=0)
    lines = [Text(f"all {len(edges)} data-flow edges", style="bold")]
    for edge in edges:
        source, target = split_edge(edge)
        lines.append(Text.assemble((source.ljust(width), "green"), (" → ", "dim"), target))
    return Group(*lines)


class RunScreen(LiveScreen):
    """One run, live: enter opens a step."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("enter", "open", "Open step"),
        Binding("l", "lineage", "Lineage"),
        Binding("e", "toggle_edges", "All edges"),
        Binding("x", "cancel", "Cancel"),
        Binding("R", "rerun", "Re-run"),
        Binding("c", "copy", "Copy ID"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.crumbs = (f"run {run_id[-8:]}",)
        self.show_all_edges = False
        self._keys: dict[str, StepKey] = {}
        self._narrow: bool | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(Text(f"loading run {self.run_id}…", style="dim"), id="run-summary")
        yield LiveTable(COLUMNS, id="steps")
        with VerticalScroll(id="flow-box"):
            yield Static(id="flow")

    def on_mount(self) -> None:
        self.dash.watch_run(self.run_id)
        self.query_one(LiveTable).focus()

    def on_unmount(self) -> None:
        self.dash.unwatch_run(self.run_id)

    @property
    def table(self) -> LiveTable:
        return self.query_one("#steps", LiveTable)

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        update = self.dash.steps.get(self.run_id)
        if update is None:
            return
        summary = self.query_one("#run-summary", Static)
        if update.run is None:
            summary.update(Text(f"no run {self.run_id} in the store", style="bold red"))
            return
        now = datetime.now(UTC)
        steps = list(update.steps.values())
        summary.update(summary_text(update.run, StepCounts.of(self.run_id, steps), now))
        narrow = self.app.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.table.reset()
            full = True
        stage_of = stages(steps)
        wanted = (
            update.steps.keys()
            if full
            else {
                k for k, s in update.steps.items() if k in update.changed or s.status == "running"
            }
        )
        rows = {}
        for key in wanted:
            step = update.steps[key]
            self._keys[row_key(key)] = key
            rows[row_key(key)] = step_row(step, stage_of.get(step.step_id), narrow, now)

        def rank(name: str) -> tuple[int, str, int]:
            sid, item = self._keys[name]
            return (stage_of.get(sid, 0), sid, item)

        self.table.upsert(rows, rank)
        if full or update.changed:
            self._update_flow()

    def current_step(self) -> StepKey | None:
        """The step execution under the cursor."""
        name = self.table.current_key
        return self._keys.get(name) if name else None

    def _update_flow(self) -> None:
        update = self.dash.steps.get(self.run_id)
        if update is None:
            return
        steps = list(update.steps.values())
        flow = self.query_one("#flow", Static)
        key = self.current_step()
        if self.show_all_edges:
            flow.update(edges_text(steps))
        elif key is not None:
            flow.update(flow_text(key[0], steps))

    @on(DataTable.RowHighlighted, "#steps")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_flow()

    @on(DataTable.RowSelected, "#steps")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = self.current_step()
        if key is not None:
            self.dash.open_step(self.run_id, *key)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_edges(self) -> None:
        self.show_all_edges = not self.show_all_edges
        self._update_flow()

    def action_lineage(self) -> None:
        self.dash.open_lineage(self.run_id)

    def action_cancel(self) -> None:
        self.dash.cancel_run(self.run_id)

    def action_rerun(self) -> None:
        self.dash.rerun(self.run_id)

    def action_copy(self) -> None:
        self.copy(self.run_id, "run ID")
