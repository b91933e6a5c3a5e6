"""The plugin registry: install, list, resolve and remove task plugin versions.

Installing validates the manifest, imports the entrypoint to check its hook,
checks requirements, builds a reproducible zip, uploads it by digest and then
records it. The record is written last, and a failed record removes an upload
nothing else uses, so a failed install leaves no trace in either store.

A recorded package is always in the store, however installs and removes of one
version interleave across processes and hosts (issue 13), with no lock: whoever
writes a record checks afterwards that its package is stored (and puts it back),
and whoever deletes a package checks afterwards that no record was written for
it meanwhile (and puts it back). Of two such writers the later check sees the
other's change. The same check lets a reinstall repair a package lost from the
store.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pluggy

from runtime.catalog import TaskCatalog
from runtime.hooks import PROJECT, TaskSpec
from runtime.loader import (
    ENTRY_POINT_GROUP,
    PIP_PREFIX,
    PluginLoadError,
    forget_plugin,
    import_plugin,
)
from runtime.manifest import TaskManifest, load_task, parse_task
from runtime.packaging import (
    DEFAULT_LIMITS,
    MANIFEST,
    Limits,
    Package,
    PackageError,
    build_package,
    read_package,
    unpack,
)
from runtime.problems import ManifestError, Problem, errors
from runtime.requirements import install, install_hint, missing
from runtime.stores.artifacts import ArtifactStore, blob_key
from runtime.stores.errors import Conflict, NotFound
from runtime.stores.metadata import MetadataStore, PluginRecord
from runtime.validate import check_task
from runtime.versions import newest_matching, sort_versions
from runtime.yamlsource import Located

log = logging.getLogger(__name__)


class InstallError(Exception):
    """A plugin that cannot be installed; the message says why and what to do."""


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did: ``installed``, ``unchanged`` (same content) or ``replaced``."""

    record: PluginRecord
    action: Literal["installed", "unchanged", "replaced"]


def manifest_of(record: PluginRecord) -> TaskManifest:
    """The task manifest kept in a plugin record."""
    source = Located(f"registry:{record.name}@{record.version}", record.manifest)
    return parse_task(source)


