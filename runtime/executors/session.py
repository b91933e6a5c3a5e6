"""One run from the orchestrator's side: its record, its scheduler, its summary.

Every executor drives a :class:`RunSession`: it creates the run record, pins
each step to an installed package, records pipeline inputs as values, turns
results into the next calls, records skipped and cancelled steps, and ends
with the run's outcome and the result document.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from runtime import ids
from runtime.executors.calls import WHOLE, StepCall, StepResult, TaskPin
from runtime.executors.records import mark_step, record_gathered
from runtime.executors.scheduler import Scheduler
from runtime.graph import PipelineGraph
from runtime.registry import RegistryCatalog
from runtime.services import Services
from runtime.stores.metadata import RunRecord, ValueRecord, utc_now
from runtime.values import ValueRef, encode


def new_run_id() -> str:
    """A short, sortable-enough, unique run ID."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def pins_for(graph: PipelineGraph, catalog: RegistryCatalog) -> dict[str, TaskPin]:
    """The exact package each step runs, from the registry records the catalog resolved."""
    pins = {}
    for sid, task in graph.tasks.items():
        record = catalog.records[(task.name, task.version)]
        pins[sid] = TaskPin(
            task.name,
            task.version,
            record.digest,
            task.timeout,
            task.max_retries,
            task.retry_backoff,
        )
    return pins


@dataclass
class RunSession:
    """The orchestrator's view of one run."""

    services: Services
    graph: PipelineGraph
    scheduler: Scheduler
    record: RunRecord
    started: float = field(default_factory=time.perf_counter)
    step_seconds: dict[str, float] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    first_start: dict[str, str] = field(default_factory=dict)
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
    ) -> RunSession:
        """Record a new running run and its pipeline inputs."""
        pipeline = graph.pipeline
        run_id = run_id or new_run_id()
        threshold = services.settings.inline_threshold
        refs = {name: encode(value, services.access, threshold) for name, value in inputs.items()}
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
        )
        services.metadata.create_run(record)
        for name, ref in refs.items():
            services.metadata.record_value(
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
            )
        for sid, pin in pins.items():
            mark_step(
                services.metadata,
                run_id,
                sid,
                pin,
                [str(e) for e in graph.edges_into(sid)],
                "pending",
            )
        scheduler = Scheduler(graph, run_id, refs, pins, services.access, threshold)
        return cls(services, graph, scheduler, record)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def start(self) -> list[StepCall]:
        return self._after(self.scheduler.start())

    def succeeded(self, call: StepCall, result: StepResult) -> list[StepCall]:
        """A call finished; record foreach gathering; return the calls it unlocks."""
        sid = call.step_id
        self.step_seconds[sid] = self.step_seconds.get(sid, 0.0) + result.seconds
        calls = self.scheduler.succeeded(call, result)
        if call.item != WHOLE and self.scheduler.state[sid] == "succeeded":
            self._record_gathered(sid)
        return self._after(calls)

    def failed(self, call: StepCall, error: str) -> None:
        """A call failed for good: its step fails, its dependants are skipped."""
        for sid in self.scheduler.failed(call, error):
            self._mark(sid, "skipped", f"skipped: step {call.step_id} failed")
        if call.item != WHOLE:
            self._mark(call.step_id, "failed", error)

    def cancel(self) -> None:
        """Stop: every unfinished step is recorded cancelled."""
        for sid in self.scheduler.cancel():
            self._mark(sid, "cancelled", "cancelled")

    def absorb(self, state: Mapping[str, Any]) -> None:
        """Take over the final state of a run executed elsewhere (the celery executor)."""
        scheduler = self.scheduler
        scheduler.values.update({k: ValueRef.from_json(v) for k, v in state["values"].items()})
        for sid in scheduler.state:
            if sid in state["failed"]:
                scheduler.state[sid] = "failed"
                scheduler.errors[sid] = state["failed"][sid]
            elif sid in state["skipped"]:
                scheduler.state[sid] = "skipped"
            elif sid in state["cancelled"]:
                scheduler.state[sid] = "cancelled"
            elif sid in state["done"]:
                scheduler.state[sid] = "succeeded"
        self.step_seconds.update(state["seconds"])
        self.invocations.update(state["invocations"])

    def abort(self, error: str) -> None:
        """The executor lost the run: every unfinished step fails with ``error``."""
        for sid, status in self.scheduler.state.items():
            if status in ("pending", "running"):
                self.scheduler.state[sid] = "failed"
                self.scheduler.errors[sid] = error
                self._mark(sid, "failed", error)

    def cancelled_elsewhere(self) -> bool:
        """True if someone ran ``wtm runs cancel`` on this run."""
        current = self.services.metadata.get_run(self.run_id)
        return current is not None and current.status == "cancelled"

    @cached_property
    def _foreach_steps(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.graph.pipeline.steps if s.foreach)

    def _after(self, calls: list[StepCall]) -> list[StepCall]:
        for call in calls:
            self.invocations[call.step_id] = self.invocations.get(call.step_id, 0) + 1
            self.first_start.setdefault(call.step_id, utc_now())
        for sid in self._foreach_steps:
            if self.scheduler.state[sid] == "succeeded" and sid not in self.invocations:
                self.invocations[sid] = 0
                self._record_gathered(sid)
        return calls

    def _mark(self, sid: str, status: str, error: str) -> None:
        mark_step(
            self.services.metadata,
            self.run_id,
            sid,
            self.scheduler.pins[sid],
            self._edges(sid),
            status,
            error,
        )

    def _edges(self, sid: str) -> list[str]:
        return [str(e) for e in self.graph.edges_into(sid)]

    def _record_gathered(self, sid: str) -> None:
        """The whole-step record and gathered values of a foreach step."""
        outputs = {
            port: self.scheduler.gathered_value(sid, port) for port in self.graph.tasks[sid].outputs
        }
        record_gathered(
            self.services.metadata,
            self.run_id,
            sid,
            self.scheduler.pins[sid],
            self._edges(sid),
            {p: r for p, r in outputs.items() if r is not None},
            self.invocations.get(sid, 0),
            self.step_seconds.get(sid, 0.0),
            self.first_start.get(sid),
        )

    def finish(self) -> dict[str, Any]:
        """Record the run's outcome; return the result document."""
        scheduler = self.scheduler
        total = time.perf_counter() - self.started
        outputs = scheduler.outputs()
        errors = [scheduler.errors[s] for s in self.graph.order if s in scheduler.errors]
        status = scheduler.status
        self.services.metadata.update_run(
            self.run_id,
            status=status,
            finished_at=utc_now(),
            outputs=outputs,
            error="; ".join(errors) or None,
        )
        sequential = sum(self.step_seconds.values())
        summary = {
            "run_id": self.run_id,
            "pipeline": f"{self.graph.pipeline.name}@{self.graph.pipeline.version}",
            "executor": self.record.executor,
            "status": status,
            "total_time": round(total, 4),
            "sequential_time": round(sequential, 4),
            "parallel_speedup": round(sequential / total, 2) if total > 0 else 0.0,
            "steps": {
                sid: {
                    "task": f"{p.name}@{p.version}",
                    "status": scheduler.state[sid],
                    "invocations": self.invocations.get(sid, 0),
                    "seconds": round(self.step_seconds.get(sid, 0.0), 4),
                }
                for sid, p in scheduler.pins.items()
            },
            "data_lineage": [str(e) for e in self.graph.edges],
        }
        if errors:
            summary["errors"] = errors
        self.result = {**outputs, "processing_summary": summary}
        return self.result
