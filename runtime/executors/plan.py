"""A run's plan: everything any executor needs to run a compiled pipeline, as JSON.

The plan is made once per run from the pipeline graph and the pinned packages.
The local executor keeps it in memory; the celery executor stores it once in
Redis, so a step message only names the work (run, step, chunk, attempt) and
any worker can rebuild the call from the plan and the run state.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runtime import ids
from runtime.executors.calls import TaskPin
from runtime.executors.dataflow import outputs_spec, reference_value
from runtime.graph import PipelineGraph
from runtime.manifest import condition_reference
from runtime.values import BlobStore, encode

if TYPE_CHECKING:  # lark loads only for a plan with conditions
    from runtime.conditions import Condition
    from runtime.conditions import Reference as ConditionReference


@dataclass(frozen=True)
class ForeachPlan:
    """Split the array value ``source`` into chunks of ``chunk`` items fed to ``port``."""

    port: str
    source: str
    chunk: int


@dataclass(frozen=True)
class StepPlan:
    """One step: its package, what it reads, what it makes, and who reads it."""

    step_id: str
    pin: TaskPin
    needs: tuple[str, ...]
    bindings: dict[str, dict[str, Any]]
    """Port -> ``{"ref": VALUE_ID}`` or ``{"value": ValueRef JSON}``."""
    outputs: tuple[str, ...]
    edges: tuple[str, ...]
    dependants: tuple[str, ...]
    """The steps reading this one's outputs, in execution order."""
    foreach: ForeachPlan | None = None
    rank: int = 0
    """Position in a valid execution order: ready steps start in this order."""
    depth: int = 0
    """The stage the step is in: the longest chain of steps before it."""
    condition: str | None = None
    """The step's ``when``: it runs only if this is true (see :mod:`runtime.conditions`)."""
    reads: tuple[str, ...] = ()
    """The steps whose outputs feed its inputs (its ``needs`` add those its condition reads)."""

    def when(self) -> Condition | None:
        """The parsed condition, or None."""
        return parsed_condition(self.condition) if self.condition is not None else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pin": self.pin.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepPlan:
        foreach = data.get("foreach")
        return cls(
            step_id=data["step_id"],
            pin=TaskPin(**data["pin"]),
            needs=tuple(data["needs"]),
            bindings=dict(data["bindings"]),
            outputs=tuple(data["outputs"]),
            edges=tuple(data["edges"]),
            dependants=tuple(data["dependants"]),
            foreach=ForeachPlan(**foreach) if foreach else None,
            rank=data.get("rank", 0),
            depth=data.get("depth", 0),
            condition=data.get("condition"),
            reads=tuple(data.get("reads", ())),
        )


@dataclass(frozen=True)
class RunPlan:
    """The steps of a run in execution order, its declared outputs and the inline threshold."""

    pipeline: str
    steps: dict[str, StepPlan]
    outputs: dict[str, Any]
    threshold: int
    reuse: bool = True
    """Whether calls may be served from the step cache (``wtm run --no-cache``: False)."""

    @classmethod
    def build(
        cls,
        graph: PipelineGraph,
        pins: Mapping[str, TaskPin],
        store: BlobStore,
        threshold: int,
        reuse: bool = True,
    ) -> RunPlan:
        """The plan of ``graph`` with each step pinned; constants over ``threshold`` are
        written to ``store`` once, here, rather than with every call."""
        dependants = graph.dependants()
        rank = {sid: i for i, sid in enumerate(graph.order)}
        depth = {sid: n for n, stage in enumerate(graph.stages) for sid in stage}
        steps = {}
        for sid in graph.order:
            step = graph.pipeline.step(sid)
            bindings = {
                port: {"ref": reference_value(b.reference)}
                if b.reference is not None
                else {"value": encode(b.constant, store, threshold).to_json()}
                for port, b in step.bindings.items()
            }
            foreach = None
            if step.foreach is not None:
                foreach = ForeachPlan(
                    step.foreach.port, reference_value(step.foreach.source), step.foreach.chunk
                )
            steps[sid] = StepPlan(
                step_id=sid,
                pin=pins[sid],
                needs=tuple(sorted(graph.deps[sid])),
                bindings=bindings,
                outputs=tuple(graph.tasks[sid].outputs),
                edges=tuple(str(e) for e in graph.edges_into(sid)),
                dependants=tuple(sorted(dependants[sid], key=rank.__getitem__)),
                foreach=foreach,
                rank=rank[sid],
                depth=depth[sid],
                condition=step.when.text if step.when is not None else None,
                reads=tuple(sorted({r.step for r, _ in step.input_references() if r.step})),
            )
        pipeline = graph.pipeline
        name = f"{pipeline.name}@{pipeline.version}"
        return cls(name, steps, outputs_spec(pipeline), threshold, reuse)

    @cached_property
    def readers(self) -> dict[str, frozenset[str]]:
        """Value ID -> the steps that read it (a binding or a foreach source)."""
        found: dict[str, set[str]] = {}
        for sid, step in self.steps.items():
            reads = [b["ref"] for b in step.bindings.values() if "ref" in b]
            if step.foreach is not None:
                reads.append(step.foreach.source)
            condition = step.when()
            if condition is not None:
                reads += [condition_value(r) for r in condition.references]
            for value_id in reads:
                found.setdefault(value_id, set()).add(sid)
        return {value_id: frozenset(steps) for value_id, steps in found.items()}

    @cached_property
    def kept(self) -> frozenset[str]:
        """Values a run keeps to its end: the pipeline outputs read them, or a foreach step
        made them (its gathered record is written after the steps reading it started)."""
        kept = {o["ref"] for o in self.outputs.values() if "ref" in o}
        kept |= {v for o in self.outputs.values() if "from" in o for v in o["from"].values()}
        kept |= {
            ids.output_value(sid, port)
            for sid, step in self.steps.items()
            if step.foreach is not None
            for port in step.outputs
        }
        return frozenset(kept)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "steps": [s.to_json() for s in self.steps.values()],
            "outputs": self.outputs,
            "threshold": self.threshold,
            "reuse": self.reuse,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunPlan:
        steps = [StepPlan.from_json(s) for s in data["steps"]]
        return cls(
            data["pipeline"],
            {s.step_id: s for s in steps},
            data["outputs"],
            data["threshold"],
            data.get("reuse", True),
        )


@functools.lru_cache(maxsize=256)
def parsed_condition(text: str) -> Condition:
    """A step condition, parsed once per process (plans carry the text)."""
    from runtime.conditions import parse

    return parse(text)


def condition_value(ref: ConditionReference) -> str:
    """The value ID a condition's reference reads."""
    return reference_value(condition_reference(ref))
