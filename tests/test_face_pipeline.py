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
    """Runs the pipeline on astronaut, group6 and coffee (no faces) with each executor, then
    astronaut again (served from the cache); yields the results by image."""
    names = ("astronaut", "group6", "coffee")
    images = [sample_path(name, face_home.parent / "samples") for name in names]
    with Services.open(Settings.load({"home": str(face_home)})) as services:
        checked, pins = prepare(services, PIPELINE)
        runs = [{"image_path": str(i)} for i in images]
        services.metadata.clear_cache()  # the other executor's results are not reused
        if request.param == "local":
            sessions = execute(services, checked, pins, runs, workers=2)
            sessions += execute(services, checked, pins, runs[:1], workers=2)
        else:
            folder = tmp_path_factory.mktemp("redis")
            with redis_server(folder) as broker:
                worker = start_worker(broker, {"WTM_HOME": str(face_home)}, folder / "worker.log")
                try:
                    sessions = []
                    for batch in (runs, runs[:1]):
                        sessions += execute(
                            services, checked, pins, batch, executor="celery", broker_url=broker
                        )
                finally:
                    stop_worker(worker)
        yield (
            services,
            dict(zip([*names, "astronaut again"], [s.result for s in sessions], strict=True)),
        )


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


def test_an_image_without_faces_skips_attributes_and_features(face_run):
    services, results = face_run
    result = results["coffee"]
    summary = result["processing_summary"]
    assert summary["status"] == "succeeded" and result["faces"] == []
    steps = {s.step_id: s for s in services.metadata.list_steps(summary["run_id"])}
    reason = "condition false: len($001.faces_array) > 0"
    assert (steps["002"].status, steps["002"].error) == ("skipped", reason)
    assert (steps["003"].status, steps["003"].error) == ("skipped", reason)


def test_an_image_run_again_is_served_from_the_cache_with_the_same_result(face_run):
    services, results = face_run
    first, again = results["astronaut"], results["astronaut again"]
    assert again["faces"] == first["faces"]
    summary = again["processing_summary"]
    assert summary["sequential_time"] == 0
    first_id = first["processing_summary"]["run_id"]
    steps = services.metadata.list_steps(summary["run_id"])
    assert {(s.step_id, s.item): s.cached_from for s in steps} == {
        ("001", -1): f"{first_id}/001",
        ("002", -1): f"{first_id}/002",
        ("003", 0): f"{first_id}/003[0]",  # the one face's chunk
        ("003", -1): None,  # the gathered step: made from its chunks, in this run
    }
