"""Load task plugins on demand: fetch by digest, verify, unpack, import in isolation.

Each package is unpacked once into ``CACHE/plugins/<digest>`` and imported as
its own package (``_wtm_plugins.p<digest>``), so two versions of one task live
side by side in one worker, and a version installed while a worker runs is
simply a new digest, loaded on its first use. Plugins installed with pip
(``wtm.plugins`` entry points) are pinned as ``pip:<module>`` and imported as is.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from runtime.context import TaskContext
from runtime.hooks import task_plugin_manager
from runtime.manifest import TaskManifest, load_task
from runtime.packaging import DEFAULT_LIMITS, MANIFEST, Limits, unpack
from runtime.stores.artifacts import ArtifactStore, fetch_blob

PIP_PREFIX = "pip:"
PACKAGE_ROOT = "_wtm_plugins"


class PluginLoadError(RuntimeError):
    """A plugin package that cannot be fetched, verified or imported."""


@dataclass(frozen=True)
class LoadedTask:
    """A task ready to run: its manifest and the plugin manager calling its hook."""

    manifest: TaskManifest
    manager: pluggy.PluginManager
    folder: Path

    def run(self, inputs: Mapping[str, Any], context: TaskContext) -> Any:
        return self.manager.hook.wtm_task_run(inputs=inputs, context=context)


class Loader:
    """Loads and caches task plugins by package digest; safe to share between threads."""

    def __init__(self, artifacts: ArtifactStore, cache_dir: Path, limits: Limits = DEFAULT_LIMITS):
        self.artifacts = artifacts
        self.cache_dir = Path(cache_dir)
        self.limits = limits
        self._loaded: dict[str, LoadedTask] = {}
        self._lock = threading.Lock()

    def load(self, digest: str) -> LoadedTask:
        """The task packaged under ``digest`` (``pip:<module>`` for pip-installed plugins)."""
        loaded = self._loaded.get(digest)
        if loaded is not None:
            return loaded
        with self._lock:
            if digest not in self._loaded:
                self._loaded[digest] = self._load(digest)
            return self._loaded[digest]

    def _load(self, digest: str) -> LoadedTask:
        if digest.startswith(PIP_PREFIX):
            return load_pip_plugin(digest[len(PIP_PREFIX) :])
        folder = self.cache_dir / "plugins" / digest
        if not (folder / MANIFEST).is_file():
            archive = fetch_blob(self.artifacts, digest, self.cache_dir / "packages")
            unpack(archive, folder, self.limits)
        manifest = load_task(folder / MANIFEST)
        return LoadedTask(manifest, import_plugin(folder, manifest, f"p{digest[:24]}"), folder)


def import_plugin(folder: Path, manifest: TaskManifest, unique: str) -> pluggy.PluginManager:
    """Import the plugin in ``folder`` as package ``_wtm_plugins.<unique>``; check its hook."""
    root = sys.modules.get(PACKAGE_ROOT)
    if root is None:
        spec = importlib.machinery.ModuleSpec(PACKAGE_ROOT, None, is_package=True)
        spec.submodule_search_locations = []
        root = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_ROOT] = root
    name = f"{PACKAGE_ROOT}.{unique}"
    try:
        if name not in sys.modules:
            init = folder / "__init__.py"
            found = importlib.util.spec_from_file_location(
                name, init if init.is_file() else None, submodule_search_locations=[str(folder)]
            )
            if found is None:
                found = importlib.machinery.ModuleSpec(name, None, is_package=True)
                found.submodule_search_locations = [str(folder)]
            package = importlib.util.module_from_spec(found)
            sys.modules[name] = package
            if found.loader is not None:
                found.loader.exec_module(package)
        module: ModuleType = importlib.import_module(f"{name}.{manifest.entrypoint}")
        return task_plugin_manager(module, manifest.key)
    except BaseException as exc:
        forget_plugin(unique)  # a later attempt starts afresh, from the folder it is given
        if not isinstance(exc, Exception):
            raise
        raise PluginLoadError(
            f"{manifest.key}: cannot import entrypoint "
            f"{manifest.entrypoint!r}: {type(exc).__name__}: {exc}"
        ) from exc


def forget_plugin(unique: str) -> None:
    """Drop ``_wtm_plugins.<unique>`` and its submodules from ``sys.modules``."""
    name = f"{PACKAGE_ROOT}.{unique}"
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def load_pip_plugin(module_name: str) -> LoadedTask:
    """A plugin installed with pip: a package whose folder holds ``manifest.yaml``."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginLoadError(f"cannot import pip plugin {module_name!r}: {exc}") from exc
    folder = Path(module.__file__ or "").parent
    manifest = load_task(folder / MANIFEST)
    return LoadedTask(manifest, task_plugin_manager(module, manifest.key), folder)
