"""Stores chosen by URL scheme.

:data:`ARTIFACT_BACKENDS` and :data:`METADATA_BACKENDS` map a scheme to a
factory; a new backend is one entry there. ``file://`` and ``sqlite://`` are
embedded; ``s3://`` (MinIO or any S3) and ``mongodb://`` import their client
libraries only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote

from runtime.config import Settings, mask_url
from runtime.stores.artifacts import ArtifactStore
from runtime.stores.errors import StoreError
from runtime.stores.local import FileArtifactStore
from runtime.stores.metadata import MetadataStore
from runtime.stores.sqlite import SqliteMetadataStore

ArtifactFactory = Callable[[str, Settings], ArtifactStore]
MetadataFactory = Callable[[str], MetadataStore]


def _file_artifacts(url: str, settings: Settings) -> ArtifactStore:
    path = unquote(url[len("file://") :])
    if not path:
        raise StoreError(f"{url!r}: no folder; write file:///path/to/folder")
    return FileArtifactStore(Path(path))


def _sqlite_metadata(url: str) -> MetadataStore:
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise StoreError(f"{url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
    return SqliteMetadataStore(Path(url[len("sqlite:///") :]))


def _s3_artifacts(url: str, settings: Settings) -> ArtifactStore:
    from runtime.stores.s3 import S3ArtifactStore  # imported on use: minio is slow to import

    return S3ArtifactStore.from_url(url, settings)


def _mongo_metadata(url: str) -> MetadataStore:
    from runtime.stores.mongo import MongoMetadataStore  # imported on use, as above

    return MongoMetadataStore(url)


ARTIFACT_BACKENDS: dict[str, ArtifactFactory] = {
    "file": _file_artifacts,
    "s3": _s3_artifacts,
}
METADATA_BACKENDS: dict[str, MetadataFactory] = {
    "sqlite": _sqlite_metadata,
    "mongodb": _mongo_metadata,
    "mongodb+srv": _mongo_metadata,
}


def _backend(table: Mapping[str, object], url: str, role: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in table:
        known = ", ".join(f"{s}://" for s in table)
        raise StoreError(f"{mask_url(url)!r} is not a {role} store URL (known: {known})")
    return scheme.lower()


def open_artifact_store(url: str, settings: Settings) -> ArtifactStore:
    """The artifact store at ``url`` (``file://``, ``s3://``); StoreError if unusable."""
    return ARTIFACT_BACKENDS[_backend(ARTIFACT_BACKENDS, url, "artifact")](url, settings)


def open_metadata_store(url: str) -> MetadataStore:
    """The metadata store at ``url`` (``sqlite://``, ``mongodb://``); StoreError if unusable."""
    return METADATA_BACKENDS[_backend(METADATA_BACKENDS, url, "metadata")](url)
