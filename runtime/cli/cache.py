"""``wtm cache stats|clear``: the step cache (see :mod:`runtime.executors.cache`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from rich import filesize
from rich.table import Table

from runtime.cli.common import open_services
from runtime.cli.output import console, fail, print_json
from runtime.config import parse_age


@click.group()
def cache() -> None:
    """Inspect and clear cached step results."""


@cache.command()
@click.option("--json", "as_json", is_flag=True)
def stats(as_json: bool) -> None:
    """Entries, their output size and reuses, per task version."""
    with open_services() as services:
        found = services.metadata.cache_stats()
        max_age = services.settings.cache_max_age
    if as_json:
        print_json([vars(s) for s in found])
        return
    if not found:
        console.print("the step cache is empty")
        return
    table = Table("task", "entries", "size", "reused", "oldest", "newest")
    for s in found:
        table.add_row(
            f"{s.task}@{s.task_version}",
            str(s.entries),
            filesize.decimal(s.size),
            str(s.hits),
            (s.oldest or "")[:19].replace("T", " "),
            (s.newest or "")[:19].replace("T", " "),
        )
    console.print(table)
    console.print(f"entries older than {max_age / 86400:g} days are not reused (WTM_CACHE_MAX_AGE)")


@cache.command()
@click.option("--task", metavar="NAME[@VERSION]", help="Only this task (or task version).")
@click.option("--older-than", metavar="AGE", help="Only entries older than AGE: 12h, 7d, 2w.")
def clear(task: str | None, older_than: str | None) -> None:
    """Delete cached results (all of them by default); runs and their records stay."""
    before = None
    if older_than is not None:
        try:
            before = datetime.now(UTC) - timedelta(seconds=parse_age(older_than))
        except ValueError as exc:
            fail(f"--older-than: {exc}")
    name, _, version = (task or "").partition("@")
    with open_services() as services:
        removed = services.metadata.clear_cache(name or None, version or None, before)
    console.print(f"removed {removed} cached result{'' if removed == 1 else 's'}")
