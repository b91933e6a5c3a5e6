"""The artifact store interface, and content addressing built only on it.

A store keeps bytes under ``/``-separated keys. Content-addressed blobs live
under ``blobs/sha256/<aa>/<hex>`` and are named by ``artifact://sha256/<hex>``
URIs; they are verified against their digest whenever they are read.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from runtime.stores.errors import IntegrityError, NotFound

BLOB_PREFIX = "blobs/sha256/"
URI_PREFIX = "artifact://sha256/"
MAX_KEY_LENGTH = 1024
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")

PathArg = str | os.PathLike[str]


def check_key(key: str) -> str:
    """``key`` if it is a safe relative key, else :class:`ValueError`.

    Refused: empty keys and segments, a leading ``/``, backslashes, control
    characters, and segments starting with ``.`` (so ``.``/``..`` and hidden
    temporary files), so no key can point outside a store.
    """
    if not key:
        raise ValueError("invalid artifact key: empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid artifact key {key[:40]!r}...: over {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise ValueError(f"invalid artifact key {key!r}: absolute")
    if "\\" in key or any(ord(c) < 32 for c in key):
        raise ValueError(f"invalid artifact key {key!r}: backslash or control character")
    for part in key.split("/"):
        if not part:
            raise ValueError(f"invalid artifact key {key!r}: empty segment")
        if part.startswith("."):
            raise ValueError(f"invalid artifact key {key!r}: segment {part!r} starts with '.'")
    return key


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can begin a valid key (``""`` lists everything)."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


class ArtifactStore(ABC):
    """Bytes under keys; every method checks its key with :func:`check_key`."""

    @abstractmethod
    def put_file(self, key: str, path: PathArg) -> int:
        """Store the file at ``path`` under ``key``, streamed; return its size."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`NotFound` if there are none."""

    @abstractmethod
    def download(self, key: str, dest: PathArg) -> None:
        """Stream the bytes under ``key`` into the file ``dest`` (parents created)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if ``key`` holds bytes."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes of what ``key`` holds; :class:`NotFound` if nothing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted."""

    @abstractmethod
    def describe(self) -> str:
        """The store's URL, without secrets."""


def check_digest(digest: str) -> str:
    """``digest`` if it is a lowercase sha256 hex digest, else :class:`ValueError`."""
    if not isinstance(digest, str) or not _HEX_DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def blob_key(digest: str) -> str:
    """The key of the blob with sha256 ``digest``: ``blobs/sha256/<aa>/<hex>``."""
    return f"{BLOB_PREFIX}{check_digest(digest)[:2]}/{digest}"


def artifact_uri(digest: str) -> str:
    """``artifact://sha256/<hex>`` for ``digest``."""
    return URI_PREFIX + check_digest(digest)


def is_artifact_uri(text: str) -> bool:
    """Whether ``text`` is a well-formed ``artifact://sha256/<hex>`` URI."""
    return text.startswith(URI_PREFIX) and bool(_HEX_DIGEST.fullmatch(text[len(URI_PREFIX) :]))


def parse_artifact_uri(uri: str) -> str:
    """The digest named by an ``artifact://sha256/<hex>`` URI; :class:`ValueError` otherwise."""
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        raise ValueError(f"not an artifact URI: {uri!r}")
    digest = uri[len(URI_PREFIX) :]
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError(f"not an artifact URI: {uri!r}")
    return digest


def file_sha256(path: PathArg) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _stored(store: ArtifactStore, key: str, size: int) -> bool:
    try:
        return store.size(key) == size
    except NotFound:
        return False


def put_blob(store: ArtifactStore, data: bytes) -> str:
    """Store ``data`` by content (once) and return its sha256 hex digest."""
    digest = hashlib.sha256(data).hexdigest()
    key = blob_key(digest)
    if not _stored(store, key, len(data)):
        store.put_bytes(key, data)
    return digest


def put_blob_file(store: ArtifactStore, path: PathArg) -> str:
    """Store the file at ``path`` by content (once) and return its sha256 hex digest."""
    digest = file_sha256(path)
    key = blob_key(digest)
    if not _stored(store, key, os.path.getsize(path)):
        store.put_file(key, path)
    return digest


def read_blob(store: ArtifactStore, digest: str) -> bytes:
    """The bytes of blob ``digest``, verified; :class:`IntegrityError` on a mismatch."""
    data = store.get_bytes(blob_key(digest))
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise IntegrityError(f"blob {digest} in {store.describe()} has sha256 {actual}")
    return data


def fetch_blob(store: ArtifactStore, digest: str, cache_dir: PathArg) -> Path:
    """Blob ``digest`` as a file in ``cache_dir``, downloaded and verified on first use.

    A download whose sha256 differs raises :class:`IntegrityError` and leaves
    nothing in the cache; concurrent fetches of one blob are safe.
    """
    target = Path(cache_dir) / check_digest(digest)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{digest[:12]}.", suffix=".part", dir=target.parent)
    os.close(fd)
    partial = Path(name)
    try:
        store.download(blob_key(digest), partial)
        actual = file_sha256(partial)
        if actual != digest:
            raise IntegrityError(f"blob {digest} in {store.describe()} has sha256 {actual}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


class ArtifactAccess:
    """Artifacts as tasks and values see them: ``artifact://`` URIs over a store and a cache.

    Implements :class:`runtime.context.ArtifactReader` and
    :class:`runtime.values.BlobStore`.
    """

    def __init__(self, store: ArtifactStore, cache_dir: PathArg) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)

    def local_path(self, ref: str) -> Path:
        """A readable local file for a plain path or an ``artifact://`` URI."""
        if ref.startswith("artifact://"):
            return fetch_blob(self.store, parse_artifact_uri(ref), self.cache_dir)
        path = Path(ref)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {ref}")
        return path

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        """Store ``data`` once by digest and return its URI (blobs keep no media type)."""
        return artifact_uri(put_blob(self.store, data))

    def put_json_blob(self, data: bytes) -> str:
        """Store a JSON document's bytes by digest; return its URI."""
        return self.put_bytes(data, "application/json")

    def get_blob(self, uri: str) -> bytes:
        """The bytes behind an ``artifact://`` URI, verified against its digest."""
        return read_blob(self.store, parse_artifact_uri(uri))

    def has_blob(self, uri: str) -> bool:
        """Whether the store holds the blob an ``artifact://`` URI names."""
        return self.store.exists(blob_key(parse_artifact_uri(uri)))
