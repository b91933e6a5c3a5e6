"""A step execution's screen: what it is, its inputs and outputs, its error and traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from runtime.stores.metadata import StepRecord, ValueRecord
from tui.flow import ValueSlot, step_values
from tui.format import (
    clock,
    duration,
    short_digest,
    size,
    step_label,
    step_seconds,
    step_status_text,
    value_preview,
    value_view,
)
from tui.screens.base import LiveScreen
from tui.widgets import LiveTable, Row

MAX_LOAD_BYTES = 8 << 20
OTHER_COLUMNS = 24
"""Width of the DIR and SIZE columns, cell padding and the scrollbar."""
COLUMNS = [
    ("dir", "DIR"),
    ("port", "PORT"),
    ("value", "VALUE ID"),
    ("size", "SIZE"),
    ("preview", "PREVIEW"),
]


def step_header(step: StepRecord, now: datetime) -> Group:
    """Status, task, attempt, worker, timing and record IDs of a step execution."""
    lines = [
        Text.assemble(
            step_status_text(step),
            "  step ",
            (step_label(step.step_id, step.item), "bold"),
            "  ",
            (f"{step.task}@{step.task_version}", "bold"),
            ("  attempt ", "dim"),
            str(step.attempt),
            ("  worker ", "dim"),
            step.worker or "—",
        ),
        Text.assemble(
            ("started ", "dim"),
            clock(step.started_at, now) or "—",
            ("  duration ", "dim"),
            duration(step_seconds(step, now)) or "—",
            ("  digest ", "dim"),
            short_digest(step.digest),
        ),
        Text.assemble(("records ", "dim"), step.input_id, ", ", step.output_id),
    ]
    if step.cached_from:
        lines.append(Text(f"served from the cache, computed by run {step.cached_from}", "cyan"))
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return Group(*lines)


def error_text(step: StepRecord) -> RenderableType:
    """The tail of a failed step's traceback, then its error (the box scrolls to the end)."""
    parts: list[RenderableType] = []
    if step.traceback_tail:
        parts.append(Text(step.traceback_tail.rstrip(), style="red"))
    parts.append(Text(step.error or step.status, style="bold red"))
    return Group(*parts)


def slot_row(slot: ValueSlot, width: int) -> Row:
    """The cells of one input or output."""
    record = slot.record
    if record is None:
        preview: Text | str = Text("not recorded", style="dim")
    else:
        preview = value_preview(record, width)
    return (
        Text(slot.direction, style="green" if slot.direction == "in" else "cyan"),
        slot.port,
        slot.value_id,
        size(record.size) if record else "",
        preview,
    )


