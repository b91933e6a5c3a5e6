"""The run state: the one owner of a run's semantics, for every executor.

Which steps are ready, which calls are in flight (with their attempt), what a
result unlocks, what a failure skips (naming the root cause), retries, lost
workers, cancellation, and the run's outcome. Pure bookkeeping: no processes,
no broker. The local executor keeps a :class:`RunState` in memory; the celery
executor keeps it as JSON in Redis and changes it in transactions. Every
transition returns a :class:`Transition`: the calls to start and the steps
whose status changed (for the records).

A call is *current* while the state lists it in flight at its attempt: only a
current call's result or failure changes anything, so a duplicate or stale
message (an earlier attempt, a step already done) is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from runtime import ids
from runtime.executors.calls import WHOLE, StepCall, StepResult
from runtime.executors.dataflow import chunks, compute_outputs, gather
from runtime.executors.plan import RunPlan, condition_value
from runtime.values import BlobStore, ValueRef, decode, encode

if TYPE_CHECKING:
    from runtime.conditions import Reference as ConditionReference

StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]
FINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})
DEFAULT_MAX_LOST = 3
"""How many times a step's worker may die under it before the step fails."""
CONDITION_FALSE = "condition false: "
"""How the reason of a step skipped by its (or its source's) ``when`` begins."""


@dataclass
class Transition:
    """What a change of state asks of the executor: calls to start, steps to record."""

    calls: list[StepCall] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __iadd__(self, other: Transition) -> Transition:
        self.calls += other.calls
        self.changed += other.changed
        return self

    def __add__(self, other: Transition) -> Transition:
        return Transition(self.calls + other.calls, self.changed + other.changed)


