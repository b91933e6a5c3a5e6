"""The step cache: a call is served from an earlier execution of the same package on the
same input data, instead of being run again.

A call's key is the sha256 of its task's name, version and package digest and the data
ID of each input (constants and defaults are in the inputs or the package; a file input's
data ID is its content, see :func:`runtime.inputs.file_data_id`). Only tasks whose
manifest says ``cache: true`` take part; a pipeline step can opt out (``cache: false``)
and a run can read nothing (``wtm run --no-cache``: its results are still stored).

Orchestrators serve cached calls before sending any to a worker (:func:`serve`): a hit
is applied to the run state as a success taking no time, which may unlock further
calls, served the same way. A hit whose artifacts are gone from the store, or older
than ``cache_max_age``, is a miss: the call runs and its new result replaces the entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime import ids
from runtime.executors.calls import StepCall, StepResult
from runtime.executors.plan import RunPlan
from runtime.executors.records import call_values, change_records
from runtime.executors.runstate import RunState
from runtime.stores.artifacts import URI_PREFIX, ArtifactAccess
from runtime.stores.metadata import (
    CacheEntry,
    MetadataStore,
    StepRecord,
    ValueRecord,
    utc_iso,
    utc_now,
)
from runtime.values import ValueRef, canonical_json

CACHED_WORKER = "cache"
"""The worker a served result names."""


def cache_key(call: StepCall) -> str:
    """The key of ``call``'s result: its package and the data IDs of its inputs."""
    identity = {
        "task": call.task.name,
        "version": call.task.version,
        "digest": call.task.digest,
        "inputs": {port: ref["id"] for port, ref in call.inputs.items()},
    }
    return hashlib.sha256(canonical_json(identity)).hexdigest()


def cache_entry(
    call: StepCall, inputs: Mapping[str, ValueRef], outputs: Mapping[str, ValueRef], seconds: float
) -> CacheEntry:
    """The entry storing a successful ``call``'s outputs."""
    return CacheEntry(
        key=cache_key(call),
        task=call.task.name,
        task_version=call.task.version,
        digest=call.task.digest,
        run_id=call.run_id,
        step_id=call.step_id,
        item=call.item,
        outputs={port: ref.to_json() for port, ref in outputs.items()},
        seconds=seconds,
        size=sum(ref.size for ref in outputs.values()),
        artifacts=sorted(set(artifact_uris(outputs))),
    )


@dataclass(frozen=True)
class Hit:
    """A call served from the cache, and the entry it was served from."""

    call: StepCall
    entry: CacheEntry

    def result(self) -> StepResult:
        """The call's result: the entry's outputs, taking no time (no work was done)."""
        return StepResult(dict(self.entry.outputs), 0.0, CACHED_WORKER)

    def records(self) -> tuple[list[ValueRecord], StepRecord]:
        """What the runner would have recorded, naming the execution it came from."""
        outputs = self.result().output_refs()
        call, now = self.call, utc_now()
        step = StepRecord(
            run_id=call.run_id,
            step_id=call.step_id,
            item=call.item,
            task=call.task.name,
            task_version=call.task.version,
            digest=call.task.digest,
            input_id=ids.input_id(call.task.name, call.step_id),
            output_id=ids.output_id(call.task.name, call.step_id),
            status="succeeded",
            attempt=call.attempt,
            worker=CACHED_WORKER,
            started_at=now,
            finished_at=now,
            seconds=0.0,
            inputs={port: ref.id for port, ref in call.input_refs().items()},
            outputs={port: ref.id for port, ref in outputs.items()},
            edges=list(call.edges),
            cached_from=self.entry.origin,
        )
        return call_values(call, call.input_refs(), outputs), step


@dataclass
class Served:
    """What :func:`serve` did: the calls still to run, the hits, the steps they changed."""

    calls: list[StepCall] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def records(
        self, store: MetadataStore, plan: RunPlan, state: RunState
    ) -> tuple[list[ValueRecord], list[StepRecord]]:
        """The value and step records of every hit, and of the steps the hits changed
        (see :func:`runtime.executors.records.change_records`), to write at once."""
        values, steps = change_records(store, plan, state, self.changed)
        for hit in self.hits:
            hit_values, step = hit.records()
            values += hit_values
            steps.append(step)
        return values, steps


def serve(
    plan: RunPlan,
    state: RunState,
    calls: Sequence[StepCall],
    store: MetadataStore,
    access: ArtifactAccess,
    max_age: float,
) -> Served:
    """Apply to ``state`` the results of those ``calls`` the cache holds, and of the calls
    their results unlock, in rounds of one lookup each; what is left to run."""
    served = Served()
    pending = list(calls)
    while pending:
        wanted = [c for c in pending if c.task.cache] if plan.reuse else []
        found = lookup(store, access, wanted, max_age)
        unlocked: list[StepCall] = []
        for call in pending:
            entry = found.get(cache_key(call)) if call.task.cache else None
            if entry is None:
                served.calls.append(call)
                continue
            hit = Hit(call, entry)
            transition = state.served(plan, access, call, hit.result())
            served.hits.append(hit)
            served.changed += transition.changed
            unlocked += transition.calls
        pending = unlocked
    return served


def lookup(
    store: MetadataStore, access: ArtifactAccess, calls: Sequence[StepCall], max_age: float
) -> dict[str, CacheEntry]:
    """The usable entries of ``calls`` by key: young enough, their artifacts all stored."""
    if not calls:
        return {}
    oldest = utc_iso(datetime.now(UTC) - timedelta(seconds=max_age))
    entries = store.cache_entries([cache_key(c) for c in calls])
    return {
        key: entry
        for key, entry in entries.items()
        if entry.created_at >= oldest and all(access.has_blob(u) for u in entry.artifacts)
    }


def artifact_uris(outputs: Mapping[str, ValueRef]) -> Iterator[str]:
    """The artifacts outputs need: values stored by reference, and URIs inside inline
    values (a plugin's files)."""
    for ref in outputs.values():
        if ref.uri is not None:
            yield ref.uri
        else:
            yield from _uris_in(ref.value)


def _uris_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith(URI_PREFIX):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _uris_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _uris_in(item)
