"""Step records written by orchestrators (not by the step runner): the same for every executor."""

from __future__ import annotations

from collections.abc import Mapping

from runtime import ids
from runtime.executors.calls import TaskPin
from runtime.stores.metadata import MetadataStore, StepRecord, ValueRecord, utc_now
from runtime.values import ValueRef


def mark_step(
    store: MetadataStore,
    run_id: str,
    sid: str,
    pin: TaskPin,
    edges: list[str],
    status: str,
    error: str | None = None,
) -> None:
    """Record the whole step ``sid`` as pending, skipped, cancelled or failed."""
    store.record_step(
        StepRecord(
            run_id=run_id,
            step_id=sid,
            task=pin.name,
            task_version=pin.version,
            digest=pin.digest,
            input_id=ids.input_id(pin.name, sid),
            output_id=ids.output_id(pin.name, sid),
            status=status,
            finished_at=None if status == "pending" else utc_now(),
            error=error,
            edges=edges,
        )
    )


def record_gathered(
    store: MetadataStore,
    run_id: str,
    sid: str,
    pin: TaskPin,
    edges: list[str],
    outputs: Mapping[str, ValueRef],
    chunks: int,
    seconds: float,
    started_at: str | None,
) -> None:
    """The gathered outputs of a foreach step (derived from its chunks) and its whole record."""
    for port, ref in outputs.items():
        value_id = ids.output_value(sid, port)
        store.record_value(
            ValueRecord(
                run_id=run_id,
                value_id=value_id,
                data_id=ref.id,
                producer=sid,
                port=port,
                value=ref.value,
                uri=ref.uri,
                size=ref.size,
                sources=[f"{value_id}[{i}]" for i in range(chunks)],
            )
        )
    store.record_step(
        StepRecord(
            run_id=run_id,
            step_id=sid,
            task=pin.name,
            task_version=pin.version,
            digest=pin.digest,
            input_id=ids.input_id(pin.name, sid),
            output_id=ids.output_id(pin.name, sid),
            status="succeeded",
            started_at=started_at,
            finished_at=utc_now(),
            seconds=seconds,
            outputs={p: r.id for p, r in outputs.items()},
            edges=edges,
        )
    )