class Registry:
    """Installed plugins: packages in the artifact store, records in the metadata store."""

    def __init__(
        self, artifacts: ArtifactStore, metadata: MetadataStore, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.artifacts = artifacts
        self.metadata = metadata
        self.limits = limits

    def install(
        self, source: Path, *, force: bool = False, install_requirements: bool = False
    ) -> InstallResult:
        """Install the plugin folder or zip at ``source``; raises :class:`InstallError`."""
        with _unpacked(source, self.limits) as (folder, package):
            task = _checked_manifest(folder, source if source.is_file() else folder)
            _check_requirements(task, install_requirements)
            check = f"check_{package.digest[:24]}"
            try:
                import_plugin(folder, task, check)
            except PluginLoadError as exc:
                raise InstallError(str(exc)) from None
            finally:
                forget_plugin(check)  # its folder may be a temporary one
            record = PluginRecord(
                name=task.name,
                version=task.version,
                digest=package.digest,
                size=package.size,
                object_key=blob_key(package.digest),
                manifest=task.source.data,
                inputs=task.source.data.get("inputs", {}),
                outputs=task.source.data["outputs"],
            )
            try:
                return self._record(record, package, force)
            except Conflict:  # a concurrent install recorded this version since it was read
                return self._record(record, package, force)

    def _record(self, record: PluginRecord, package: Package, force: bool) -> InstallResult:
        """Store and record ``record``, given what the registry holds for its version now."""
        existing = self.metadata.get_plugin(record.name, record.version)
        if existing is not None and existing.digest == record.digest:
            restored = self._restore(existing, package.data)  # a reinstall repairs
            return InstallResult(existing, "installed" if restored else "unchanged")
        if existing is not None and not force:
            raise InstallError(
                f"{record.name}@{record.version} is already installed with different content "
                f"(sha256 {existing.digest[:12]} vs {record.digest[:12]}); bump the version, "
                "or use --force to replace it"
            )
        self._store(record, package, replace=existing is not None)
        if existing is not None:  # the replaced package's cached results
            self.metadata.clear_cache(record.name, record.version)
        if existing is not None and not self.metadata.runs_using_plugin(
            record.name, record.version
        ):
            self._delete_unused(existing)
        return InstallResult(record, "replaced" if existing else "installed")

    def _store(self, record: PluginRecord, package: Package, *, replace: bool) -> None:
        uploaded = not self.artifacts.exists(record.object_key)
        try:
            if uploaded:
                self.artifacts.put_bytes(record.object_key, package.data)
            if replace:
                self.metadata.replace_plugin(record)
            else:
                self.metadata.add_plugin(record)
        except BaseException:
            if uploaded:  # a failed upload may still have stored something
                self._delete_unused(record, package.data)
            raise
        self._restore(record, package.data)

    def _restore(self, record: PluginRecord, data: bytes) -> bool:
        """Put ``record``'s package back if the store does not hold it; whether it had to."""
        try:
            if self.artifacts.size(record.object_key) == len(data):
                return False
        except NotFound:
            pass
        self.artifacts.put_bytes(record.object_key, data)
        return True

    def _delete_unused(self, record: PluginRecord, data: bytes | None = None) -> None:
        """Delete ``record``'s package unless a recorded plugin uses it; put it back if a
        record using it was written meanwhile (``data``: its bytes, if at hand)."""
        if self._used(record.digest):
            return
        try:
            data = self.artifacts.get_bytes(record.object_key) if data is None else data
        except NotFound:
            return
        self.artifacts.delete(record.object_key)
        if self._used(record.digest):
            self.artifacts.put_bytes(record.object_key, data)

    def _used(self, digest: str) -> bool:
        return any(r.digest == digest for r in self.metadata.list_plugins())

    def records(self, name: str | None = None) -> list[PluginRecord]:
        """Registry and pip-installed plugins, by name, newest version first."""
        found = self.metadata.list_plugins(name) + [
            r for r in entry_point_plugins() if name is None or r.name == name
        ]
        ordered: list[PluginRecord] = []
        for plugin_name in sorted({r.name for r in found}):
            same = {r.version: r for r in reversed(found) if r.name == plugin_name}
            ordered += [same[v] for v in sort_versions(same)]
        return ordered

    def resolve(self, name: str, constraint: str = "latest") -> PluginRecord:
        """The newest version of ``name`` satisfying ``constraint``; :class:`NotFound` else."""
        candidates = {r.version: r for r in reversed(self.records(name))}
        if not candidates:
            raise NotFound(f"plugin {name!r} is not installed")
        version = newest_matching(candidates, constraint)
        if version is None:
            raise NotFound(
                f"no installed version of {name!r} satisfies {constraint!r} "
                f"(have {', '.join(sort_versions(candidates))})"
            )
        return candidates[version]

    def remove(self, name: str, version: str) -> PluginRecord:
        """Forget ``name@version`` and its cached results; delete its package if nothing
        else uses it."""
        record = self.metadata.get_plugin(name, version)
        if record is None:
            raise NotFound(f"plugin {name}@{version} is not installed")
        active = self.metadata.runs_using_plugin(name, version)
        if active:
            raise Conflict(
                f"{name}@{version} is used by active run(s) {', '.join(active[:5])}; "
                "wait for them or cancel them first"
            )
        self.metadata.remove_plugin(name, version)
        self.metadata.clear_cache(name, version)
        self._delete_unused(record)
        return record

    def catalog(self) -> RegistryCatalog:
        """The installed plugins as a :class:`TaskCatalog` for validation and runs."""
        return RegistryCatalog(self)


class RegistryCatalog(TaskCatalog):
    """Task manifests of installed plugins, remembering each one's record."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.records: dict[tuple[str, str], PluginRecord] = {}

    def versions(self, name: str) -> Mapping[str, TaskManifest]:
        found = {}
        for record in self.registry.records(name):
            self.records[(record.name, record.version)] = record
            found[record.version] = manifest_of(record)
        return found


def entry_point_plugins() -> list[PluginRecord]:
    """Plugins installed with pip that register in the ``wtm.plugins`` entry point group."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(TaskSpec)
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in sorted(names):
        try:  # one by one: a plugin that fails to import must not hide the others
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name)
        except Exception as exc:
            log.warning("skipped pip plugin %r: %s: %s", name, type(exc).__name__, exc)
    records = []
    for _, module in manager.list_name_plugin():
        folder = Path(getattr(module, "__file__", "") or "").parent
        try:
            task = load_task(folder / MANIFEST)
        except ManifestError:
            continue
        dist = manager.list_plugin_distinfo()
        installed_from = next((d.project_name for m, d in dist if m is module), "pip")
        module_name = getattr(module, "__name__", "")
        records.append(
            PluginRecord(
                name=task.name,
                version=task.version,
                digest=PIP_PREFIX + module_name,
                size=0,
                object_key="",
                manifest=task.source.data,
                inputs=task.source.data.get("inputs", {}),
                outputs=task.source.data["outputs"],
                source=f"pip:{installed_from}",
            )
        )
    return records


