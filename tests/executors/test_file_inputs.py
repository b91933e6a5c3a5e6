"""On Celery only ``format: file`` inputs are uploaded; other strings go as they are
(issue 13: a string that happened to name a file had its content uploaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.inputs import complete
from runtime.services import Services
from runtime.stores.artifacts import artifact_uri, blob_key, file_sha256

pytestmark = pytest.mark.celery

PIPELINE = """\
apiVersion: wtm/v1
kind: Pipeline
name: count
version: 1.0.0
inputs:
  image: {schema: {type: string, %s}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image}}
outputs:
  count: $001.count
"""


def run_on_celery(
    celery_worker: tuple[str, Path], tmp_path: Path, schema: str, value: str
) -> tuple[dict, Services]:
    broker, home = celery_worker
    path = tmp_path / "count.yaml"
    path.write_text(PIPELINE % schema)
    services = Services.open(Settings.load({"home": str(home)}))
    checked, pins = prepare(services, path)
    inputs = complete(checked.pipeline, {"image": value})
    [session] = execute(services, checked, pins, [inputs], executor="celery", broker_url=broker)
    assert session.result is not None
    return session.result, services


def test_a_file_input_is_uploaded_for_the_workers(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    faces = tmp_path / "faces.txt"
    faces.write_text("a\nb\nc\n")
    result, services = run_on_celery(celery_worker, tmp_path, "format: file", str(faces))
    with services:
        assert result["count"] == 3, result
        run = services.metadata.get_run(result["processing_summary"]["run_id"])
        assert run is not None and run.inputs == {"image": artifact_uri(file_sha256(faces))}


def test_a_string_input_naming_a_file_is_not_uploaded(
    celery_worker: tuple[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the shared store\n")
    result, services = run_on_celery(celery_worker, tmp_path, "minLength: 1", str(secret))
    with services:
        run = services.metadata.get_run(result["processing_summary"]["run_id"])
        assert run is not None and run.inputs == {"image": str(secret)}
        assert not services.artifacts.exists(blob_key(file_sha256(secret)))
