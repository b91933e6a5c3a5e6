"""The plugin registry against real embedded stores (runtime.registry)."""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.loader import PIP_PREFIX, Loader
from runtime.packaging import build_package
from runtime.registry import InstallError, Registry, entry_point_plugins, manifest_of
from runtime.services import Services
from runtime.stores.artifacts import blob_key
from runtime.stores.errors import Conflict, NotFound, StoreError
from runtime.stores.local import FileArtifactStore
from runtime.stores.metadata import PluginRecord, RunRecord
from runtime.stores.sqlite import SqliteMetadataStore
from tests.helpers_plugins import (
    DESCRIBE,
    DESCRIBE_V2,
    DETECT,
    FACE_DETECTION,
    GREET,
    assert_nothing_stored,
    copy_plugin,
    forget_modules,
    make_distribution,
    make_plugin,
    open_services,
    plugin_modules,
    stored_files,
    symlink_info,
    write_zip,
    zip_folder,
)


@pytest.fixture(autouse=True)
def _isolated_modules() -> Iterator[None]:
    before = plugin_modules()
    yield
    forget_modules(
        before, "wtm_test_hello", "wtm_test_hello2", "wtm_test_broken", "wtm_test_missing_dep"
    )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with open_services(tmp_path / "home") as opened:
        yield opened


@pytest.fixture
def registry(services: Services) -> Registry:
    return services.registry


def _objects(services: Services) -> list[str]:
    return stored_files(services.settings.home / "artifacts")


def _install_error(registry: Registry, source: Path, **kwargs: bool) -> str:
    with pytest.raises(InstallError) as caught:
        registry.install(source, **kwargs)
    return str(caught.value)


# installing


