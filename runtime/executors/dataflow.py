"""Data-flow rules every executor shares: chunking foreach items, gathering chunk outputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runtime.values import BlobStore, ValueRef, decode, encode


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` split into consecutive chunks of ``size`` (the last may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def gather(ports: Iterable[str], outputs: Iterable[Mapping[str, ValueRef]], store: BlobStore,
           threshold: int) -> dict[str, ValueRef]:
    """Concatenate, port by port and in chunk order, the array outputs of foreach chunks."""
    names = list(ports)
    gathered: dict[str, list[Any]] = {port: [] for port in names}
    for chunk in outputs:
        for port in names:
            gathered[port] += decode(chunk[port], store)
    return {port: encode(value, store, threshold) for port, value in gathered.items()}
