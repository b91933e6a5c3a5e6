"""Run plans, run states and leases in Redis: the shared memory of the celery executor.

Per run: its plan (written once) and its state (JSON, changed only in
``WATCH``/``MULTI`` transactions, so two workers finishing steps at the same
moment never lose each other's results). A *lease* says which process is
working on a call of a run; a *node* record, refreshed by every live worker,
says which of its processes are alive. A lease whose holder is dead is what the
reaper (:mod:`runtime.executors.liveness`) acts on.

Every operation retries while Redis is unreachable (a restart, a network
blip), up to ``WTM_BROKER_RETRY_SECONDS`` (120 s by default), so a Redis
restart delays a run instead of failing it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from runtime.executors.plan import RunPlan
from runtime.executors.runstate import RunState

T = TypeVar("T")
PREFIX = "wtm:"
LEASES = PREFIX + "leases"
KEEP_FINISHED_SECONDS = 24 * 3600
"""How long a finished run's plan and state stay in Redis (``wtm runs watch``)."""
NODE_TTL = 10.0
"""A node record lives this long unless refreshed: a worker silent this long is dead."""
CLIENT_LEASE_SECONDS = 30.0
"""How long a client may hold a lease between saving a run and publishing its calls."""


def retry_seconds() -> float:
    return float(os.environ.get("WTM_BROKER_RETRY_SECONDS", "120"))


def _plan_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:plan"


def state_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:state"


def node_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def lease_field(run_id: str, key: str) -> str:
    return f"{run_id}|{key}"


def this_process() -> str:
    """``host:pid``, as leases and node records name processes."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Lease:
    """Process ``holder`` works on call ``key`` (at ``attempt``) of run ``run_id``.

    Worker leases name their ``node``, whose record lists its live processes; a
    client's lease has no node and ``expires`` instead.
    """

    run_id: str
    key: str
    holder: str
    attempt: int
    at: float
    node: str | None = None
    expires: float | None = None
    deadline: float | None = None
    """When the call's hard time limit kills it: a holder dead after this timed out."""

    @property
    def call(self) -> str:
        """``run|key|attempt``, as node records list the calls their processes run."""
        return f"{self.run_id}|{self.key}|{self.attempt}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Lease:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Envelope:
    """What is stored once per run beside its plan: who to tell when it ends."""

    plan: RunPlan
    executor: str
    reply_to: str | None


