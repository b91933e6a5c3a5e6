"""Production-style backends across processes: S3 packages and artifacts, Celery workers.

The client and a real `wtm worker` process share nothing but Redis, the S3 server (moto's,
on loopback) and the metadata store; afterwards a plain S3 client reads the packages back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.services import Services
from tests.conftest import TASKS
from tests.services import redis_server, s3_server, start_worker, stop_worker

PIPELINE = """\
apiVersion: wtm/v1
kind: Pipeline
name: scaled
version: 1.0.0
inputs:
  image_path: {schema: {type: string, format: file}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image_path}}
  - id: "002"
    task: describe
    foreach: {port: faces_array, from: $001.faces_array}
    with: {image_path: $inputs.image_path}
outputs:
  faces: $002.described
"""


@pytest.fixture
def backends(tmp_path: Path):
    with s3_server() as endpoint:
        env = {
            "WTM_HOME": str(tmp_path / "worker-home"),
            "WTM_ARTIFACTS": "s3://wtm-e2e/packages",
            "WTM_METADATA": f"sqlite:///{tmp_path / 'shared.db'}",
            "WTM_S3_ENDPOINT": endpoint,
            "WTM_S3_ACCESS_KEY": "e2e-access",
            "WTM_S3_SECRET_KEY": "e2e-secret",
        }
        yield env, endpoint


@pytest.mark.celery
def test_celery_run_over_s3_and_packages_readable_by_a_plain_client(backends, tmp_path):
    env, endpoint = backends
    client_env = {**env, "WTM_HOME": str(tmp_path / "client-home")}
    image = tmp_path / "faces.txt"
    image.write_text("one\ntwo\nthree\n")
    path = tmp_path / "scaled.yaml"
    path.write_text(PIPELINE)
    with Services.open(Settings.load(env=client_env)) as services:
        for name in ("detect", "describe"):
            services.registry.install(TASKS / name)
        checked, pins = prepare(services, path)
        with redis_server(tmp_path) as broker:
            worker = start_worker(broker, env, tmp_path / "worker.log")
            try:
                [session] = execute(
                    services,
                    checked,
                    pins,
                    [{"image_path": str(image)}],
                    executor="celery",
                    broker_url=broker,
                )
            finally:
                stop_worker(worker)
        assert session.result["processing_summary"]["status"] == "succeeded", (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
        assert [f["face_id"] for f in session.result["faces"]] == [0, 1, 2]
        run = services.metadata.get_run(session.run_id)
        assert run.inputs["image_path"].startswith("artifact://sha256/")
        detect = services.metadata.get_step(session.run_id, "001")
        assert detect.worker and not detect.worker.endswith(f":{os.getpid()}")
        records = services.metadata.list_plugins()

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="e2e-access",
        aws_secret_access_key="e2e-secret",
        region_name="us-east-1",
    )
    for record in records:
        body = s3.get_object(Bucket="wtm-e2e", Key=f"packages/{record.object_key}")["Body"]
        assert hashlib.sha256(body.read()).hexdigest() == record.digest
    image_digest = hashlib.sha256(image.read_bytes()).hexdigest()
    listed = s3.list_objects_v2(Bucket="wtm-e2e", Prefix="packages/blobs/")["Contents"]
    assert any(o["Key"].endswith(image_digest) for o in listed)
