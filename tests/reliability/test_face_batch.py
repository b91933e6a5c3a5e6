"""The batch survives: 16 face runs on two workers, one worker SIGKILLed and Redis restarted
mid-batch; every run succeeds with complete records and lineage, within 3 minutes."""

from __future__ import annotations

import os
import signal
import time

import pytest

from runtime.lineage import lineage
from runtime.samples import sample_path
from tests.conftest import ROOT
from tests.reliability.conftest import Cluster, in_background, tally, wait_for

pytest.importorskip("dlib")
pytestmark = [pytest.mark.celery, pytest.mark.faces]
RUNS = 16


def test_a_face_batch_survives_a_killed_worker_and_a_redis_restart(cluster: Cluster):
    for name in ("face_detection", "face_attributes", "face_features"):
        cluster.services.registry.install(ROOT / "plugins" / name)
    image = sample_path("astronaut", cluster.folder / "samples")
    victim = cluster.worker("victim")
    cluster.worker("steady")
    started = time.monotonic()
    pipeline = ROOT / "manifests" / "face_pipeline.yaml"
    client, sessions = in_background(cluster, pipeline, [{"image_path": str(image)}] * RUNS)

    def victim_busy() -> bool:
        """A step of the batch runs in the victim's pool right now."""
        for run in cluster.services.metadata.list_runs(limit=None):
            for step in cluster.services.metadata.list_steps(run.run_id):
                if step.status == "running" and step.worker:
                    pid = int(step.worker.rsplit(":", 1)[1])
                    try:
                        if os.getpgid(pid) == victim.pid:
                            return True
                    except ProcessLookupError:
                        continue
        return False

    wait_for(victim_busy, 120, "the victim worker to run a step")
    os.killpg(victim.pid, signal.SIGKILL)
    cluster.worker("replacement")
    wait_for(
        lambda: len(cluster.services.metadata.list_runs(status="succeeded", limit=None)) >= 2,
        120,
        "two runs to succeed",
    )
    cluster.redis.restart(down_seconds=2)
    client.join(180 - (time.monotonic() - started))
    assert not client.is_alive(), "the batch did not end within 3 minutes"
    run_ids = [s.run_id for s in sessions]
    row = tally(
        f"{RUNS} face runs: a worker SIGKILLed, then Redis restarted", cluster.services, run_ids
    )
    assert (row.succeeded, row.failed, row.stuck, row.lost) == (RUNS, [], 0, 0), row
    metadata = cluster.services.metadata
    for session in sessions:
        assert len(session.result["faces"]) == 1
        steps = metadata.list_steps(session.run_id)
        whole = [s for s in steps if s.item == -1]
        assert sorted(s.step_id for s in whole) == ["001", "002", "003"]
        assert all(s.status == "succeeded" for s in whole), whole
        for output in ("output_002_faces_with_attributes", "output_003_faces_with_features"):
            reached = flatten(lineage(metadata, session.run_id, output))
            assert {"output_001_faces_array", "pipeline_input_image_path"} <= reached, output


def flatten(node) -> set[str]:
    """Every value ID a lineage tree reaches."""
    return {node.value.value_id}.union(*(flatten(s) for s in node.sources))