class StepScreen(LiveScreen):
    """One step execution; enter shows a value's lineage."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("enter", "lineage", "Lineage", show=False),
        Binding("l", "lineage", "Lineage"),
        Binding("v", "load", "Load value"),
        Binding("c", "copy", "Copy value ID"),
    ]

    def __init__(self, run_id: str, step_id: str, item: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.step_id = step_id
        self.item = item
        self.crumbs = (f"step {step_label(step_id, item)}",)
        self.step: StepRecord | None = None
        self.slots: dict[str, ValueSlot] = {}
        self.loaded: dict[str, Any] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(Text("loading…", style="dim"), id="step-summary")
        with VerticalScroll(id="error-box"):
            yield Static(id="step-error")
        yield LiveTable(COLUMNS, id="values")
        with VerticalScroll(id="value-box"):
            yield Static(id="value-view")

    def on_mount(self) -> None:
        self.query_one("#error-box").display = False
        self.dash.watch_run(self.run_id)
        self.query_one(LiveTable).focus()

    def on_unmount(self) -> None:
        self.dash.unwatch_run(self.run_id)

    @property
    def table(self) -> LiveTable:
        return self.query_one("#values", LiveTable)

    def refresh_data(self, full: bool = False) -> None:
        self.sync_banner()
        update = self.dash.steps.get(self.run_id)
        step = update.steps.get((self.step_id, self.item)) if update else None
        if step is None:
            if update is not None:
                self.query_one("#step-summary", Static).update(
                    Text(f"run {self.run_id} has no step {self.step_id}", style="bold red")
                )
            return
        self.query_one("#step-summary", Static).update(step_header(step, datetime.now(UTC)))
        if step != self.step:
            self.step = step
            self._show_error(step)
            self.load_values(step)

    def _show_error(self, step: StepRecord) -> None:
        box = self.query_one("#error-box")
        box.display = step.status in ("failed", "skipped", "cancelled") and bool(step.error)
        if box.display:
            self.query_one("#step-error", Static).update(error_text(step))
            self.call_after_refresh(box.scroll_end, animate=False)

    @work(exclusive=True, group="values")
    async def load_values(self, step: StepRecord) -> None:
        """Read the run's values and show this step's."""
        try:
            values = await self.dash.io.with_store(lambda s: s.list_values(self.run_id))
        except Exception as exc:  # the poll loop shows store errors; say what failed here
            self.query_one("#value-view", Static).update(
                Text(f"cannot read values: {exc}", style="red")
            )
            return
        self._show_values(step, values)

    def _show_values(self, step: StepRecord, values: list[ValueRecord]) -> None:
        slots = step_values(step, values)
        self.slots = {s.value_id: s for s in slots}
        longest = max((len(s.port) + len(s.value_id) for s in slots), default=12)
        width = max(16, self.app.size.width - longest - OTHER_COLUMNS)
        order = {s.value_id: n for n, s in enumerate(slots)}
        self.table.sync({s.value_id: slot_row(s, width) for s in slots}, order.__getitem__)
        if not slots:
            self.query_one("#value-view", Static).update(
                Text("no inputs or outputs recorded yet: the step has not run", style="dim")
            )
        else:
            self._show_current()

    def current(self) -> ValueSlot | None:
        """The input or output under the cursor."""
        key = self.table.current_key
        return self.slots.get(key) if key else None

    def _show_current(self) -> None:
        slot = self.current()
        view = self.query_one("#value-view", Static)
        if slot is None:
            return
        if slot.record is None:
            view.update(
                Text.assemble(
                    (slot.value_id, "bold cyan"),
                    "\n",
                    ("data ", "dim"),
                    slot.data_id,
                    "\n",
                    ("not recorded in the store", "dim"),
                )
            )
            return
        record = slot.record
        note = None
        if record.value_id != slot.value_id:
            note = Text(
                f"{slot.value_id} was not recorded; the same data is {record.value_id}:",
                style="dim",
            )
        body = value_view(record, self.loaded.get(record.value_id), record.value_id in self.loaded)
        view.update(Group(note, body) if note else body)

    @on(DataTable.RowHighlighted, "#values")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_current()

    @on(DataTable.RowSelected, "#values")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_lineage()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_lineage(self) -> None:
        slot = self.current()
        if slot is None or slot.record is None:
            self.notify("no recorded value here", severity="warning")
            return
        self.dash.open_lineage(self.run_id, slot.record.value_id)

    def action_copy(self) -> None:
        slot = self.current()
        if slot is not None:
            self.copy(slot.value_id, "value ID")

    def action_load(self) -> None:
        slot = self.current()
        record = slot.record if slot else None
        if record is None or not record.uri:
            self.notify("this value is inline: it is shown already", timeout=3)
            return
        if record.size > MAX_LOAD_BYTES:
            self.notify(f"{size(record.size)} is too large to show here", severity="warning")
            return
        self.load_blob(record)

    @work(exclusive=True, group="blob")
    async def load_blob(self, record: ValueRecord) -> None:
        """Fetch a by-reference value from the artifact store and show it."""
        uri = record.uri or ""
        try:
            data = await self.dash.io.call(lambda: self.dash.io.services.access.get_blob(uri))
            self.loaded[record.value_id] = json.loads(data)
        except Exception as exc:  # a missing or unreadable blob is shown, not raised
            self.notify(f"cannot load {uri}: {exc}", severity="error")
            return
        self._show_current()
