"""Run plans, run states and leases in Redis: the shared memory of the celery executor.

Per run: its plan (written once) and its state, changed only atomically (a
compare-and-set script, or a ``WATCH``/``MULTI`` transaction while a foreach is in
flight), so two workers finishing steps at the same moment never lose each other's
results. The state is stored in parts so that a wide foreach does not
rewrite it all for every chunk: the calls of foreach chunks in flight, and chunk
outputs not yet merged, sit in hashes beside the rest. A chunk that is not its
step's last is applied by a Lua script touching only its own fields
(:data:`CHUNK_SUCCEEDED`, the Redis form of :meth:`RunState.succeeded` for such a
chunk); every other change reads the whole state, applies a
:class:`~runtime.executors.runstate.RunState` transition and writes it back.

A *lease* says which process is working on a call of a run; a *node* record,
refreshed by every live worker, says which of its processes are alive. A lease
whose holder is dead is what the reaper (:mod:`runtime.executors.liveness`) acts on.

Every operation retries while Redis is unreachable (a restart, a network
blip), up to ``WTM_BROKER_RETRY_SECONDS`` (120 s by default), so a Redis
restart delays a run instead of failing it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from runtime import ids
from runtime.executors.calls import StepCall, StepResult
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


CHUNK_SUCCEEDED = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held or cjson.decode(held)['attempt'] ~= tonumber(ARGV[2]) then return 0 end
local left = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')
if left <= 1 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[3], -1)
return 1
"""
"""A current chunk call that is not the last of its step succeeded: drop it from the calls
in flight, keep its outputs and time, count one chunk less. Returns 0 (changing nothing)
when the call is not current or is the last: the full transition handles those."""

REPLACE_STATE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if redis.sha1hex(current) ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
local calls = cjson.decode(ARGV[3])
for i = 1, #calls, 2 do redis.call('HSET', KEYS[2], calls[i], calls[i + 1]) end
local left = cjson.decode(ARGV[4])
for i = 1, #left, 2 do redis.call('HSET', KEYS[4], left[i], left[i + 1]) end
if ARGV[5] ~= '' then
  for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