class RedisRuns:
    """Plans, states, leases and node records of runs, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def at(cls, url: str) -> RedisRuns:
        """The store on the Redis at ``url`` (one client per URL and process)."""
        return _cached(url, os.getpid())

    # --- retries

    def call(self, operation: Callable[[], T]) -> T:
        """``operation()``, retried while Redis does not answer (up to the retry budget)."""
        deadline = time.monotonic() + retry_seconds()
        delay = 0.1
        while True:
            try:
                return operation()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- runs

    def create(self, state: RunState, envelope: Envelope) -> None:
        """Store a new run's plan and state."""
        doc = {
            "plan": envelope.plan.to_json(),
            "executor": envelope.executor,
            "reply_to": envelope.reply_to,
        }

        def write() -> None:
            with self.redis.pipeline() as pipe:
                pipe.set(_plan_key(state.run_id), json.dumps(doc))
                pipe.set(state_key(state.run_id), json.dumps(state.to_json()))
                pipe.execute()

        self.call(write)

    def envelope(self, run_id: str) -> Envelope | None:
        """A run's plan and reply address (cached: a plan never changes)."""
        return _envelope(self, run_id)

    def state(self, run_id: str) -> RunState | None:
        raw = self.call(lambda: self.redis.get(state_key(run_id)))
        return RunState.from_json(json.loads(raw)) if raw is not None else None

    def change(self, run_id: str, change: Callable[[RunState], T]) -> tuple[RunState, T] | None:
        """Apply ``change`` to the run's state atomically; the new state and what ``change``
        returned, or None if the run is not here. ``change`` may run more than once (when
        another process changed the state first): it must only change the state."""
        key = state_key(run_id)

        def attempt() -> tuple[RunState, T] | None:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        if raw is None:
                            return None
                        state = RunState.from_json(json.loads(raw))
                        was_finished = state.finished
                        outcome = change(state)
                        pipe.multi()
                        pipe.set(key, json.dumps(state.to_json()))
                        if state.finished and not was_finished:
                            self._ended(pipe, run_id)
                        pipe.execute()
                        return state, outcome
                    except redis.WatchError:
                        continue

        return self.call(attempt)

    def _ended(self, pipe: Any, run_id: str) -> None:
        """Within a transaction: the run just ended; let its keys expire."""
        pipe.expire(state_key(run_id), KEEP_FINISHED_SECONDS)
        pipe.expire(_plan_key(run_id), KEEP_FINISHED_SECONDS)

    def announce(self, run_id: str) -> None:
        """Tell the run's client it ended (once its records are written)."""
        envelope = self.envelope(run_id)
        if envelope is None or not envelope.reply_to:
            return
        reply_to = envelope.reply_to

        def push() -> None:
            with self.redis.pipeline() as pipe:
                pipe.rpush(reply_to, run_id)
                pipe.expire(reply_to, KEEP_FINISHED_SECONDS)
                pipe.execute()

        self.call(push)

    def finished(self, run_ids: list[str]) -> list[RunState]:
        """The states of those of ``run_ids`` that ended."""
        if not run_ids:
            return []
        raws = self.call(lambda: self.redis.mget([state_key(r) for r in run_ids]))
        states = [RunState.from_json(json.loads(raw)) for raw in raws if raw is not None]
        return [s for s in states if s.finished]

    def wait_replies(self, reply_to: str, timeout: float) -> list[str]:
        """IDs of runs that ended, waiting up to ``timeout`` seconds for the first."""
        first = self.redis.blpop([reply_to], timeout=max(timeout, 0.01))
        if first is None:
            return []
        found = [str(first[1])]
        while (more := self.redis.lpop(reply_to)) is not None:
            found.append(str(more))
        return found

    # --- leases

    def take(self, lease: Lease) -> None:
        field = lease_field(lease.run_id, lease.key)
        self.call(lambda: self.redis.hset(LEASES, field, lease.to_json()))

    def release(self, run_id: str, key: str) -> None:
        self.call(lambda: self.redis.hdel(LEASES, lease_field(run_id, key)))

    def lease(self, run_id: str, key: str) -> Lease | None:
        raw = self.call(lambda: self.redis.hget(LEASES, lease_field(run_id, key)))
        return Lease.from_json(raw) if raw is not None else None

    def leases(self) -> Iterator[Lease]:
        for raw in self.call(lambda: self.redis.hvals(LEASES)):
            yield Lease.from_json(raw)

    # --- nodes

    def beat(self, node: str, processes: list[str], calls: list[str] | None) -> None:
        """Node ``node`` is alive with ``processes`` (``host:pid`` each) running ``calls``
        (``run|key|attempt`` each), for NODE_TTL."""
        record = json.dumps({"processes": processes, "calls": calls, "at": time.time()})
        self.redis.set(node_key(node), record, px=int(NODE_TTL * 1000))

    def forget_node(self, node: str) -> None:
        self.redis.delete(node_key(node))

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Live nodes: name -> ``{"processes": [...], "at": epoch}``."""
        keys = list(self.redis.scan_iter(match=node_key("*"), count=500))
        if not keys:
            return {}
        found = {}
        for key, raw in zip(keys, self.redis.mget(keys), strict=True):
            if raw is not None:
                found[key[len(node_key("")) :]] = json.loads(raw)
        return found


@functools.lru_cache(maxsize=8)
def _cached(url: str, pid: int) -> RedisRuns:
    return RedisRuns(
        redis.Redis.from_url(
            url, socket_timeout=30, socket_connect_timeout=5, decode_responses=True
        )
    )


def _envelope(runs: RedisRuns, run_id: str) -> Envelope | None:
    cached = _ENVELOPES.get(run_id)
    if cached is not None:
        return cached
    raw = runs.call(lambda: runs.redis.get(_plan_key(run_id)))
    if raw is None:
        return None
    doc = json.loads(raw)
    envelope = Envelope(RunPlan.from_json(doc["plan"]), doc["executor"], doc["reply_to"])
    if len(_ENVELOPES) >= 256:
        _ENVELOPES.pop(next(iter(_ENVELOPES)))
    _ENVELOPES[run_id] = envelope
    return envelope


_ENVELOPES: dict[str, Envelope] = {}
