"""Plugins and their models load before the first step, outside its time (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.loader import PluginLoadError
from runtime.services import Services

MANIFEST = """\
apiVersion: wtm/v1
kind: Task
name: {name}
version: 1.0.0
description: Sets up slowly, like a plugin loading its models.
entrypoint: plugin
inputs: {{}}
outputs:
  setups: {{schema: {{type: integer}}}}
"""

PLUGIN = """\
import os
import time

from runtime import hookimpl

SETUPS = []


@hookimpl
def wtm_task_setup():
    if os.environ.get("WTM_TEST_SETUP_FAILS"):
        raise OSError("model file missing")
    time.sleep(0.5)  # the model load this plugin stands for
    SETUPS.append(os.getpid())


@hookimpl
def wtm_task_run(inputs, context):
    return {"setups": SETUPS.count(os.getpid())}
"""


@pytest.fixture
def services(tmp_path: Path) -> Services:
    plugin = tmp_path / "slow_setup"
    plugin.mkdir()
    (plugin / "manifest.yaml").write_text(MANIFEST.format(name="slow_setup"))
    (plugin / "plugin.py").write_text(PLUGIN)
    opened = Services.open(Settings.load({"home": str(tmp_path / "home")}))
    opened.registry.install(plugin)
    return opened


def pipeline(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "p.yaml"
    lines = [f'  - {{id: "{n:03}", task: slow_setup}}' for n in range(1, steps + 1)]
    path.write_text(
        "apiVersion: wtm/v1\nkind: Pipeline\nname: warm\nversion: 1.0.0\nsteps:\n"
        + "\n".join(lines)
        + "\noutputs:\n  setups: $001.setups\n"
    )
    return path


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_models_load_before_the_first_step_and_not_in_its_time(
    services: Services, tmp_path: Path, pool: str
) -> None:
    with services:
        checked, pins = prepare(services, pipeline(tmp_path, 3))
        [session] = execute(services, checked, pins, [{}], pool=pool, workers=2)  # type: ignore[arg-type]
    result = session.result
    assert result is not None
    summary = result["processing_summary"]
    assert summary["status"] == "succeeded", summary
    assert result["setups"] == 1, "set up once in the process that ran the step"
    assert summary["warm_time"] >= 0.5
    assert all(step["seconds"] < 0.5 for step in summary["steps"].values()), summary["steps"]


def test_a_plugin_is_set_up_once_per_process(services: Services) -> None:
    record = services.registry.resolve("slow_setup", "1.0.0")
    with services:
        first = services.loader.load_pinned("slow_setup", "1.0.0", record.digest)
        again = services.loader.load_pinned("slow_setup", "1.0.0", record.digest)
    assert again is first and first.setup_seconds >= 0.5


def test_a_failing_setup_is_one_line_and_tried_again_next_time(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = services.registry.resolve("slow_setup", "1.0.0")
    monkeypatch.setenv("WTM_TEST_SETUP_FAILS", "1")
    with services, pytest.raises(PluginLoadError) as refused:
        services.loader.load(record.digest)
    assert str(refused.value) == (
        "slow_setup@1.0.0: wtm_task_setup failed: OSError: model file missing"
    )
    monkeypatch.delenv("WTM_TEST_SETUP_FAILS")
    assert services.loader.load(record.digest).setup_seconds >= 0.5


@pytest.mark.celery
def test_a_celery_worker_loads_the_plugins_it_is_told_to_warm_as_it_starts(
    services: Services, tmp_path: Path
) -> None:
    from tests.services import redis_server, start_worker, stop_worker

    with services, redis_server(tmp_path) as broker:
        env = {"WTM_HOME": str(tmp_path / "home")}
        log = tmp_path / "worker.log"
        worker = start_worker(broker, env, log, 1, "warm", ["--warm", "slow_setup"])
        try:
            checked, pins = prepare(services, pipeline(tmp_path, 1))
            [session] = execute(services, checked, pins, [{}], executor="celery", broker_url=broker)
        finally:
            stop_worker(worker)
    result = session.result
    assert result is not None and result["processing_summary"]["status"] == "succeeded"
    assert result["setups"] == 1, "set up in the pool process, before the step"
    assert result["processing_summary"]["steps"]["001"]["seconds"] < 0.5
    assert "loaded 1 plugins in" in log.read_text()
