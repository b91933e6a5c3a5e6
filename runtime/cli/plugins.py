"""``wtm plugin install|list|show|remove``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from runtime.cli.common import open_services
from runtime.cli.output import console, fail, print_json
from runtime.executors.reconcile import reconcile
from runtime.problems import ManifestError
from runtime.registry import InstallError, manifest_of
from runtime.stores.errors import Conflict, NotFound, StoreError
from runtime.stores.metadata import PluginRecord
from runtime.versions import TaskRef, is_version


@click.group()
def plugin() -> None:
    """Install, list, show and remove task plugins."""


@plugin.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an installed version with different content.")
@click.option(
    "--install-requirements",
    is_flag=True,
    help="pip-install missing requirements (honours no_deps) before installing.",
)
def install(sources: tuple[Path, ...], force: bool, install_requirements: bool) -> None:
    """Install plugin folders or zips: validate, check, package, upload, record."""
    with open_services() as services:
        registry = services.registry
        for source in sources:
            try:
                result = registry.install(
                    source, force=force, install_requirements=install_requirements
                )
            except (InstallError, StoreError) as exc:
                message = str(exc)  # said once, whether or not it starts with the path
                fail(message if message.startswith(f"{source}:") else f"{source}: {message}")
            record = result.record
            what = {
                "installed": "installed",
                "replaced": "replaced (--force)",
                "unchanged": "already installed with the same content; nothing to do",
            }
            console.print(
                Text.assemble(
                    (f"{record.name}@{record.version}", "green"),
                    f" {what[result.action]} (sha256 {record.digest[:12]}, {record.size} bytes)",
                ),
                soft_wrap=True,
            )


def _row(record: PluginRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "version": record.version,
        "digest": record.digest,
        "size": record.size,
        "object_key": record.object_key,
        "source": record.source,
        "installed_at": record.installed_at,
    }


@plugin.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """Installed plugins (registry and pip), newest version first."""
    with open_services() as services:
        records = services.registry.records()
    if as_json:
        print_json([_row(r) for r in records])
        return
    if not records:
        console.print("no plugins installed; try: wtm plugin install plugins/face_detection")
        return
    table = Table("name", "version", "digest", "size", "source", "installed")
    for r in records:
        table.add_row(r.name, r.version, r.digest[:12], str(r.size), r.source, r.installed_at[:19])
    console.print(table)


@plugin.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with digest and object key).")
def show(ref: str, as_json: bool) -> None:
    """One plugin version (NAME, NAME@VERSION or NAME@CONSTRAINT) and its ports."""
    parsed = _ref(ref)
    with open_services() as services:
        try:
            record = services.registry.resolve(parsed.name, parsed.constraint)
        except NotFound as exc:
            fail(str(exc))
    try:
        task = manifest_of(record)
    except ManifestError as exc:
        fail(
            f"{record.name}@{record.version}: its stored manifest is no longer valid "
            f"({exc.problems[0].message}); reinstall it with --force"
        )
    if as_json:
        print_json({**_row(record), "manifest": record.manifest})
        return
    console.print(
        Text.assemble((f"{record.name}@{record.version}", "bold"), f"  {task.description}"),
        soft_wrap=True,
    )
    console.print(
        f"sha256 {record.digest}  {record.size} bytes  key {record.object_key}", soft_wrap=True
    )
    console.print(
        f"timeout {task.timeout}s  retries {task.max_retries}  requirements "
        f"{', '.join(r.requirement for r in task.requirements) or 'none'}",
        soft_wrap=True,
    )
    table = Table("direction", "port", "type", "required", "default", "description")
    for direction, ports in (("input", task.inputs), ("output", task.outputs)):
        for port in ports.values():
            required = ("yes" if port.required else "no") if direction == "input" else ""
            table.add_row(
                direction,
                port.name,
                str(port.schema.get("type", "any")),
                required,
                repr(port.default) if port.has_default else "",
                _first_sentence(port.description),
            )
    console.print(table)


@plugin.command()
@click.argument("ref")
def remove(ref: str) -> None:
    """Remove NAME@VERSION (refused while an active run uses it)."""
    parsed = _ref(ref)
    if not is_version(parsed.constraint):
        fail("give the exact version to remove: NAME@VERSION")
    with open_services() as services:
        reconcile(services)
        try:
            record = services.registry.remove(parsed.name, parsed.constraint)
        except (NotFound, Conflict) as exc:
            fail(str(exc))
    console.print(f"removed {record.name}@{record.version}")


def _first_sentence(text: str, limit: int = 70) -> str:
    sentence = text.split(". ")[0].strip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _ref(text: str) -> TaskRef:
    try:
        return TaskRef.parse(text)
    except ValueError as exc:
        fail(str(exc))
