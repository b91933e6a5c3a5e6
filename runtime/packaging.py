"""Plugin packages: reproducible zips in, safely unpacked folders out.

The same files always give the same bytes (sorted entries, fixed timestamps and
permissions, caches and VCS files left out), so a package's sha256 names its
content. Unpacking refuses absolute paths, ``..``, symlinks, and archives whose
packed or unpacked size is over a limit (zip bombs), before writing anything;
an unpacked folder can be checked against its archive later, file by file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

EPOCH = (1980, 1, 1, 0, 0, 0)
IGNORED_DIRS = {
    "__pycache__",
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".venv",
    "venv",
    ".idea",
    ".vscode",
    ".wtm",
    "node_modules",
}
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
IGNORED_NAMES = {".DS_Store", "Thumbs.db"}
MANIFEST = "manifest.yaml"


class PackageError(ValueError):
    """A plugin folder or zip that cannot be packaged or unpacked safely."""


@dataclass(frozen=True)
class Limits:
    """Size limits for a package (zip bomb protection)."""

    max_package_bytes: int = 200 << 20
    max_unpacked_bytes: int = 1 << 30
    max_files: int = 10_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Package:
    """A built or received package: its bytes and their sha256."""

    data: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def package_files(folder: Path) -> list[Path]:
    """Files to package from ``folder``, sorted; refuses symlinks."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS and not d.endswith(".egg-info"))
        for d in dirs:
            if (Path(root) / d).is_symlink():
                raise PackageError(f"{Path(root, d)}: symlinks are not allowed in a plugin")
        for name in sorted(names):
            if name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(root) / name
            if path.is_symlink():
                raise PackageError(f"{path}: symlinks are not allowed in a plugin")
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def build_package(folder: Path, limits: Limits = DEFAULT_LIMITS) -> Package:
    """Zip ``folder`` reproducibly: same files, same bytes, same digest."""
    if not (folder / MANIFEST).is_file():
        raise PackageError(f"{folder}: no {MANIFEST} in the plugin folder")
    files = package_files(folder)
    if len(files) > limits.max_files:
        raise PackageError(f"{folder}: more than {limits.max_files} files")
    total = sum(f.stat().st_size for f in files)
    if total > limits.max_unpacked_bytes:
        raise PackageError(
            f"{folder}: {total} bytes of files, over the limit of {limits.max_unpacked_bytes}"
        )
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buffer:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), EPOCH)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                archive.writestr(info, path.read_bytes(), compresslevel=9)
        buffer.seek(0)
        data = buffer.read()
    if len(data) > limits.max_package_bytes:
        raise PackageError(
            f"{folder}: package is {len(data)} bytes, over the limit of {limits.max_package_bytes}"
        )
    return Package(data, sha256_hex(data))


def read_package(path: Path, limits: Limits = DEFAULT_LIMITS) -> Package:
    """Read a zip made elsewhere, checking it before anything uses it."""
    size = path.stat().st_size
    if size > limits.max_package_bytes:
        raise PackageError(
            f"{path}: package is {size} bytes, over the limit of {limits.max_package_bytes}"
        )
    data = path.read_bytes()
    check_archive(path, limits)
    return Package(data, sha256_hex(data))


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith(("/", "\\"))
        or "\\" in name
        or path.is_absolute()
        or ".." in path.parts
        or (len(name) > 1 and name[1] == ":")
    ):
        raise PackageError(f"unsafe path in package: {name!r}")
    return path


def check_archive(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[zipfile.ZipInfo]:
    """The archive's file entries, after refusing unsafe ones; raises :class:`PackageError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path}: not a valid zip archive ({exc})") from None
    if len(entries) > limits.max_files:
        raise PackageError(f"{path}: more than {limits.max_files} entries")
    total = 0
    files = []
    for info in entries:
        _safe_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"{path}: symlink in package: {info.filename!r}")
        if info.is_dir():
            continue
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise PackageError(f"{path}: unpacks to more than {limits.max_unpacked_bytes} bytes")
        files.append(info)
    if MANIFEST not in {i.filename for i in files}:
        raise PackageError(f"{path}: no {MANIFEST} at the top of the package")
    return files


def unpack(path: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Unpack a checked archive into ``dest`` atomically (a temp folder, then a rename)."""
    if dest.is_dir():
        return dest
    entries = check_archive(path, limits)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(path) as archive:
                written = 0
                for info in entries:
                    target = staging / _safe_name(info.filename)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source, open(target, "wb") as sink:
                        while chunk := source.read(1 << 20):
                            written += len(chunk)
                            if written > limits.max_unpacked_bytes:
                                raise PackageError(
                                    f"{path}: unpacks to more than "
                                    f"{limits.max_unpacked_bytes} bytes"
                                )
                            sink.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise PackageError(f"{path}: corrupt archive ({exc})") from None
        try:
            staging.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def unpacked_changes(path: Path, folder: Path, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """How ``folder`` differs from the files of archive ``path``: empty if not at all.

    Each file's sha256 is compared with its entry's (a zip's CRC-32 is easy to forge);
    a file added, missing or replaced by a symlink counts too, as each changes what an
    import finds. ``__pycache__`` folders are left out: the loader compiles plugin code
    from its source and never reads them.
    """
    expected = {}
    with zipfile.ZipFile(path) as archive:
        for info in check_archive(path, limits):
            with archive.open(info) as entry:
                expected[info.filename] = _sha256(entry)
    changes = []
    for root, dirs, names in os.walk(folder):
        linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d != "__pycache__" and d not in linked]
        for name in names + linked:
            file = Path(root, name)
            rel = file.relative_to(folder).as_posix()
            digest = expected.pop(rel, None)
            if file.is_symlink():
                changes.append(f"{rel} is a symlink")
            elif digest is None:
                changes.append(f"{rel} added")
            else:
                with open(file, "rb") as f:
                    if _sha256(f) != digest:
                        changes.append(f"{rel} changed")
    return sorted(changes) + [f"{rel} missing" for rel in sorted(expected)]


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
