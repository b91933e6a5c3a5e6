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

from runtime.executors.calls import StepCall, StepResult
from runtime.executors.plan import RunPlan
from runtime.executors.records import call_record, call_values, change_records
from runtime.executors.runstate import RunState
from runtime.inputs import file_data_id
from runtime.stores.artifacts import URI_PREFIX, ArtifactAccess, is_artifact_uri
from runtime.stores.metadata import (
    CacheEntry,
    MetadataStore,
    StepRecord,
    ValueRecord,
    utc_iso,
    utc_now,
)
from runtime.values import ValueRef, canonical_json, data_id

CACHED_WORKER = "cache"
"""The worker a served result names."""


def cache_key(call: StepCall) -> str | None:
    """The key of ``call``'s result: its package and the data IDs of its inputs, a file
    input's being the file's content; None if a file input cannot be read (the call is
    not cached)."""
    inputs = {}
    for port, ref in call.inputs.items():
        data: str | None = ref["id"]
        if port in call.task.file_ports:
            data = file_identity(ref)
            if data is None:
                return None
        inputs[port] = data
    identity = {
        "task": call.task.name,
        "version": call.task.version,
        "digest": call.task.digest,
        "inputs": inputs,
    }
    return hashlib.sha256(canonical_json(identity)).hexdigest()


def file_identity(ref: Mapping[str, Any]) -> str | None:
    """The content ID of a file input: the one it carries when it was given one (a file
    pipeline input, hashed as its run began: see
    :func:`runtime.executors.session.input_ref`), else the file's hashed now; None if the
    value is not a readable file's name."""
    value = ref.get("value")
    if not isinstance(value, str):
        return None
    if ref["id"] != data_id(value):
        return str(ref["id"])
    return file_data_id(value)


def cache_entry(
    call: StepCall, outputs: Mapping[str, ValueRef], seconds: float
) -> CacheEntry | None:
    """The entry storing a successful ``call``'s outputs; None if the call cannot be
    cached."""
    key = cache_key(call)
    if key is None:
        return None
    return CacheEntry(
        key=key,
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
        step = call_record(
            call,
            CACHED_WORKER,
            status="succeeded",
            started_at=now,
            finished_at=now,
            seconds=0.0,
            inputs={port: ref.id for port, ref in call.input_refs().items()},
            outputs={port: ref.id for port, ref in outputs.items()},
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
        keys = {c.key: cache_key(c) for c in pending if c.task.cache} if plan.reuse else {}
        found = lookup(store, access, [k for k in keys.values() if k is not None], max_age)
        unlocked: list[StepCall] = []
        for call in pending:
            key = keys.get(call.key)
            entry = found.get(key) if key is not None else None
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
    store: MetadataStore, access: ArtifactAccess, keys: Sequence[str], max_age: float
) -> dict[str, CacheEntry]:
    """The usable entries of ``keys``: young enough, their artifacts all stored."""
    if not keys:
        return {}
    oldest = utc_iso(datetime.now(UTC) - timedelta(seconds=max_age))
    entries = store.cache_entries(keys)
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
        if value.startswith(URI_PREFIX) and is_artifact_uri(value):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _uris_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _uris_in(item)
