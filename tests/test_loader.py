"""Loading installed plugins by digest: fetch, verify, unpack, import in isolation."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.context import TaskContext
from runtime.loader import PACKAGE_ROOT, LoadedTask, Loader, PluginLoadError, import_plugin
from runtime.manifest import load_task
from runtime.packaging import Limits, PackageError, build_package
from runtime.services import Services
from runtime.stores.artifacts import put_blob
from runtime.stores.errors import IntegrityError, NotFound
from tests.helpers_plugins import (
    DESCRIBE,
    DESCRIBE_V2,
    DETECT,
    GREET,
    copy_plugin,
    folder_entries,
    forget_modules,
    make_distribution,
    make_plugin,
    open_services,
    plugin_modules,
    write_zip,
)

FACES = [{"face_id": 0, "bbox": [1, 2, 3, 4]}, {"face_id": 1, "bbox": [5, 6, 7, 8]}]


@pytest.fixture(autouse=True)
def _isolated_modules() -> Iterator[None]:
    before = plugin_modules()
    yield
    forget_modules(before, "wtm_test_hello")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with open_services(tmp_path / "home") as opened:
        yield opened


def _context(services: Services) -> TaskContext:
    return TaskContext("run-1", "001", services.access)


def _describe(loaded: LoadedTask, services: Services) -> list[str]:
    out = loaded.run({"image_path": "x", "faces_array": FACES}, _context(services))
    return [face["label"] for face in out["described"]]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_load_fetches_unpacks_per_digest_and_runs(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    loaded = services.loader.load(record.digest)
    cache = services.settings.cache_dir
    assert loaded.folder == cache / "plugins" / record.digest
    assert folder_entries(loaded.folder) == folder_entries(GREET)
    assert (cache / "packages" / record.digest).read_bytes() == services.artifacts.get_bytes(
        record.object_key
    )
    assert loaded.manifest.key == "greet@1.0.0"
    assert loaded.run({"name": "Ada"}, _context(services)) == {"greeting": "Hello, Ada!"}
    hook = loaded.manager.hook.wtm_task_run.get_hookimpls()[0]
    assert hook.plugin.__name__.startswith(f"{PACKAGE_ROOT}.p{record.digest[:24]}")
    assert hook.plugin.__file__ == str(loaded.folder / "plugin.py")


def test_loading_is_cached(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    first = services.loader.load(record.digest)
    services.artifacts.delete(record.object_key)  # a second load must not fetch again
    assert services.loader.load(record.digest) is first


def test_unpacked_cache_is_reused_by_a_new_loader(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    services.loader.load(record.digest)
    services.artifacts.delete(record.object_key)
    again = Loader(services.artifacts, services.settings.cache_dir).load(record.digest)
    assert again.run({"name": "Bo", "punctuation": "."}, _context(services)) == {
        "greeting": "Hello, Bo."
    }


def test_two_versions_side_by_side(services: Services, tmp_path: Path) -> None:
    v1 = services.registry.install(copy_plugin(DESCRIBE, tmp_path / "d1")).record
    v2 = services.registry.install(copy_plugin(DESCRIBE_V2, tmp_path / "d2")).record
    one, two = services.loader.load(v1.digest), services.loader.load(v2.digest)
    assert (one.manifest.version, two.manifest.version) == ("1.0.0", "2.1.0")
    assert one.folder != two.folder
    assert one.folder.parent == two.folder.parent == services.settings.cache_dir / "plugins"
    assert _describe(one, services) == ["described", "described"]
    assert _describe(two, services) == ["described-v2", "described-v2"]
    assert _describe(one, services) == ["described", "described"]  # v2 did not replace v1
    modules = {m for m in sys.modules if m.startswith(PACKAGE_ROOT + ".p")}
    assert {
        f"{PACKAGE_ROOT}.p{v1.digest[:24]}.plugin",
        f"{PACKAGE_ROOT}.p{v2.digest[:24]}.plugin",
    } <= modules


def test_version_installed_later_is_loaded_by_the_same_loader(
    services: Services, tmp_path: Path
) -> None:
    loader = services.loader
    v1 = services.registry.install(copy_plugin(DESCRIBE, tmp_path / "d1")).record
    assert _describe(loader.load(v1.digest), services)[0] == "described"
    v2 = services.registry.install(copy_plugin(DESCRIBE_V2, tmp_path / "d2")).record
    assert services.registry.resolve("describe").digest == v2.digest
    assert _describe(loader.load(v2.digest), services)[0] == "described-v2"
    assert sorted(p.name for p in (services.settings.cache_dir / "plugins").iterdir()) == sorted(
        [v1.digest, v2.digest]
    )


def test_corrupt_blob_is_refused_and_nothing_is_cached(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    blob = services.settings.home / "artifacts" / record.object_key
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    blob.write_bytes(bytes(data))
    before = plugin_modules()
    with pytest.raises((IntegrityError, PluginLoadError)) as caught:
        services.loader.load(record.digest)
    assert f"blob {record.digest}" in str(caught.value)
    assert f"has sha256 {build_package(GREET).digest}" not in str(caught.value)
    cache = services.settings.cache_dir
    assert _files(cache) == []  # no package, no partial download, no unpacked folder
    assert not (cache / "plugins" / record.digest).exists()
    assert plugin_modules() == before
    blob.write_bytes(build_package(GREET).data)  # repaired: the same loader loads it now
    assert services.loader.load(record.digest).manifest.name == "greet"


def test_missing_blob_is_reported(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    services.artifacts.delete(record.object_key)
    with pytest.raises(NotFound, match=record.digest):
        services.loader.load(record.digest)
    assert _files(services.settings.cache_dir) == []


def test_unsafe_package_is_refused_on_load(services: Services, tmp_path: Path) -> None:
    # a blob stored under its true digest, but not one `install` would ever have made
    evil = write_zip(
        tmp_path / "evil.zip",
        [("manifest.yaml", (GREET / "manifest.yaml").read_bytes()), ("../../evil.py", b"x = 1\n")],
    )
    digest = put_blob(services.artifacts, evil.read_bytes())
    with pytest.raises(PackageError, match="unsafe path in package"):
        services.loader.load(digest)
    cache = services.settings.cache_dir
    assert not (cache / "plugins" / digest).exists()
    assert not list(services.settings.home.parent.rglob("evil.py"))


def test_oversized_package_is_refused_on_load(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    loader = Loader(services.artifacts, tmp_path / "cache", Limits(max_unpacked_bytes=100))
    with pytest.raises(PackageError, match="unpacks to more than 100 bytes"):
        loader.load(record.digest)
    assert not (tmp_path / "cache" / "plugins" / record.digest).exists()


def test_plugin_failing_at_load_time_raises_plugin_load_error(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # imports fine when installed, fails where it is loaded (a missing model file, say)
    code = (
        "import os\n"
        "if os.environ.get('WTM_TEST_NO_MODEL'):\n"
        "    raise RuntimeError('model file missing')\n"
    ) + (GREET / "plugin.py").read_text()
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet", code=code)).record
    monkeypatch.setenv("WTM_TEST_NO_MODEL", "1")
    before = plugin_modules()
    with pytest.raises(
        PluginLoadError,
        match=re.escape(
            "greet@1.0.0: cannot import entrypoint 'plugin': RuntimeError: model file missing"
        ),
    ):
        services.loader.load(record.digest)
    assert plugin_modules() - before <= {PACKAGE_ROOT}
    monkeypatch.delenv("WTM_TEST_NO_MODEL")  # fixed: the next load imports it afresh
    assert services.loader.load(record.digest).run({"name": "Cy"}, _context(services)) == {
        "greeting": "Hello, Cy!"
    }


def test_concurrent_loads_share_one_task(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(DETECT, tmp_path / "detect")).record
    loader = Loader(services.artifacts, tmp_path / "cache")
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(loader.load(record.digest)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert [p.name for p in (tmp_path / "cache" / "plugins").iterdir()] == [record.digest]


def test_import_plugin_without_init_and_with_relative_imports(tmp_path: Path) -> None:
    folder = make_plugin(
        tmp_path / "rel",
        code=(
            "from runtime import hookimpl\n\nfrom .words import WORD\n\n\n@hookimpl\n"
            "def wtm_task_run(inputs, context):\n    return {'text': WORD}\n"
        ),
    )
    (folder / "words.py").write_text("WORD = 'relative'\n")
    manager = import_plugin(folder, load_task(folder / "manifest.yaml"), "t_relative")
    assert manager.hook.wtm_task_run(inputs={}, context=None) == {"text": "relative"}


# pip-installed plugins


def test_pip_plugin_is_loaded_by_module(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(tmp_path / "site", "wtm_test_hello")
    monkeypatch.syspath_prepend(tmp_path / "site")
    record = services.registry.resolve("hello_pip")
    assert record.digest == "pip:wtm_test_hello"
    loaded = services.loader.load(record.digest)
    assert loaded.manifest.key == "hello_pip@1.0.0"
    assert loaded.folder == tmp_path / "site" / "wtm_test_hello"
    assert loaded.run({}, _context(services)) == {"text": "ok"}
    assert services.loader.load("pip:wtm_test_hello") is loaded
    assert _files(services.settings.cache_dir) == []  # nothing fetched or unpacked


def test_missing_pip_plugin_raises_plugin_load_error(services: Services) -> None:
    with pytest.raises(PluginLoadError, match="cannot import pip plugin 'wtm_test_absent'"):
        services.loader.load("pip:wtm_test_absent")
