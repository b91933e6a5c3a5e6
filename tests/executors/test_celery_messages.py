"""Step messages name the work only, and a duplicate or stale copy is harmless."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.celery_app import client_app
from runtime.executors.redis_runs import RedisRuns
from runtime.services import Services

pytestmark = pytest.mark.celery

CHAIN = """\
apiVersion: wtm/v1
kind: Pipeline
name: chain
version: 1.0.0
steps:
  - {id: "001", task: add, with: {a: 1, b: 2}}
  - {id: "002", task: add, with: {a: $001.sum, b: 10}}
outputs:
  total: $002.sum
"""


def test_messages_carry_only_the_run_the_call_and_the_attempt(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    broker, home = celery_worker
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    queue = redis.Redis.from_url(broker)
    sent: list[bytes] = []
    with Services.open(Settings.load({"home": str(home)})) as services:
        checked, pins = prepare(services, path)
        app = client_app(broker)
        original = app.amqp.send_task_message

        def spy(producer, name, message, **kwargs):  # what goes on the wire
            sent.append(json.dumps(message.body[0]).encode())
            return original(producer, name, message, **kwargs)

        app.amqp.send_task_message = spy
        try:
            [session] = execute(services, checked, pins, [{}], executor="celery", broker_url=broker)
        finally:
            app.amqp.send_task_message = original
    assert session.result["total"] == 13
    assert json.loads(sent[0]) == [session.run_id, "001", 1]
    assert queue.exists(f"wtm:run:{session.run_id}:plan")


def wait_until_consumed(client: redis.Redis, seconds: float = 60) -> None:
    """Until no message waits in a queue or is taken and not yet acknowledged (the worker
    acknowledges a step message once its task returned)."""
    deadline = time.monotonic() + seconds
    idle = 0  # two idle looks in a row: a message moving from a queue to the unacked set
    while True:  # is briefly in neither
        queues = [k for k in client.scan_iter(match="celery*") if client.type(k) == b"list"]
        waiting = sum(client.llen(q) for q in queues) + client.hlen("unacked")
        idle = idle + 1 if waiting == 0 else 0
        if idle == 2:
            return
        assert time.monotonic() < deadline, f"{waiting} messages still not consumed"
        time.sleep(0.05)


def test_a_duplicate_or_stale_message_changes_nothing(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    broker, home = celery_worker
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    with Services.open(Settings.load({"home": str(home)})) as services:
        checked, pins = prepare(services, path)
        [session] = execute(services, checked, pins, [{}], executor="celery", broker_url=broker)
        run_id = session.run_id
        before_steps = [s.to_dict() for s in services.metadata.list_steps(run_id)]
        before_values = [v.to_dict() for v in services.metadata.list_values(run_id)]
        before_state = RedisRuns.at(broker).state(run_id)
        app = client_app(broker)
        for key, attempt in [("001", 1), ("002", 1), ("001", 1), ("002", 0), ("003", 1)]:
            app.send_task("wtm.step", args=(run_id, key, attempt))
        wait_until_consumed(redis.Redis.from_url(broker))
        assert [s.to_dict() for s in services.metadata.list_steps(run_id)] == before_steps
        assert [v.to_dict() for v in services.metadata.list_values(run_id)] == before_values
        assert RedisRuns.at(broker).state(run_id) == before_state
        assert services.metadata.get_run(run_id).status == "succeeded"


class Blobs:
    """A blob store for states whose values are all inline."""

    def put_json_blob(self, data: bytes) -> str:
        raise AssertionError("everything here is inline")

    def get_blob(self, uri: str) -> bytes:
        raise AssertionError("everything here is inline")


def test_a_chunk_applied_in_redis_matches_the_run_state_transition(
    celery_worker: tuple[str, Path],
) -> None:
    """The Lua fast path for a chunk that is not its step's last is the same transition."""
    from runtime.executors.calls import StepResult, TaskPin
    from runtime.executors.plan import ForeachPlan, RunPlan, StepPlan
    from runtime.executors.redis_runs import Envelope
    from runtime.executors.runstate import RunState
    from runtime.values import ValueRef

    broker, _ = celery_worker
    pin = TaskPin("t", "1.0.0", "sha256:0")
    step = StepPlan(
        "b",
        pin,
        (),
        {"x": {"ref": "pipeline_input_items"}},
        ("y",),
        (),
        (),
        ForeachPlan("x", "pipeline_input_items", 1),
    )
    plan = RunPlan("p@1", {"b": step}, {"out": {"ref": "output_b_y"}}, 1024)
    items = ValueRef("sha256:items", 7, [1, 2, 3])
    pure = RunState.new("run-fast-path", plan, {"items": items})
    calls = pure.start(plan, Blobs()).calls
    runs = RedisRuns.at(broker)
    runs.create(pure, Envelope(plan, None))
    result = StepResult({"y": {"id": "sha256:two", "size": 3, "value": [2]}}, 0.25, "w")
    stale = StepResult({"y": {"id": "sha256:bad", "size": 3, "value": [0]}}, 9.0, "w")
    assert runs.chunk_succeeded(calls[1], result)
    assert not runs.chunk_succeeded(calls[1], result), "a duplicate is not applied twice"
    assert not runs.chunk_succeeded(calls[0].next_attempt(), stale), "nor a stale attempt"
    pure.succeeded(plan, Blobs(), calls[1], result)
    assert runs.state("run-fast-path") == pure
    assert runs.chunk_succeeded(calls[0], result)
    assert not runs.chunk_succeeded(calls[2], result), "the last chunk takes the full path"


