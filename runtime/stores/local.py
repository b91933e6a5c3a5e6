"""The embedded artifact store: files under a root folder.

Writes go to a hidden temporary file in the key's folder, are fsynced and then
renamed over the key (``os.replace``), so readers see the old bytes or the new
ones, never a mix, and concurrent writers of one key are safe: the last
rename wins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from runtime.stores.artifacts import ArtifactStore, PathArg, check_key, check_prefix
from runtime.stores.errors import NotFound, StoreError

CHUNK = 1 << 20
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class FileArtifactStore(ArtifactStore):
    """Artifacts as files under ``root``, one file per key."""

    def __init__(self, root: PathArg) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except _MISSING:
            raise NotFound(f"no artifact {key!r} in {self.describe()}") from None

    def _write(self, key: str, fill: Callable[[BinaryIO], int]) -> int:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as exc:
            raise StoreError(f"cannot write {key!r} in {self.describe()}: {exc}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                size = fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {key!r} in {self.describe()}: {exc}") from None
            raise
        _fsync_dir(path.parent)
        return size

    def put_file(self, key: str, path: PathArg) -> int:
        with open(path, "rb") as source:
            return self._write(key, lambda sink: _copy(source, sink))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda sink: sink.write(data))

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as f:
            return f.read()

    def download(self, key: str, dest: PathArg) -> None:
        with self._open(key) as source:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as sink:
                _copy(source, sink)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no artifact {key!r} in {self.describe()}")
        return path.stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(*_MISSING):
            self._path(key).unlink()

    def list(self, prefix: str = "") -> Iterator[str]:
        folder, _, start = check_prefix(prefix).rpartition("/")
        top = self.root / folder
        keys = []
        for dirpath, dirnames, filenames in os.walk(top):
            at_top = dirpath == str(top)
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and (not at_top or d.startswith(start))
            ]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def describe(self) -> str:
        return self.root.as_uri()


def _copy(source: BinaryIO, sink: BinaryIO) -> int:
    size = 0
    while chunk := source.read(CHUNK):
        sink.write(chunk)
        size += len(chunk)
    return size


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
