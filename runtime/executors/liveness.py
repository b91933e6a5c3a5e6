"""Worker liveness and the reaper: the steps of a dead worker run again within seconds.

Every ``wtm worker`` runs a :class:`Liveness` thread in its main process. Every
``HEARTBEAT_SECONDS`` it writes its node record (its live pool processes, valid
for ``NODE_TTL``) and, holding a short Redis lock so one worker reaps at a
time, looks at every lease: a lease whose holder is gone (its node silent, or
its process no longer in the pool) is *recovered*. A call whose worker died is
run again as a new attempt (failing after ``WTM_MAX_WORKER_LOST`` losses, 3 by
default); a call killed by its hard time limit fails that attempt; and the
calls of the run that were made but may never have been published (the holder
died between saving the state and publishing) are published again: a
duplicate is harmless. It also looks for *stranded* messages: a worker that
loses its broker connection cannot hand back the messages it had taken but not
started, which stay in Redis's unacked set until the visibility timeout (an
hour by default). A ``wtm.step`` message unacked for ``STRANDED_SECONDS`` whose
call is current and unleased is published again. Celery's visibility timeout
stays a backstop only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from runtime.executors.redis_runs import NODE_TTL, Lease, RedisRuns
from runtime.executors.runstate import DEFAULT_MAX_LOST, RunState, Transition
from runtime.owner import host_pid

log = logging.getLogger("wtm.liveness")
HEARTBEAT_SECONDS = 2.0
REAPER_LOCK = "wtm:reaper"
ACCEPT_SECONDS = 5.0
"""Time a worker's main process surely takes to list a call its pool process started."""
STRANDED_SECONDS = 15.0
"""A taken message whose call no process claimed in this long is stranded."""
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
"""kombu's Redis transport: messages taken and not acknowledged, and when."""


def max_lost() -> int:
    """How many times a call's worker may die before its step fails."""
    return int(os.environ.get("WTM_MAX_WORKER_LOST", DEFAULT_MAX_LOST))


def holder_alive(
    lease: Lease, nodes: Mapping[str, Mapping[str, Any]], judged_after: float = 0.0
) -> bool:
    """Whether the process holding ``lease`` may still be working on it.

    A client lease lives until it expires. A worker lease lives while its node's
    record lists its process running its call (a task that ended without releasing
    its lease, say when Redis stayed away too long, is no longer listed); a record
    older than the lease, or than the node's noticing the call (``ACCEPT_SECONDS``),
    cannot tell yet. With no record at all the node is dead, but only once the judge
    has seen Redis answer for longer than ``NODE_TTL`` (``judged_after``: before
    that, a record may just have expired while Redis restarted).
    """
    now = time.time()
    if lease.node is None:
        return lease.expires is None or now < lease.expires
    node = nodes.get(lease.node)
    if node is None:
        return now < max(judged_after, lease.at + NODE_TTL)
    if lease.holder not in node["processes"]:
        return node["at"] <= lease.at
    calls = node.get("calls")
    return calls is None or node["at"] - lease.at < ACCEPT_SECONDS or lease.call in calls


def recover(runs: RedisRuns, app: Celery, lease: Lease, node_alive: bool) -> None:
    """The holder of ``lease`` is dead: settle its call and publish what may be missing.

    A process gone from a live node after the call's hard limit was killed by that
    limit: the attempt failed (and may be retried). Otherwise its worker was lost.
    """
    from runtime.executors.celery_tasks import publish, settle

    envelope = runs.envelope(lease.run_id)
    if envelope is None:
        runs.release((lease.run_id, lease.key))
        return
    plan = envelope.plan
    timed_out = node_alive and lease.deadline is not None and time.time() >= lease.deadline

    def change(state: RunState) -> Transition:
        call = state.call(lease.key)
        if call is None or call.attempt != lease.attempt:
            return Transition()
        if timed_out:
            limit = call.task.timeout or 0
            return state.attempt_failed(
                plan, call, f"{call.label()}: timed out after {limit:g}s (killed)"
            )
        return state.worker_lost(plan, call, max_lost())

    state = settle(runs, app, plan, lease.run_id, change)
    if state is not None and not state.finished:
        unleased = [c for c in state.calls() if runs.lease(c.run_id, c.key) is None]
        publish(app, plan, unleased)
    runs.release((lease.run_id, lease.key))
    log.warning("recovered %s of run %s from %s", lease.key, lease.run_id, lease.holder)


