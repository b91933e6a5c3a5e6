"""``wtm worker``: a Celery worker that loads task plugins on demand from the registry."""

from __future__ import annotations

import click

from runtime.cli.output import fail
from runtime.config import ConfigError, Settings


@click.command()
@click.option("--broker", help="Redis URL of the broker [WTM_BROKER_URL].")
@click.option(
    "--concurrency", "-c", type=click.IntRange(1, 512), help="Worker processes [number of CPUs]."
)
@click.option(
    "--queues", "-Q", default="celery", show_default=True, help="Comma-separated queues to consume."
)
@click.option(
    "--loglevel",
    "-l",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option("--hostname", "-n", help="Node name, e.g. worker1@%h.")
def worker(
    broker: str | None, concurrency: int | None, queues: str, loglevel: str, hostname: str | None
) -> None:
    """Start a worker; it shares nothing with clients but Redis and the stores."""
    from runtime.executors.celery_app import make_app

    try:
        settings = Settings.load({"broker_url": broker})
        if not settings.broker_url:
            fail("no broker: pass --broker redis://HOST:6379/0 or set WTM_BROKER_URL")
        app = make_app(settings.broker_url)
    except ConfigError as exc:
        fail(str(exc))
    argv = [
        "worker",
        "-E",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        queues,
        "--loglevel",
        loglevel.upper(),
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    app.worker_main(argv=argv)
