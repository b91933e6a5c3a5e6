"""The stores, cache and plugin loader one process works with, opened from settings."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

from runtime.config import Settings
from runtime.loader import Loader
from runtime.packaging import Limits
from runtime.registry import Registry
from runtime.stores import open_artifact_store, open_metadata_store
from runtime.stores.artifacts import ArtifactAccess, ArtifactStore
from runtime.stores.metadata import MetadataStore


@dataclass
class Services:
    """Everything a command, an executor or a worker needs from its environment."""

    settings: Settings
    artifacts: ArtifactStore
    metadata: MetadataStore
    access: ArtifactAccess
    loader: Loader

    @classmethod
    def open(cls, settings: Settings | None = None) -> Services:
        """Open the configured stores (the embedded defaults when nothing is configured)."""
        settings = settings or Settings.load()
        artifacts = open_artifact_store(settings.artifacts, settings)
        metadata = open_metadata_store(settings.metadata)
        return cls(
            settings,
            artifacts,
            metadata,
            ArtifactAccess(artifacts, settings.cache_dir / "blobs"),
            Loader(artifacts, settings.cache_dir, limits(settings), metadata),
        )

    @property
    def registry(self) -> Registry:
        return Registry(self.artifacts, self.metadata, limits(self.settings))

    def close(self) -> None:
        self.metadata.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def limits(settings: Settings) -> Limits:
    """Package size limits from settings."""
    return Limits(settings.max_package_bytes, settings.max_unpacked_bytes)
