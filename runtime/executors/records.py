"""Step records written by orchestrators (not by the step runner): the same for every executor.

The step runner records each call it executes. What no call records is written
here from a run-state :class:`~runtime.executors.runstate.Transition`: steps
skipped or cancelled, a step whose worker was lost, a foreach step failed by
one of its chunks, and the gathered outputs of a foreach step.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runtime import ids
from runtime.executors.calls import StepCall, TaskPin
from runtime.executors.plan import RunPlan
from runtime.executors.runstate import RunState
from runtime.stores.metadata import MetadataStore, StepRecord, ValueRecord, utc_now
from runtime.values import ValueRef


def step_mark(
    run_id: str,
    sid: str,
    pin: TaskPin,
    edges: list[str],
    status: str,
    error: str | None = None,
    attempt: int = 1,
) -> StepRecord:
    """The record of the whole step ``sid`` as pending, skipped, cancelled or failed."""
    return StepRecord(
        run_id=run_id,
        step_id=sid,
        task=pin.name,
        task_version=pin.version,
        digest=pin.digest,
        input_id=ids.input_id(pin.name, sid),
        output_id=ids.output_id(pin.name, sid),
        status=status,
        attempt=attempt,
        finished_at=None if status == "pending" else utc_now(),
        error=error,
        edges=edges,
    )


def record_changes(
    store: MetadataStore, plan: RunPlan, state: RunState, changed: list[str]
) -> None:
    """Record the steps a transition changed that no call recorded itself (in one write)."""
    store.record(*change_records(store, plan, state, changed))


def change_records(
    store: MetadataStore, plan: RunPlan, state: RunState, changed: list[str]
) -> tuple[list[ValueRecord], list[StepRecord]]:
    """The value and step records of :func:`record_changes`, to write with others."""
    values: list[ValueRecord] = []
    steps: list[StepRecord] = []
    for sid in changed:
        step = plan.steps[sid]
        status = state.status[sid]
        if status == "succeeded":
            if step.foreach is not None:
                gathered, record = gathered_records(plan, state, sid)
                values += gathered
                steps.append(record)
            continue
        current = store.get_step(state.run_id, sid)
        if status == "failed" and current is not None and current.status == "failed":
            continue  # the runner recorded the failure, with its traceback
        attempt = current.attempt if current is not None else 1
        steps.append(
            step_mark(
                state.run_id,
                sid,
                step.pin,
                list(step.edges),
                status,
                state.reasons.get(sid),
                attempt,
            )
        )
    return values, steps


def gathered_records(
    plan: RunPlan, state: RunState, sid: str
) -> tuple[list[ValueRecord], StepRecord]:
    """The gathered outputs of a foreach step (derived from its chunks) and its whole record."""
    step = plan.steps[sid]
    chunks = state.invocations.get(sid, 0)
    outputs: Mapping[str, ValueRef] = {
        port: state.value(ids.output_value(sid, port)) for port in step.outputs
    }
    values = []
    for port, ref in outputs.items():
        value_id = ids.output_value(sid, port)
        values.append(
            ValueRecord(
                run_id=state.run_id,
                value_id=value_id,
                data_id=ref.id,
                producer=sid,
                port=port,
                value=ref.value,
                uri=ref.uri,
                size=ref.size,
                sources=[ids.chunk(value_id, i) for i in range(chunks)],
            )
        )
    started = state.started.get(sid)
    record = StepRecord(
        run_id=state.run_id,
        step_id=sid,
        task=step.pin.name,
        task_version=step.pin.version,
        digest=step.pin.digest,
        input_id=ids.input_id(step.pin.name, sid),
        output_id=ids.output_id(step.pin.name, sid),
        status="succeeded",
        started_at=datetime.fromtimestamp(started, UTC).isoformat() if started else None,
        finished_at=utc_now(),
        seconds=state.seconds.get(sid, 0.0),
        outputs={p: r.id for p, r in outputs.items()},
        edges=list(step.edges),
    )
    return values, record


def call_record(call: StepCall, worker: str, **fields: Any) -> StepRecord:
    """The record of one execution of ``call`` on ``worker``, with ``fields`` (status,
    times, port data IDs...)."""
    return StepRecord(
        run_id=call.run_id,
        step_id=call.step_id,
        item=call.item,
        task=call.task.name,
        task_version=call.task.version,
        digest=call.task.digest,
        input_id=ids.input_id(call.task.name, call.step_id),
        output_id=ids.output_id(call.task.name, call.step_id),
        attempt=call.attempt,
        worker=worker,
        edges=list(call.edges),
        **fields,
    )


def call_values(
    call: StepCall, inputs: Mapping[str, ValueRef], outputs: Mapping[str, ValueRef]
) -> list[ValueRecord]:
    """The records of a call's input and output values, with their lineage."""
    sources: dict[str, str] = {}
    for edge in call.edges:
        source, _, target = edge.partition(" -> ")
        sources[target] = source
    records = []
    input_ids = []
    for port, ref in inputs.items():
        value_id = ids.input_value(call.step_id, port)
        input_ids.append(ids.chunk(value_id, call.item))
        origin = sources.get(value_id)
        records.append(
            value_record(
                call, ids.chunk(value_id, call.item), port, ref, [origin] if origin else []
            )
        )
    for port, ref in outputs.items():
        value_id = ids.chunk(ids.output_value(call.step_id, port), call.item)
        records.append(value_record(call, value_id, port, ref, sorted(input_ids)))
    return records


def value_record(
    call: StepCall, value_id: str, port: str, ref: ValueRef, sources: list[str]
) -> ValueRecord:
    return ValueRecord(
        run_id=call.run_id,
        value_id=value_id,
        data_id=ref.id,
        producer=call.step_id,
        port=port,
        value=ref.value,
        uri=ref.uri,
        size=ref.size,
        sources=sources,
    )
