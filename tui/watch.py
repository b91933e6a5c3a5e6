"""``wtm runs watch``: a run's steps in a rich ``Live`` table, until the run ends.

Not full screen: the table redraws in place on a terminal, and each step's
change of state is also printed as a line above it, so a CI log (where the
live table is printed once, at the end) still tells the story.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runtime.stores.metadata import ACTIVE_RUN_STATUSES, NO_ITEM, MetadataStore, StepRecord
from tui.flow import stages
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
from tui.poller import StepCounts, StepKey, StepsUpdate, StorePoller

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_UNKNOWN = 2
MAX_BACKOFF = 5.0
FULL_TABLE_ROWS = 100


def steps_table(steps: dict[StepKey, StepRecord], max_rows: int | None, now: datetime) -> Table:
    """The steps as a stage table; over ``max_rows``, active and failed steps first."""
    stage_of = stages(steps.values())
    order = sorted(steps, key=lambda k: (stage_of.get(k[0], 0), k[0], k[1]))
    hidden = 0
    if max_rows is not None and len(order) > max_rows:
        urgent = {"running": 0, "failed": 1, "cancelled": 2}
        picked = sorted(order, key=lambda k: urgent.get(steps[k].status, 3))[:max_rows]
        keep = set(picked)
        hidden = len(order) - len(keep)
        order = [k for k in order if k in keep]
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold", pad_edge=False)
    for column in ("stage", "step", "task", "state", "try", "worker", "duration"):
        table.add_column(column, no_wrap=True)
    for key in order:
        step = steps[key]
        chunk = step.item != NO_ITEM
        table.add_row(
            "" if chunk else str(stage_of.get(step.step_id, "")),
            step_label(step.step_id, step.item),
            f"{step.task}@{step.task_version}",
            step_status_text(step),
            str(step.attempt) if step.started_at else "",
            step.worker or "",
            duration(step_seconds(step, now)),
        )
    if hidden:
        table.caption = f"{hidden} more steps not shown"
    return table


def render(update: StepsUpdate, max_rows: int | None) -> RenderableType:
    """The run's header line, its steps and its error."""
    run = update.run
    assert run is not None
    now = datetime.now(UTC)
    counts = StepCounts.of(run.run_id, update.steps.values())
    head = Text.assemble(
        status_text(run.status),
        "  ",
        (f"{run.pipeline}@{run.pipeline_version}", "bold"),
        "  run ",
        (run.run_id, "cyan"),
        "  ",
        duration(run_seconds(run, now)),
        f"  {counts.done}/{counts.total} steps done",
        ("  inputs ", "dim"),
        inputs_line(run.inputs, 80),
    )
    parts: list[RenderableType] = [head, steps_table(update.steps, max_rows, now)]
    if run.error and run.status not in ACTIVE_RUN_STATUSES:
        parts.append(Text(run.error, style="red"))
    return Group(*parts)


def transition(step: StepRecord, before: StepRecord | None) -> Text | None:
    """A log line for a step whose state changed, or None."""
    if before is not None and before.status == step.status and before.attempt == step.attempt:
        return None
    if before is None and step.status == "pending":
        return None
    line = Text.assemble(
        (clock(step.finished_at or step.started_at) or clock(datetime.now(UTC).isoformat()), "dim"),
        "  ",
        (step_label(step.step_id, step.item), "bold"),
        f" {step.task}  ",
        step_status_text(step),
    )
    if step.status == "running" and step.worker:
        line.append(f" on {step.worker}", style="dim")
        if step.attempt > 1:
            line.append(f" (attempt {step.attempt})", style="yellow")
    elif step.seconds is not None:
        line.append(f" in {duration(step.seconds)}", style="dim")
    if step.status == "failed" and step.error:
        line.append(f": {step.error}", style="red")
    return line


def _when(step: StepRecord) -> str:
    """When a step last changed, for ordering the log lines of one poll."""
    return step.finished_at or step.started_at or ""


def watch_run(
    store: MetadataStore,
    run_id: str,
    console: Console,
    interval: float = 0.5,
    quiet: bool = False,
) -> int:
    """Follow ``run_id`` until it ends; 0 if it succeeded, 1 if not, 2 if there is no such run.

    Store errors are reported and retried with backoff.
    """
    poller = StorePoller(store)
    update = poller.poll_steps(run_id)
    if update.run is None:
        return EXIT_UNKNOWN
    max_rows = max(5, console.height - 6) if console.is_terminal else FULL_TABLE_ROWS
    finished_before = update.run is not None and update.run.status not in ACTIVE_RUN_STATUSES
    seen: dict[StepKey, StepRecord] = dict(update.steps) if finished_before else {}
    failures = 0
    with Live(
        render(update, max_rows),
        console=console,
        auto_refresh=False,
        transient=False,
        redirect_stdout=False,
    ) as live:
        while True:
            if not quiet:
                for key in sorted(update.changed, key=lambda k: (_when(update.steps[k]), k)):
                    line = transition(update.steps[key], seen.get(key))
                    if line is not None:
                        live.console.print(line, soft_wrap=True)
            seen = dict(update.steps)
            run = update.run
            assert run is not None
            finished = run.status not in ACTIVE_RUN_STATUSES
            live.update(render(update, FULL_TABLE_ROWS if finished else max_rows), refresh=True)
            if finished:
                break
            time.sleep(interval if not failures else min(MAX_BACKOFF, interval * 2**failures))
            try:
                update = poller.poll_steps(run_id)
                failures = 0
            except Exception as exc:  # keep watching through store hiccups
                failures += 1
                live.console.print(
                    Text.assemble(("store error (retrying):", "yellow"), f" {exc}"),
                    soft_wrap=True,
                )
    return EXIT_SUCCEEDED if run.status == "succeeded" else EXIT_FAILED