return 1
"""
"""Compare-and-set of a run state without chunk parts: if the stored core is still the one
whose SHA-1 is ARGV[1], write the new core (ARGV[2]) and the chunk calls and counts it
starts (flat JSON lists), and with ARGV[5] let the run's keys expire after that many
seconds. Returns 1 when written, 0 when the run is not here, else the core now stored."""


DELETE_IF_SAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""
"""Delete hash field ARGV[1] of KEYS[1] only if it still holds ARGV[2]."""


def _keys(run_id: str) -> tuple[str, str, str, str]:
    """The state, chunk calls, chunk outputs and chunks-left keys of a run."""
    base = f"{PREFIX}run:{run_id}"
    return f"{base}:state", f"{base}:calls", f"{base}:outs", f"{base}:left"


def _split(state: RunState) -> tuple[dict[str, Any], dict[str, str], dict[str, int]]:
    """The state as stored: the rest, the chunk calls in flight, chunks left per step."""
    core = state.to_json()
    calls = {k: json.dumps(c) for k, c in core["inflight"].items() if c["item"] >= 0}
    left: dict[str, int] = {}
    for held in core["inflight"].values():
        if held["item"] >= 0:
            left[held["step_id"]] = left.get(held["step_id"], 0) + 1
    core = {**core, "inflight": {k: c for k, c in core["inflight"].items() if c["item"] < 0}}
    return core, calls, left


def _assemble(core: dict[str, Any], calls: Mapping[Any, Any], outs: Mapping[Any, Any]) -> RunState:
    """The whole state from its stored parts (chunk outputs merged in)."""
    state = RunState.from_json(core)
    state.inflight.update({k: json.loads(c) for k, c in calls.items()})
    for key, raw in outs.items():
        sid, index = ids.split_chunk(key)
        done = json.loads(raw)
        state.chunk_outputs[sid][index] = done["outputs"]
        state.seconds[sid] = state.seconds.get(sid, 0.0) + done["seconds"]
    return state


def _plan_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:plan"


def state_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:state"


def node_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def lease_field(run_id: str, key: str) -> str:
    return f"{run_id}|{key}"


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
class Work:
    """What a worker read before running a call (see :meth:`RedisRuns.work`)."""

    envelope: Envelope | None
    call: StepCall | None
    seen: str | None
    """The stored state the call was read from (None for a foreach chunk's call)."""
    claimed: bool
    """Whether the worker's lease was written (no lease of the call existed)."""


@dataclass(frozen=True)
class Envelope:
    """What is stored once per run beside its plan: who to tell when it ends."""

    plan: RunPlan
    reply_to: str | None


class RedisRuns:
    """Plans, states, leases and node records of runs, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._chunk_succeeded = client.register_script(CHUNK_SUCCEEDED)
        self._replace_state = client.register_script(REPLACE_STATE)
        self._delete_if_same = client.register_script(DELETE_IF_SAME)

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

    def create(self, state: RunState, envelope: Envelope, lease: Lease | None = None) -> None:
        """Store a new run's plan and state (and, with them, the lease of its submitter)."""
        doc = {
            "plan": envelope.plan.to_json(),
            "reply_to": envelope.reply_to,
        }

        def write() -> None:
            with self.redis.pipeline() as pipe:
                if lease is not None:
                    pipe.hset(LEASES, lease_field(lease.run_id, lease.key), lease.to_json())
                pipe.set(_plan_key(state.run_id), json.dumps(doc))
                self._write(pipe, state)
                pipe.execute()

        self.call(write)

    def _write(self, pipe: Any, state: RunState, had_chunks: bool = True) -> None:
        """Queue the commands that store ``state`` in its parts (the chunk parts are only
        cleared if they may hold something: ``had_chunks``)."""
        state_, calls_, outs_, left_ = _keys(state.run_id)
        core, calls, left = _split(state)
        pipe.set(state_, json.dumps(core))
        if had_chunks:
            pipe.delete(calls_, outs_, left_)
        if calls:
            pipe.hset(calls_, mapping=calls)
        if left:
            pipe.hset(left_, mapping=left)

    def envelope(self, run_id: str) -> Envelope | None:
        """A run's plan and reply address (cached: a plan never changes)."""
        return _envelope(self, run_id)

    def state(self, run_id: str) -> RunState | None:
        """The whole state of a run, or None."""
        state_, calls_, outs_, _ = _keys(run_id)

        def read() -> list[Any]:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(state_)
                pipe.hgetall(calls_)
                pipe.hgetall(outs_)
                return list(pipe.execute())

        core, calls, outs = self.call(read)
        return _assemble(json.loads(core), calls, outs) if core is not None else None

    def work(self, run_id: str, key: str, lease: Lease) -> Work:
        """What a worker needs to run call ``key`` of ``run_id``, in one round trip: the run's
        envelope, its call in flight under ``key``, the stored state it was read from, and
        whether ``lease`` was taken (only if no lease of that call existed). A lease taken
        for a call that turns out not to be current must be given back
        (:meth:`give_back`)."""
        state_, calls_, _, _ = _keys(run_id)
        known = run_id in _ENVELOPES
        chunk_call = ids.split_chunk(key)[1] >= 0

        def read() -> list[Any]:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hsetnx(LEASES, lease_field(run_id, key), lease.to_json())
                if chunk_call:
                    pipe.hget(calls_, key)
                else:
                    pipe.get(state_)
                if not known:
                    pipe.get(_plan_key(run_id))
                return list(pipe.execute())

        claimed, found, *plan = self.call(read)
        envelope = _envelope(self, run_id, plan[0] if plan else None)
        if found is None:
            return Work(envelope, None, None, bool(claimed))
        if chunk_call:
            return Work(envelope, StepCall.from_json(json.loads(found)), None, bool(claimed))
        call = RunState.from_json(json.loads(found)).call(key)
        return Work(envelope, call, found, bool(claimed))

    def chunk_succeeded(self, call: StepCall, result: StepResult) -> bool:
        """Apply a chunk's success if it is current and not its step's last (see
        :data:`CHUNK_SUCCEEDED`); False when the full transition must handle it."""
        _, calls_, outs_, left_ = _keys(call.run_id)
        done = json.dumps({"outputs": result.outputs, "seconds": result.seconds})
        applied = self.call(
            lambda: self._chunk_succeeded(
                keys=[calls_, outs_, left_], args=[call.key, call.attempt, call.step_id, done]
            )
        )
        return bool(applied)

    def change(
        self, run_id: str, change: Callable[[RunState], T], seen: str | None = None
    ) -> tuple[RunState, T] | None:
        """Apply ``change`` to the run's state atomically; the new state and what ``change``
        returned, or None if the run is not here. ``change`` may run more than once (when
        another process changed the state first): it must only change the state.

        ``seen``, the stored state as last read, saves a read when it is still current.
        Without a foreach in flight the write is a compare-and-set (:data:`REPLACE_STATE`,
        one round trip when nothing changed meanwhile); with one, a ``WATCH`` transaction
        over all the parts."""
        raw = seen if seen is not None else self.call(lambda: self._get(state_key(run_id)))
        keys = [*_keys(run_id), _plan_key(run_id)]
        while raw is not None:
            core = json.loads(raw)
            if core["chunk_outputs"]:
                return self._change_watched(run_id, change)
            state = RunState.from_json(core)
            was_finished = state.finished
            outcome = change(state)
            core, calls, left = _split(state)
            args = [
                hashlib.sha1(raw.encode()).hexdigest(),
                json.dumps(core),
                json.dumps([x for item in calls.items() for x in item]),
                json.dumps([str(x) for item in left.items() for x in item]),
                KEEP_FINISHED_SECONDS if state.finished and not was_finished else "",
            ]
            written = self.call(functools.partial(self._replace_state, keys=keys, args=args))
            if written == 1:
                return state, outcome
            raw = None if written == 0 else written
        return None

    def _pop(self, key: str) -> str | None:
        return cast(str | None, self.redis.lpop(key))

    def _get(self, key: str) -> str | None:
        return cast(str | None, self.redis.get(key))

    def _change_watched(
        self, run_id: str, change: Callable[[RunState], T]
    ) -> tuple[RunState, T] | None:
        """:meth:`change` in a ``WATCH`` transaction over every part of the state."""
        keys = _keys(run_id)

        def attempt() -> tuple[RunState, T] | None:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys)
                        raw = pipe.get(keys[0])
                        if raw is None:
                            return None
                        core = json.loads(raw)
                        had_chunks = bool(core["chunk_outputs"])
                        calls = pipe.hgetall(keys[1]) if had_chunks else {}
                        outs = pipe.hgetall(keys[2]) if had_chunks else {}
                        state = _assemble(core, calls, outs)
                        was_finished = state.finished
                        outcome = change(state)
                        pipe.multi()
                        self._write(pipe, state, had_chunks)
                        if state.finished and not was_finished:
                            self._ended(pipe, run_id)
                        pipe.execute()
                        return state, outcome
                    except redis.WatchError:
                        continue

        return self.call(attempt)

    def _ended(self, pipe: Any, run_id: str) -> None:
        """Within a transaction: the run just ended; let its keys expire."""
        for key in (*_keys(run_id), _plan_key(run_id)):
            pipe.expire(key, KEEP_FINISHED_SECONDS)

    def announce(self, state: RunState, release: str | None = None) -> None:
        """Tell the run's client it ended (once its records are written), handing it the
        final ``state`` (a read saved); with ``release``, release that call's lease in the
        same round trip."""
        envelope = self.envelope(state.run_id)
        reply_to = envelope.reply_to if envelope is not None else None
        reply = json.dumps(state.to_json())

        def push() -> None:
            with self.redis.pipeline() as pipe:
                if reply_to:
                    pipe.rpush(reply_to, reply)
                    pipe.expire(reply_to, KEEP_FINISHED_SECONDS)
                if release is not None:
                    pipe.hdel(LEASES, lease_field(state.run_id, release))
                pipe.execute()

        self.call(push)

    def finished(self, run_ids: list[str]) -> list[RunState]:
        """The states of those of ``run_ids`` that ended."""
        if not run_ids:
            return []
        raws = self.call(lambda: self.redis.mget([state_key(r) for r in run_ids]))
        states = [RunState.from_json(json.loads(raw)) for raw in raws if raw is not None]
        return [s for s in states if s.finished]  # nothing is left in the other parts

    def wait_replies(self, reply_to: str, timeout: float) -> list[RunState]:
        """The final states of runs that ended, waiting up to ``timeout`` seconds for the
        first (see :meth:`announce`)."""
        first = self.redis.blpop([reply_to], timeout=max(timeout, 0.01))
        if first is None:
            return []
        found = [first[1]]
        while (more := self._pop(reply_to)) is not None:
            found.append(more)
        return [RunState.from_json(json.loads(raw)) for raw in found]

    # --- leases

    def take(self, lease: Lease) -> None:
        """Write ``lease`` over any lease of its call."""
        field = lease_field(lease.run_id, lease.key)
        self.call(lambda: self.redis.hset(LEASES, field, lease.to_json()))

    def release(self, *leases: tuple[str, str]) -> None:
        """Release the leases of these ``(run_id, call key)`` pairs."""
        fields = [lease_field(run_id, key) for run_id, key in leases]
        if fields:
            self.call(lambda: self.redis.hdel(LEASES, *fields))

    def give_back(self, lease: Lease) -> None:
        """Delete ``lease`` if it is still the one stored (not one written over it since)."""
        field = lease_field(lease.run_id, lease.key)
        self.call(lambda: self._delete_if_same(keys=[LEASES], args=[field, lease.to_json()]))

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


def _envelope(runs: RedisRuns, run_id: str, raw: str | None = None) -> Envelope | None:
    """The envelope of ``run_id``: cached, else parsed from ``raw`` or read."""
    cached = _ENVELOPES.get(run_id)
    if cached is not None:
        return cached
    if raw is None:
        raw = cast(str | None, runs.call(lambda: runs.redis.get(_plan_key(run_id))))
    if raw is None:
        return None
    doc = json.loads(raw)
    envelope = Envelope(RunPlan.from_json(doc["plan"]), doc["reply_to"])
    if len(_ENVELOPES) >= 256:
        _ENVELOPES.pop(next(iter(_ENVELOPES)))
    _ENVELOPES[run_id] = envelope
    return envelope


_ENVELOPES: dict[str, Envelope] = {}
