"""The local executor hands the pool only what it can start, deepest step first."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.execute import execute, prepare
from runtime.executors import local
from runtime.services import Services
from tests.executors.conftest import installed

CHAIN = """apiVersion: wtm/v1
kind: Pipeline
name: chain
version: 1.0.0
inputs:
  seconds: {schema: {type: number}}
steps:
  - {id: "001", task: sleep, with: {seconds: $inputs.seconds}}
  - {id: "002", task: sleep, with: {seconds: $inputs.seconds, after: $001.slept}}
"""


@pytest.fixture
def services(tmp_path: Path) -> Services:
    with installed(tmp_path / "home") as opened:
        yield opened


def run_chain(services: Services, tmp_path: Path, runs: int, seconds: float) -> list:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    checked, pins = prepare(services, path)
    inputs = [{"seconds": seconds}] * runs
    return execute(services, checked, pins, inputs, executor="local", workers=1)


def test_a_call_waiting_for_a_process_is_not_timed(services, tmp_path, monkeypatch):
    # 0.7 s steps on one process, two handed to it at a time: the second waits 0.7 s in
    # the pool's queue, then runs 0.7 s, past the sleep task's 1 s limit and the
    # (shortened) kill grace if its time counted from when it was handed over
    monkeypatch.setattr(local, "HARD_LIMIT_GRACE", 0.3)
    sessions = run_chain(services, tmp_path, runs=3, seconds=0.7)
    summaries = [s.result["processing_summary"] for s in sessions]
    assert [s["status"] for s in summaries] == ["succeeded"] * 3, [
        s.get("errors") for s in summaries
    ]


def test_a_batch_finishes_its_runs_one_after_another(services, tmp_path):
    sessions = run_chain(services, tmp_path, runs=4, seconds=0.05)
    first_finished = services.metadata.get_run(sessions[0].run_id).finished_at
    last_started = services.metadata.get_step(sessions[-1].run_id, "001").started_at
    assert first_finished < last_started  # the first run's step 002 went before them
