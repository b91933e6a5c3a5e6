"""The celery executor: each run becomes a Celery canvas over Redis.

Stages compile to ``chain(stage1, chord([stage2 steps...], merge), ...)``: a
single-step stage is one task, a parallel stage a chord joined by ``merge``;
a chain never ends with a bare group. Workers (``wtm worker``) load plugins
from the registry and record steps in the metadata store; this side only
submits, watches for cancellation, and records the run's outcome.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from celery import Celery, chain, chord
from celery.canvas import Signature
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult

from runtime import ids
from runtime.config import ConfigError
from runtime.executors.celery_app import batched_publishing, check_broker, client_app
from runtime.executors.celery_tasks import merge, new_state, signature_options, step
from runtime.executors.dataflow import outputs_spec, reference_value
from runtime.executors.session import RunSession
from runtime.graph import PipelineGraph
from runtime.services import Services
from runtime.values import encode

SWEEP_SECONDS = 0.5
"""How often every pending run is checked for its end and for a cancellation."""


def stage_priority(stage: int) -> int:
    """The Redis priority of the tasks of stage ``stage`` (0 first): later stages go first,
    so the runs of a batch finish one after another rather than all at the end."""
    return max(0, 9 - 3 * stage)


def kept_after(graph: PipelineGraph) -> list[list[str]]:
    """For each stage, the value IDs that later stages or the pipeline outputs read: all
    the state must carry on from there."""
    outputs = outputs_spec(graph.pipeline)
    reads = {o["ref"] for o in outputs.values() if "ref" in o}
    reads |= {vid for o in outputs.values() if "from" in o for vid in o["from"].values()}
    kept: list[list[str]] = []
    for stage in reversed(graph.stages):
        kept.append(sorted(reads))
        for sid in stage:  # before this stage its outputs do not exist; its inputs must
            reads -= {ids.output_value(sid, port) for port in graph.tasks[sid].outputs}
            reads |= {reference_value(ref) for ref, _ in graph.pipeline.step(sid).references()}
    return kept[::-1]


def step_spec(session: RunSession, sid: str, stage: int, keep: list[str]) -> dict[str, Any]:
    """Everything a worker needs to run step ``sid`` of stage ``stage``, as JSON; ``keep``:
    the values the run's state carries on after the stage."""
    graph, pin = session.graph, session.scheduler.pins[sid]
    step_ = graph.pipeline.step(sid)
    threshold = session.services.settings.inline_threshold
    bindings = {
        port: {"ref": reference_value(b.reference)}
        if b.reference is not None
        else {"value": encode(b.constant, session.services.access, threshold).to_json()}
        for port, b in step_.bindings.items()
    }
    foreach = None
    if step_.foreach is not None:
        foreach = {
            "port": step_.foreach.port,
            "from": reference_value(step_.foreach.source),
            "chunk": step_.foreach.chunk,
        }
    return {
        "run_id": session.run_id,
        "step_id": sid,
        "pin": asdict(pin),
        "edges": [str(e) for e in graph.edges_into(sid)],
        "bindings": bindings,
        "foreach": foreach,
        "outputs": list(graph.tasks[sid].outputs),
        "needs": sorted(graph.deps[sid]),
        "threshold": threshold,
        "priority": stage_priority(stage),
        "keep": keep,
    }


def canvas(session: RunSession, app: Celery) -> Signature:
    """The run as ``chain(stage, chord([...], merge), ...)``, bound to ``app``: its broker
    and result backend, not Celery's current app (whichever this process made last)."""
    state = new_state({vid: ref.to_json() for vid, ref in session.scheduler.values.items()})
    stages: list[Signature] = []
    kept = kept_after(session.graph)
    for number, stage in enumerate(session.graph.stages):
        members = []
        for sid in stage:
            spec = step_spec(session, sid, number, kept[number])
            args, kwargs = ((state, spec), {}) if number == 0 else ((), {"spec": spec})
            signature = app.signature(step.name, args=args, kwargs=kwargs)
            members.append(signature.set(**signature_options(spec)))
        if len(members) == 1:
            stages.append(members[0])
        else:
            join = app.signature(merge.name).set(priority=stage_priority(number))
            stages.append(chord(members, join, app=app))
    return chain(*stages, app=app)