def test_install_from_folder_uploads_and_records(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    package = build_package(folder)
    result = registry.install(folder)
    assert result.action == "installed"
    record = result.record
    assert (record.name, record.version, record.source) == ("greet", "1.0.0", "registry")
    assert record.digest == package.digest and record.size == package.size
    assert record.object_key == blob_key(package.digest)
    assert services.artifacts.get_bytes(record.object_key) == package.data
    assert _objects(services) == [record.object_key]
    stored = services.metadata.get_plugin("greet", "1.0.0")
    assert stored == record
    assert set(stored.inputs) == {"name", "punctuation"} and set(stored.outputs) == {"greeting"}
    assert manifest_of(stored).description.startswith("Greet someone by name")


def test_install_from_zip_made_by_wtm(
    registry: Registry, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the zip gets unpacked
    package = build_package(GREET)
    path = tmp_path / "greet.zip"
    path.write_bytes(package.data)
    record = registry.install(path).record
    assert record.digest == package.digest
    assert services.artifacts.get_bytes(record.object_key) == package.data
    bad = write_zip(tmp_path / "bad.zip", [("manifest.yaml", b"kind: Task\n")])
    assert "invalid manifest" in _install_error(registry, bad)
    assert list(temp.iterdir()) == []  # the unpacked copies are gone, after success or not


def test_same_files_give_the_same_digest_from_folder_or_any_zip(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    first = registry.install(folder).record
    # the same files zipped by another tool: other timestamps, modes, a cache file
    other = zip_folder(folder, tmp_path / "greet.zip", **{"__pycache__/plugin.pyc": b"junk"})
    result = registry.install(other)
    assert result.action == "unchanged"
    assert result.record.digest == first.digest
    assert _objects(services) == [first.object_key]


def test_installing_the_same_content_again_is_a_no_op(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    first = registry.install(folder).record
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"x")
    again = registry.install(folder)
    assert again.action == "unchanged"
    assert again.record == first  # the stored record, installed_at included
    assert services.metadata.list_plugins() == [first]


def test_same_version_with_other_content_needs_force(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    old = registry.install(folder).record
    (folder / "plugin.py").write_text((folder / "plugin.py").read_text().replace("Hello", "Hi"))
    message = _install_error(registry, folder)
    assert message == (
        f"greet@1.0.0 is already installed with different content (sha256 "
        f"{old.digest[:12]} vs {build_package(folder).digest[:12]}); bump the "
        "version, or use --force to replace it"
    )
    assert services.metadata.list_plugins() == [old]
    assert _objects(services) == [old.object_key]

    result = registry.install(folder, force=True)
    assert result.action == "replaced"
    new = result.record
    assert new.digest != old.digest
    assert services.metadata.list_plugins() == [new]
    assert _objects(services) == [new.object_key]  # the replaced package is not left behind


def test_forced_replace_keeps_the_old_package_while_a_run_uses_it(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    old = registry.install(folder).record
    services.metadata.create_run(
        RunRecord("run-1", "p", "1.0.0", status="running", plugins=[old.ref])
    )
    (folder / "plugin.py").write_text((folder / "plugin.py").read_text().replace("Hello", "Hi"))
    new = registry.install(folder, force=True).record
    assert sorted(_objects(services)) == sorted([old.object_key, new.object_key])
    assert Loader(services.artifacts, tmp_path / "c").load(old.digest).folder.is_dir()


def test_install_real_face_plugin_with_relative_imports(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(FACE_DETECTION, tmp_path / "face_detection")
    record = registry.install(folder).record
    assert (record.name, record.version) == ("face_detection", "1.1.1")
    assert "faces_array" in record.outputs
    assert services.artifacts.exists(record.object_key)


def test_install_check_leaves_no_module_behind(registry: Registry, tmp_path: Path) -> None:
    before = plugin_modules()
    registry.install(copy_plugin(GREET, tmp_path / "greet"))
    registry.install(zip_folder(DETECT, tmp_path / "detect.zip"))
    assert plugin_modules() - before <= {"_wtm_plugins"}


# refused packages: a clear error, no record, no stored object


def _plugin_zip(path: Path, *extra: tuple[str | zipfile.ZipInfo, bytes]) -> Path:
    return write_zip(
        path,
        [
            ("manifest.yaml", (GREET / "manifest.yaml").read_bytes()),
            ("plugin.py", (GREET / "plugin.py").read_bytes()),
            *extra,
        ],
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("/tmp/wtm-evil.py", r"unsafe path in package: '/tmp/wtm-evil\.py'"),
        ("../wtm-evil.py", r"unsafe path in package: '\.\./wtm-evil\.py'"),
        (symlink_info("models"), r"symlink in package: 'models'"),
    ],
    ids=["absolute", "zip-slip", "symlink"],
)
def test_unsafe_zip_is_refused(
    services: Services, tmp_path: Path, entry: str | zipfile.ZipInfo, message: str
) -> None:
    path = _plugin_zip(tmp_path / "bad.zip", (entry, b"/etc/passwd"))
    with pytest.raises(InstallError, match=message):
        services.registry.install(path)
    assert_nothing_stored(services)
    assert not Path("/tmp/wtm-evil.py").exists()
    assert not (tmp_path / "wtm-evil.py").exists()


def test_symlink_in_plugin_folder_is_refused(services: Services, tmp_path: Path) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    (folder / "weights.bin").symlink_to("/etc/hostname")
    message = _install_error(services.registry, folder)
    assert message == f"{folder / 'weights.bin'}: symlinks are not allowed in a plugin"
    assert_nothing_stored(services)


def test_package_over_the_configured_size_limit_is_refused(tmp_path: Path) -> None:
    with open_services(tmp_path / "home", max_package_bytes="8KiB") as services:
        folder = copy_plugin(GREET, tmp_path / "greet")
        (folder / "weights.bin").write_bytes(os.urandom(16 << 10))  # incompressible
        assert build_package(folder).size > 8 << 10
        message = _install_error(services.registry, folder)
        assert message.endswith("over the limit of 8192")
        zipped = zip_folder(folder, tmp_path / "big.zip")
        assert "over the limit of 8192" in _install_error(services.registry, zipped)
        assert_nothing_stored(services)


def test_zip_bomb_over_the_configured_unpacked_limit_is_refused(tmp_path: Path) -> None:
    with open_services(tmp_path / "home", max_unpacked_bytes="1MiB") as services:
        bomb = _plugin_zip(tmp_path / "bomb.zip", ("zeros.bin", bytes(16 << 20)))
        assert bomb.stat().st_size < 100 << 10
        message = _install_error(services.registry, bomb)
        assert message == f"{bomb}: unpacks to more than 1048576 bytes"
        assert_nothing_stored(services)


def test_corrupt_zip_is_refused(services: Services, tmp_path: Path) -> None:
    data = bytearray(zip_folder(GREET, tmp_path / "ok.zip").read_bytes())
    path = tmp_path / "corrupt.zip"
    path.write_bytes(bytes(data[: len(data) // 2]))
    assert "not a valid zip archive" in _install_error(services.registry, path)
    assert_nothing_stored(services)


def test_missing_manifest_is_refused(services: Services, tmp_path: Path) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    (folder / "manifest.yaml").unlink()
    assert _install_error(services.registry, folder) == (
        f"{folder}: no manifest.yaml in the plugin folder"
    )
    path = write_zip(tmp_path / "nomanifest.zip", [("plugin.py", b"")])
    assert _install_error(services.registry, path) == (
        f"{path}: no manifest.yaml at the top of the package"
    )
    assert_nothing_stored(services)


def test_missing_source_is_refused(services: Services, tmp_path: Path) -> None:
    assert _install_error(services.registry, tmp_path / "nope") == (
        f"{tmp_path / 'nope'}: no such file or folder"
    )


def test_invalid_manifest_is_refused_with_its_position(services: Services, tmp_path: Path) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    manifest = folder / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("timeout: 5s", "timeout: soon"))
    message = _install_error(services.registry, folder)
    assert message.startswith("invalid manifest:\n")
    assert f"{manifest}:8:10: error: timeout must be a duration" in message
    zipped = zip_folder(folder, tmp_path / "greet.zip")
    message = _install_error(services.registry, zipped)
    assert f"{zipped}/manifest.yaml:8:10: error: timeout must be a duration" in message
    assert_nothing_stored(services)


def test_manifest_failing_the_task_checks_is_refused(services: Services, tmp_path: Path) -> None:
    folder = make_plugin(
        tmp_path / "bad", extra=("inputs:\n  n: {schema: {type: integer}, default: nope}\n")
    )
    message = _install_error(services.registry, folder)
    assert message.startswith("invalid manifest:\n")
    assert f"{folder / 'manifest.yaml'}:" in message
    assert_nothing_stored(services)


def test_entrypoint_without_the_hook_is_refused(services: Services, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path / "nohook", code="def run(inputs, context):\n    return {}\n")
    assert _install_error(services.registry, folder) == (
        "tiny@1.0.0: cannot import entrypoint 'plugin': TypeError: tiny@1.0.0: does not "
        "implement the wtm_task_run hook"
    )
    assert_nothing_stored(services)


def test_hook_with_wrong_arguments_is_refused(services: Services, tmp_path: Path) -> None:
    code = (
        "from runtime import hookimpl\n\n@hookimpl\ndef wtm_task_run(inputs, ctx):\n    return {}\n"
    )
    folder = make_plugin(tmp_path / "badargs", code=code)
    message = _install_error(services.registry, folder)
    assert "cannot import entrypoint 'plugin': PluginValidationError" in message
    assert "ctx" in message
    assert_nothing_stored(services)


def test_entrypoint_raising_on_import_is_refused(services: Services, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path / "boom", code="raise RuntimeError('model file missing')\n")
    assert _install_error(services.registry, folder) == (
        "tiny@1.0.0: cannot import entrypoint 'plugin': RuntimeError: model file missing"
    )
    assert_nothing_stored(services)


def test_package_init_raising_on_import_is_refused(services: Services, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path / "initboom")
    (folder / "__init__.py").write_text("raise ImportError('no GPU')\n")
    assert _install_error(services.registry, folder) == (
        "tiny@1.0.0: cannot import entrypoint 'plugin': ImportError: no GPU"
    )
    assert_nothing_stored(services)


def test_failed_import_check_can_be_retried_once_fixed(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import wtm_test_missing_dep\n\n" + (GREET / "plugin.py").read_text()
    folder = copy_plugin(GREET, tmp_path / "greet", code=code)
    path = zip_folder(folder, tmp_path / "greet.zip")
    message = _install_error(services.registry, path)
    assert "ModuleNotFoundError: No module named 'wtm_test_missing_dep'" in message
    site = tmp_path / "site"
    site.mkdir()
    (site / "wtm_test_missing_dep.py").write_text("")
    monkeypatch.syspath_prepend(site)
    assert services.registry.install(path).action == "installed"


def test_missing_requirements_are_named_with_the_pip_command(
    services: Services, tmp_path: Path
) -> None:
    folder = make_plugin(
        tmp_path / "needy",
        extra=(
            "requirements:\n"
            "  - pluggy>=1\n"  # satisfied
            "  - wtm-no-such-package>=1\n"  # not installed
            "  - pluggy>=999\n"  # too old here
            "  - {requirement: wtm-other-missing==2.0, no_deps: true}\n"
            "  - 'wtm-never-here>=1; python_version < \"3\"'\n"  # marker excludes it
        ),
    )
    message = _install_error(services.registry, folder)
    pluggy_version = sys.modules["pluggy"].__version__
    assert message == (
        f"tiny@1.0.0 needs wtm-no-such-package>=1 (not installed), pluggy>=999 (have "
        f"{pluggy_version}), wtm-other-missing==2.0 (not installed); install with: "
        "pip install --disable-pip-version-check 'wtm-no-such-package>=1' 'pluggy>=999' && "
        "pip install --disable-pip-version-check --no-deps wtm-other-missing==2.0 "
        "(or pass --install-requirements)"
    )
    assert_nothing_stored(services)


def test_failing_pip_install_is_an_install_error(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # pip really runs, offline (no index), so it cannot find the package and installs nothing
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    folder = make_plugin(tmp_path / "needy", extra="requirements: ['wtm-no-such-package>=1']\n")
    message = _install_error(services.registry, folder, install_requirements=True)
    assert message == ("tiny@1.0.0: pip failed (exit status 1) installing wtm-no-such-package>=1")
    assert "wtm-no-such-package" in capfd.readouterr().err  # pip said why
    assert_nothing_stored(services)


def test_requirement_met_by_an_importable_module(services: Services, tmp_path: Path) -> None:
    folder = make_plugin(
        tmp_path / "mod",
        extra=("requirements:\n  - {requirement: wtm-not-a-dist>=1, module: json}\n"),
    )
    assert services.registry.install(folder).action == "installed"


# failures midway leave nothing behind


class FailingAdd(SqliteMetadataStore):
    """The real SQLite store, except that recording a plugin fails."""

    def add_plugin(self, record: PluginRecord) -> None:
        raise StoreError("database disk image is malformed")

    def replace_plugin(self, record: PluginRecord) -> None:
        raise StoreError("database disk image is malformed")


class PartialUpload(FileArtifactStore):
    """The real folder store, except that an upload dies halfway through its temp file."""

    def put_bytes(self, key: str, data: bytes) -> None:
        def fill(sink):  # type: ignore[no-untyped-def]
            sink.write(data[: len(data) // 2])
            sink.flush()
            raise OSError(28, "No space left on device")

        self._write(key, fill)


class LostReply(FileArtifactStore):
    """The real folder store, except that the upload is stored and then reported failed."""

    def put_bytes(self, key: str, data: bytes) -> None:
        super().put_bytes(key, data)
        raise StoreError("connection reset by peer")


def test_failed_record_write_removes_the_upload(services: Services, tmp_path: Path) -> None:
    failing = FailingAdd(services.settings.home / "wtm.db")
    registry = Registry(services.artifacts, failing)
    with pytest.raises(StoreError, match="malformed"):
        registry.install(copy_plugin(GREET, tmp_path / "greet"))
    failing.close()
    assert_nothing_stored(services)


def test_failed_replace_keeps_the_old_version(services: Services, tmp_path: Path) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    old = services.registry.install(folder).record
    (folder / "plugin.py").write_text((folder / "plugin.py").read_text().replace("Hello", "Hi"))
    failing = FailingAdd(services.settings.home / "wtm.db")
    with pytest.raises(StoreError, match="malformed"):
        Registry(services.artifacts, failing).install(folder, force=True)
    failing.close()
    assert services.metadata.list_plugins() == [old]
    assert _objects(services) == [old.object_key]


@pytest.mark.parametrize("store", [PartialUpload, LostReply])
def test_failed_upload_leaves_nothing(
    services: Services, tmp_path: Path, store: type[FileArtifactStore]
) -> None:
    registry = Registry(store(services.settings.home / "artifacts"), services.metadata)
    with pytest.raises(StoreError):
        registry.install(copy_plugin(GREET, tmp_path / "greet"))
    assert_nothing_stored(services)


# listing and resolving


@pytest.fixture
def describe_versions(registry: Registry, tmp_path: Path) -> Registry:
    """describe at 1.0.0, 1.2.0, 1.2.5, 1.3.0, 2.1.0 and 10.0.0."""
    registry.install(copy_plugin(DESCRIBE, tmp_path / "d100"))
    for version in ("1.2.0", "1.2.5", "1.3.0", "10.0.0"):
        registry.install(copy_plugin(DESCRIBE, tmp_path / f"d{version}", version=version))
    registry.install(copy_plugin(DESCRIBE_V2, tmp_path / "d210"))
    registry.install(copy_plugin(DETECT, tmp_path / "detect"))
    return registry


def test_records_are_by_name_then_newest_version(describe_versions: Registry) -> None:
    found = [(r.name, r.version) for r in describe_versions.records()]
    assert found == [
        ("describe", v) for v in ("10.0.0", "2.1.0", "1.3.0", "1.2.5", "1.2.0", "1.0.0")
    ] + [("detect", "1.2.0")]
    assert [r.version for r in describe_versions.records("detect")] == ["1.2.0"]
    assert describe_versions.records("nothing") == []


@pytest.mark.parametrize(
    ("constraint", "version"),
    [
        ("^1", "1.3.0"),
        ("~1.2", "1.2.5"),
        (">=1.0,<2", "1.3.0"),
        (">=1.0,<1.3", "1.2.5"),
        (">=1.2 <1.2.5", "1.2.0"),
        ("1.2.0", "1.2.0"),
        ("2.1.0", "2.1.0"),
        ("^2", "2.1.0"),
        ("latest", "10.0.0"),
    ],
)
def test_resolve_constraints(describe_versions: Registry, constraint: str, version: str) -> None:
    record = describe_versions.resolve("describe", constraint)
    assert (record.name, record.version) == ("describe", version)


def test_resolve_default_is_latest(describe_versions: Registry) -> None:
    assert describe_versions.resolve("describe").version == "10.0.0"


def test_resolve_unknown_and_unsatisfiable(describe_versions: Registry) -> None:
    with pytest.raises(NotFound, match=r"^plugin 'nope' is not installed$"):
        describe_versions.resolve("nope")
    with pytest.raises(NotFound) as caught:
        describe_versions.resolve("describe", "^3")
    assert str(caught.value) == (
        "no installed version of 'describe' satisfies '^3' "
        "(have 10.0.0, 2.1.0, 1.3.0, 1.2.5, 1.2.0, 1.0.0)"
    )


def test_catalog_gives_manifests_and_remembers_records(describe_versions: Registry) -> None:
    catalog = describe_versions.catalog()
    versions = catalog.versions("describe")
    assert set(versions) == {"1.0.0", "1.2.0", "1.2.5", "1.3.0", "2.1.0", "10.0.0"}
    assert versions["2.1.0"].key == "describe@2.1.0"
    assert set(versions["2.1.0"].inputs) == {"image_path", "faces_array", "label"}
    record = catalog.records[("describe", "2.1.0")]
    assert record == describe_versions.metadata.get_plugin("describe", "2.1.0")
    assert catalog.versions("nope") == {}


# removing


def test_remove_forgets_the_record_and_deletes_the_package(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    one = registry.install(copy_plugin(DESCRIBE, tmp_path / "d1")).record
    two = registry.install(copy_plugin(DESCRIBE_V2, tmp_path / "d2")).record
    assert registry.remove("describe", "1.0.0") == one
    assert services.metadata.list_plugins() == [two]
    assert _objects(services) == [two.object_key]
    with pytest.raises(NotFound, match=r"^plugin describe@1\.0\.0 is not installed$"):
        registry.remove("describe", "1.0.0")


def test_remove_keeps_a_package_another_record_shares(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    record = registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    alias = PluginRecord(
        "greet_alias",
        "1.0.0",
        record.digest,
        record.size,
        record.object_key,
        record.manifest,
        record.inputs,
        record.outputs,
    )
    services.metadata.add_plugin(alias)
    registry.remove("greet", "1.0.0")
    assert _objects(services) == [record.object_key]
    registry.remove("greet_alias", "1.0.0")
    assert _objects(services) == []
    assert services.metadata.list_plugins() == []


@pytest.mark.parametrize("status", ["running", "pending"])
def test_remove_is_refused_while_an_active_run_uses_it(
    registry: Registry, services: Services, tmp_path: Path, status: str
) -> None:
    record = registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    other = registry.install(copy_plugin(DETECT, tmp_path / "detect")).record
    services.metadata.create_run(
        RunRecord("run-7", "face", "1.0.0", status=status, plugins=[other.ref, record.ref])
    )
    services.metadata.create_run(
        RunRecord("run-old", "face", "1.0.0", status="succeeded", plugins=[record.ref])
    )
    with pytest.raises(Conflict) as caught:
        registry.remove("greet", "1.0.0")
    assert str(caught.value) == (
        "greet@1.0.0 is used by active run(s) run-7; wait for them or cancel them first"
    )
    assert services.metadata.get_plugin("greet", "1.0.0") == record
    assert services.artifacts.exists(record.object_key)
    services.metadata.update_run("run-7", status="succeeded")
    registry.remove("greet", "1.0.0")
    assert services.metadata.get_plugin("greet", "1.0.0") is None
    assert _objects(services) == [other.object_key]


def test_a_run_of_another_version_does_not_block_remove(
    registry: Registry, services: Services, tmp_path: Path
) -> None:
    registry.install(copy_plugin(DESCRIBE, tmp_path / "d1"))
    v2 = registry.install(copy_plugin(DESCRIBE_V2, tmp_path / "d2")).record
    services.metadata.create_run(
        RunRecord("run-1", "p", "1.0.0", status="running", plugins=[v2.ref])
    )
    assert registry.remove("describe", "1.0.0").version == "1.0.0"


# pip-installed plugins (wtm.plugins entry points)


def test_pip_plugin_is_listed_beside_registry_plugins(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.install(copy_plugin(GREET, tmp_path / "greet"))
    assert [r.name for r in registry.records()] == ["greet"]
    make_distribution(tmp_path / "site", "wtm_test_hello")
    monkeypatch.syspath_prepend(tmp_path / "site")
    records = registry.records()
    assert [(r.name, r.version, r.source) for r in records] == [
        ("greet", "1.0.0", "registry"),
        ("hello_pip", "1.0.0", "pip:wtm-test-hello"),
    ]
    pip = records[1]
    assert pip.digest == PIP_PREFIX + "wtm_test_hello"
    assert pip.object_key == "" and set(pip.outputs) == {"text"}
    assert registry.resolve("hello_pip", "^1").digest == pip.digest
    assert registry.catalog().versions("hello_pip")["1.0.0"].key == "hello_pip@1.0.0"


def test_registry_version_wins_over_the_same_pip_version(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(tmp_path / "site", "wtm_test_hello", task="greet", version="1.0.0")
    make_distribution(
        tmp_path / "site2", "wtm_test_hello2", task="greet", version="0.9.0", dist="wtm-test-hello2"
    )
    monkeypatch.syspath_prepend(tmp_path / "site")
    monkeypatch.syspath_prepend(tmp_path / "site2")
    registry.install(copy_plugin(GREET, tmp_path / "greet"))
    found = [(r.version, r.source) for r in registry.records("greet")]
    assert found == [("1.0.0", "registry"), ("0.9.0", "pip:wtm-test-hello2")]


def test_broken_pip_plugin_does_not_hide_the_others(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(tmp_path / "site", "wtm_test_hello")
    make_distribution(
        tmp_path / "site2",
        "wtm_test_broken",
        task="broken_pip",
        dist="wtm-test-broken",
        code="raise RuntimeError('broken on import')\n",
    )
    monkeypatch.syspath_prepend(tmp_path / "site")
    monkeypatch.syspath_prepend(tmp_path / "site2")
    assert [r.name for r in entry_point_plugins()] == ["hello_pip"]
    assert [r.name for r in registry.records()] == ["hello_pip"]
