"""``--pool thread`` enforces time limits though a thread cannot be killed (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.services import Services
from tests.conftest import TASKS

SPIN_MANIFEST = """\
apiVersion: wtm/v1
kind: Task
name: spin
version: 1.0.0
description: Loops in Python forever.
entrypoint: plugin
timeout: 1s
inputs: {}
outputs:
  never: {schema: {type: number}}
"""

SPIN_PLUGIN = """\
from runtime import hookimpl


@hookimpl
def wtm_task_run(inputs, context):
    while True:
        pass
"""


def one_step(path: Path, task: str, with_: str = "{}") -> Path:
    path.write_text(
        "apiVersion: wtm/v1\nkind: Pipeline\nname: one\nversion: 1.0.0\n"
        f'steps:\n  - {{id: "001", task: {task}, with: {with_}}}\n'
    )
    return path


def test_a_python_loop_past_its_limit_is_stopped_in_its_thread(tmp_path: Path) -> None:
    plugin = tmp_path / "spin"
    plugin.mkdir()
    (plugin / "manifest.yaml").write_text(SPIN_MANIFEST)
    (plugin / "plugin.py").write_text(SPIN_PLUGIN)
    with Services.open(Settings.load({"home": str(tmp_path / "home")})) as services:
        services.registry.install(plugin)
        checked, pins = prepare(services, one_step(tmp_path / "spin.yaml", "spin"))
        [session] = execute(services, checked, pins, [{}], pool="thread", workers=1)
    summary = session.result["processing_summary"]  # type: ignore[index]
    assert summary["status"] == "failed"
    assert summary["errors"] == ["step 001 (spin@1.0.0): StepTimeout: timed out after 1s"]
    assert not [t for t in threading.enumerate() if t.name.startswith("wtm-step")]


def test_a_thread_stuck_in_native_code_is_abandoned_and_the_process_exits(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "WTM_HOME": str(tmp_path / "home")}
    wtm = [sys.executable, "-m", "runtime.cli"]
    subprocess.run([*wtm, "plugin", "install", str(TASKS / "hang")], env=env, check=True)
    pipeline = one_step(tmp_path / "hang.yaml", "hang", "{seconds: 3600}")
    # sleeping in C, the hang task never sees the soft limit raised in its thread
    done = subprocess.run(
        [*wtm, "run", str(pipeline), "--pool", "thread", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # the limit (1 s) and the grace (5 s), not the hour it sleeps
    )
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)["processing_summary"]
    assert summary["errors"] == [
        "step 001 (hang@1.0.0): timed out after 1s (its thread did not stop and was abandoned)"
    ]
