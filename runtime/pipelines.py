"""Registered pipelines: a pipeline manifest checked against the installed plugins and kept
as ``name@version``, so a run can name it by ``name@constraint`` instead of a file.

The rules are those of plugins: registering the same version again with the same text
changes nothing; with other text it is refused unless forced. The manifest is checked
when it is registered (every task resolved among the installed plugins, every reference,
schema and condition) and again whenever it is run, against the plugins of that moment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.manifest import PipelineManifest, load_manifest
from runtime.problems import ManifestError
from runtime.services import Services
from runtime.stores.errors import Conflict, NotFound
from runtime.stores.metadata import PipelineRecord
from runtime.validate import check_pipeline
from runtime.versions import ConstraintError, newest_matching, sort_versions

REF_SOURCE = "pipeline:"
"""How problems in a registered manifest name it: ``pipeline:NAME@VERSION``."""


@dataclass(frozen=True)
class Registered:
    """What :func:`register` did."""

    record: PipelineRecord
    status: Literal["registered", "unchanged", "replaced"]


def register(services: Services, path: str | Path, force: bool = False) -> Registered:
    """Check the pipeline at ``path`` against the installed plugins and register it;
    :class:`ManifestError` if it has errors, :class:`Conflict` for the same version with
    other content (unless ``force``)."""
    manifest, text = _pipeline(path)
    check_pipeline(manifest, services.registry.catalog())
    record = PipelineRecord(
        name=manifest.name,
        version=manifest.version,
        digest="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        description=manifest.description,
        inputs={name: port.schema for name, port in manifest.inputs.items()},
        steps=len(manifest.steps),
    )
    store = services.metadata
    existing = store.get_pipeline(record.name, record.version)
    if existing is not None and existing.digest == record.digest:
        return Registered(existing, "unchanged")
    if existing is not None and not force:
        raise Conflict(
            f"{record.name}@{record.version} is already registered with different content "
            f"({existing.digest[7:19]} vs {record.digest[7:19]}); bump the version, or use "
            "--force to replace it"
        )
    if existing is None:
        store.add_pipeline(record)
        return Registered(record, "registered")
    store.replace_pipeline(record)
    return Registered(record, "replaced")


def resolve(services: Services, ref: str) -> PipelineRecord:
    """The newest registered version matching ``NAME[@CONSTRAINT]``; :class:`NotFound`
    saying what is registered, :class:`ValueError` for a bad constraint."""
    name, _, constraint = ref.partition("@")
    records = {r.version: r for r in services.metadata.list_pipelines(name)}
    if not records:
        known = sorted({r.name for r in services.metadata.list_pipelines()})
        listed = ", ".join(known) if known else "none; see wtm pipeline register"
        raise NotFound(f"no registered pipeline {name!r} (registered: {listed})")
    try:
        version = newest_matching(records, constraint or "latest")
    except ConstraintError as exc:
        raise ValueError(str(exc)) from None
    if version is None:
        versions = ", ".join(sort_versions(records))
        raise NotFound(
            f"no version of pipeline {name} matches {constraint!r} (registered: {versions})"
        )
    return records[version]


def manifest_of(record: PipelineRecord) -> PipelineManifest:
    """The manifest of a registered pipeline (problems name it ``pipeline:NAME@VERSION``)."""
    manifest = load_manifest(f"{REF_SOURCE}{record.name}@{record.version}", record.text)
    assert isinstance(manifest, PipelineManifest)  # only pipelines are registered
    return manifest


def remove(services: Services, ref: str) -> PipelineRecord:
    """Forget the exact version ``NAME@VERSION``; :class:`NotFound` if it is not there."""
    name, _, version = ref.partition("@")
    record = services.metadata.get_pipeline(name, version)
    if record is None or not services.metadata.remove_pipeline(name, version):
        raise NotFound(f"pipeline {name}@{version} is not registered")
    return record


def _pipeline(path: str | Path) -> tuple[PipelineManifest, str]:
    """The pipeline manifest at ``path`` and its text, read once."""
    try:
        text: str | None = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None  # load_manifest says what is wrong with the file
    manifest = load_manifest(path, text)
    if not isinstance(manifest, PipelineManifest):
        raise ManifestError([manifest.source.problem(("kind",), "expected kind: Pipeline")])
    assert text is not None  # it was read, or load_manifest raised
    return manifest, text
