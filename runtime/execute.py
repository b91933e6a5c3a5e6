"""Run a checked pipeline on an executor: the API behind ``wtm run``, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.executors.base import ExecutorOptions, Pool, open_executor
from runtime.executors.calls import TaskPin
from runtime.executors.session import RunSession, new_run_id, pins_for
from runtime.manifest import PipelineManifest, load_manifest
from runtime.owner import this_process
from runtime.problems import ManifestError
from runtime.services import Services
from runtime.validate import CheckedPipeline, check_pipeline


def prepare(
    services: Services, source: str | Path | PipelineManifest
) -> tuple[CheckedPipeline, dict[str, TaskPin]]:
    """Load (from a file, unless given) and check a pipeline against the installed plugins;
    pin each step to a package."""
    manifest = source if isinstance(source, PipelineManifest) else load_manifest(source)
    if not isinstance(manifest, PipelineManifest):
        raise ManifestError([manifest.source.problem(("kind",), "expected kind: Pipeline")])
    catalog = services.registry.catalog()
    checked = check_pipeline(manifest, catalog)
    return checked, pins_for(checked.graph, catalog)


def execute(
    services: Services,
    checked: CheckedPipeline,
    pins: Mapping[str, TaskPin],
    runs: Sequence[Mapping[str, Any]],
    *,
    executor: str = "local",
    workers: int | None = None,
    pool: Pool = "process",
    broker_url: str | None = None,
    timeout: float | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_finished: Callable[[RunSession], None] | None = None,
    batch_id: str | None = None,
    reuse: bool = True,
) -> list[RunSession]:
    """One run per inputs mapping; returns the finished sessions. ``reuse``: whether steps
    may be served from the step cache."""
    if len(runs) > 1 and batch_id is None:
        batch_id = new_run_id()
    options = ExecutorOptions(workers, pool, broker_url, timeout, on_notice)
    with open_executor(executor, services, options) as chosen:
        sessions = [
            RunSession.create(
                services,
                checked.graph,
                pins,
                chosen.prepare_inputs(checked.pipeline, inputs),
                chosen.name,
                batch_id,
                owner=this_process() if chosen.in_process else None,
                reuse=reuse,
            )
            for inputs in runs
        ]
        chosen.run(sessions, on_finished)
    return sessions