class CeleryExecutor:
    """Submits runs as canvases to Redis and waits for them."""

    name = "celery"

    def __init__(self, services: Services, broker_url: str | None) -> None:
        broker = broker_url or services.settings.broker_url
        if not broker:
            raise ConfigError(
                "the celery executor needs a broker: --broker, WTM_BROKER_URL "
                "or broker_url in wtm.toml"
            )
        self.services = services
        check_broker(broker)
        self.app = client_app(broker)
        visibility = self.app.conf.broker_transport_options["visibility_timeout"]
        self.visibility_timeout = float(visibility)

    def check_limits(self, session: RunSession) -> None:
        """Refuse a task time limit at or above the broker's visibility timeout (#5935)."""
        for pin in session.scheduler.pins.values():
            if pin.timeout and pin.timeout >= self.visibility_timeout:
                raise ConfigError(
                    f"{pin.name}@{pin.version} timeout {pin.timeout:g}s is not "
                    f"below the broker visibility timeout "
                    f"{self.visibility_timeout:g}s (WTM_VISIBILITY_TIMEOUT)"
                )

    def run(
        self, sessions: list[RunSession], on_finished: Callable[[RunSession], None] | None = None
    ) -> None:
        """Submit every run, then wait for each to end; Ctrl-C cancels them."""
        pending: dict[str, tuple[RunSession, AsyncResult]] = {}
        for session in sessions:
            self.check_limits(session)
        with batched_publishing(self.app) as producer:
            for session in sessions:
                result = canvas(session, self.app).apply_async(producer=producer)
                pending[session.run_id] = (session, result)
        next_sweep = time.monotonic() + SWEEP_SECONDS
        try:
            while pending:
                _wait(next(iter(pending.values()))[1], SWEEP_SECONDS)
                sweep = time.monotonic() >= next_sweep
                for run_id, (session, result) in list(pending.items()):
                    if result.ready():
                        del pending[run_id]
                        self._finish(session, result, on_finished)
                    elif not sweep:
                        break  # runs end about in the order sent: look further at sweeps
                if sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    for session, result in pending.values():
                        if session.cancelled_elsewhere():
                            _revoke(result)
        except KeyboardInterrupt:
            for session, result in pending.values():
                self.services.metadata.update_run(session.run_id, status="cancelled")
                _revoke(result)
                session.cancel()
                session.finish()
            raise

    def _finish(
        self,
        session: RunSession,
        result: AsyncResult,
        on_finished: Callable[[RunSession], None] | None,
    ) -> None:
        if result.successful():
            session.absorb(result.get(disable_sync_subtasks=False))
        elif session.cancelled_elsewhere():
            session.cancel()
        else:
            session.abort(f"celery: {type(result.result).__name__}: {result.result}")
        result.forget()
        release_results(result)
        session.finish()
        if on_finished:
            on_finished(session)


def _wait(result: AsyncResult, timeout: float) -> None:
    """Block until ``result`` is ready or ``timeout`` passes: the result backend's
    pub/sub wakes us the moment the run's last task stores its result."""
    with contextlib.suppress(ResultTimeout):
        result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)


def release_results(result: AsyncResult) -> None:
    """Stop following a finished run's results: the backend keeps chord members it was
    told to watch until then, and would otherwise unsubscribe them at garbage collection,
    when the broker may be gone (a reconnect loop in a ``__del__``)."""
    backend = result.backend
    pending = getattr(backend, "_pending_results", None)  # Redis backend: (concrete, weak)
    node: Any = result
    while node is not None:
        for member in [node, *(getattr(node, "results", None) or ())]:
            # the backend may hold other objects of the same task ID (a chord's own
            # GroupResult made when it was sent): release those too
            waiters = [] if pending is None else pending[0].get(member.id, {}).values()
            for waiter in [member, *waiters]:
                backend.remove_pending_result(waiter)
        node = node.parent


def _revoke(result: AsyncResult) -> None:
    """Revoke the tasks of a chain that have not run yet."""
    node: AsyncResult | None = result
    while node is not None:
        if not node.ready():
            node.revoke()
        node = node.parent
