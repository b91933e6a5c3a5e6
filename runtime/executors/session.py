"""One run from the orchestrator's side: its record, its plan, its state, its outcome.

Every executor drives a :class:`RunSession`: it records the run and its
pipeline inputs, applies run-state transitions (recording what they change)
and ends with the run's outcome and the result document. The rules themselves
live in :mod:`runtime.executors.runstate`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from runtime import ids
from runtime.executors.cache import serve
from runtime.executors.calls import StepCall, StepResult, TaskPin
from runtime.executors.plan import RunPlan
from runtime.executors.records import change_records, step_mark
from runtime.executors.runstate import DEFAULT_MAX_LOST, RunState, Transition
from runtime.graph import PipelineGraph
from runtime.inputs import file_data_id, is_file_input
from runtime.loader import PIP_PREFIX
from runtime.manifest import PipelineManifest
from runtime.registry import RegistryCatalog
from runtime.services import Services
from runtime.stores.metadata import RunRecord, ValueRecord, utc_now
from runtime.values import BlobStore, ValueRef, encode


def new_run_id() -> str:
    """A short, sortable-enough, unique run ID."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def pins_for(graph: PipelineGraph, catalog: RegistryCatalog) -> dict[str, TaskPin]:
    """The exact package each step runs, from the registry records the catalog resolved."""
    pins = {}
    for sid, task in graph.tasks.items():
        record = catalog.records[(task.name, task.version)]
        pip_plugin = record.digest.startswith(PIP_PREFIX)  # names its module, not its code
        pins[sid] = TaskPin(
            task.name,
            task.version,
            record.digest,
            task.timeout,
            task.max_retries,
            task.retry_backoff,
            task.cache and graph.pipeline.step(sid).cache and not pip_plugin,
            tuple(name for name, port in task.inputs.items() if is_file_input(port)),
        )
    return pins


def input_ref(
    pipeline: PipelineManifest, name: str, value: Any, store: BlobStore, threshold: int
) -> ValueRef:
    """A pipeline input as it travels; a file input's data ID is its file's content
    (:func:`runtime.inputs.file_data_id`), not its path."""
    ref = encode(value, store, threshold)
    port = pipeline.inputs.get(name)
    if port is not None and is_file_input(port) and isinstance(value, str):
        content = file_data_id(value)
        if content is not None:
            return replace(ref, id=content)
    return ref


