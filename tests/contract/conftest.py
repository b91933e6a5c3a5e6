"""The backends every contract test runs against.

Each backend is a generator factory ``(request, tmp_path) -> store`` (it may
ask ``request`` for session fixtures, such as a server, and clean up after its
``yield``); adding a backend is one entry in a table below.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from runtime.stores.artifacts import ArtifactStore
from runtime.stores.local import FileArtifactStore
from runtime.stores.metadata import MetadataStore
from runtime.stores.mongo import MongoMetadataStore
from runtime.stores.s3 import S3ArtifactStore
from runtime.stores.sqlite import SqliteMetadataStore
from tests.services import s3_server

S = TypeVar("S")
Factory = Callable[[pytest.FixtureRequest, Path], Iterator[S]]


def file_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    yield FileArtifactStore(tmp_path / "artifacts")


def sqlite_metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store = SqliteMetadataStore(tmp_path / "wtm.db")
    yield store
    store.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, one per session (in a child process: see tests.services)."""
    with s3_server() as endpoint:
        yield endpoint


def s3_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"wtm-{uuid.uuid4().hex[:16]}"  # a fresh bucket per test: moto's state is shared
    store = S3ArtifactStore(bucket, "pre/fix", endpoint, "test-access", "test-secret", secure=False)
    yield store
    for key in store.list():
        store.delete(key)


def mongomock_metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    import mongomock

    store = MongoMetadataStore("mongodb://localhost/wtm", client=mongomock.MongoClient())
    yield store
    store.close()


def mongo_metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    url = os.environ.get("WTM_TEST_MONGO_URL")
    if not url:
        pytest.skip("WTM_TEST_MONGO_URL not set: no real MongoDB here")
    store = MongoMetadataStore(url, database=f"wtm_test_{uuid.uuid4().hex[:12]}")
    yield store
    store.client.drop_database(store.database)
    store.close()


ARTIFACT_BACKENDS: dict[str, Factory[ArtifactStore]] = {
    "file": file_artifacts,
    "s3": s3_artifacts,
}
METADATA_BACKENDS: dict[str, Factory[MetadataStore]] = {
    "sqlite": sqlite_metadata,
    "mongomock": mongomock_metadata,
    "mongodb": mongo_metadata,
}


@pytest.fixture(params=list(ARTIFACT_BACKENDS))
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """A fresh, empty artifact store of each backend."""
    yield from ARTIFACT_BACKENDS[request.param](request, tmp_path)


@pytest.fixture(params=list(METADATA_BACKENDS))
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """A fresh, empty metadata store of each backend."""
    yield from METADATA_BACKENDS[request.param](request, tmp_path)
