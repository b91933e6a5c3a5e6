"""The face pipeline as a user would write it by hand with Celery, without wtm.

A plain Celery app: Redis as broker and result backend, Celery's defaults for
everything else (JSON, prefetch 4, early acks, no task events). One task per step,
each calling the plugin function directly (the plugin modules imported from
``plugins/face_*/``, models loaded once per pool process), and per image the canvas

    detect | group(attributes, features) | merge

(a chord: attributes and features both read the detected faces and run side by
side; merge joins them by ``face_id``). Features run once per image, as in
``manifests/face_pipeline_batch.yaml``.

Its worker is the plain Celery command, on a Redis database of its own::

    BENCH_HAND_BROKER_URL=redis://127.0.0.1:PORT/2 celery -A bench.handcelery worker -c 2
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import Celery, chain, group
from celery.signals import worker_process_init

from bench.common import release_results
from bench.plainfaces import Sequential

BROKER_ENV = "BENCH_HAND_BROKER_URL"
ROOT = Path(__file__).resolve().parents[1]

app = Celery("handfaces")
app.conf.update(broker_url=os.environ.get(BROKER_ENV), result_backend=os.environ.get(BROKER_ENV))

_models: Sequential | None = None


def models() -> Sequential:
    """The plugin modules with their models loaded (once per process)."""
    global _models
    if _models is None:
        _models = Sequential()
    return _models


@worker_process_init.connect
def _load_models(**_: object) -> None:
    models()


@app.task(name="hand.detect")
def detect(path: str) -> list[dict[str, Any]]:
    return models().detector.detect_faces(path)["faces_array"]


@app.task(name="hand.attributes")
def attributes(faces: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    if not faces:  # as the pipeline's when: nothing to do without faces
        return []
    found = models().attributes.face_attributes(path, faces)
    return [{**face, **extra} for face, extra in zip(faces, found, strict=True)]


@app.task(name="hand.features")
def features(faces: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    if not faces:
        return []
    return models().features.face_features(path, faces)


@app.task(name="hand.merge")
def merge(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    with_attributes, with_features = parts
    merged = {face["face_id"]: dict(face) for face in with_attributes}
    for face in with_features:
        merged[face["face_id"]].update(face)
    return [merged[k] for k in sorted(merged)]


def pipeline(path: str) -> Any:
    """The canvas of one image."""
    return chain(detect.s(path), group(attributes.s(path), features.s(path)), merge.s())


def use(broker: str) -> None:
    """Point this (client) process's app at ``broker``, before its first use."""
    app.conf.update(broker_url=broker, result_backend=broker)


def run_batch(paths: Sequence[Path]) -> list[list[dict[str, Any]]]:
    """Send one canvas per image, then wait for every result (the faces of each image)."""
    sent = [pipeline(str(p)).apply_async() for p in paths]
    try:
        return [result.get(timeout=600) for result in sent]
    finally:
        for result in sent:
            release_results(result)


def start_worker(broker: str, log: Path, concurrency: int, name: str = "hand") -> Any:
    """``celery -A bench.handcelery worker -c CONCURRENCY``, returned once it answers a ping
    (its pool processes load the models as they start)."""
    from tests.services import stop_worker

    use(broker)
    command = [sys.executable, "-m", "celery", "-A", "bench.handcelery", "worker"]
    command += ["-c", str(concurrency), "-n", f"{name}@%h", "-l", "WARNING"]
    handle = open(log, "ab")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        command,
        env={**os.environ, BROKER_ENV: broker},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hand-written worker exited: {log.read_text()[-2000:]}")
        if app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=0.5):
            return process
    stop_worker(process)
    raise RuntimeError(f"hand-written worker did not answer: {log.read_text()[-2000:]}")
