"""The Celery tasks wtm workers run. Every message is JSON.

A pipeline becomes a chain of stages; each task receives the run's *state* —
the values produced so far (inline or by reference), failed, skipped and
cancelled steps, timings — and returns it with its own contribution, so any
later stage can read any earlier output. A step failure is part of the state,
not a task error: independent steps go on, dependants record themselves
skipped, and the chain always ends (no broken chords). A foreach step
replaces itself with a chord of chunk tasks and a gather.
"""

from __future__ import annotations

from typing import Any

from celery import Signature, Task, chord, shared_task
from celery.exceptions import Ignore
from celery.signals import worker_process_init

from runtime import ids
from runtime.config import Settings
from runtime.executors.calls import WHOLE, StepCall, StepResult, TaskPin
from runtime.executors.celery_app import batched_publishing
from runtime.executors.dataflow import chunks, gather
from runtime.executors.records import mark_step, record_gathered
from runtime.executors.runner import StepFailed, run_call
from runtime.services import Services
from runtime.stores.metadata import utc_now
from runtime.values import ValueRef, decode, encode

HARD_LIMIT_GRACE = 10.0
_services: Services | None = None


@worker_process_init.connect
def _forget_parent_services(**_: object) -> None:
    global _services
    _services = None


def services() -> Services:
    """This worker process's stores and plugin loader, opened on first use."""
    global _services
    if _services is None:
        _services = Services.open(Settings.load())
    return _services