def step_message(raw: str) -> tuple[str, str, int] | None:
    """``(run_id, key, attempt)`` of an unacked ``wtm.step`` message not waiting for an
    ETA (a retry's backoff), or None."""
    try:
        payload = json.loads(raw)[0]
        headers = payload["headers"]
        if headers.get("task") != "wtm.step":
            return None
        eta = headers.get("eta")
        if eta and datetime.fromisoformat(eta).timestamp() > time.time():
            return None
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        run_id, key, attempt = json.loads(body)[0]
        return str(run_id), str(key), int(attempt)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def restore_stranded(runs: RedisRuns, app: Celery) -> None:
    """Publish again the calls whose message is stuck in the unacked set of a worker that
    lost its connection, and drop those messages."""
    from runtime.executors.celery_tasks import publish

    redis_ = runs.redis
    found_tags = redis_.zrangebyscore(UNACKED_INDEX, "-inf", time.time() - STRANDED_SECONDS)
    for tag in [str(t) for t in found_tags]:
        raw = redis_.hget(UNACKED, tag)
        found = step_message(str(raw)) if raw is not None else None
        if found is None:
            continue
        run_id, key, attempt = found
        state, envelope = runs.state(run_id), runs.envelope(run_id)
        call = state.call(key) if state is not None else None
        current = call is not None and call.attempt == attempt
        if current and runs.lease(run_id, key) is not None:
            continue  # a live process works on it: a long step, not a stranded message
        if current and call is not None and envelope is not None:
            publish(app, envelope.plan, [call])
            log.warning("restored stranded %s of run %s", key, run_id)
        with redis_.pipeline() as pipe:
            pipe.zrem(UNACKED_INDEX, tag)
            pipe.hdel(UNACKED, tag)
            pipe.execute()


class Liveness(threading.Thread):
    """The heartbeat and reaper thread of a worker's main process."""

    def __init__(
        self,
        app: Celery,
        node: str,
        processes: Callable[[], list[int]],
        calls: Callable[[], list[str] | None],
    ) -> None:
        super().__init__(name="wtm-liveness", daemon=True)
        self.app = app
        self.node = node
        self.processes = processes
        self.calls = calls
        self.runs = RedisRuns.at(app.conf.broker_url)
        self.stopping = threading.Event()
        self.connected_since: float | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.beat()
                self.reap()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                self.connected_since = None
                log.warning("liveness: broker unreachable: %s", exc)
            except Exception:
                log.exception("liveness: reaper pass failed")
            self.stopping.wait(HEARTBEAT_SECONDS)

    def stop(self) -> None:
        """Stop beating and say this node is gone (a clean shutdown)."""
        self.stopping.set()
        with contextlib.suppress(redis.RedisError):
            self.runs.forget_node(self.node)

    def beat(self) -> None:
        pids = [os.getpid(), *self.processes()]
        self.runs.beat(self.node, [host_pid(pid) for pid in pids], self.calls())
        if self.connected_since is None:
            self.connected_since = time.time()

    def reap(self) -> None:
        assert self.connected_since is not None
        redis_ = self.runs.redis
        if not redis_.set(REAPER_LOCK, self.node, nx=True, px=int(HEARTBEAT_SECONDS * 1000)):
            return
        nodes = self.runs.nodes()
        judged_after = self.connected_since + NODE_TTL
        for lease in list(self.runs.leases()):
            if not holder_alive(lease, nodes, judged_after):
                recover(self.runs, self.app, lease, lease.node in nodes)
        if time.time() > judged_after:
            restore_stranded(self.runs, self.app)
