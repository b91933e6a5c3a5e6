"""A run's shape from its records: stages, data-flow edges, and lineage trees for display.

Names follow :mod:`runtime.ids`: ``output_STEP_PORT``, ``input_STEP_PORT``,
``pipeline_input_NAME``, and foreach parts with an ``[i]`` suffix. Step IDs
hold no underscore, so the step of a value ID is the text between the first
and second underscores.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from runtime import ids
from runtime.stores.metadata import NO_ITEM, StepRecord, ValueRecord

EDGE_SEP = " -> "
_PART = re.compile(r"\[(\d+)\]$")


def value_step(value_id: str) -> str | None:
    """The step a value ID belongs to (``output_001_x`` -> ``001``); None for pipeline inputs."""
    kind, _, rest = value_id.partition("_")
    if kind not in ("input", "output") or not rest:
        return None
    return rest.partition("_")[0]


def value_item(value_id: str) -> int:
    """The foreach item of a value ID (``...[3]`` -> 3), or ``NO_ITEM``."""
    match = _PART.search(value_id)
    return int(match.group(1)) if match else NO_ITEM


def split_edge(edge: str) -> tuple[str, str]:
    """``(source, target)`` of ``source -> target``."""
    source, _, target = edge.partition(EDGE_SEP)
    return source, target


def whole_steps(steps: Iterable[StepRecord]) -> dict[str, StepRecord]:
    """The whole-step records (not foreach chunks), by step ID."""
    return {s.step_id: s for s in steps if s.item == NO_ITEM}


def stages(steps: Iterable[StepRecord]) -> dict[str, int]:
    """Stage of each step, from 1: one more than the latest stage it reads from."""
    deps: dict[str, set[str]] = {}
    for step in whole_steps(steps).values():
        deps[step.step_id] = {
            producer
            for source, _ in map(split_edge, step.edges)
            if source.startswith("output_") and (producer := value_step(source)) is not None
        }
    found: dict[str, int] = {}

    def stage(sid: str, visiting: frozenset[str]) -> int:
        if sid in found:
            return found[sid]
        before = [stage(d, visiting | {sid}) for d in deps.get(sid, ()) if d not in visiting]
        found[sid] = 1 + max(before, default=0)
        return found[sid]

    for sid in deps:
        stage(sid, frozenset())
    return found


@dataclass(frozen=True)
class StepFlow:
    """The data-flow edges into and out of one step."""

    incoming: tuple[str, ...]
    outgoing: tuple[str, ...]


def step_flow(step_id: str, steps: Iterable[StepRecord]) -> StepFlow:
    """Edges into ``step_id`` (from its record) and out of it (from its consumers' records)."""
    whole = whole_steps(steps)
    mine = whole.get(step_id)
    prefix = f"output_{step_id}_"
    outgoing = sorted(
        {e for s in whole.values() if s.step_id != step_id for e in s.edges if e.startswith(prefix)}
    )
    return StepFlow(tuple(mine.edges) if mine else (), tuple(outgoing))


def all_edges(steps: Iterable[StepRecord]) -> list[str]:
    """Every data-flow edge of a run, sorted."""
    return sorted({e for s in whole_steps(steps).values() for e in s.edges})


@dataclass
class LineageItem:
    """One node of a lineage tree for display; ``repeat`` marks a value expanded elsewhere."""

    value: ValueRecord
    sources: list[LineageItem] = field(default_factory=list)
    repeat: bool = False
    cut: int = 0
    """Sources left out because the tree reached its size limit."""


def lineage_trees(
    values: Mapping[str, ValueRecord], roots: Iterable[str], limit: int = 2000
) -> list[LineageItem]:
    """Trees from ``roots`` back to pipeline inputs, like :func:`runtime.lineage.lineage`.

    Each value is expanded once; later mentions are leaves marked ``repeat``, so
    diamonds and wide foreach joins stay readable and the size stays bounded by
    the number of values (and by ``limit`` nodes). Unknown roots are skipped.
    """
    expanded: set[str] = set()
    budget = [limit]

    def build(vid: str, path: frozenset[str]) -> LineageItem:
        budget[0] -= 1
        item = LineageItem(values[vid])
        if vid in expanded:
            item.repeat = bool(values[vid].sources)
            return item
        expanded.add(vid)
        sources = [s for s in values[vid].sources if s in values and s not in path]
        for number, source in enumerate(sources):
            if budget[0] <= 0:
                item.cut = len(sources) - number
                break
            item.sources.append(build(source, path | {source}))
        return item

    return [build(r, frozenset({r})) for r in roots if r in values]


@dataclass(frozen=True)
class ValueSlot:
    """A value a step execution consumed (``in``) or produced (``out``) on one port.

    ``record`` is the recorded value: under ``value_id``, else (a failed step
    records no values) any value of the run with the same data.
    """

    direction: str
    port: str
    value_id: str
    data_id: str
    record: ValueRecord | None


def step_values(step: StepRecord, values: Iterable[ValueRecord]) -> list[ValueSlot]:
    """The inputs then outputs of a step execution, as value slots.

    A foreach step's whole record lists its gathered outputs and every chunk's inputs.
    """
    values = list(values)
    suffix = "" if step.item == NO_ITEM else f"[{step.item}]"
    by_id = {v.value_id: v for v in values}
    by_data: dict[str, ValueRecord] = {}
    for value in values:
        by_data.setdefault(value.data_id, value)
    slots = []
    for direction, ports, name in (
        ("in", step.inputs, ids.input_value),
        ("out", step.outputs, ids.output_value),
    ):
        for port, data in sorted(ports.items()):
            value_id = name(step.step_id, port) + suffix
            record = by_id.get(value_id) or by_data.get(data)
            slots.append(ValueSlot(direction, port, value_id, data, record))
    if step.item == NO_ITEM and not step.inputs:
        prefix = f"input_{step.step_id}_"
        chunks = sorted(
            (v for v in values if v.value_id.startswith(prefix) and v.producer == step.step_id),
            key=lambda v: (value_item(v.value_id), v.port),
        )
        slots[:0] = [ValueSlot("in", v.port, v.value_id, v.data_id, v) for v in chunks]
    return slots
