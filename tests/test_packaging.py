"""Plugin packages: reproducible zips, safe unpacking and size limits (runtime.packaging)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from runtime.packaging import (
    EPOCH,
    Limits,
    PackageError,
    build_package,
    check_archive,
    read_package,
    unpack,
)
from tests.helpers_plugins import (
    FACE_DETECTION,
    GREET,
    copy_plugin,
    folder_entries,
    symlink_info,
    write_zip,
    zip_folder,
)

MANIFEST = (GREET / "manifest.yaml").read_bytes()
PLUGIN = (GREET / "plugin.py").read_bytes()


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    """A copy of the greet plugin with a sub-package, so nested paths are packaged too."""
    folder = copy_plugin(GREET, tmp_path / "greet")
    (folder / "lib").mkdir()
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "words.py").write_text("HELLO = 'Hello'\n")
    return folder


def _touch_everything(folder: Path, mtime: float, mode: int) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)
            os.utime(path, (mtime, mtime))


# reproducible builds


def test_same_folder_gives_the_same_bytes_and_digest(plugin: Path) -> None:
    first, second = build_package(plugin), build_package(plugin)
    assert first.data == second.data
    assert first.digest == second.digest == hashlib.sha256(first.data).hexdigest()
    assert first.size == len(first.data)


def test_digest_ignores_mtimes_permissions_and_location(plugin: Path, tmp_path: Path) -> None:
    before = build_package(plugin)
    _touch_everything(plugin, 1_000_000_000, 0o600)
    assert build_package(plugin).data == before.data
    _touch_everything(plugin, 1_700_000_000, 0o755)
    assert build_package(plugin).digest == before.digest
    moved = shutil.copytree(plugin, tmp_path / "elsewhere" / "other_name")
    assert build_package(moved).digest == before.digest


def test_caches_vcs_and_os_junk_are_left_out(plugin: Path) -> None:
    clean = build_package(plugin)
    (plugin / "__pycache__").mkdir()
    (plugin / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\x00junk")
    (plugin / "lib" / "__pycache__").mkdir()
    (plugin / "lib" / "__pycache__" / "words.cpython-311.pyc").write_bytes(b"junk")
    (plugin / ".git").mkdir()
    (plugin / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (plugin / "stale.pyc").write_bytes(b"junk")
    (plugin / ".DS_Store").write_bytes(b"junk")
    (plugin / "lib" / ".DS_Store").write_bytes(b"junk")
    (plugin / "wtm_greet.egg-info").mkdir()
    (plugin / "wtm_greet.egg-info" / "PKG-INFO").write_text("Name: greet\n")
    dirty = build_package(plugin)
    assert dirty.data == clean.data
    names = zipfile.ZipFile(io.BytesIO(dirty.data)).namelist()
    assert names == ["lib/__init__.py", "lib/words.py", "manifest.yaml", "plugin.py"]


@pytest.mark.parametrize("change", ["edit", "add", "rename", "remove"])
def test_any_content_change_changes_the_digest(plugin: Path, change: str) -> None:
    before = build_package(plugin).digest
    if change == "edit":
        (plugin / "lib" / "words.py").write_text("HELLO = 'Hi'\n")
    elif change == "add":
        (plugin / "lib" / "more.py").write_text("")
    elif change == "rename":
        (plugin / "lib" / "words.py").rename(plugin / "lib" / "word.py")
    else:
        (plugin / "lib" / "words.py").unlink()
    assert build_package(plugin).digest != before


def test_zip_entries_are_normalized(plugin: Path) -> None:
    _touch_everything(plugin, 1_700_000_000, 0o755)
    archive = zipfile.ZipFile(io.BytesIO(build_package(plugin).data))
    for info in archive.infolist():
        assert info.date_time == EPOCH
        assert info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_DEFLATED
    assert archive.read("plugin.py") == PLUGIN


def test_real_plugin_round_trips(tmp_path: Path) -> None:
    package = build_package(FACE_DETECTION)
    (tmp_path / "p.zip").write_bytes(package.data)
    out = unpack(tmp_path / "p.zip", tmp_path / "out")
    expected = {
        k: v
        for k, v in folder_entries(FACE_DETECTION).items()
        if "__pycache__" not in k and not k.endswith(".pyc")
    }
    assert folder_entries(out) == expected


# refused folders


def test_folder_without_manifest_is_refused(plugin: Path) -> None:
    (plugin / "manifest.yaml").unlink()
    with pytest.raises(PackageError, match=r"no manifest\.yaml in the plugin folder"):
        build_package(plugin)


def test_symlinked_file_in_folder_is_refused(plugin: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret")
    (plugin / "lib" / "data.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(PackageError, match=r"lib/data\.txt: symlinks are not allowed"):
        build_package(plugin)


def test_symlinked_folder_in_folder_is_refused(plugin: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (plugin / "models").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(PackageError, match=r"models: symlinks are not allowed"):
        build_package(plugin)


def test_folder_over_the_package_size_limit_is_refused(plugin: Path) -> None:
    (plugin / "weights.bin").write_bytes(os.urandom(64 << 10))
    with pytest.raises(PackageError, match=r"package is \d+ bytes, over the limit of 16384"):
        build_package(plugin, Limits(max_package_bytes=16 << 10))


def test_folder_over_the_unpacked_size_limit_is_refused(plugin: Path) -> None:
    (plugin / "zeros.bin").write_bytes(bytes(2 << 20))
    with pytest.raises(PackageError, match=r"bytes of files, over the limit of 1048576"):
        build_package(plugin, Limits(max_unpacked_bytes=1 << 20))


def test_folder_with_too_many_files_is_refused(plugin: Path) -> None:
    with pytest.raises(PackageError, match="more than 3 files"):
        build_package(plugin, Limits(max_files=3))
    assert build_package(plugin, Limits(max_files=4)).size > 0


# reading and checking zips made elsewhere


def test_read_package_digests_the_file_bytes(tmp_path: Path) -> None:
    path = zip_folder(GREET, tmp_path / "greet.zip")
    package = read_package(path)
    assert package.data == path.read_bytes()
    assert package.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plugin.zip").write_text("not a zip")
    with pytest.raises(PackageError, match="not a valid zip archive"):
        read_package(tmp_path / "plugin.zip")


def _good(*extra: tuple[str | zipfile.ZipInfo, bytes]) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [("manifest.yaml", MANIFEST), ("plugin.py", PLUGIN), *extra]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("/etc/cron.d/evil", r"unsafe path in package: '/etc/cron\.d/evil'"),
        ("../evil.py", r"unsafe path in package: '\.\./evil\.py'"),
        ("lib/../../evil.py", r"unsafe path in package: 'lib/\.\./\.\./evil\.py'"),
        ("..\\evil.py", r"unsafe path in package"),
        ("C:/evil.py", r"unsafe path in package: 'C:/evil\.py'"),
    ],
)
def test_unsafe_entry_names_are_refused_and_nothing_is_written(
    tmp_path: Path, entry: str, message: str
) -> None:
    path = write_zip(tmp_path / "bad.zip", _good((entry, b"print('pwned')\n")))
    assert entry in zipfile.ZipFile(path).namelist()  # the zip really holds the bad name
    with pytest.raises(PackageError, match=message):
        read_package(path)
    dest = tmp_path / "x" / "y" / "out"
    with pytest.raises(PackageError, match=message):
        unpack(path, dest)
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.rglob("evil.py"))


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bad.zip", _good((symlink_info("lib/passwd"), b"/etc/passwd")))
    with pytest.raises(PackageError, match=r"symlink in package: 'lib/passwd'"):
        check_archive(path)
    with pytest.raises(PackageError, match="symlink in package"):
        unpack(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bomb = write_zip(tmp_path / "bomb.zip", _good(("zeros.bin", bytes(8 << 20))))
    assert bomb.stat().st_size < 64 << 10  # small on disk ...
    limits = Limits(max_package_bytes=64 << 10, max_unpacked_bytes=1 << 20)
    with pytest.raises(PackageError, match=r"unpacks to more than 1048576 bytes"):
        read_package(bomb, limits)
    with pytest.raises(PackageError, match=r"unpacks to more than 1048576 bytes"):
        unpack(bomb, tmp_path / "out", limits)
    assert list(tmp_path.iterdir()) == [bomb]  # no folder, no staging left over
    assert read_package(bomb).size == bomb.stat().st_size  # ... and fine with the defaults


def test_zip_over_the_package_size_limit_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "big.zip", _good(("w.bin", os.urandom(64 << 10))))
    with pytest.raises(PackageError, match=r"package is \d+ bytes, over the limit of 16384"):
        read_package(path, Limits(max_package_bytes=16 << 10))


def test_zip_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "many.zip", _good(*((f"f{i}.txt", b"") for i in range(5))))
    with pytest.raises(PackageError, match="more than 4 entries"):
        check_archive(path, Limits(max_files=4))


def test_zip_without_top_level_manifest_is_refused(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "nested.zip", [("greet/manifest.yaml", MANIFEST), ("greet/plugin.py", PLUGIN)]
    )
    with pytest.raises(PackageError, match=r"no manifest\.yaml at the top of the package"):
        read_package(path)


def test_corrupted_member_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    data = bytearray(write_zip(tmp_path / "ok.zip", _good(), zipfile.ZIP_STORED).read_bytes())
    at = data.index(b"hookimpl")
    data[at : at + 8] = b"HOOKIMPL"  # same size, so only the CRC check can notice
    path = tmp_path / "corrupt.zip"
    path.write_bytes(bytes(data))
    check_archive(path)  # the directory is fine ...
    with pytest.raises(PackageError, match=r"corrupt\.zip: .*CRC"):  # ... the content is not
        unpack(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.zip", "ok.zip"]


# unpacking


def test_unpack_writes_exactly_the_packaged_files(plugin: Path, tmp_path: Path) -> None:
    path = tmp_path / "greet.zip"
    path.write_bytes(build_package(plugin).data)
    dest = unpack(path, tmp_path / "cache" / "abc")
    assert dest == tmp_path / "cache" / "abc"
    assert folder_entries(dest) == folder_entries(plugin)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["abc"]  # no staging left


def test_unpack_into_an_existing_folder_keeps_it(plugin: Path, tmp_path: Path) -> None:
    path = tmp_path / "greet.zip"
    path.write_bytes(build_package(plugin).data)
    dest = unpack(path, tmp_path / "out")
    (dest / "plugin.py").write_text("# already there\n")
    assert unpack(path, dest) == dest
    assert (dest / "plugin.py").read_text() == "# already there\n"