@contextmanager
def _unpacked(source: Path, limits: Limits) -> Iterator[tuple[Path, Package]]:
    """The plugin as a folder and a package, from a folder or a zip."""
    if not source.exists():
        raise InstallError(f"{source}: no such file or folder")
    try:
        package = build_package(source, limits) if source.is_dir() else read_package(source, limits)
    except (PackageError, OSError) as exc:
        raise InstallError(str(exc)) from None
    if source.is_dir():
        yield source, package
        return
    staging = Path(tempfile.mkdtemp(prefix="wtm-install-"))
    try:
        try:
            folder = unpack(source, staging / "plugin", limits)
            # packaged again reproducibly, so the same files get the same digest however
            # they were zipped (and caches or VCS files in the zip are left out)
            package = build_package(folder, limits)
        except (PackageError, OSError) as exc:
            raise InstallError(str(exc)) from None
        yield folder, package
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _checked_manifest(folder: Path, shown: Path) -> TaskManifest:
    """The plugin's manifest; problems point into ``shown`` (the zip, for a zip)."""
    try:
        task = load_task(folder / MANIFEST)
    except ManifestError as exc:
        raise InstallError(_invalid(exc.problems, folder, shown)) from None
    problems = errors(check_task(task))
    if problems:
        raise InstallError(_invalid(problems, folder, shown))
    return task


def _invalid(problems: list[Problem], folder: Path, shown: Path) -> str:
    path, where = str(folder / MANIFEST), f"{shown}/{MANIFEST}"
    return "invalid manifest:\n" + "\n".join(
        str(dataclasses.replace(p, path=where) if p.path == path else p) for p in problems
    )


def _check_requirements(task: TaskManifest, install_missing: bool) -> None:
    absent = missing(task.requirements)
    if absent and install_missing:
        try:
            install([req for req, _ in absent])
        except subprocess.CalledProcessError as exc:
            raise InstallError(
                f"{task.key}: pip failed (exit status {exc.returncode}) installing "
                f"{', '.join(req.requirement for req, _ in absent)}"
            ) from None
        importlib.invalidate_caches()
        absent = missing(task.requirements)
    if absent:
        listed = ", ".join(f"{req.requirement} ({why})" for req, why in absent)
        raise InstallError(
            f"{task.key} needs {listed}; install with: "
            f"{install_hint([req for req, _ in absent])} "
            "(or pass --install-requirements)"
        )
