"""Raw Celery tasks for the baselines: registered on the same worker as wtm's tasks.

``bench.overhead`` starts the worker as ``import bench.rawcelery`` followed by
the unchanged ``wtm worker`` command, so the raw tasks and ``wtm.*`` share one
app configuration (``runtime.executors.celery_app.make_app``), one Redis and one
prefork pool.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="raw.noop")
def noop(*args: Any) -> list[Any]:
    """Does nothing; like the ``noop`` plugin, returns its first argument (or [])."""
    return args[0] if args else []


@shared_task(name="raw.join")
def join(results: list[Any]) -> list[Any]:
    """The body of a chord: returns the header's results."""
    return results