@dataclass
class RunState:
    """The state of one run's steps and values; JSON round-trippable."""

    run_id: str
    status: dict[str, StepStatus]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Value ID -> ValueRef JSON: pipeline inputs and the outputs of succeeded steps."""
    inflight: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Call key (``002`` or ``002[3]``) -> the StepCall JSON of the current attempt."""
    chunk_outputs: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why a step failed, was skipped or was cancelled."""
    failures: dict[str, int] = field(default_factory=dict)
    """Call key -> attempts that failed (retried per the manifest)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Call key -> attempts whose worker died."""
    seconds: dict[str, float] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    """Step ID -> when its first call was made (epoch seconds)."""
    cached: dict[str, int] = field(default_factory=dict)
    """Step ID -> how many of its calls the step cache served."""
    created: float = field(default_factory=time.time)
    ended: float | None = None

    # --- construction and JSON

    @classmethod
    def new(cls, run_id: str, plan: RunPlan, inputs: Mapping[str, ValueRef]) -> RunState:
        """A run whose steps are all pending, with its pipeline inputs."""
        return cls(
            run_id,
            {sid: "pending" for sid in plan.steps},
            {ids.pipeline_input(k): v.to_json() for k, v in inputs.items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    # --- reading

    @property
    def finished(self) -> bool:
        """True once no step is pending or running."""
        return all(s in FINAL for s in self.status.values())

    @property
    def outcome(self) -> RunStatus:
        """``running`` until finished, then succeeded, failed or cancelled."""
        if not self.finished:
            return "running"
        states = set(self.status.values())
        if "failed" in states:
            return "failed"
        if "cancelled" in states:
            return "cancelled"
        unmet = all(self.unmet(sid) for sid, s in self.status.items() if s == "skipped")
        return "succeeded" if unmet else "failed"

    def unmet(self, sid: str) -> bool:
        """Whether step ``sid`` was skipped because a ``when`` was false (its own or its
        source's), rather than because a step before it failed."""
        return self.status[sid] == "skipped" and self.reasons.get(sid, "").startswith(
            CONDITION_FALSE
        )

    def errors(self, plan: RunPlan) -> list[str]:
        """The reasons of failed steps, in execution order."""
        return [self.reasons[s] for s in plan.steps if self.status[s] == "failed"]

    def why_ended(self, plan: RunPlan) -> str | None:
        """Why a run that did not succeed ended: its errors, or why it was cancelled."""
        errors = self.errors(plan)
        if errors:
            return "; ".join(errors)
        cancelled = [self.reasons.get(s) for s in plan.steps if self.status[s] == "cancelled"]
        return next((r for r in cancelled if r), None)

    def current(self, call: StepCall) -> bool:
        """Whether ``call`` is the attempt in flight (not a duplicate, not stale)."""
        held = self.inflight.get(call.key)
        return held is not None and held["attempt"] == call.attempt

    def call(self, key: str) -> StepCall | None:
        """The call in flight under ``key``."""
        held = self.inflight.get(key)
        return StepCall.from_json(held) if held is not None else None

    def calls(self) -> list[StepCall]:
        """Every call in flight."""
        return [StepCall.from_json(c) for c in self.inflight.values()]

    def value(self, value_id: str) -> ValueRef:
        return ValueRef.from_json(self.values[value_id])

    def outputs(self, plan: RunPlan, store: BlobStore) -> dict[str, Any]:
        """The pipeline's declared outputs that exist (all of them when the run succeeded)."""
        refs = {vid: ValueRef.from_json(v) for vid, v in self.values.items()}
        absent = {
            ids.output_value(sid, port)
            for sid, step in plan.steps.items()
            if self.unmet(sid)
            for port in step.outputs
        }
        return compute_outputs(plan.outputs, refs, store, absent)

    # --- transitions

    def start(self, plan: RunPlan, store: BlobStore) -> Transition:
        """The calls of every step that reads nothing from other steps."""
        done = Transition()
        for sid, step in plan.steps.items():
            if not step.needs and self.status[sid] == "pending":
                done += self._launch(plan, store, sid)
        return done

    def succeeded(
        self, plan: RunPlan, store: BlobStore, call: StepCall, result: StepResult
    ) -> Transition:
        """A current call succeeded: record its outputs; start the steps it unlocks."""
        if not self.current(call):
            return Transition()
        sid = call.step_id
        del self.inflight[call.key]
        self.seconds[sid] = self.seconds.get(sid, 0.0) + result.seconds
        if call.item == WHOLE:
            return self._complete(plan, store, sid, result.output_refs())
        parts = self.chunk_outputs[sid]
        parts[call.item] = result.outputs
        if any(p is None for p in parts):
            return Transition()
        done = [{port: ValueRef.from_json(r) for port, r in p.items()} for p in parts if p]
        outputs = gather(plan.steps[sid].outputs, done, store, plan.threshold)
        del self.chunk_outputs[sid]  # gathered into the step's values
        return self._complete(plan, store, sid, outputs)

    def served(
        self, plan: RunPlan, store: BlobStore, call: StepCall, result: StepResult
    ) -> Transition:
        """A current call was served from the step cache: as :meth:`succeeded`, counted."""
        if not self.current(call):
            return Transition()
        self.cached[call.step_id] = self.cached.get(call.step_id, 0) + 1
        return self.succeeded(plan, store, call, result)

    def attempt_failed(self, plan: RunPlan, call: StepCall, error: str) -> Transition:
        """A current call failed: retry it if its manifest allows, else fail its step."""
        if not self.current(call):
            return Transition()
        failures = self.failures[call.key] = self.failures.get(call.key, 0) + 1
        if failures <= call.task.max_retries:
            return Transition([self._again(call)])
        return self._fail(plan, call.step_id, error)

    def worker_lost(
        self, plan: RunPlan, call: StepCall, max_lost: int = DEFAULT_MAX_LOST
    ) -> Transition:
        """The worker running a current call died: run it again, up to ``max_lost`` times."""
        if not self.current(call):
            return Transition()
        lost = self.lost[call.key] = self.lost.get(call.key, 0) + 1
        if lost >= max_lost:
            times = "once" if lost == 1 else f"{lost} times"
            return self._fail(
                plan, call.step_id, f"{call.label()}: worker lost {times} while running this step"
            )
        return Transition([self._again(call)])

    def cancel(self, reason: str = "cancelled") -> Transition:
        """Every step not yet final is cancelled with ``reason``; nothing is in flight."""
        stopped = [sid for sid, s in self.status.items() if s not in FINAL]
        for sid in stopped:
            self._end(sid, "cancelled", reason)
        self.inflight.clear()
        return Transition(changed=stopped)

    # --- inner workings

    def _again(self, call: StepCall) -> StepCall:
        retry = call.next_attempt()
        self.inflight[call.key] = retry.to_json()
        return retry

    def _end(self, sid: str, status: StepStatus, reason: str | None = None) -> None:
        self.status[sid] = status
        if reason is not None:
            self.reasons[sid] = reason
        if self.finished and self.ended is None:
            self.ended = time.time()

    def _fail(self, plan: RunPlan, sid: str, error: str) -> Transition:
        """Step ``sid`` failed: drop its other calls; skip what depends on it, naming it."""
        for key in [k for k, c in self.inflight.items() if c["step_id"] == sid]:
            del self.inflight[key]
        changed = [sid]
        frontier = list(plan.steps[sid].dependants)
        skipped: list[str] = []
        while frontier:
            child = frontier.pop()
            if self.status[child] == "pending":
                skipped.append(child)
                self.status[child] = "skipped"
                self.reasons[child] = f"skipped: step {sid} failed"
                frontier += plan.steps[child].dependants
        self._end(sid, "failed", error)
        return Transition(changed=changed + sorted(skipped))

    def _complete(
        self, plan: RunPlan, store: BlobStore, sid: str, outputs: Mapping[str, ValueRef]
    ) -> Transition:
        for port, ref in outputs.items():
            self.values[ids.output_value(sid, port)] = ref.to_json()
        self._end(sid, "succeeded")
        return Transition(changed=[sid]) + self._unlock(plan, store, sid)

    def _unlock(self, plan: RunPlan, store: BlobStore, sid: str) -> Transition:
        """Launch the dependants of ``sid`` (just ended) that are now ready."""
        done = Transition()
        for child in plan.steps[sid].dependants:
            if self.status[child] == "pending" and self._ready(plan, child):
                done += self._launch(plan, store, child)
        return done

    def _ready(self, plan: RunPlan, sid: str) -> bool:
        """Every step ``sid`` needs has ended: those it reads succeeded, those only its
        condition reads may also have been skipped by theirs."""
        step = plan.steps[sid]
        return all(
            self.status[n] == "succeeded" or (n not in step.reads and self.unmet(n))
            for n in step.needs
        )

    def _skip_unmet(self, plan: RunPlan, store: BlobStore, sid: str, reason: str) -> Transition:
        """Step ``sid`` does not run (a ``when`` was false): skip it, and the steps reading
        its outputs, with ``reason``; launch the steps only whose conditions read it."""
        self._end(sid, "skipped", reason)
        done = Transition(changed=[sid])
        for child in plan.steps[sid].dependants:
            if self.status[child] != "pending":
                continue
            if sid in plan.steps[child].reads:
                done += self._skip_unmet(plan, store, child, reason)
            elif self._ready(plan, child):
                done += self._launch(plan, store, child)
        return done

    def _condition_stops(self, plan: RunPlan, store: BlobStore, sid: str) -> Transition | None:
        """Step ``sid``'s ``when``: None if it holds; else the step skipped (false) or
        failed (it cannot be evaluated). A reference to a skipped step's output reads null."""
        from runtime.conditions import ConditionError  # lark loads only for conditions

        step = plan.steps[sid]
        condition = step.when()
        assert condition is not None

        def resolve(ref: ConditionReference) -> Any:
            value_id = condition_value(ref)
            return decode(self.value(value_id), store) if value_id in self.values else None

        try:
            if condition.evaluate(resolve):
                return None
        except ConditionError as exc:
            label = f"step {sid} ({step.pin.name}@{step.pin.version})"
            return self._fail(plan, sid, f"{label}: when {step.condition}: {exc}")
        return self._skip_unmet(plan, store, sid, CONDITION_FALSE + condition.text)

    def _launch(self, plan: RunPlan, store: BlobStore, sid: str) -> Transition:
        step = plan.steps[sid]
        if step.condition is not None:
            stopped = self._condition_stops(plan, store, sid)
            if stopped is not None:
                return stopped
        self.status[sid] = "running"
        self.started.setdefault(sid, time.time())
        inputs = {
            port: self.values[b["ref"]] if "ref" in b else b["value"]
            for port, b in step.bindings.items()
        }
        if step.foreach is None:
            self._forget_read(plan, sid)
            return self._make(StepCall(self.run_id, sid, WHOLE, step.pin, inputs, list(step.edges)))
        items = decode(self.value(step.foreach.source), store)
        self._forget_read(plan, sid)
        parts = chunks(items, step.foreach.chunk)
        if not parts:
            self.invocations[sid] = 0
            outputs = gather(step.outputs, [], store, plan.threshold)
            return self._complete(plan, store, sid, outputs)
        self.chunk_outputs[sid] = [None] * len(parts)
        done = Transition()
        for index, part in enumerate(parts):
            chunk_inputs = {
                **inputs,
                step.foreach.port: encode(part, store, plan.threshold).to_json(),
            }
            done += self._make(
                StepCall(self.run_id, sid, index, step.pin, chunk_inputs, list(step.edges))
            )
        return done

    def _forget_read(self, plan: RunPlan, sid: str) -> None:
        """Drop the values ``sid`` just read that no step still to start reads and the run
        does not keep: the state (in Redis, read and written at every step) stays as small
        on a 100-step chain as on a 3-step one. Calls hold their own inputs."""
        for value_id, readers in plan.readers.items():
            if sid not in readers or value_id in plan.kept or value_id not in self.values:
                continue
            if all(self.status[r] != "pending" for r in readers):
                del self.values[value_id]

    def _make(self, call: StepCall) -> Transition:
        self.inflight[call.key] = call.to_json()
        self.invocations[call.step_id] = self.invocations.get(call.step_id, 0) + 1
        return Transition([call])
