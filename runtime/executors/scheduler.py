"""Walk a pipeline graph: which invocations can run now, and what each result unlocks.

Executor-independent bookkeeping: binding references to values, splitting
foreach steps into chunk invocations and gathering their outputs in order,
skipping the dependants of a failed step, and shaping the pipeline outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from runtime import ids
from runtime.executors.calls import WHOLE, StepCall, StepResult, TaskPin
from runtime.executors.dataflow import (
    chunks,
    compute_outputs,
    gather,
    outputs_spec,
    reference_value,
)
from runtime.graph import PipelineGraph
from runtime.manifest import Reference
from runtime.values import BlobStore, ValueRef, decode, encode

StepState = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]


class Scheduler:
    """The state of one run's steps; feed it results, it hands back the next calls."""

    def __init__(
        self,
        graph: PipelineGraph,
        run_id: str,
        inputs: Mapping[str, ValueRef],
        pins: Mapping[str, TaskPin],
        store: BlobStore,
        threshold: int,
    ) -> None:
        self.graph = graph
        self.run_id = run_id
        self.pins = pins
        self.store = store
        self.threshold = threshold
        self.values: dict[str, ValueRef] = {ids.pipeline_input(k): v for k, v in inputs.items()}
        self.state: dict[str, StepState] = {sid: "pending" for sid in graph.deps}
        self.errors: dict[str, str] = {}
        self._waiting = {sid: len(deps) for sid, deps in graph.deps.items()}
        self._dependants = graph.dependants()
        self._rank = {sid: i for i, sid in enumerate(graph.order)}
        self._chunks: dict[str, list[dict[str, ValueRef] | None]] = {}

    @property
    def finished(self) -> bool:
        return all(s not in ("pending", "running") for s in self.state.values())

    @property
    def status(self) -> Literal["succeeded", "failed", "cancelled"]:
        states = set(self.state.values())
        if states <= {"succeeded"}:
            return "succeeded"
        return "cancelled" if "cancelled" in states and "failed" not in states else "failed"

    def start(self) -> list[StepCall]:
        """The calls that can run before anything else finished."""
        calls: list[StepCall] = []
        for sid in self.graph.order:
            if self._waiting[sid] == 0:
                calls += self._launch(sid)
        return calls

    def succeeded(self, call: StepCall, result: StepResult) -> list[StepCall]:
        """Record a finished invocation; return the calls it unlocks."""
        sid = call.step_id
        if self.state[sid] != "running":
            return []  # a late answer for a step already failed or cancelled
        if call.item == WHOLE:
            return self._complete(sid, result.output_refs())
        chunks = self._chunks[sid]
        chunks[call.item] = result.output_refs()
        if any(c is None for c in chunks):
            return []
        return self._complete(sid, self._gather(sid, chunks))

    def failed(self, call: StepCall, error: str) -> list[str]:
        """Mark a step failed after its last attempt; return the steps skipped because of it."""
        sid = call.step_id
        if self.state[sid] != "running":
            return []
        self.state[sid] = "failed"
        self.errors[sid] = error
        return self._skip_dependants(sid)

    def cancel(self) -> list[str]:
        """Mark every unfinished step cancelled; return them."""
        stopped = [sid for sid, s in self.state.items() if s in ("pending", "running")]
        for sid in stopped:
            self.state[sid] = "cancelled"
        return stopped

    def _skip_dependants(self, sid: str) -> list[str]:
        skipped, frontier = [], list(self._dependants[sid])
        while frontier:
            child = frontier.pop()
            if self.state[child] == "pending":
                self.state[child] = "skipped"
                skipped.append(child)
                frontier += self._dependants[child]
        return sorted(skipped)

    def _value(self, ref: Reference) -> ValueRef:
        return self.values[reference_value(ref)]

    def _launch(self, sid: str) -> list[StepCall]:
        step = self.graph.pipeline.step(sid)
        self.state[sid] = "running"
        inputs = {}
        for port, binding in step.bindings.items():
            if binding.reference is not None:
                inputs[port] = self._value(binding.reference).to_json()
            else:
                inputs[port] = encode(binding.constant, self.store, self.threshold).to_json()
        edges = [str(e) for e in self.graph.edges_into(sid)]
        pin = self.pins[sid]
        if step.foreach is None:
            return [StepCall(self.run_id, sid, WHOLE, pin, inputs, edges)]
        items = decode(self._value(step.foreach.source), self.store)
        parts = chunks(items, step.foreach.chunk)
        if not parts:
            return self._complete(sid, self._gather(sid, []))
        self._chunks[sid] = [None] * len(parts)
        return [
            StepCall(
                self.run_id,
                sid,
                index,
                pin,
                {**inputs, step.foreach.port: encode(part, self.store, self.threshold).to_json()},
                edges,
            )
            for index, part in enumerate(parts)
        ]

    def _gather(self, sid: str, outputs: list[dict[str, ValueRef] | None]) -> dict[str, ValueRef]:
        done = [o for o in outputs if o is not None]
        return gather(self.graph.tasks[sid].outputs, done, self.store, self.threshold)

    def _complete(self, sid: str, outputs: Mapping[str, ValueRef]) -> list[StepCall]:
        self.state[sid] = "succeeded"
        for port, ref in outputs.items():
            self.values[ids.output_value(sid, port)] = ref
        calls: list[StepCall] = []
        for child in sorted(self._dependants[sid], key=self._rank.__getitem__):
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and self.state[child] == "pending":
                calls += self._launch(child)
        return calls

    def gathered_value(self, sid: str, port: str) -> ValueRef | None:
        """The value a step produced on a port, once it succeeded."""
        return self.values.get(ids.output_value(sid, port))

    def outputs(self) -> dict[str, Any]:
        """The pipeline's declared outputs that could be computed (all of them on success)."""
        return compute_outputs(outputs_spec(self.graph.pipeline), self.values, self.store)
