"""Plugins loaded, and their models set up, before the first step that needs them.

A worker process that loads the face models inside its first step (about 0.6 s here)
makes that step, and the run's speedup, look slow for a reason that is not the step's
(issue 14). Executors that know a run's pins before its steps start warm them first:
the local executor in each pool process as it starts. Loading stays lazy for tasks no
run of the executor uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from runtime.executors.calls import TaskPin
from runtime.executors.plan import RunPlan
from runtime.loader import Loader

log = logging.getLogger(__name__)


def pins_of(plans: Iterable[RunPlan]) -> list[TaskPin]:
    """The distinct task pins of run plans, in order."""
    found: dict[TaskPin, None] = {}
    for plan in plans:
        for step in plan.steps.values():
            found.setdefault(step.pin, None)
    return list(found)


def warm(loader: Loader, pins: Iterable[TaskPin]) -> float:
    """Load and set up every pinned plugin; the seconds that took. A plugin that cannot be
    loaded is left for its step to report, with the step's one-line error."""
    started = time.perf_counter()
    for pin in pins:
        try:
            loader.load_pinned(pin.name, pin.version, pin.digest)
        except Exception as exc:
            log.debug("not warmed: %s@%s: %s", pin.name, pin.version, exc)
    return time.perf_counter() - started
