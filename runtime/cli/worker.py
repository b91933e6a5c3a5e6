"""``wtm worker``: a Celery worker that loads task plugins on demand from the registry."""

from __future__ import annotations

import click

from runtime.cli.common import open_services
from runtime.cli.output import fail
from runtime.config import ConfigError, Settings
from runtime.executors.calls import TaskPin
from runtime.stores.errors import NotFound
from runtime.versions import TaskRef


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
@click.option(
    "--warm",
    "warm_refs",
    multiple=True,
    metavar="NAME[@CONSTRAINT]",
    help="A plugin each worker process loads, with its models, as it starts (repeatable).",
)
def worker(
    broker: str | None,
    concurrency: int | None,
    queues: str,
    loglevel: str,
    hostname: str | None,
    warm_refs: tuple[str, ...],
) -> None:
    """Start a worker; it shares nothing with clients but Redis and the stores."""
    from runtime.executors import celery_tasks
    from runtime.executors.celery_app import make_app

    try:
        settings = Settings.load({"broker_url": broker})
        if not settings.broker_url:
            fail("no broker: pass --broker redis://HOST:6379/0 or set WTM_BROKER_URL")
        app = make_app(settings.broker_url)
    except ConfigError as exc:
        fail(str(exc))
    celery_tasks.WARM_PINS[:] = resolve_warm(warm_refs)
    if warm_refs:  # loading models takes longer than Celery gives a new process (4 s)
        app.conf.worker_proc_alive_timeout = 120
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


def resolve_warm(refs: tuple[str, ...]) -> list[TaskPin]:
    """The installed versions ``--warm`` names, or exit 2 naming the first that is not."""
    if not refs:
        return []
    pins = []
    with open_services() as services:
        for text in refs:
            try:
                ref = TaskRef.parse(text)
                record = services.registry.resolve(ref.name, ref.constraint)
            except (ValueError, NotFound) as exc:
                fail(f"--warm {text!r}: {exc}")
            pins.append(TaskPin(record.name, record.version, record.digest))
    return pins
