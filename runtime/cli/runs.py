"""``wtm runs list|show|cancel`` and ``wtm lineage``."""

from __future__ import annotations

from datetime import datetime

import click
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from runtime.cli.common import open_services
from runtime.cli.output import console, fail, print_json
from runtime.executors.reconcile import reconcile
from runtime.lineage import LineageNode, final_values, lineage
from runtime.stores.metadata import ACTIVE_RUN_STATUSES, RUN_STATUSES, RunRecord

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "running": "yellow",
    "pending": "dim",
    "cancelled": "magenta",
    "skipped": "dim",
}


def styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def duration(run: RunRecord) -> str:
    if not run.started_at:
        return ""
    end = datetime.fromisoformat(run.finished_at) if run.finished_at else None
    start = datetime.fromisoformat(run.started_at)
    seconds = ((end or datetime.now(start.tzinfo)) - start).total_seconds()
    return f"{seconds:.2f}s" + ("" if end else "…")


@click.group()
def runs() -> None:
    """List, inspect and cancel runs."""


@runs.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_(status: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    with open_services() as services:
        reconcile(services)
        found = services.metadata.list_runs(status=status, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    if not found:
        console.print("no runs yet; try: wtm demo")
        return
    table = Table("run", "pipeline", "status", "executor", "created", "duration")
    for r in found:
        table.add_row(
            r.run_id,
            f"{r.pipeline}@{r.pipeline_version}",
            styled(r.status),
            r.executor,
            r.created_at[:19].replace("T", " "),
            duration(r),
        )
    console.print(table)


@runs.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show(run_id: str, as_json: bool) -> None:
    """A run: its inputs, outcome and every step execution."""
    with open_services() as services:
        reconcile(services)
        run = services.metadata.get_run(run_id)
        if run is None:
            fail(f"no run {run_id!r}; see wtm runs list")
        steps = services.metadata.list_steps(run_id)
    if as_json:
        print_json({**run.to_dict(), "steps": [s.to_dict() for s in steps]})
        return
    console.print(
        Text.assemble(
            (run.run_id, "bold"),
            f"  {run.pipeline}@{run.pipeline_version}  ",
            styled(run.status),
            f"  {run.executor}  {duration(run)}",
        ),
        soft_wrap=True,
    )
    console.print(f"inputs: {run.inputs}", soft_wrap=True)
    table = Table(
        "step", "item", "task", "status", "attempt", "worker", "seconds", "input_id", "output_id"
    )
    for s in steps:
        table.add_row(
            s.step_id,
            "" if s.item < 0 else str(s.item),
            f"{s.task}@{s.task_version}",
            Text.assemble(styled(s.status), (" (cached)", "cyan") if s.cached_from else ""),
            str(s.attempt),
            s.worker or "",
            f"{s.seconds:.3f}" if s.seconds is not None else "",
            s.input_id,
            s.output_id,
        )
    console.print(table)
    for s in steps:
        key = s.step_id if s.item < 0 else f"{s.step_id}[{s.item}]"
        if s.error and s.status in ("failed", "skipped"):
            style = "red" if s.status == "failed" else "dim"
            console.print(Text(f"{key}: {s.error}", style=style), soft_wrap=True)
        elif s.cached_from:
            note = f"{key}: served from the cache, computed by run {s.cached_from}"
            console.print(Text(note, style="cyan"), soft_wrap=True)
    if run.error:
        console.print(Text.assemble(("error:", "red"), f" {run.error}"), soft_wrap=True)


@runs.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a pending or running run; its executor stops it within a second."""
    with open_services() as services:
        run = services.metadata.get_run(run_id)
        if run is None:
            fail(f"no run {run_id!r}")
        if run.status not in ACTIVE_RUN_STATUSES:
            fail(f"run {run_id} already {run.status}")
        services.metadata.update_run(run_id, status="cancelled")
    console.print(f"run {run_id} cancelled")


def _label(node: LineageNode) -> Text:
    v = node.value
    origin = "pipeline input" if v.producer == "pipeline" else f"step {v.producer}"
    return Text.assemble(
        (v.value_id, "cyan"),
        (f"  {v.data_id[:19]}  {v.size} B  {origin}" + (f"  {v.uri}" if v.uri else ""), "dim"),
        (f"  cached: computed by run {node.cached_from}", "cyan") if node.cached_from else "",
    )


def _tree(node: LineageNode, into: Tree) -> None:
    branch = into.add(_label(node))
    for source in node.sources:
        _tree(source, branch)


@click.command("lineage")
@click.argument("run_id")
@click.argument("value_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def lineage_command(run_id: str, value_id: str | None, as_json: bool) -> None:
    """Where a value of a run came from, back to the pipeline inputs (default: final values)."""
    with open_services() as services:
        if services.metadata.get_run(run_id) is None:
            fail(f"no run {run_id!r}; see wtm runs list")
        wanted = [value_id] if value_id else final_values(services.metadata, run_id)
        try:
            trees = [lineage(services.metadata, run_id, v) for v in wanted]
        except KeyError as exc:
            known = ", ".join(v.value_id for v in services.metadata.list_values(run_id)[:12])
            fail(f"run {run_id} has no value {exc.args[0]!r} (values: {known}, ...)")
    if as_json:
        print_json([t.to_json() for t in trees])
        return
    root = Tree(f"lineage of run {run_id}")
    for tree in trees:
        _tree(tree, root)
    console.print(root)
