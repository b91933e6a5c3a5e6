"""The backends every contract test runs against.

Each backend is a generator factory ``(request, tmp_path) -> store`` (it may
ask ``request`` for session fixtures, such as a server, and clean up after its
``yield``); adding a backend is one entry in a table below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from runtime.stores.artifacts import ArtifactStore
from runtime.stores.local import FileArtifactStore
from runtime.stores.metadata import MetadataStore
from runtime.stores.sqlite import SqliteMetadataStore

S = TypeVar("S")
Factory = Callable[[pytest.FixtureRequest, Path], Iterator[S]]


def file_artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    yield FileArtifactStore(tmp_path / "artifacts")


def sqlite_metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store = SqliteMetadataStore(tmp_path / "wtm.db")
    yield store
    store.close()


ARTIFACT_BACKENDS: dict[str, Factory[ArtifactStore]] = {
    "file": file_artifacts,
}
METADATA_BACKENDS: dict[str, Factory[MetadataStore]] = {
    "sqlite": sqlite_metadata,
}


@pytest.fixture(params=list(ARTIFACT_BACKENDS))
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """A fresh, empty artifact store of each backend."""
    yield from ARTIFACT_BACKENDS[request.param](request, tmp_path)


@pytest.fixture(params=list(METADATA_BACKENDS))
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """A fresh, empty metadata store of each backend."""
    yield from METADATA_BACKENDS[request.param](request, tmp_path)
