"""What every artifact store backend does, and the content addressing built on it."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.context import TaskContext
from runtime.stores.artifacts import (
    ArtifactAccess,
    ArtifactStore,
    artifact_uri,
    blob_key,
    fetch_blob,
    parse_artifact_uri,
    put_blob,
    put_blob_file,
    read_blob,
)
from runtime.stores.errors import IntegrityError, NotFound

MiB = 1 << 20


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A scratch folder apart from any store's own files."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def big_file(folder: Path, size: int = 3 * MiB + 7) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = folder / "big.bin"
    path.write_bytes(data)
    return path, data


# bytes in, bytes out


def test_put_bytes_then_get_bytes(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("a/b/c.txt", b"hello")
    assert artifact_store.get_bytes("a/b/c.txt") == b"hello"
    assert artifact_store.exists("a/b/c.txt")
    assert artifact_store.size("a/b/c.txt") == 5


def test_put_bytes_replaces(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("k", b"first")
    artifact_store.put_bytes("k", b"second!")
    assert artifact_store.get_bytes("k") == b"second!"
    assert artifact_store.size("k") == 7


def test_empty_value(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("empty", b"")
    assert artifact_store.exists("empty")
    assert artifact_store.size("empty") == 0
    assert artifact_store.get_bytes("empty") == b""


def test_put_file_returns_its_size(artifact_store: ArtifactStore, work: Path) -> None:
    path, data = big_file(work)
    assert artifact_store.put_file("files/big.bin", path) == len(data)
    assert artifact_store.size("files/big.bin") == len(data)
    assert artifact_store.get_bytes("files/big.bin") == data


def test_put_file_of_a_missing_file(artifact_store: ArtifactStore, work: Path) -> None:
    with pytest.raises(FileNotFoundError):
        artifact_store.put_file("k", work / "nope")
    assert not artifact_store.exists("k")


def test_missing_key(artifact_store: ArtifactStore, work: Path) -> None:
    assert not artifact_store.exists("missing")
    with pytest.raises(NotFound):
        artifact_store.get_bytes("missing")
    with pytest.raises(NotFound):
        artifact_store.size("missing")
    with pytest.raises(NotFound):
        artifact_store.download("missing", work / "out")
    assert not (work / "out").exists()


def test_a_folder_is_not_a_key(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("dir/file", b"x")
    assert not artifact_store.exists("dir")
    with pytest.raises(NotFound):
        artifact_store.get_bytes("dir")
    with pytest.raises(NotFound):
        artifact_store.size("dir")


def test_download_streams_into_a_new_folder(artifact_store: ArtifactStore, work: Path) -> None:
    path, data = big_file(work, 8 * MiB)
    artifact_store.put_file("big", path)
    dest = work / "out" / "deeper" / "big.bin"
    tracemalloc.start()
    try:
        artifact_store.download("big", dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dest.read_bytes() == data
    assert peak < 4 * MiB, f"download held {peak} bytes in memory"


def test_download_replaces_the_destination(artifact_store: ArtifactStore, work: Path) -> None:
    artifact_store.put_bytes("k", b"new")
    dest = work / "dest"
    dest.write_bytes(b"old and longer")
    artifact_store.download("k", dest)
    assert dest.read_bytes() == b"new"


def test_delete(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("a/k", b"x")
    artifact_store.delete("a/k")
    assert not artifact_store.exists("a/k")
    artifact_store.delete("a/k")
    artifact_store.delete("never/there")
    assert list(artifact_store.list("")) == []


def test_list_by_prefix_sorted(artifact_store: ArtifactStore) -> None:
    keys = ["b/5", "a/2", "ab/4", "a/b/3", "a/1", "a-c"]
    for key in keys:
        artifact_store.put_bytes(key, key.encode())
    assert list(artifact_store.list("")) == sorted(keys)
    assert list(artifact_store.list()) == sorted(keys)
    assert list(artifact_store.list("a/")) == ["a/1", "a/2", "a/b/3"]
    assert list(artifact_store.list("a")) == ["a-c", "a/1", "a/2", "a/b/3", "ab/4"]
    assert list(artifact_store.list("a/b")) == ["a/b/3"]
    assert list(artifact_store.list("a/b/3")) == ["a/b/3"]
    assert list(artifact_store.list("zz")) == []
    assert list(artifact_store.list("nope/")) == []


def test_describe_is_a_url(artifact_store: ArtifactStore) -> None:
    assert "://" in artifact_store.describe()


# keys


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/..",
    "..",
    ".",
    "a/./b",
    "a//b",
    "a/",
    "..\\outside",
    "a\\b",
    ".hidden",
    "a/.part",
    "a\x00b",
    "a\nb",
    "k" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused(artifact_store: ArtifactStore, work: Path, key: str) -> None:
    source = work / "source"
    source.write_bytes(b"x")
    calls = [
        lambda: artifact_store.put_bytes(key, b"x"),
        lambda: artifact_store.put_file(key, source),
        lambda: artifact_store.get_bytes(key),
        lambda: artifact_store.download(key, work / "out"),
        lambda: artifact_store.exists(key),
        lambda: artifact_store.size(key),
        lambda: artifact_store.delete(key),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert list(artifact_store.list("")) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "a\\b"])
def test_unsafe_prefixes_are_refused(artifact_store: ArtifactStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        artifact_store.list(prefix)


def test_no_key_escapes_the_store(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    for key in ["../escaped", "../../escaped", "/tmp/escaped", "a/../../escaped"]:
        with pytest.raises(ValueError):
            artifact_store.put_bytes(key, b"x")
    assert not [p for p in tmp_path.parent.rglob("escaped") if p.is_file()]


# concurrency


def test_concurrent_writers_and_readers_of_one_key(artifact_store: ArtifactStore) -> None:
    size = 256 << 10
    payloads = [bytes([n]) * size for n in range(8)]
    artifact_store.put_bytes("shared", payloads[0])
    stop = threading.Event()
    torn: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            data = artifact_store.get_bytes("shared")
            if len(data) != size or data.count(data[:1]) != size:
                torn.append(data[:16])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda p: [artifact_store.put_bytes("shared", p) for _ in range(5)], payloads
                )
            )
    finally:
        stop.set()
        reader.join()
    assert not torn
    assert artifact_store.get_bytes("shared") in payloads
    assert list(artifact_store.list("")) == ["shared"]


# content addressing


def test_put_blob_stores_by_digest_once(artifact_store: ArtifactStore) -> None:
    data = b"some bytes"
    digest = put_blob(artifact_store, data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blob_key(digest) == f"blobs/sha256/{digest[:2]}/{digest}"
    assert artifact_store.get_bytes(blob_key(digest)) == data
    assert put_blob(artifact_store, data) == digest
    assert list(artifact_store.list("blobs/")) == [blob_key(digest)]


def test_put_blob_file(artifact_store: ArtifactStore, work: Path) -> None:
    path, data = big_file(work)
    digest = put_blob_file(artifact_store, path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert artifact_store.size(blob_key(digest)) == len(data)
    assert put_blob_file(artifact_store, path) == digest


def test_put_blob_repairs_a_truncated_blob(artifact_store: ArtifactStore) -> None:
    digest = put_blob(artifact_store, b"complete")
    artifact_store.put_bytes(blob_key(digest), b"comp")
    put_blob(artifact_store, b"complete")
    assert read_blob(artifact_store, digest) == b"complete"


def test_artifact_uris() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    uri = artifact_uri(digest)
    assert uri == f"artifact://sha256/{digest}"
    assert parse_artifact_uri(uri) == digest


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "artifact://sha256/",
        "artifact://sha256/xyz",
        "artifact://md5/" + "0" * 64,
        "artifact://sha256/" + "A" * 64,
        "artifact://sha256/" + "0" * 63,
        "artifact://sha256/" + "0" * 64 + "/x",
        "file:///etc/passwd",
        "/etc/passwd",
    ],
)
def test_bad_artifact_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_artifact_uri(uri)


@pytest.mark.parametrize("digest", ["", "../../etc/passwd", "A" * 64, "0" * 65])
def test_bad_digests(artifact_store: ArtifactStore, work: Path, digest: str) -> None:
    with pytest.raises(ValueError):
        fetch_blob(artifact_store, digest, work / "cache")
    with pytest.raises(ValueError):
        artifact_uri(digest)


def test_fetch_blob_downloads_once(artifact_store: ArtifactStore, work: Path) -> None:
    digest = put_blob(artifact_store, b"package bytes")
    cache = work / "cache"
    path = fetch_blob(artifact_store, digest, cache)
    assert path.parent == cache
    assert path.read_bytes() == b"package bytes"
    artifact_store.delete(blob_key(digest))
    assert fetch_blob(artifact_store, digest, cache) == path
    assert [p.name for p in cache.iterdir()] == [digest]


def test_fetch_blob_refuses_a_corrupt_blob(artifact_store: ArtifactStore, work: Path) -> None:
    digest = put_blob(artifact_store, b"the real bytes")
    artifact_store.put_bytes(blob_key(digest), b"tampered bytes")
    cache = work / "cache"
    with pytest.raises(IntegrityError):
        fetch_blob(artifact_store, digest, cache)
    assert list(cache.iterdir()) == []
    with pytest.raises(IntegrityError):
        read_blob(artifact_store, digest)


def test_fetch_blob_of_a_missing_blob(artifact_store: ArtifactStore, work: Path) -> None:
    cache = work / "cache"
    with pytest.raises(NotFound):
        fetch_blob(artifact_store, "0" * 64, cache)
    assert list(cache.iterdir()) == []


def test_concurrent_fetches_of_one_blob(artifact_store: ArtifactStore, work: Path) -> None:
    data = os.urandom(MiB)
    digest = put_blob(artifact_store, data)
    cache = work / "cache"
    with ThreadPoolExecutor(6) as pool:
        paths = set(pool.map(lambda _: fetch_blob(artifact_store, digest, cache), range(12)))
    assert paths == {cache / digest}
    assert (cache / digest).read_bytes() == data
    assert [p.name for p in cache.iterdir()] == [digest]


# what tasks and values see


def test_access_resolves_plain_paths_and_uris(artifact_store: ArtifactStore, work: Path) -> None:
    access = ArtifactAccess(artifact_store, work / "cache")
    image = work / "image.jpg"
    image.write_bytes(b"jpeg")
    assert access.local_path(str(image)) == image
    with pytest.raises(FileNotFoundError):
        access.local_path(str(work / "missing.jpg"))
    with pytest.raises(ValueError):
        access.local_path("artifact://sha256/zz")
    uri = access.put_bytes(b"jpeg bytes", "image/jpeg")
    assert uri == artifact_uri(hashlib.sha256(b"jpeg bytes").hexdigest())
    assert access.put_bytes(b"jpeg bytes") == uri
    assert access.local_path(uri).read_bytes() == b"jpeg bytes"
    context = TaskContext(run_id="r1", step_id="001", artifacts=access)
    assert context.local_path(uri).read_bytes() == b"jpeg bytes"


def test_access_as_a_value_blob_store(artifact_store: ArtifactStore, work: Path) -> None:
    access = ArtifactAccess(artifact_store, work / "cache")
    uri = access.put_json_blob(b'{"a":1}')
    assert access.get_blob(uri) == b'{"a":1}'
    artifact_store.put_bytes(blob_key(parse_artifact_uri(uri)), b'{"a":2}')
    with pytest.raises(IntegrityError):
        access.get_blob(uri)
