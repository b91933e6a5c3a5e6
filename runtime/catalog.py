"""Where task manifests come from when a pipeline is checked or run.

A catalog answers one question: which versions of task NAME exist, and what
are their manifests. :class:`DirectoryCatalog` reads plugin folders on a
search path; the registry provides another; :class:`ChainCatalog` asks each in
turn so installed plugins win over source folders of the same version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from runtime.manifest import TaskManifest, load_task
from runtime.problems import ManifestError
from runtime.versions import newest_matching, sort_versions


class UnknownTask(LookupError):
    """No catalog knows the task, or no version satisfies the constraint."""


class TaskCatalog(Protocol):
    """A source of task manifests by name and version."""

    def versions(self, name: str) -> Mapping[str, TaskManifest]:
        """Every known version of ``name``."""
        ...


def resolve(catalog: TaskCatalog, name: str, constraint: str) -> TaskManifest:
    """The newest version of ``name`` satisfying ``constraint``; raises :class:`UnknownTask`."""
    known = catalog.versions(name)
    if not known:
        raise UnknownTask(f"unknown task {name!r}")
    version = newest_matching(known, constraint)
    if version is None:
        available = ", ".join(sort_versions(known))
        raise UnknownTask(f"no version of {name!r} satisfies {constraint!r} (have {available})")
    return known[version]


class DirectoryCatalog:
    """Task manifests in plugin folders (``DIR/*/manifest.yaml`` and ``DIR/manifest.yaml``)."""

    def __init__(self, roots: Iterable[str | Path]) -> None:
        self.roots = [Path(r) for r in roots]
        self._index: dict[str, dict[str, TaskManifest]] | None = None
        self.broken: list[ManifestError] = []

    def versions(self, name: str) -> Mapping[str, TaskManifest]:
        return self.index().get(name, {})

    def index(self) -> dict[str, dict[str, TaskManifest]]:
        """All readable manifests by name and version (read once)."""
        if self._index is None:
            self._index = {}
            for path in self._manifest_files():
                try:
                    task = load_task(path)
                except ManifestError as exc:
                    self.broken.append(exc)
                    continue
                self._index.setdefault(task.name, {}).setdefault(task.version, task)
        return self._index

    def _manifest_files(self) -> list[Path]:
        found: list[Path] = []
        for root in self.roots:
            if (root / "manifest.yaml").is_file():
                found.append(root / "manifest.yaml")
            if root.is_dir():
                found += sorted(root.glob("*/manifest.yaml"))
        return found


class ChainCatalog:
    """Merges several catalogs; for the same version, the earlier catalog wins."""

    def __init__(self, *catalogs: TaskCatalog) -> None:
        self.catalogs = catalogs

    def versions(self, name: str) -> Mapping[str, TaskManifest]:
        merged: dict[str, TaskManifest] = {}
        for catalog in reversed(self.catalogs):
            merged.update(catalog.versions(name))
        return merged


def search_path(near: Iterable[str | Path] = ()) -> list[Path]:
    """Plugin folders to search: ``WTM_TASK_PATH``, ``./plugins``, and ``../plugins`` of files."""
    paths = [Path(p) for p in os.environ.get("WTM_TASK_PATH", "").split(os.pathsep) if p]
    paths.append(Path("plugins"))
    for file in near:
        paths.append(Path(file).resolve().parent.parent / "plugins")
    unique: dict[Path, None] = {}
    for path in paths:
        unique.setdefault(path.resolve(), None)
    return list(unique)
