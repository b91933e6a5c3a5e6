"""The local executor under faults: its ``wtm run`` process stopped or killed, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.services import Services
from tests.executors.conftest import installed
from tests.reliability.conftest import tally, wait_for, wtm_process

LONG_STEP = """\
apiVersion: wtm/v1
kind: Pipeline
name: long
version: 1.0.0
steps:
  - {id: "001", task: crash, with: {how: exit, seconds: 30, until: 1}}
  - {id: "002", task: add, with: {a: $001.attempt, b: 1}}
"""


def wtm(home: Path, *args: str) -> subprocess.Popen[str]:
    return wtm_process({"WTM_HOME": str(home)}, home.parent, *args)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "home"
    installed(folder).close()
    (tmp_path / "long.yaml").write_text(LONG_STEP)
    yield folder


def running_run(services: Services) -> str | None:
    for run in services.metadata.list_runs():
        step = services.metadata.get_step(run.run_id, "001")
        if step is not None and step.status == "running":
            return run.run_id
    return None


def test_wtm_run_terminated_records_its_runs_cancelled_with_the_reason(home: Path):
    command = wtm(home, "run", str(home.parent / "long.yaml"))
    with Services.open(Settings.load({"home": str(home)})) as services:
        run_id = wait_for(lambda: running_run(services), 60, "step 001 to start")
        command.send_signal(signal.SIGTERM)
        _, err = command.communicate(timeout=60)
        assert command.returncode == 143, err
        assert "recorded as cancelled" in err
        row = tally("wtm run (local) sent SIGTERM", services, [run_id])
        assert (row.stuck, row.lost) == (0, 0)
        steps = {s.step_id: s for s in services.metadata.list_steps(run_id)}
        assert services.metadata.get_run(run_id).status == "cancelled"
        assert steps["001"].error == "cancelled: wtm run received SIGTERM"
        assert steps["002"].status == "cancelled"


def test_a_killed_wtm_run_s_run_is_reconciled_as_failed_with_the_reason(home: Path):
    command = wtm(home, "run", str(home.parent / "long.yaml"))
    with Services.open(Settings.load({"home": str(home)})) as services:
        run_id = wait_for(lambda: running_run(services), 60, "step 001 to start")
        os.killpg(command.pid, signal.SIGKILL)  # the process, its fork server and pool
        command.communicate(timeout=30)
        listing = wtm(home, "runs", "list", "--json")
        out, err = listing.communicate(timeout=60)
        assert listing.returncode == 0, err
        [listed] = [r for r in json.loads(out) if r["run_id"] == run_id]
        assert listed["status"] == "failed"
        assert listed["error"] == (
            f"the wtm process (pid {command.pid}) running it ended before the run did"
        )
        row = tally("wtm run (local) SIGKILLed, then wtm runs list", services, [run_id])
        assert (row.stuck, row.lost) == (0, 0)
        steps = {s.step_id: s.status for s in services.metadata.list_steps(run_id)}
        assert steps == {"001": "failed", "002": "cancelled"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): the artifact store fills up."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_fails_the_step_with_one_line_and_the_run_ends(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WTM_ARTIFACTS", f"file://{small_disk}/artifacts")
    home = tmp_path / "home"
    installed(home).close()
    pipeline = tmp_path / "big.yaml"
    pipeline.write_text("""\
apiVersion: wtm/v1
kind: Pipeline
name: big
version: 1.0.0
steps:
  - {id: "001", task: make_list, with: {n: 400000}}
  - {id: "002", task: add, with: {a: $001.total, b: 1}}
  - {id: "003", task: add, with: {a: 1, b: 2}}
""")
    command = wtm(home, "run", str(pipeline), "--json")
    out, err = command.communicate(timeout=120)
    assert command.returncode == 1, err
    assert "Traceback" not in err
    result = json.loads(out)
    summary = result["processing_summary"]
    assert summary["status"] == "failed"
    [error] = summary["errors"]
    assert error.startswith("step 001 (make_list@1.0.0): StoreError: cannot write 'blobs/")
    assert error.endswith("No space left on device")
    assert summary["steps"]["003"]["status"] == "succeeded"
    with Services.open(Settings.load({"home": str(home)})) as services:
        row = tally("artifact store disk full during a step (local)", services, [summary["run_id"]])
        assert (row.stuck, row.lost, len(row.failed)) == (0, 0, 1)
