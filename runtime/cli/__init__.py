"""The ``wtm`` command line: exit 0 on success, 1 on a failed run, 2 on bad input or usage."""

from __future__ import annotations

import os
import sys

import click

from runtime.cli.config import config, doctor
from runtime.cli.dashboard import dashboard, watch
from runtime.cli.demo import demo
from runtime.cli.manifests import graph, schema, validate
from runtime.cli.output import fail
from runtime.cli.plugins import plugin
from runtime.cli.run import run
from runtime.cli.runs import lineage_command, runs
from runtime.cli.worker import worker

EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wtm", prog_name="wtm")
def cli() -> None:
    """wtm: run AI task pipelines from YAML manifests, locally or on Celery workers."""


cli.add_command(validate)
cli.add_command(schema)
cli.add_command(graph)
cli.add_command(plugin)
cli.add_command(run)
cli.add_command(runs)
cli.add_command(lineage_command)
cli.add_command(demo)
cli.add_command(worker)
cli.add_command(config)
cli.add_command(doctor)
cli.add_command(dashboard)
runs.add_command(watch)


def main() -> None:
    """Console entry point: no tracebacks unless WTM_DEBUG is set."""
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("WTM_DEBUG"):
            raise
        fail(
            f"internal error: {type(exc).__name__}: {exc} (set WTM_DEBUG=1 for a traceback)",
            code=EXIT_BAD_INPUT,
        )
    sys.exit(0)