def test_a_change_made_on_a_stale_read_loses_no_other_change(
    celery_worker: tuple[str, Path],
) -> None:
    """Two parallel steps end at once: the one that read the state before the other's
    change was stored still ends with both applied (the compare-and-set saw the change)."""
    from runtime.executors.calls import StepResult, TaskPin
    from runtime.executors.plan import RunPlan, StepPlan
    from runtime.executors.redis_runs import Envelope, Lease
    from runtime.executors.runstate import RunState

    broker, _ = celery_worker
    pin = TaskPin("t", "1.0.0", "sha256:0")
    steps = {sid: StepPlan(sid, pin, (), {}, ("y",), (), ()) for sid in ("a", "b")}
    plan = RunPlan("p@1", steps, {"a": {"ref": "output_a_y"}}, 1024)
    pure = RunState.new("run-stale-read", plan, {})
    a_call, b_call = pure.start(plan, Blobs()).calls
    runs = RedisRuns.at(broker)
    runs.create(pure, Envelope(plan, None))
    lease = Lease("run-stale-read", "a", "host:1", 1, time.time(), "node")
    work = runs.work("run-stale-read", "a", lease)
    assert work.claimed and work.call == a_call and work.seen is not None
    done = {"y": {"id": "sha256:y", "size": 1, "value": 1}}
    b_done = StepResult(done, 1.0, "w")
    runs.change("run-stale-read", lambda s: s.succeeded(plan, Blobs(), b_call, b_done))
    changed = runs.change(
        "run-stale-read",
        lambda s: s.succeeded(plan, Blobs(), a_call, StepResult(done, 2.0, "w")),
        work.seen,
    )
    assert changed is not None and changed[0].finished
    for call, seconds in ((b_call, 1.0), (a_call, 2.0)):
        pure.succeeded(plan, Blobs(), call, StepResult(done, seconds, "w"))
    stored = runs.state("run-stale-read")
    assert stored is not None and stored.status == {"a": "succeeded", "b": "succeeded"}
    pure.ended = stored.ended  # the moment each copy ended
    assert stored == pure


def test_a_lease_given_back_only_if_it_is_still_the_one_stored(
    celery_worker: tuple[str, Path],
) -> None:
    from runtime.executors.redis_runs import Lease

    broker, _ = celery_worker
    runs = RedisRuns.at(broker)
    stale = Lease("run-lease", "a", "host:1", 1, time.time(), "node")
    current = Lease("run-lease", "a", "host:2", 2, time.time(), "node")
    assert runs.work("run-lease", "a", stale).claimed
    assert not runs.work("run-lease", "a", current).claimed
    runs.take(current)
    runs.give_back(stale)
    assert runs.lease("run-lease", "a") == current
    runs.give_back(current)
    assert runs.lease("run-lease", "a") is None
