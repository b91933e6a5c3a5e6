"""The ``wtm`` command line: exit 0 on success, 1 on a failed run, 2 on bad input or usage,
70 on an internal error (a bug in wtm, never the user's input)."""

from __future__ import annotations

import sys

import click

from runtime.cli.cache import cache
from runtime.cli.config import config, doctor
from runtime.cli.dashboard import dashboard, watch
from runtime.cli.demo import demo
from runtime.cli.group import WtmGroup
from runtime.cli.manifests import graph, schema, validate
from runtime.cli.pipelines import pipeline
from runtime.cli.plugins import plugin
from runtime.cli.run import run
from runtime.cli.runs import lineage_command, runs
from runtime.cli.worker import worker


@click.group(cls=WtmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wtm", prog_name="wtm")
def cli() -> None:
    """wtm: run AI task pipelines from YAML manifests, locally or on Celery workers."""


cli.add_command(validate)
cli.add_command(schema)
cli.add_command(graph)
cli.add_command(plugin)
cli.add_command(pipeline)
cli.add_command(run)
cli.add_command(runs)
cli.add_command(cache)
cli.add_command(lineage_command)
cli.add_command(demo)
cli.add_command(worker)
cli.add_command(config)
cli.add_command(doctor)
cli.add_command(dashboard)
runs.add_command(watch)


def main() -> None:
    """Console entry point (errors: see :mod:`runtime.cli.group`)."""
    cli.main()
    sys.exit(0)
