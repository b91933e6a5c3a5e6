"""The real face pipeline end to end, on both executors, with real models."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.samples import sample_path
from runtime.services import Services
from tests.conftest import ROOT
from tests.services import redis_server, start_worker, stop_worker

pytest.importorskip("dlib")
pytestmark = pytest.mark.faces
PIPELINE = ROOT / "manifests" / "face_pipeline.yaml"
FACE_PLUGINS = ["face_detection", "face_attributes", "face_features"]


@pytest.fixture(scope="module")
def face_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the three face plugins installed, and the sample images."""
    home = tmp_path_factory.mktemp("faces") / "home"
    with Services.open(Settings.load({"home": str(home)})) as services:
        for name in FACE_PLUGINS:
            services.registry.install(ROOT / "plugins" / name)
    return home


@pytest.fixture(scope="module", params=["local", pytest.param("celery", marks=pytest.mark.celery)])
def face_run(
    request: pytest.FixtureRequest, face_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Services, dict]]:
    """Runs the pipeline on astronaut and group6 with each executor; yields the results."""
    images = [sample_path(name, face_home.parent / "samples") for name in ("astronaut", "group6")]
    with Services.open(Settings.load({"home": str(face_home)})) as services:
        checked, pins = prepare(services, PIPELINE)
        runs = [{"image_path": str(i)} for i in images]
        if request.param == "local":
            sessions = execute(services, checked, pins, runs, workers=2)
            yield services, {"astronaut": sessions[0].result, "group6": sessions[1].result}
            return
        folder = tmp_path_factory.mktemp("redis")
        with redis_server(folder) as broker:
            worker = start_worker(broker, {"WTM_HOME": str(face_home)}, folder / "worker.log")
            try:
                sessions = execute(
                    services, checked, pins, runs, executor="celery", broker_url=broker
                )
            finally:
                stop_worker(worker)
        yield services, {"astronaut": sessions[0].result, "group6": sessions[1].result}


def test_result_has_the_seed_report_shape(face_run):
    _, results = face_run
    result = results["astronaut"]
    summary = result["processing_summary"]
    assert summary["status"] == "succeeded", summary.get("errors")
    [face] = result["faces"]
    assert face["face_id"] == 0
    assert face["detection"]["source"] == "output_001_faces_array"
    assert face["attributes"]["source"] == "output_002_faces_with_attributes"
    assert face["features"]["source"] == "output_003_faces_with_features"
    assert {"total_time", "sequential_time", "parallel_speedup", "data_lineage"} <= set(summary)
    assert "output_001_faces_array -> input_002_faces_array" in summary["data_lineage"]
    assert "output_001_faces_array -> input_003_faces_array" in summary["data_lineage"]


def test_real_values(face_run):
    _, results = face_run
    [face] = results["astronaut"]["faces"]
    x, y, w, h = face["detection"]["bbox"]
    assert 150 < x < 210 and 60 < y < 110 and 60 < w < 120 and 60 < h < 120
    assert 18 <= face["attributes"]["age"]["years"] <= 70
    assert face["attributes"]["gender"]["label"] in ("female", "male")
    descriptor = face["features"]["descriptor"]
    assert len(descriptor) == 128 and all(math.isfinite(v) for v in descriptor)


def test_six_faces_fan_out_one_invocation_each(face_run):
    _, results = face_run
    result = results["group6"]
    assert [f["face_id"] for f in result["faces"]] == list(range(6))
    assert result["processing_summary"]["steps"]["003"]["invocations"] == 6
    assert all(len(f["features"]["descriptor"]) == 128 for f in result["faces"])


def test_records_pin_each_step_to_its_package(face_run):
    services, results = face_run
    run_id = results["astronaut"]["processing_summary"]["run_id"]
    digests = {p.name: p.digest for p in services.metadata.list_plugins()}
    steps = {s.step_id: s for s in services.metadata.list_steps(run_id) if s.item < 0}
    assert steps["001"].digest == digests["face_detection"]
    assert steps["003"].digest == digests["face_features"]
    assert all(s.status == "succeeded" for s in steps.values())
