"""Run a checked pipeline on an executor: the API behind ``wtm run``, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from runtime.executors.calls import TaskPin
from runtime.executors.local import LocalExecutor
from runtime.executors.session import RunSession, new_run_id, pins_for
from runtime.manifest import PipelineManifest, load_manifest
from runtime.problems import ManifestError
from runtime.services import Services
from runtime.stores.artifacts import artifact_uri, put_blob_file
from runtime.validate import CheckedPipeline, check_pipeline

ExecutorName = Literal["local", "celery"]


def prepare(services: Services, path: str | Path) -> tuple[CheckedPipeline, dict[str, TaskPin]]:
    """Load and check a pipeline against the installed plugins; pin each step to a package."""
    manifest = load_manifest(path)
    if not isinstance(manifest, PipelineManifest):
        raise ManifestError([manifest.source.problem(("kind",), "expected kind: Pipeline")])
    catalog = services.registry.catalog()
    checked = check_pipeline(manifest, catalog)
    return checked, pins_for(checked.graph, catalog)


def upload_files(
    services: Services, pipeline: PipelineManifest, inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """String inputs naming local files, uploaded as artifacts so any worker can read them."""
    uploaded = dict(inputs)
    for name, value in inputs.items():
        port = pipeline.inputs.get(name)
        if (
            port
            and port.schema.get("type") == "string"
            and isinstance(value, str)
            and Path(value).is_file()
        ):
            uploaded[name] = artifact_uri(put_blob_file(services.artifacts, value))
    return uploaded


def execute(
    services: Services,
    checked: CheckedPipeline,
    pins: Mapping[str, TaskPin],
    runs: Sequence[Mapping[str, Any]],
    *,
    executor: ExecutorName = "local",
    workers: int | None = None,
    pool: Literal["process", "thread"] = "process",
    broker_url: str | None = None,
    on_finished: Callable[[RunSession], None] | None = None,
    batch_id: str | None = None,
) -> list[RunSession]:
    """One run per inputs mapping; returns the finished sessions."""
    if len(runs) > 1 and batch_id is None:
        batch_id = new_run_id()
    if executor == "celery":
        from runtime.executors.celery_executor import CeleryExecutor

        remote = CeleryExecutor(services, broker_url)
        runs = [upload_files(services, checked.pipeline, inputs) for inputs in runs]
        sessions = [
            RunSession.create(services, checked.graph, pins, inputs, "celery", batch_id)
            for inputs in runs
        ]
        remote.run(sessions, on_finished)
        return sessions
    sessions = [
        RunSession.create(services, checked.graph, pins, inputs, "local", batch_id)
        for inputs in runs
    ]
    with LocalExecutor(services, workers, pool) as local:
        local.run(sessions, on_finished)
    return sessions
