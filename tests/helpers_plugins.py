"""Shared helpers for the plugin packaging, registry, loader and CLI tests.

Everything here works on real folders, zips and embedded stores under a test's
``tmp_path``; nothing of wtm's own code is replaced.
"""

from __future__ import annotations

import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.config import Settings
from runtime.loader import PACKAGE_ROOT
from runtime.services import Services
from tests.conftest import ROOT, TASKS

GREET = ROOT / "examples" / "greet"
DESCRIBE = TASKS / "describe"
DESCRIBE_V2 = TASKS / "describe_v2"
DETECT = TASKS / "detect"
FACE_DETECTION = ROOT / "plugins" / "face_detection"

HOOK = (
    "from runtime import hookimpl\n\n\n"
    "@hookimpl\n"
    "def wtm_task_run(inputs, context):\n"
    "    return {'text': 'ok'}\n"
)


def settings(home: Path, **overrides: Any) -> Settings:
    """Settings whose every store lives under ``home``, whatever the environment says."""
    return Settings.load({"home": str(home), **overrides}, env={}, cwd=home.parent)


def open_services(home: Path, **overrides: Any) -> Services:
    """The embedded stores under ``home``."""
    return Services.open(settings(home, **overrides))


def copy_plugin(
    source: Path,
    dest: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    code: str | None = None,
) -> Path:
    """A copy of plugin folder ``source`` at ``dest`` (no caches), optionally changed."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    manifest = dest / "manifest.yaml"
    text = manifest.read_text()
    if name is not None:
        text = re.sub(r"(?m)^name: .*$", f"name: {name}", text)
    if version is not None:
        text = re.sub(r"(?m)^version: .*$", f"version: {version}", text)
    manifest.write_text(text)
    if code is not None:
        (dest / "plugin.py").write_text(code)
    return dest


def make_plugin(
    dest: Path, *, name: str = "tiny", version: str = "1.0.0", code: str = HOOK, extra: str = ""
) -> Path:
    """A minimal plugin folder: one string output ``text``; ``extra`` is appended YAML."""
    dest.mkdir(parents=True)
    (dest / "manifest.yaml").write_text(
        "apiVersion: wtm/v1\nkind: Task\n"
        f"name: {name}\nversion: {version}\nentrypoint: plugin\n"
        "outputs:\n  text: {schema: {type: string}}\n" + extra
    )
    (dest / "plugin.py").write_text(code)
    return dest


def folder_entries(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_zip(
    path: Path,
    entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A zip with exactly ``entries`` (names are written as given, unsafe ones included)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name)
            info.compress_type = compression
            if not isinstance(name, zipfile.ZipInfo):
                info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return path


def zip_folder(folder: Path, path: Path, **extra: bytes) -> Path:
    """A zip of ``folder``'s files made the ordinary way (real timestamps), plus ``extra``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
        for name, data in extra.items():
            archive.writestr(name, data)
    return path


def symlink_info(name: str) -> zipfile.ZipInfo:
    """A zip entry marked as a symlink (unix mode S_IFLNK in external_attr)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def stored_files(root: Path) -> list[str]:
    """Every file under an artifact store root, hidden temporary files included."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_nothing_stored(services: Services) -> None:
    """No plugin record and no file at all (not even a temp file) in the artifact store."""
    assert services.metadata.list_plugins() == []
    assert stored_files(services.settings.home / "artifacts") == []


def plugin_modules() -> set[str]:
    """Names of the isolated plugin modules currently imported."""
    return {m for m in sys.modules if m == PACKAGE_ROOT or m.startswith(PACKAGE_ROOT + ".")}


def forget_modules(before: set[str], *prefixes: str) -> None:
    """Drop plugin modules imported since ``before`` and modules under ``prefixes``."""
    new = plugin_modules() - before
    for name in list(sys.modules):
        if name in new or any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]


def make_distribution(
    site: Path,
    module: str,
    *,
    task: str = "hello_pip",
    version: str = "1.0.0",
    dist: str = "wtm-test-hello",
    ep_target: str | None = None,
    code: str = HOOK,
) -> Path:
    """A pip-installed plugin as a real distribution in ``site``: a package + its dist-info."""
    package = make_plugin(site / module, name=task, version=version, code=code)
    (package / "__init__.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[wtm.plugins]\n{task} = {ep_target or module}\n")
    (info / "top_level.txt").write_text(module + "\n")
    return package
