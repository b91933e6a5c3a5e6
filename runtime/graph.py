"""Compile a pipeline into a DAG of steps, ordered stages and data-flow edges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime import ids
from runtime.manifest import PipelineManifest, TaskManifest


@dataclass(frozen=True)
class Edge:
    """One value flowing into one input port: ``output_001_x -> input_002_y``."""

    source: str
    target: str
    producer: str | None
    consumer: str
    port: str

    def __str__(self) -> str:
        return ids.edge(self.source, self.target)


@dataclass(frozen=True)
class PipelineGraph:
    """Steps, their dependencies, the stages they run in, and every edge of the data flow."""

    pipeline: PipelineManifest
    tasks: Mapping[str, TaskManifest]
    deps: Mapping[str, frozenset[str]]
    stages: tuple[tuple[str, ...], ...]
    edges: tuple[Edge, ...]

    @property
    def order(self) -> list[str]:
        """Step IDs in a valid execution order."""
        return [step for stage in self.stages for step in stage]

    def dependants(self) -> dict[str, set[str]]:
        """Step ID -> the steps that read its outputs."""
        result: dict[str, set[str]] = {step: set() for step in self.deps}
        for step, needs in self.deps.items():
            for need in needs:
                result[need].add(step)
        return result

    def critical_path(self, cost: Mapping[str, float] | None = None) -> list[str]:
        """The most expensive chain of dependent steps (unit cost per step by default)."""
        best: dict[str, tuple[float, str | None]] = {}
        for step in self.order:
            own = cost.get(step, 1.0) if cost else 1.0
            parent = max(self.deps[step], key=lambda d: best[d][0], default=None)
            best[step] = (own + (best[parent][0] if parent else 0.0), parent)
        if not best:
            return []
        node: str | None = max(best, key=lambda s: best[s][0])
        path = []
        while node is not None:
            path.append(node)
            node = best[node][1]
        return path[::-1]

    def edges_into(self, step_id: str) -> list[Edge]:
        """The edges a step consumes."""
        return [e for e in self.edges if e.consumer == step_id]


class CycleError(ValueError):
    """The steps depend on each other in a loop."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("cycle: " + " -> ".join(cycle))


def dependencies(pipeline: PipelineManifest) -> dict[str, frozenset[str]]:
    """Step ID -> the step IDs whose outputs it reads (unknown steps left out)."""
    known = {s.id for s in pipeline.steps}
    return {
        step.id: frozenset(r.step for r, _ in step.references() if r.step in known)
        for step in pipeline.steps
    }


def find_cycle(deps: Mapping[str, frozenset[str]]) -> list[str] | None:
    """A dependency loop as ``[a, b, ..., a]``, or None (iterative DFS, any size)."""
    state: dict[str, int] = {}
    for root in deps:
        if root in state:
            continue
        stack = [(root, iter(sorted(deps[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(deps[child]))))
    return None


def stages_of(deps: Mapping[str, frozenset[str]], order: list[str]) -> list[tuple[str, ...]]:
    """Group steps by depth: a stage holds steps whose dependencies all ran in earlier stages."""
    depth: dict[str, int] = {}
    remaining = {step: len(needs) for step, needs in deps.items()}
    dependants: dict[str, list[str]] = {step: [] for step in deps}
    for step, needs in deps.items():
        for need in needs:
            dependants[need].append(step)
    ready = [s for s in order if remaining[s] == 0]
    for step in ready:
        depth[step] = 0
    while ready:
        step = ready.pop()
        for child in dependants[step]:
            depth[child] = max(depth.get(child, 0), depth[step] + 1)
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(depth) != len(deps):
        raise CycleError(find_cycle(deps) or [])
    stages: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in order:
        stages[depth[step]].append(step)
    return [tuple(stage) for stage in stages]


def compile_pipeline(
    pipeline: PipelineManifest, tasks: Mapping[str, TaskManifest]
) -> PipelineGraph:
    """Build the graph of a validated pipeline; ``tasks`` maps step ID -> resolved task."""
    deps = dependencies(pipeline)
    stages = stages_of(deps, [s.id for s in pipeline.steps])
    edges = []
    for step in pipeline.steps:
        bound = [(b.port, b.reference) for b in step.bindings.values() if b.reference]
        if step.foreach:
            bound.append((step.foreach.port, step.foreach.source))
        for port, ref in bound:
            assert ref is not None
            source = (
                ids.output_value(ref.step, ref.port) if ref.step else ids.pipeline_input(ref.port)
            )
            edges.append(Edge(source, ids.input_value(step.id, port), ref.step, step.id, port))
    return PipelineGraph(pipeline, dict(tasks), deps, tuple(stages), tuple(edges))
