"""Data-flow rules every executor shares: chunking foreach items, gathering chunk outputs."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from runtime import ids
from runtime.manifest import PipelineManifest, Reference
from runtime.values import BlobStore, ValueRef, decode, encode


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` split into consecutive chunks of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def gather(
    ports: Iterable[str],
    outputs: Iterable[Mapping[str, ValueRef]],
    store: BlobStore,
    threshold: int,
) -> dict[str, ValueRef]:
    """Concatenate, port by port and in chunk order, the array outputs of foreach chunks."""
    names = list(ports)
    gathered: dict[str, list[Any]] = {port: [] for port in names}
    for chunk in outputs:
        for port in names:
            gathered[port] += decode(chunk[port], store)
    return {port: encode(value, store, threshold) for port, value in gathered.items()}


def outputs_spec(pipeline: PipelineManifest) -> dict[str, Any]:
    """A pipeline's outputs in JSON: ``{"ref": VALUE_ID}`` or ``{"join": KEY, "from": {...}}``."""
    spec: dict[str, Any] = {}
    for name, out in pipeline.outputs.items():
        if isinstance(out, Reference):
            spec[name] = {"ref": reference_value(out)}
        else:
            spec[name] = {
                "join": out.key_field,
                "from": {k: reference_value(r) for k, r in out.sources.items()},
            }
    return spec


def reference_value(ref: Reference) -> str:
    """The value ID a reference reads."""
    return ids.output_value(ref.step, ref.port) if ref.step else ids.pipeline_input(ref.port)


def compute_outputs(
    spec: Mapping[str, Any],
    values: Mapping[str, ValueRef],
    store: BlobStore,
    absent: Collection[str] = (),
) -> dict[str, Any]:
    """The pipeline outputs whose values exist (all of them when the run succeeded).

    ``absent``: values of steps a ``when`` skipped. An output reading one is null; a join
    leaves that section out (joining the others).
    """
    result: dict[str, Any] = {}
    for name, out in spec.items():
        if "ref" in out:
            if out["ref"] in values:
                result[name] = decode(values[out["ref"]], store)
            elif out["ref"] in absent:
                result[name] = None
        elif all(v in values or v in absent for v in out["from"].values()):
            result[name] = join(
                out["join"],
                {
                    section: (vid, decode(values[vid], store))
                    for section, vid in out["from"].items()
                    if vid in values
                },
            )
    return result


def join(key: str, sources: Mapping[str, tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Merge lists of records by ``key``: one row per key, each source under its section."""
    rows: dict[Any, dict[str, Any]] = {}
    for section, (source, items) in sources.items():
        for item in items:
            row = rows.setdefault(item[key], {key: item[key]})
            row[section] = {**{k: v for k, v in item.items() if k != key}, "source": source}
    return list(rows.values())