def new_state(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The state a run starts with: its pipeline inputs."""
    return {
        "values": values,
        "done": [],
        "failed": {},
        "skipped": [],
        "cancelled": [],
        "seconds": {},
        "invocations": {},
        "started": {},
    }


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One state from the states of a parallel stage."""
    merged = new_state({})
    for state in states:
        for key in ("values", "failed", "seconds", "invocations", "started"):
            merged[key].update(state[key])
        for key in ("done", "skipped", "cancelled"):
            merged[key] += [s for s in state[key] if s not in merged[key]]
    return merged


def _pin(spec: dict[str, Any]) -> TaskPin:
    return TaskPin(**spec["pin"])


def _stopped(state: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The new state if this step must not run: run cancelled, or an input step failed."""
    store = services().metadata
    sid = spec["step_id"]
    run = store.get_run(spec["run_id"])
    if run is not None and run.status == "cancelled":
        mark_step(store, spec["run_id"], sid, _pin(spec), spec["edges"], "cancelled", "cancelled")
        return {**state, "cancelled": [*state["cancelled"], sid]}
    blocked = [
        n
        for n in spec["needs"]
        if n in state["failed"] or n in state["skipped"] or n in state["cancelled"]
    ]
    if blocked:
        mark_step(
            store,
            spec["run_id"],
            sid,
            _pin(spec),
            spec["edges"],
            "skipped",
            f"skipped: step {blocked[0]} did not succeed",
        )
        return {**state, "skipped": [*state["skipped"], sid]}
    return None


def _inputs(state: dict[str, Any], spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        port: state["values"][b["ref"]] if "ref" in b else b["value"]
        for port, b in spec["bindings"].items()
    }


def _add(
    state: dict[str, Any],
    spec: dict[str, Any],
    outputs: dict[str, ValueRef],
    seconds: float,
    invocations: int,
) -> dict[str, Any]:
    """The state with step ``spec``'s outputs, keeping only the values later stages or the
    pipeline outputs read (``spec["keep"]``): messages stay small however long the chain."""
    sid, keep = spec["step_id"], set(spec["keep"])
    values = {vid: ref for vid, ref in state["values"].items() if vid in keep}
    for port, ref in outputs.items():
        vid = ids.output_value(sid, port)
        if vid in keep:
            values[vid] = ref.to_json()
    return {
        **state,
        "values": values,
        "done": [*state["done"], sid],
        "seconds": {**state["seconds"], sid: seconds},
        "invocations": {**state["invocations"], sid: invocations},
    }


def _attempt(task: Task, call: StepCall) -> StepResult:
    """Run the call, retrying per the manifest; raises StepFailed after the last attempt."""
    try:
        return run_call(call, services())
    except StepFailed as exc:
        if task.request.retries < call.task.max_retries:
            raise task.retry(
                countdown=call.task.retry_backoff, max_retries=call.task.max_retries, exc=exc
            ) from None
        raise


class StepTask(Task):
    """A step task; a foreach step replaces itself with a chord published in one batch."""

    def on_replace(self, sig: Signature) -> None:
        with batched_publishing(self.app) as producer:
            sig.apply_async(producer=producer)
        raise Ignore("Replaced by new task")


@shared_task(bind=True, name="wtm.step", base=StepTask)
def step(self: Task, state: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step of a run (or fan a foreach step out), returning the updated state."""
    stopped = _stopped(state, spec)
    if stopped is not None:
        return stopped
    sid, inputs = spec["step_id"], _inputs(state, spec)
    if spec["foreach"]:
        return _fan_out(self, state, spec, inputs)
    call = StepCall(
        spec["run_id"], sid, WHOLE, _pin(spec), inputs, spec["edges"], self.request.retries + 1
    )
    try:
        result = _attempt(self, call)
    except StepFailed as exc:
        return {**state, "failed": {**state["failed"], sid: str(exc)}}
    return _add(state, spec, result.output_refs(), result.seconds, 1)


def _fan_out(
    task: Task, state: dict[str, Any], spec: dict[str, Any], inputs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    foreach, access = spec["foreach"], services().access
    items = decode(ValueRef.from_json(state["values"][foreach["from"]]), access)
    parts = [
        {**inputs, foreach["port"]: encode(part, access, spec["threshold"]).to_json()}
        for part in chunks(items, foreach["chunk"])
    ]
    state = {**state, "started": {**state["started"], spec["step_id"]: utc_now()}}
    if len(parts) <= 1:  # run it here: a chord of one chunk would cost two more tasks
        return gather_chunks([_run_chunk(task, spec, 0, part) for part in parts], state, spec)
    header = [
        chunk.s(spec, index, part).set(**signature_options(spec, index))
        for index, part in enumerate(parts)
    ]
    gather_ = gather_chunks.s(state, spec).set(priority=spec["priority"])
    raise task.replace(chord(header, gather_))


def _run_chunk(
    task: Task, spec: dict[str, Any], item: int, inputs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Chunk ``item`` of a foreach step, run by ``task``: its outputs and time, or the
    reason it failed (after the retries of ``task``)."""
    call = StepCall(
        spec["run_id"],
        spec["step_id"],
        item,
        _pin(spec),
        inputs,
        spec["edges"],
        task.request.retries + 1,
    )
    try:
        return _attempt(task, call).to_json()
    except StepFailed as exc:
        return {"failed": str(exc)}


@shared_task(bind=True, name="wtm.chunk")
def chunk(
    self: Task, spec: dict[str, Any], item: int, inputs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One foreach chunk of several: its outputs and time, or the reason it failed."""
    return _run_chunk(self, spec, item, inputs)


@shared_task(name="wtm.gather")
def gather_chunks(
    results: list[dict[str, Any]], state: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    """Concatenate chunk outputs in order into the step's outputs (or fail the step)."""
    sid, store = spec["step_id"], services()
    failures = [r["failed"] for r in results if "failed" in r]
    if failures:
        mark_step(
            store.metadata, spec["run_id"], sid, _pin(spec), spec["edges"], "failed", failures[0]
        )
        return {**state, "failed": {**state["failed"], sid: failures[0]}}
    done = [StepResult.from_json(r) for r in results]
    outputs = gather(
        spec["outputs"], [d.output_refs() for d in done], store.access, spec["threshold"]
    )
    seconds = sum(d.seconds for d in done)
    record_gathered(
        store.metadata,
        spec["run_id"],
        sid,
        _pin(spec),
        spec["edges"],
        outputs,
        len(done),
        seconds,
        state["started"].get(sid),
    )
    return _add(state, spec, outputs, seconds, len(done))


@shared_task(name="wtm.merge")
def merge(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the states of a parallel stage (the body of its chord)."""
    return merge_states(states)


def signature_options(spec: dict[str, Any], item: int | None = None) -> dict[str, Any]:
    """Celery options of a step's task: its stage's priority, the hard time limit (the
    manifest timeout plus a grace period), and short argument reprs naming the run and
    step, so task events, logs and Flower stay readable and cheap however large the run's
    state grows."""
    where = f"run {spec['run_id']} step {spec['step_id']}"
    if item is not None:
        where += f" chunk {item}"
    options: dict[str, Any] = {
        "argsrepr": f"({where})",
        "kwargsrepr": "{}",
        "priority": spec["priority"],
    }
    timeout = spec["pin"].get("timeout")
    if timeout:
        options["time_limit"] = timeout + HARD_LIMIT_GRACE
    return options
