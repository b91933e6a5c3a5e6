"""Values in flight: a data ID for each, inline when small, by reference when large.

A value's data ID is the sha256 of its canonical JSON. Values over the inline
threshold are written once to the artifact store (claim check) and travel as
their ``artifact://`` URI, so broker messages and records stay small.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol


class BlobStore(Protocol):
    """What values need from the artifact store."""

    def put_json_blob(self, data: bytes) -> str:
        """Store bytes by digest; return their URI."""
        ...

    def get_blob(self, uri: str) -> bytes:
        """The bytes behind a URI, verified against its digest."""
        ...


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def data_id(value: Any) -> str:
    """``sha256:<hex>`` of the value's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


@dataclass(frozen=True)
class ValueRef:
    """A value as it travels: its data ID and either the value or the URI holding it."""

    id: str
    size: int
    value: Any = None
    uri: str | None = None

    @property
    def inline(self) -> bool:
        return self.uri is None

    def to_json(self) -> dict[str, Any]:
        if self.uri is None:
            return {"id": self.id, "size": self.size, "value": self.value}
        return {"id": self.id, "size": self.size, "uri": self.uri}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValueRef:
        return cls(data["id"], data["size"], data.get("value"), data.get("uri"))


def encode(value: Any, store: BlobStore, threshold: int) -> ValueRef:
    """Wrap ``value``; store it by reference when its JSON is over ``threshold`` bytes."""
    raw = canonical_json(value)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if len(raw) <= threshold:
        return ValueRef(digest, len(raw), value=value)
    return ValueRef(digest, len(raw), uri=store.put_json_blob(raw))


def decode(ref: ValueRef, store: BlobStore) -> Any:
    """The value behind ``ref``."""
    if ref.uri is None:
        return ref.value
    return json.loads(store.get_blob(ref.uri))
