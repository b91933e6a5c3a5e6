"""No run is lost, hangs or stays ``running``: each fault injected into real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.reliability.conftest import Cluster, in_background, tally, wait_for

pytestmark = pytest.mark.celery

SLOW_STEP = """
steps:
  - {id: "001", task: crash, with: {how: exit, seconds: SECONDS, until: 1}}
  - {id: "002", task: add, with: {a: $001.attempt, b: 100}}
outputs:
  attempt: $001.attempt
  sum: $002.sum
"""
"""Step 001 sleeps SECONDS and returns the attempt that ran it (``until: 1``: it lives)."""


def slow(seconds: float) -> str:
    return SLOW_STEP.replace("SECONDS", str(seconds))


def running_step(cluster: Cluster, step_id: str = "001"):
    """The first record of ``step_id`` that is running, in any run."""
    for run in cluster.services.metadata.list_runs(limit=None):
        step = cluster.services.metadata.get_step(run.run_id, step_id)
        if step is not None and step.status == "running" and step.worker:
            return step
    return None


def pid_of(worker: str) -> int:
    return int(worker.rsplit(":", 1)[1])


def test_a_dead_worker_host_s_step_runs_again_elsewhere_within_a_minute(cluster: Cluster):
    cluster.worker("first")
    cluster.worker("second")
    client, sessions = in_background(cluster, cluster.pipeline(slow(3)), [{}])
    step = wait_for(lambda: running_step(cluster), 60, "step 001 to start")
    killed_at = time.time()
    os.killpg(os.getpgid(pid_of(step.worker)), signal.SIGKILL)  # the worker and its pool
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    [session] = sessions
    row = tally("worker host SIGKILLed mid-step (main + pool)", cluster.services, [session.run_id])
    assert (row.succeeded, row.stuck, row.lost) == (1, 0, 0), row
    assert session.result["attempt"] == 2 and session.result["sum"] == 102
    again = cluster.services.metadata.get_step(session.run_id, "001")
    assert again.attempt == 2 and again.worker != step.worker
    restarted = datetime.fromisoformat(again.started_at).timestamp()
    assert restarted - killed_at < 60, f"step 001 ran again {restarted - killed_at:.0f}s later"


def test_a_killed_worker_main_process_never_leaves_its_run_running(cluster: Cluster):
    cluster.worker("first")
    cluster.worker("second")
    client, sessions = in_background(cluster, cluster.pipeline(slow(2)), [{}])
    step = wait_for(lambda: running_step(cluster), 60, "step 001 to start")
    main = os.getpgid(pid_of(step.worker))  # the group leader is the worker's main process
    os.kill(main, signal.SIGKILL)
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    [session] = sessions
    row = tally("worker main process SIGKILLed mid-step", cluster.services, [session.run_id])
    assert (row.succeeded, row.stuck, row.lost) == (1, 0, 0), row
    assert session.result["sum"] == 100 + session.result["attempt"]


def test_a_killed_pool_process_s_step_runs_again_as_a_new_attempt(cluster: Cluster):
    cluster.worker("only", concurrency=1)
    client, sessions = in_background(cluster, cluster.pipeline(slow(2)), [{}])
    step = wait_for(lambda: running_step(cluster), 60, "step 001 to start")
    os.kill(pid_of(step.worker), signal.SIGKILL)
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    [session] = sessions
    row = tally("pool process SIGKILLed mid-step", cluster.services, [session.run_id])
    assert (row.succeeded, row.stuck, row.lost) == (1, 0, 0), row
    assert session.result["attempt"] == 2
    assert cluster.services.metadata.get_step(session.run_id, "001").attempt == 2


@pytest.mark.parametrize("how", ["os_exit", "sigkill"])
def test_a_plugin_killing_its_process_fails_after_three_losses_instead_of_looping(
    cluster: Cluster, how: str
):
    cluster.worker("only", concurrency=1)
    path = cluster.pipeline(f"""
steps:
  - {{id: "001", task: crash, with: {{how: {how}}}}}
  - {{id: "002", task: add, with: {{a: $001.attempt, b: 1}}}}
