"""The Celery task wtm workers run: one call of one run, named by (run, call key, attempt).

A message carries no values and no rest-of-the-chain: the worker reads the
run's plan (stored once) and state from Redis, claims the call, runs it, and
applies the result to the state in a transaction, which names the calls it
unlocks; those are published at once, as a group. So a step starts as soon as
the steps it reads from are done, and a duplicate or stale message (a
redelivery, an earlier attempt) finds its call no longer current and does
nothing. Step failures are part of the state, never task errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task, group, shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from runtime.config import Settings
from runtime.executors.cache import Served, serve
from runtime.executors.calls import StepCall, TaskPin
from runtime.executors.celery_app import batched_publishing
from runtime.executors.liveness import Liveness, holder_alive
from runtime.executors.plan import RunPlan
from runtime.executors.records import change_records
from runtime.executors.redis_runs import Lease, RedisRuns
from runtime.executors.runner import StepFailed, one_line, run_call
from runtime.executors.runstate import RunState, Transition
from runtime.executors.session import record_outcome
from runtime.executors.warm import warm
from runtime.owner import host_pid
from runtime.services import Services
from runtime.timeouts import HARD_LIMIT_GRACE

log = logging.getLogger("wtm.worker")
_services: Services | None = None


WARM_PINS: list[TaskPin] = []
"""The plugins every pool process loads as it starts (``wtm worker --warm``)."""


@worker_process_init.connect
def _start_pool_process(**_: object) -> None:
    """A pool process starts: its own stores (not the parent's), and the plugins to warm
    loaded, with their models, before it takes a message."""
    global _services
    _services = None
    if WARM_PINS:
        seconds = warm(services().loader, WARM_PINS)
        log.info("loaded %d plugins in %.2fs", len(WARM_PINS), seconds)


_liveness: Liveness | None = None


@worker_ready.connect
def _start_liveness(sender: Any, **_: object) -> None:
    """A worker's main process beats and reaps from the moment it consumes."""
    global _liveness
    pool = sender.pool
    _liveness = Liveness(
        sender.app, sender.hostname, lambda: pool.info.get("processes", []), active_calls
    )
    _liveness.start()


def active_calls() -> list[str] | None:
    """``run|key|attempt`` of the step messages this worker's pool runs now (None: the
    consumer kept changing the set while it was read)."""
    from celery.worker.state import active_requests

    for _ in range(3):  # the consumer thread changes the set: copy it again on a clash
        try:
            requests = list(active_requests)
            break
        except RuntimeError:
            continue
    else:
        return None
    return ["|".join(map(str, r.args)) for r in requests if r.name == "wtm.step"]


@worker_shutdown.connect
def _stop_liveness(**_: object) -> None:
    if _liveness is not None:
        _liveness.stop()


def services() -> Services:
    """This worker process's stores and plugin loader, opened on first use."""
    global _services
    if _services is None:
        _services = Services.open(Settings.load())
    return _services


def stage_priority(depth: int) -> int:
    """The Redis priority of a step at ``depth`` (0 first): later steps go first, so the
    runs of a batch finish one after another rather than all at the end."""
    return max(0, 9 - 3 * depth)


def signature(app: Celery, plan: RunPlan, call: StepCall) -> Any:
    """The message of ``call``: its names only, with its priority, hard time limit, a retry
    delay for a retried attempt, and a short repr for events and Flower."""
    step = plan.steps[call.step_id]
    options: dict[str, Any] = {
        "priority": stage_priority(step.depth),
        "argsrepr": f"(run {call.run_id} {call.key} attempt {call.attempt})",
    }
    if call.task.timeout:
        options["time_limit"] = call.task.timeout + HARD_LIMIT_GRACE
    if call.attempt > 1 and call.task.retry_backoff:
        options["countdown"] = call.task.retry_backoff
    return app.signature(
        "wtm.step", args=(call.run_id, call.key, call.attempt), immutable=True
    ).set(**options)


def publish(app: Celery, plan: RunPlan, calls: Sequence[StepCall], producer: Any = None) -> None:
    """Send ``calls``: ready together, they go as one group in one pipelined batch."""
    if not calls:
        return
    signatures = [signature(app, plan, c) for c in calls]
    send = signatures[0] if len(signatures) == 1 else group(signatures, app=app)
    if producer is not None:
        send.apply_async(producer=producer)
        return
    with batched_publishing(app) as batch:
        send.apply_async(producer=batch)


def settle(
    runs: RedisRuns,
    app: Celery,
    plan: RunPlan,
    run_id: str,
    change: Callable[[RunState], Transition],
    release: str | None = None,
    seen: str | None = None,
) -> RunState | None:
    """Apply a transition to run ``run_id`` in Redis, publish the calls it starts, record
    what it changed, and record the run's outcome when it ended; then release the lease of
    call ``release``, if given (only then: its holder may die until the calls are out).
    ``seen``: the stored state as last read (see :meth:`RedisRuns.change`)."""
    store = services()

    def change_and_serve(state: RunState) -> tuple[Transition, Served]:
        transition = change(state)
        max_age = store.settings.cache_max_age
        return transition, serve(
            plan, state, transition.calls, store.metadata, store.access, max_age
        )

    changed = runs.change(run_id, change_and_serve, seen)
    if changed is None:
        if release is not None:
            runs.release((run_id, release))
        return None
    state, (transition, served) = changed
    publish(app, plan, served.calls)
    values, steps = served.records(store.metadata, plan, state)
    more_values, more_steps = change_records(store.metadata, plan, state, transition.changed)
    store.metadata.record(more_values + values, more_steps + steps)
    if state.finished and (transition.changed or served.changed):
        record_outcome(store, plan, state)
        runs.announce(state, release)
    elif release is not None:
        runs.release((run_id, release))
    return state


def execute(app: Celery, request: Any, run_id: str, key: str, attempt: int) -> str:
    """Run call ``key`` of ``run_id`` at ``attempt`` if it is still current; what happened."""
    runs = RedisRuns.at(app.conf.broker_url)
    mine = worker_lease(request, run_id, key, attempt)
    work = runs.work(run_id, key, mine)
    call, seen = work.call, work.seen
    if work.envelope is None or call is None or call.attempt != attempt:
        if work.claimed:
            runs.give_back(mine)
        return "unknown run" if work.envelope is None else "not current"
    plan = work.envelope.plan
    run = services().metadata.get_run(run_id)
    if run is not None and run.status == "cancelled":
        settle(runs, app, plan, run_id, lambda s: s.cancel(), seen=seen)
        if work.claimed:
            runs.give_back(mine)
        return "cancelled"
    if not work.claimed and not claim(runs, mine):
        return "running elsewhere"
    try:
        result = run_call(call, services())
    except StepFailed as exc:
        error = str(exc)
        settle(runs, app, plan, run_id, lambda s: s.attempt_failed(plan, call, error), key, seen)
        return "failed"
    except Exception as exc:  # the stores or the loader failed around the step
        error = one_line(exc, call.label())
        settle(runs, app, plan, run_id, lambda s: s.attempt_failed(plan, call, error), key, seen)
        return "failed"
    if call.item >= 0 and runs.chunk_succeeded(call, result):
        runs.release((run_id, key))
        return "succeeded"
    access = services().access
    settle(runs, app, plan, run_id, lambda s: s.succeeded(plan, access, call, result), key, seen)
    return "succeeded"


def worker_lease(request: Any, run_id: str, key: str, attempt: int) -> Lease:
    """The lease this process takes on a call; its deadline is when the message's hard
    time limit kills the call."""
    now = time.time()
    limit = request.time_limit
    deadline = now + limit if limit else None
    return Lease(run_id, key, host_pid(), attempt, now, request.hostname, None, deadline)


def claim(runs: RedisRuns, mine: Lease) -> bool:
    """Take the lease ``mine`` though another is stored, unless a live process holds that
    one for this attempt or a later one."""
    held = runs.lease(mine.run_id, mine.key)
    taken = held is not None and held.attempt >= mine.attempt and held.holder != mine.holder
    if taken and held is not None and holder_alive(held, runs.nodes()):
        return False
    runs.take(mine)
    return True


@shared_task(bind=True, name="wtm.step", ignore_result=True, acks_late=True)
def step(self: Task, run_id: str, key: str, attempt: int) -> str:
    """Run one call of a run, then start what it unlocks."""
    outcome = execute(self.app, self.request, run_id, key, attempt)
    log.debug("run %s %s attempt %s: %s", run_id, key, attempt, outcome)
    return outcome
