"""``wtm config show`` and ``wtm doctor``."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click
from rich.table import Table
from rich.text import Text

from runtime.cli.output import console, fail, print_json
from runtime.config import ConfigError, Settings
from runtime.doctor import run_checks


def _settings() -> Settings:
    try:
        return Settings.load()
    except ConfigError as exc:
        fail(str(exc))


@click.group()
def config() -> None:
    """Show the effective configuration."""


@config.command()
@click.option("--json", "as_json", is_flag=True)
def show(as_json: bool) -> None:
    """The effective settings (secrets masked) and where each came from."""
    settings = _settings()
    shown = settings.masked()
    if as_json:
        print_json(shown)
        return
    table = Table("setting", "value", "from")
    for name, value in shown.items():
        table.add_row(name, str(value), settings.origins.get(name, "default"))
    console.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check each configured service; exit 1 if any does not answer."""
    checks = run_checks(_settings())
    if as_json:
        print_json([asdict(c) for c in checks])
    else:
        table = Table("component", "target", "status", "version", "latency", "detail")
        for c in checks:
            table.add_row(
                c.component,
                c.target,
                Text("ok", style="green") if c.ok else Text("failed", style="red"),
                c.version,
                f"{c.latency_ms:.1f} ms" if c.latency_ms is not None else "",
                c.detail,
            )
        console.print(table)
    if not all(c.ok for c in checks):
        sys.exit(1)