""")
    client, sessions = in_background(cluster, path, [{}])
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    [session] = sessions
    row = tally(
        f"plugin kills its process ({how}) on every attempt", cluster.services, [session.run_id]
    )
    assert (row.failed, row.stuck, row.lost) == (
        ["failed: step 001 (crash@1.0.0): worker lost 3 times while running this step"],
        0,
        0,
    )
    steps = {s.step_id: s for s in cluster.services.metadata.list_steps(session.run_id)}
    assert (steps["001"].status, steps["001"].attempt) == ("failed", 3)
    assert (steps["002"].status, steps["002"].error) == ("skipped", "skipped: step 001 failed")


@pytest.mark.parametrize("down", [2, 30], ids=["restart", "30s-outage"])
def test_a_batch_survives_redis_going_away(cluster: Cluster, down: int):
    cluster.worker("first")
    cluster.worker("second")
    client, sessions = in_background(cluster, cluster.pipeline(slow(1)), [{}] * 8)
    wait_for(lambda: running_step(cluster), 60, "a step to start")
    cluster.redis.restart(down_seconds=down)
    client.join(240)
    assert not client.is_alive(), "the client is still waiting"
    run_ids = [s.run_id for s in sessions]
    fault = f"redis-server down {down}s mid-batch (AOF on)"
    row = tally(fault, cluster.services, run_ids)
    assert (row.succeeded, row.failed, row.stuck, row.lost) == (8, [], 0, 0), row
    assert all(s.result["sum"] == 100 + s.result["attempt"] for s in sessions)


def test_with_no_worker_the_client_says_so_and_honours_its_timeout(cluster: Cluster):
    path = cluster.pipeline(slow(0))
    started = time.monotonic()
    command = cluster.wtm("run", str(path), "--executor", "celery", "--timeout", "8")
    _, err = command.communicate(timeout=60)
    took = time.monotonic() - started
    assert command.returncode == 1, err
    assert "no wtm worker is alive" in " ".join(err.split())
    assert took < 30
    [run] = cluster.services.metadata.list_runs()
    row = tally("no worker consuming; client --timeout 8", cluster.services, [run.run_id])
    assert (row.stuck, row.lost) == (0, 0)
    assert run.status == "cancelled"
    step = cluster.services.metadata.get_step(run.run_id, "001")
    assert (step.status, step.error) == ("cancelled", "cancelled: no result within 8s")


def test_a_killed_client_s_run_goes_on_and_watch_reattaches(cluster: Cluster):
    cluster.worker("only")
    path = cluster.pipeline(slow(2))
    command = cluster.wtm("run", str(path), "--executor", "celery")
    step = wait_for(lambda: running_step(cluster), 60, "step 001 to start")
    os.killpg(command.pid, signal.SIGKILL)
    command.communicate(timeout=30)
    watch = cluster.wtm("runs", "watch", step.run_id)
    _, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, err
    row = tally("wtm run (celery client) SIGKILLed", cluster.services, [step.run_id])
    assert (row.succeeded, row.stuck, row.lost) == (1, 0, 0), row


THIEF = """
import os, signal, sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    queue = conn.SimpleQueue("celery")
    message = queue.get(timeout=60)  # taken, not acknowledged: now in Redis's unacked set
    print(message.headers["task"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # dies before any call is claimed
"""


def test_a_message_taken_by_a_worker_that_died_before_claiming_it_is_restored(
    cluster: Cluster,
):
    client, sessions = in_background(cluster, cluster.pipeline(slow(0)), [{}])
    thief = subprocess.run(
        [sys.executable, "-c", THIEF, cluster.redis.url], capture_output=True, text=True, timeout=90
    )
    assert thief.stdout.strip() == "wtm.step" and thief.returncode == -signal.SIGKILL
    taken = time.monotonic()
    cluster.worker("only")
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    [session] = sessions
    row = tally(
        "message taken, taker SIGKILLed before claiming", cluster.services, [session.run_id]
    )
    assert (row.succeeded, row.stuck, row.lost) == (1, 0, 0), row
    assert time.monotonic() - taken < 60, "waited for the visibility timeout (600 s here)"


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")  # every other writer and reader of the store now fails
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the outage under test
db.execute("ROLLBACK")
"""


def test_a_metadata_store_locked_mid_run_stalls_the_run_and_it_ends(cluster: Cluster):
    cluster.worker("only")
    client, sessions = in_background(cluster, cluster.pipeline(slow(2)), [{}])
    step = wait_for(lambda: running_step(cluster), 60, "step 001 to start")
    database = cluster.home / "wtm.db"
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database), "8"], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    locker.wait(60)
    client.join(120)
    assert not client.is_alive(), "the client is still waiting"
    row = tally("metadata store locked 8 s mid-step (SQLite)", cluster.services, [step.run_id])
    assert (row.stuck, row.lost) == (0, 0), row
    steps = cluster.services.metadata.list_steps(step.run_id)
    assert all(s.status not in ("pending", "running") for s in steps), steps
    [session] = sessions
    assert session.result["processing_summary"]["status"] == row_status(cluster, step.run_id)


def row_status(cluster: Cluster, run_id: str) -> str:
    record = cluster.services.metadata.get_run(run_id)
    assert record is not None
    return record.status
