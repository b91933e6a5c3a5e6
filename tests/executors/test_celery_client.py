"""The Celery client side: runs go to their executor's broker; publishing is batched."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.celery_app import batched_publishing, client_app
from runtime.services import Services

pytestmark = pytest.mark.celery

DIAMOND = """\
apiVersion: wtm/v1
kind: Pipeline
name: two_brokers
version: 1.0.0
steps:
  - {id: "001", task: add, with: {a: 1, b: 2}}
  - {id: "002", task: add, with: {a: $001.sum, b: 10}}
  - {id: "003", task: add, with: {a: $001.sum, b: 20}}
outputs:
  left: $002.sum
  right: $003.sum
"""


@pytest.mark.timeout(60)
def test_a_run_uses_its_executors_broker_after_another_app_was_made(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    broker, home = celery_worker
    elsewhere = broker.rsplit("/", 1)[0] + "/7"  # no worker listens on this database
    path = tmp_path / "diamond.yaml"
    path.write_text(DIAMOND)
    with Services.open(Settings.load({"home": str(home)})) as services:
        checked, pins = prepare(services, path)
        client_app(broker)
        client_app(elsewhere)  # made last: Celery's current app, with no worker behind it
        [session] = execute(services, checked, pins, [{}], executor="celery", broker_url=broker)
        assert session.result is not None
        assert session.result["processing_summary"]["status"] == "succeeded"
        assert {k: session.result[k] for k in ("left", "right")} == {"left": 13, "right": 23}


def test_batched_publishing_sends_every_message_when_the_batch_ends(
    celery_worker: tuple[str, Path],
) -> None:
    broker, _ = celery_worker
    queue = "wtm-test-batched"  # no worker consumes it
    lists = redis.Redis.from_url(broker)
    lists.delete(queue)
    app = client_app(broker)
    with batched_publishing(app) as producer:
        for number in range(5):
            app.send_task("raw.noop", args=([number],), queue=queue, producer=producer)
        assert lists.llen(queue) == 0, "published before the batch ended"
    assert lists.llen(queue) == 5
    lists.delete(queue)


CHAIN = """\
apiVersion: wtm/v1
kind: Pipeline
name: two_stages
version: 1.0.0
steps:
  - {id: "001", task: sleep, with: {seconds: 0.1}}
  - {id: "002", task: sleep, with: {seconds: 0.1, after: $001.slept}}
outputs:
  slept: $002.slept
"""


@pytest.mark.timeout(120)
def test_the_runs_of_a_batch_finish_one_after_another(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    """Later stages go first: the first run ends before the last run starts, rather than
    every run waiting for every first stage (FIFO)."""
    broker, home = celery_worker
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    with Services.open(Settings.load({"home": str(home)})) as services:
        checked, pins = prepare(services, path)
        sessions = execute(services, checked, pins, [{}] * 8, executor="celery", broker_url=broker)
        assert all(
            s.result and s.result["processing_summary"]["status"] == "succeeded" for s in sessions
        )
        steps = {
            s.run_id: {r.step_id: r for r in services.metadata.list_steps(s.run_id)}
            for s in sessions
        }
    first, last = steps[sessions[0].run_id], steps[sessions[-1].run_id]
    assert first["002"].finished_at is not None and last["001"].started_at is not None
    assert first["002"].finished_at < last["001"].started_at


SKIPPING = """\
apiVersion: wtm/v1
kind: Pipeline
name: skipping
version: 1.0.0
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x, b: 1}}
  - {id: "002", task: add, with: {a: $001.sum, b: 10}}
  - {id: "003", task: add, with: {a: $002.sum, b: $inputs.x}}
  - {id: "004", task: add, with: {a: $003.sum, b: $001.sum}}
outputs:
  first: $001.sum
  last: $004.sum
"""


def test_values_read_stages_later_travel_through_the_stages_between(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    """The state drops values nothing later reads; what a later step or an output reads
    (an input read at stage 3, a stage-1 output read at stage 4 and by the outputs) stays."""
    broker, home = celery_worker
    path = tmp_path / "skipping.yaml"
    path.write_text(SKIPPING)
    with Services.open(Settings.load({"home": str(home)})) as services:
        checked, pins = prepare(services, path)
        [session] = execute(
            services, checked, pins, [{"x": 5}], executor="celery", broker_url=broker
        )
    assert session.result is not None
    assert session.result["processing_summary"]["status"] == "succeeded"
    # 001: 6, 002: 16, 003: 21, 004: 27
    assert (session.result["first"], session.result["last"]) == (6, 27)
    assert all(
        s["status"] == "succeeded" for s in session.result["processing_summary"]["steps"].values()
    )
