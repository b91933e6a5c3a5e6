"""A worker SIGKILLed in the middle of a step: the run still completes once a worker is back."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.services import Services
from tests.executors.conftest import installed
from tests.services import redis_server, start_worker, stop_worker

PIPELINE = """\
apiVersion: wtm/v1
kind: Pipeline
name: survivor
version: 1.0.0
steps:
  - {id: "001", task: sleep, with: {seconds: 0.9}}
  - {id: "002", task: sleep, with: {seconds: 0.2, after: $001.slept}}
  - {id: "003", task: sleep, with: {seconds: 0.2, after: $001.slept}}
outputs:
  slept: $003.slept
"""


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_sigkilled_worker_task_is_redelivered_and_run_completes(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    installed(home).close()
    env = {
        "WTM_HOME": str(home),
        "WTM_VISIBILITY_TIMEOUT": "4",
        "WTM_UNACKED_RESTORE_INTERVAL": "1",
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    for key in ("WTM_VISIBILITY_TIMEOUT", "WTM_UNACKED_RESTORE_INTERVAL"):
        monkeypatch.setenv(key, env[key])
    killed_on = []
    with (
        redis_server(tmp_path) as broker,
        Services.open(Settings.load({"home": str(home)})) as services,
    ):
        first = start_worker(broker, env, tmp_path / "w1.log", name="first")
        checked, pins = prepare(services, path)
        sessions = []
        client = threading.Thread(
            target=lambda: sessions.extend(
                execute(services, checked, pins, [{}], executor="celery", broker_url=broker)
            )
        )
        client.start()

        def step_one_running() -> bool:
            runs = services.metadata.list_runs()
            if not runs:
                return False
            step = services.metadata.get_step(runs[0].run_id, "001")
            if step is not None and step.status == "running":
                killed_on.append(step.worker)
                return True
            return False

        wait_for(step_one_running, 30, "step 001 to start")
        stop_worker(first, signal.SIGKILL)
        second = start_worker(broker, env, tmp_path / "w2.log", name="second")
        try:
            client.join(60)
            assert not client.is_alive(), "the run did not complete"
        finally:
            stop_worker(second)
        [session] = sessions
        assert session.result["processing_summary"]["status"] == "succeeded"
        assert session.result["slept"] == 0.2
        steps = services.metadata.list_steps(session.run_id)
        assert sorted((s.step_id, s.status) for s in steps) == [
            ("001", "succeeded"),
            ("002", "succeeded"),
            ("003", "succeeded"),
        ]
        first_step = next(s for s in steps if s.step_id == "001")
        assert first_step.worker not in (None, killed_on[0]), "step 001 was not run again"
