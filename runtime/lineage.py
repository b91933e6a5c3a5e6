"""Lineage: from any value of a run back to the pipeline inputs it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime import ids
from runtime.stores.metadata import MetadataStore, ValueRecord


@dataclass
class LineageNode:
    """A value and the values it was derived from."""

    value: ValueRecord
    sources: list[LineageNode] = field(default_factory=list)
    cached_from: str | None = None
    """An output served from the step cache: the execution that computed it
    (``RUN_ID/STEP[ITEM]``), whose lineage goes on in that run."""

    def to_json(self) -> dict[str, object]:
        return {
            "value_id": self.value.value_id,
            "data_id": self.value.data_id,
            "producer": self.value.producer,
            "size": self.value.size,
            "cached_from": self.cached_from,
            "sources": [s.to_json() for s in self.sources],
        }


def lineage(store: MetadataStore, run_id: str, value_id: str) -> LineageNode:
    """The tree of ``value_id`` back to pipeline inputs; KeyError for an unknown value."""
    values = {v.value_id: v for v in store.list_values(run_id)}
    if value_id not in values:
        raise KeyError(value_id)

    served = {(s.step_id, s.item): s.cached_from for s in store.list_steps(run_id)}

    def build(vid: str, seen: frozenset[str]) -> LineageNode:
        record = values[vid]
        base, item = ids.split_chunk(vid)
        computed = base.startswith(ids.output_value(record.producer, ""))
        node = LineageNode(
            record, cached_from=served.get((record.producer, item)) if computed else None
        )
        for source in values[vid].sources:
            if source in values and source not in seen:
                node.sources.append(build(source, seen | {source}))
        return node

    return build(value_id, frozenset({value_id}))


def final_values(store: MetadataStore, run_id: str) -> list[str]:
    """Values no other value was derived from: the ends of the run's data flow."""
    values = store.list_values(run_id)
    used = {s for v in values for s in v.sources}
    return [v.value_id for v in values if v.value_id not in used]
