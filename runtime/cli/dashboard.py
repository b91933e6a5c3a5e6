"""``wtm dashboard`` (a Textual terminal UI) and ``wtm runs watch`` (a live table).

Both read the metadata store only. :mod:`tui` is imported inside the commands,
so the engine and the other commands never import Textual.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runtime.cli.common import Seconds, open_services
from runtime.cli.output import console, fail
from runtime.config import ConfigError, Settings
from runtime.services import Services


@click.command()
@click.option(
    "--interval",
    type=Seconds(0.1, 10.0),
    default=0.5,
    show_default=True,
    help="Seconds between reads of the store.",
)
@click.option(
    "--limit",
    type=click.IntRange(10, 10_000),
    default=500,
    show_default=True,
    help="How many of the most recent runs to show.",
)
@click.option("--run", "run_id", metavar="RUN_ID", help="Open this run at start.")
@click.option(
    "--broker",
    metavar="URL",
    help="Redis URL of the Celery broker: the Workers view shows its workers live "
    "[WTM_BROKER_URL].",
)
def dashboard(interval: float, limit: int, run_id: str | None, broker: str | None) -> None:
    """A live terminal dashboard of runs, steps, values, lineage, workers and plugins.

    Press ? in it for every key. Re-running a failed run looks for its pipeline
    in manifests/*.yaml of the current folder. With a broker (--broker or
    WTM_BROKER_URL), the Workers view follows the Celery workers from Celery
    events; a broker that goes away shows a banner and is reconnected.
    """
    try:
        settings = Settings.load({"broker_url": broker})
    except ConfigError as exc:
        fail(str(exc))
    from tui.app import DashboardApp

    app = DashboardApp(
        lambda: Services.open(settings),
        interval=interval,
        limit=limit,
        workdir=Path.cwd(),
        open_run=run_id,
        broker_url=settings.broker_url,
    )
    app.run()


@click.command()
@click.argument("run_id")
@click.option(
    "--interval",
    type=Seconds(0.1, 10.0),
    default=0.5,
    show_default=True,
    help="Seconds between reads of the store.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the table: no line per step change.")
def watch(run_id: str, interval: float, quiet: bool) -> None:
    """Follow a run's steps live until it ends.

    Exit 0 if the run succeeded, 1 if it failed or was cancelled, 2 if there is no such run.
    """
    from tui.watch import watch_run

    with open_services() as services:
        if services.metadata.get_run(run_id) is None:
            fail(f"no run {run_id!r}; see wtm runs list")
        try:
            code = watch_run(services.metadata, run_id, console, interval, quiet)
        except KeyboardInterrupt:
            fail("stopped watching; the run goes on", code=130)
    sys.exit(code)
