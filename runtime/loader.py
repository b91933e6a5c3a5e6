"""Load task plugins on demand: fetch by digest, verify, unpack, import in isolation.

Each package is unpacked once into ``CACHE/plugins/<digest>`` and imported as
its own package (``_wtm_plugins.p<digest>``), so two versions of one task live
side by side in one worker, and a version installed while a worker runs is
simply a new digest, loaded on its first use. Plugins installed with pip
(``wtm.plugins`` entry points) are pinned as ``pip:<module>`` and imported as is;
no module outside that group is.

A pin comes from a run plan that anyone who can write to Redis can forge, so
:meth:`Loader.load_pinned` loads only what the registry records for the task's
name and version (issue 13). The cache is checked rather than trusted, once per
process and package: the package file against its digest, the unpacked folder
against the package, file by file, and modules are compiled from that checked
source. Making the folder read-only instead would stop neither a process
running as root (the compose workers do) nor the cache's owner, and nothing
would notice. Measured on the face plugins (5 KB packages): the registry lookup
0.03 ms, the folder check 0.3 ms, compiling instead of reading byte code up to
0.6 ms a module, where a first load took 4 ms (a no-op plugin) to 13 ms
(face_detection) before; the warm path is a set and a dict lookup, as before.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from runtime.context import TaskContext
from runtime.hooks import task_plugin_manager
from runtime.manifest import TaskManifest, load_task
from runtime.packaging import DEFAULT_LIMITS, MANIFEST, Limits, unpack, unpacked_changes
from runtime.stores.artifacts import ArtifactStore, check_digest, fetch_blob, file_sha256
from runtime.stores.metadata import MetadataStore, plugin_ref

PIP_PREFIX = "pip:"
PACKAGE_ROOT = "_wtm_plugins"
ENTRY_POINT_GROUP = "wtm.plugins"
log = logging.getLogger(__name__)


class PluginLoadError(RuntimeError):
    """A plugin package that cannot be fetched, verified or imported."""


class PackageRefused(PluginLoadError):
    """A package this process will not load; the message says why, for people."""


@dataclass(frozen=True)
class LoadedTask:
    """A task ready to run: its manifest and the plugin manager calling its hook."""

    manifest: TaskManifest
    manager: pluggy.PluginManager
    folder: Path
    setup_seconds: float = 0.0
    """How long its ``wtm_task_setup`` hook (loading models) took in this process."""

    def run(self, inputs: Mapping[str, Any], context: TaskContext) -> Any:
        return self.manager.hook.wtm_task_run(inputs=inputs, context=context)


class Loader:
    """Loads and caches task plugins by package digest; safe to share between threads.

    ``metadata`` holds the registry records :meth:`load_pinned` checks pins against.
    """

    def __init__(
        self,
        artifacts: ArtifactStore,
        cache_dir: Path,
        limits: Limits = DEFAULT_LIMITS,
        metadata: MetadataStore | None = None,
    ):
        self.artifacts = artifacts
        self.cache_dir = Path(cache_dir)
        self.limits = limits
        self.metadata = metadata
        self._loaded: dict[str, LoadedTask] = {}
        self._pinned: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def load_pinned(
        self, name: str, version: str, digest: str, run_id: str | None = None
    ) -> LoadedTask:
        """The package a step pins for ``name@version``, if the registry records it.

        Accepted: the digest the registry records for ``name@version`` now, or the
        one run ``run_id`` was created with (a ``--force`` reinstall lets the runs
        already going finish on the package they pinned), or ``pip:<module>`` for a
        module of the ``wtm.plugins`` group whose manifest is ``name@version``.
        Anything else raises :class:`PackageRefused` before a byte is fetched or
        imported. A pin checked once is not looked up again in this process.
        """
        if (name, version, digest) not in self._pinned:
            self._check_registered(name, version, digest, run_id)
            loaded = self.load(digest)
            if (loaded.manifest.name, loaded.manifest.version) != (name, version):
                raise PackageRefused(
                    f"package {digest} is {loaded.manifest.key}, not {name}@{version}"
                )
            self._pinned.add((name, version, digest))
        return self.load(digest)

    def _check_registered(self, name: str, version: str, digest: str, run_id: str | None) -> None:
        if digest.startswith(PIP_PREFIX):
            return  # load_pip_plugin checks the entry point group before it imports
        short = f"sha256:{checked_digest(digest)[:12]}"
        record = self.metadata.get_plugin(name, version) if self.metadata else None
        if record is not None and record.digest == digest:
            return
        run = self.metadata.get_run(run_id) if self.metadata and run_id else None
        if run is not None and plugin_ref(name, version, digest) in run.plugins:
            return
        installed = "" if record else f" ({name}@{version} is not installed)"
        raise PackageRefused(
            f"package {short} is not the one registered for {name}@{version}{installed}"
        )

    def load(self, digest: str) -> LoadedTask:
        """The task packaged under ``digest`` (``pip:<module>`` for pip-installed plugins);
        for a digest the caller took from the registry itself."""
        loaded = self._loaded.get(digest)
        if loaded is not None:
            return loaded
        with self._lock:
            if digest not in self._loaded:
                self._loaded[digest] = set_up(self._load(digest))
            return self._loaded[digest]

    def _load(self, digest: str) -> LoadedTask:
        if digest.startswith(PIP_PREFIX):
            return load_pip_plugin(digest[len(PIP_PREFIX) :])
        folder = self.cache_dir / "plugins" / checked_digest(digest)
        archive = self._package(digest)
        if folder.is_dir():
            changes = unpacked_changes(archive, folder, self.limits)
            if changes:
                raise PackageRefused(
                    f"{folder} differs from package sha256:{digest[:12]} "
                    f"({', '.join(changes[:3])}{', ...' if len(changes) > 3 else ''}); "
                    "delete that folder to have it unpacked again"
                )
        else:
            unpack(archive, folder, self.limits)
        manifest = load_task(folder / MANIFEST)
        return LoadedTask(manifest, import_plugin(folder, manifest, f"p{digest[:24]}"), folder)

    def _package(self, digest: str) -> Path:
        """The package file, verified: a cached copy that no longer matches its digest is
        fetched again (the store's copy is verified as it is downloaded)."""
        cached = self.cache_dir / "packages" / digest
        if cached.is_file() and file_sha256(cached) != digest:
            log.warning("%s does not match its sha256; fetching it again", cached)
            cached.unlink(missing_ok=True)
        return fetch_blob(self.artifacts, digest, self.cache_dir / "packages")


def set_up(task: LoadedTask) -> LoadedTask:
    """``task`` after its optional ``wtm_task_setup`` hook ran (once per process: the loader
    keeps what it returns), with the time that took."""
    started = time.perf_counter()
    try:
        task.manager.hook.wtm_task_setup()
    except Exception as exc:
        raise PluginLoadError(
            f"{task.manifest.key}: wtm_task_setup failed: {type(exc).__name__}: {exc}"
        ) from exc
    return replace(task, setup_seconds=time.perf_counter() - started)


def checked_digest(digest: str) -> str:
    """``digest`` if it is a sha256 hex digest (never a path); :class:`PackageRefused` else."""
    try:
        return check_digest(digest)
    except ValueError:
        raise PackageRefused(f"package {digest!r} is not a sha256 digest") from None


def registered_module(module_name: str) -> str:
    """``module_name`` if a distribution registers it in the ``wtm.plugins`` entry point
    group (read from the installed metadata, nothing imported); :class:`PackageRefused`
    else."""
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names = {point.module, f"{point.module}.{point.attr}"} if point.attr else {point.module}
        if module_name in names:
            return module_name
    raise PackageRefused(
        f"cannot import pip plugin {module_name!r}: no module of that name is registered "
        f"in the {ENTRY_POINT_GROUP} entry point group"
    )


class _SourceOnly(importlib.machinery.SourceFileLoader):
    """Compiles plugin modules from their source, never from ``__pycache__``: Python trusts
    a byte-code file whose header matches the source's mtime and size, which anyone who can
    write the cache can forge, and only the source is checked against the package."""

    def path_stats(self, path: str) -> Mapping[str, Any]:
        raise OSError("plugin modules are compiled from source")


def import_plugin(folder: Path, manifest: TaskManifest, unique: str) -> pluggy.PluginManager:
    """Import the plugin in ``folder`` as package ``_wtm_plugins.<unique>``; check its hook."""
    root = sys.modules.get(PACKAGE_ROOT)
    if root is None:
        spec = importlib.machinery.ModuleSpec(PACKAGE_ROOT, None, is_package=True)
        spec.submodule_search_locations = []
        root = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_ROOT] = root
    name = f"{PACKAGE_ROOT}.{unique}"
    location = str(folder.absolute())
    sys.path_importer_cache[location] = importlib.machinery.FileFinder(
        location,
        (_SourceOnly, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    imported = sys.modules.get(name)
    if imported is not None and list(getattr(imported, "__path__", [])) != [location]:
        forget_plugin(unique)  # imported from another cache: run the code this one checked
    try:
        if name not in sys.modules:
            init = Path(location, "__init__.py")
            found = None
            if init.is_file():
                found = importlib.util.spec_from_file_location(
                    name,
                    init,
                    loader=_SourceOnly(name, str(init)),
                    submodule_search_locations=[location],
                )
            if found is None:
                found = importlib.machinery.ModuleSpec(name, None, is_package=True)
                found.submodule_search_locations = [location]
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
    """A plugin installed with pip: a package whose folder holds ``manifest.yaml``,
    registered in the ``wtm.plugins`` group (no other module is imported)."""
    registered_module(module_name)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginLoadError(f"cannot import pip plugin {module_name!r}: {exc}") from exc
    folder = Path(module.__file__ or "").parent
    manifest = load_task(folder / MANIFEST)
    return LoadedTask(manifest, task_plugin_manager(module, manifest.key), folder)
