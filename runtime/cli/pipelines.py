"""``wtm pipeline register|list|show|remove``: registered pipelines (see
:mod:`runtime.pipelines`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from runtime import pipelines
from runtime.cli.common import open_services
from runtime.cli.output import console, fail, print_json
from runtime.problems import ManifestError
from runtime.stores.errors import Conflict, NotFound
from runtime.stores.metadata import PipelineRecord
from runtime.versions import is_version


@click.group()
def pipeline() -> None:
    """Register, list, show and remove pipelines (run them as NAME@CONSTRAINT)."""


@pipeline.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a registered version with other content.")
def register(files: tuple[Path, ...], force: bool) -> None:
    """Check pipeline files against the installed plugins and register them."""
    with open_services() as services:
        for path in files:
            try:
                done = pipelines.register(services, path, force)
            except ManifestError as exc:
                for problem in exc.problems:
                    click.echo(str(problem), err=True)
                sys.exit(2)
            except Conflict as exc:
                fail(f"{path}: {exc}")
            record = done.record
            what = {
                "registered": "registered",
                "replaced": "replaced (--force)",
                "unchanged": "already registered with the same content; nothing to do",
            }
            console.print(
                Text.assemble(
                    (f"{record.name}@{record.version}", "green"),
                    f" {what[done.status]} ({_steps(record.steps)}, {record.digest[:19]})",
                ),
                soft_wrap=True,
            )


def _row(record: PipelineRecord) -> dict[str, object]:
    """The record without its manifest text."""
    return {k: v for k, v in record.to_dict().items() if k != "text"}


@pipeline.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """Registered pipelines, by name and version."""
    with open_services() as services:
        records = services.metadata.list_pipelines()
    if as_json:
        print_json([_row(r) for r in records])
        return
    if not records:
        console.print("no pipelines registered; try: wtm pipeline register manifests/*.yaml")
        return
    table = Table("name", "version", "steps", "inputs", "registered")
    for r in records:
        inputs = ", ".join(r.inputs)
        registered = r.registered_at[:19].replace("T", " ")
        table.add_row(r.name, r.version, str(r.steps), inputs, registered)
    console.print(table)


@pipeline.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the manifest text).")
def show(ref: str, as_json: bool) -> None:
    """A registered pipeline (NAME, NAME@VERSION or NAME@CONSTRAINT) and its manifest."""
    with open_services() as services:
        try:
            record = pipelines.resolve(services, ref)
        except (NotFound, ValueError) as exc:
            fail(str(exc))
    if as_json:
        print_json(record.to_dict())
        return
    console.print(
        Text.assemble((f"{record.name}@{record.version}", "bold"), f"  {record.description}"),
        soft_wrap=True,
    )
    registered = record.registered_at[:19].replace("T", " ")
    console.print(f"{record.digest}  registered {registered}", soft_wrap=True)
    from rich.syntax import Syntax  # pygments: only to show a manifest

    console.print(Syntax(record.text.rstrip(), "yaml", background_color="default"))


@pipeline.command()
@click.argument("ref")
def remove(ref: str) -> None:
    """Forget NAME@VERSION (its runs and their records stay)."""
    name, _, version = ref.partition("@")
    if not is_version(version):
        fail("give the exact version to remove: NAME@VERSION")
    with open_services() as services:
        try:
            record = pipelines.remove(services, f"{name}@{version}")
        except NotFound as exc:
            fail(str(exc))
    console.print(f"removed {record.name}@{record.version}")


def _steps(count: int) -> str:
    return f"{count} step{'' if count == 1 else 's'}"