@dataclass
class RunSession:
    """The orchestrator's view of one run."""

    services: Services
    plan: RunPlan
    state: RunState
    record: RunRecord
    result: dict[str, Any] | None = None

    @classmethod
    def create(
        cls,
        services: Services,
        graph: PipelineGraph,
        pins: Mapping[str, TaskPin],
        inputs: Mapping[str, Any],
        executor: str,
        batch_id: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
        reuse: bool = True,
    ) -> RunSession:
        """Record a new running run, its pipeline inputs and its pending steps."""
        pipeline = graph.pipeline
        run_id = run_id or new_run_id()
        threshold = services.settings.inline_threshold
        refs = {
            name: input_ref(graph.pipeline, name, value, services.access, threshold)
            for name, value in inputs.items()
        }
        plan = RunPlan.build(graph, pins, services.access, threshold, reuse)
        record = RunRecord(
            run_id=run_id,
            pipeline=pipeline.name,
            pipeline_version=pipeline.version,
            inputs=dict(inputs),
            status="running",
            executor=executor,
            started_at=utc_now(),
            plugins=sorted({f"{p.name}@{p.version}#{p.digest}" for p in pins.values()}),
            batch_id=batch_id,
            owner=owner,
        )
        values = [
            ValueRecord(
                run_id=run_id,
                value_id=ids.pipeline_input(name),
                data_id=ref.id,
                producer="pipeline",
                port=name,
                value=ref.value,
                uri=ref.uri,
                size=ref.size,
            )
            for name, ref in refs.items()
        ]
        pending = [
            step_mark(run_id, sid, step.pin, list(step.edges), "pending")
            for sid, step in plan.steps.items()
        ]
        services.metadata.create_run(record, values, pending)
        return cls(services, plan, RunState.new(run_id, plan, refs), record)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def apply(self, transition: Transition) -> list[StepCall]:
        """Serve what the step cache holds of the calls ``transition`` starts, and what
        they unlock (:mod:`runtime.executors.cache`); record all it changed, in one write;
        return the calls left to run."""
        store, access = self.services.metadata, self.services.access
        max_age = self.services.settings.cache_max_age
        served = serve(self.plan, self.state, transition.calls, store, access, max_age)
        values, steps = change_records(store, self.plan, self.state, transition.changed)
        if served.hits:
            hit_values, hit_steps = served.records(store, self.plan, self.state)
            values, steps = values + hit_values, steps + hit_steps
        store.record(values, steps)
        return served.calls

    def start(self) -> list[StepCall]:
        return self.apply(self.state.start(self.plan, self.services.access))

    def succeeded(self, call: StepCall, result: StepResult) -> list[StepCall]:
        """A call finished; return the calls it unlocks."""
        return self.apply(self.state.succeeded(self.plan, self.services.access, call, result))

    def attempt_failed(self, call: StepCall, error: str) -> list[StepCall]:
        """A call failed: its retry, or nothing when its step failed for good."""
        return self.apply(self.state.attempt_failed(self.plan, call, error))

    def worker_lost(self, call: StepCall, max_lost: int = DEFAULT_MAX_LOST) -> list[StepCall]:
        """The process running a call died: the call again, or nothing after ``max_lost``."""
        return self.apply(self.state.worker_lost(self.plan, call, max_lost))

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop: every unfinished step is recorded cancelled with ``reason``."""
        self.apply(self.state.cancel(reason))

    def finish(self, warm_seconds: float = 0.0) -> dict[str, Any]:
        """Record the run's outcome; return the result document (``warm_seconds``: how long
        the executor loaded plugins and models before the first step)."""
        outputs = record_outcome(self.services, self.plan, self.state)
        self.result = result_document(
            self.plan, self.state, self.record.executor, outputs, warm_seconds
        )
        return self.result


def cancelled_elsewhere(services: Services, sessions: Iterable[RunSession]) -> list[RunSession]:
    """Those of ``sessions`` someone cancelled (``wtm runs cancel``), in one query however
    many there are: a batch of 10,000 runs read each run every half second before."""
    waiting = {s.run_id: s for s in sessions}
    if not waiting:
        return []
    since = min(s.record.created_at for s in waiting.values())
    cancelled = services.metadata.list_runs(status="cancelled", limit=None, since=since)
    return [waiting[r.run_id] for r in cancelled if r.run_id in waiting]


def record_outcome(services: Services, plan: RunPlan, state: RunState) -> dict[str, Any]:
    """Write a finished run's status, outputs and errors; return the outputs. A run someone
    cancelled stays cancelled, even if its last step finished after the request."""
    outputs = state.outputs(plan, services.access)
    services.metadata.update_run(  # a cancelled run stays so (apply_run_update)
        state.run_id,
        status=state.outcome,
        finished_at=utc_now(),
        outputs=outputs,
        error=state.why_ended(plan),
    )
    return outputs


def result_document(
    plan: RunPlan,
    state: RunState,
    executor: str,
    outputs: Mapping[str, Any],
    warm_seconds: float = 0.0,
) -> dict[str, Any]:
    """The seed report's result: the outputs and a ``processing_summary``. The speedup
    compares the steps' time with the run's, less ``warm_seconds`` (plugins and models
    loaded before the first step), which no step's time includes either."""
    total = (state.ended or time.time()) - state.created
    sequential = sum(state.seconds.values())
    running = max(total - warm_seconds, 0.0)
    summary: dict[str, Any] = {
        "run_id": state.run_id,
        "pipeline": plan.pipeline,
        "executor": executor,
        "status": state.outcome,
        "total_time": round(total, 4),
        "warm_time": round(warm_seconds, 4),
        "sequential_time": round(sequential, 4),
        "parallel_speedup": round(sequential / running, 2) if running > 0 else 0.0,
        "steps": {
            sid: {
                "task": f"{step.pin.name}@{step.pin.version}",
                "status": state.status[sid],
                "invocations": state.invocations.get(sid, 0),
                "cached": state.cached.get(sid, 0),
                "seconds": round(state.seconds.get(sid, 0.0), 4),
            }
            for sid, step in plan.steps.items()
        },
        "data_lineage": [e for step in plan.steps.values() for e in step.edges],
    }
    errors = state.errors(plan)
    if errors:
        summary["errors"] = errors
    return {**outputs, "processing_summary": summary}
