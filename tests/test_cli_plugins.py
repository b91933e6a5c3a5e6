"""``wtm plugin install|list|show|remove`` through the real command line (CliRunner)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runtime.cli import cli
from runtime.packaging import build_package
from runtime.stores.artifacts import blob_key
from runtime.stores.metadata import RunRecord
from tests.helpers_plugins import (
    DESCRIBE,
    DESCRIBE_V2,
    GREET,
    copy_plugin,
    forget_modules,
    make_plugin,
    open_services,
    plugin_modules,
    stored_files,
    write_zip,
    zip_folder,
)

ENV_VARS = (
    "WTM_ARTIFACTS",
    "WTM_METADATA",
    "WTM_CACHE",
    "WTM_BROKER_URL",
    "WTM_MAX_PACKAGE_BYTES",
    "WTM_MAX_UNPACKED_BYTES",
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every command's stores under ``tmp_path/home``; no wtm.toml in the way."""
    before = plugin_modules()
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WTM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    yield tmp_path / "home"
    forget_modules(before)


@pytest.fixture
def greet(tmp_path: Path) -> Path:
    return copy_plugin(GREET, tmp_path / "greet")


def wtm(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["plugin", *map(str, args)])


def ok(*args: str | Path) -> str:
    result = wtm(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def refused(*args: str | Path) -> str:
    """The one-line error of a command that must exit 2."""
    result = wtm(*args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not a crash
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def table_rows(out: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def _records(home: Path) -> list[tuple[str, str]]:
    with open_services(home) as services:
        return [(r.name, r.version) for r in services.metadata.list_plugins()]


def _objects(home: Path) -> list[str]:
    return stored_files(home / "artifacts")


# install


def test_install_folder_then_again(greet: Path, home: Path) -> None:
    digest = build_package(greet).digest
    out = ok("install", greet)
    assert (
        out == f"greet@1.0.0 installed (sha256 {digest[:12]}, {build_package(greet).size} bytes)\n"
    )
    assert _records(home) == [("greet", "1.0.0")]
    assert _objects(home) == [blob_key(digest)]
    out = ok("install", greet)
    assert out.startswith("greet@1.0.0 already installed with the same content; nothing to do")
    assert _records(home) == [("greet", "1.0.0")]


def test_install_several_sources_and_a_zip(tmp_path: Path, home: Path) -> None:
    d1 = copy_plugin(DESCRIBE, tmp_path / "d1")
    zipped = zip_folder(copy_plugin(DESCRIBE_V2, tmp_path / "d2"), tmp_path / "d2.zip")
    out = ok("install", d1, zipped)
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        "describe@1.0.0 installed",
        "describe@2.1.0 installed",
    ]
    assert _records(home) == [("describe", "1.0.0"), ("describe", "2.1.0")]


def test_install_changed_content_needs_force(greet: Path, home: Path) -> None:
    ok("install", greet)
    old = build_package(greet).digest
    (greet / "plugin.py").write_text((greet / "plugin.py").read_text().replace("Hello", "Hi"))
    new = build_package(greet).digest
    message = refused("install", greet)
    assert message == (
        f"{greet}: greet@1.0.0 is already installed with different content "
        f"(sha256 {old[:12]} vs {new[:12]}); bump the version, or use --force "
        "to replace it"
    )
    assert _objects(home) == [blob_key(old)]
    assert ok("install", "--force", greet).startswith(
        f"greet@1.0.0 replaced (--force) (sha256 {new[:12]}"
    )
    assert _objects(home) == [blob_key(new)]
    assert _records(home) == [("greet", "1.0.0")]


def test_install_invalid_manifest_is_one_positioned_line(greet: Path, home: Path) -> None:
    manifest = greet / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: one"))
    message = refused("install", greet)
    assert message.startswith(f"{greet}: invalid manifest: {manifest}:5:10: error: ")
    assert "version" in message
    assert _records(home) == [] and _objects(home) == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("/abs.py", "unsafe path in package: '/abs.py'"),
        ("../up.py", "unsafe path in package: '../up.py'"),
    ],
)
def test_install_unsafe_zip(tmp_path: Path, home: Path, entry: str, expected: str) -> None:
    path = write_zip(
        tmp_path / "bad.zip",
        [("manifest.yaml", (GREET / "manifest.yaml").read_bytes()), (entry, b"")],
    )
    assert refused("install", path) == f"{path}: {expected}"
    assert _records(home) == [] and _objects(home) == []


def test_install_over_size_limits_from_environment(
    greet: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (greet / "zeros.bin").write_bytes(bytes(2 << 20))
    total = sum(p.stat().st_size for p in greet.iterdir())
    monkeypatch.setenv("WTM_MAX_UNPACKED_BYTES", "1MiB")
    assert refused("install", greet) == (
        f"{greet}: {total} bytes of files, over the limit of 1048576"
    )
    bomb = zip_folder(greet, tmp_path / "bomb.zip")
    assert refused("install", bomb) == f"{bomb}: unpacks to more than 1048576 bytes"
    monkeypatch.setenv("WTM_MAX_PACKAGE_BYTES", "1KiB")
    assert "over the limit of 1024" in refused("install", bomb)
    assert _records(home) == [] and _objects(home) == []


def test_install_missing_requirement(tmp_path: Path, home: Path) -> None:
    folder = make_plugin(tmp_path / "needy", extra="requirements: ['wtm-no-such-package>=1']\n")
    assert refused("install", folder) == (
        f"{folder}: tiny@1.0.0 needs wtm-no-such-package>=1 (not installed); install with: pip "
        "install --disable-pip-version-check 'wtm-no-such-package>=1' "
        "(or pass --install-requirements)"
    )
    assert _records(home) == [] and _objects(home) == []


def test_install_entrypoint_raising(tmp_path: Path, home: Path) -> None:
    folder = make_plugin(tmp_path / "boom", code="raise ValueError('bad\\nthing')\n")
    assert refused("install", folder) == (
        f"{folder}: tiny@1.0.0: cannot import entrypoint 'plugin': ValueError: bad thing"
    )


def test_install_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert refused("install", tmp_path / "nope") == f"{tmp_path / 'nope'}: no such file or folder"
    result = wtm("install")
    assert result.exit_code == 2 and "Missing argument 'SOURCES...'" in result.stderr


def test_install_with_an_unusable_artifact_store(
    greet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("WTM_ARTIFACTS", (tmp_path / "not_a_folder").as_uri())
    message = refused("install", greet)
    assert message.startswith(f"{greet}: cannot write 'blobs/sha256/")
    assert _records(tmp_path / "home") == []


# list


def test_list_empty_and_with_plugins(tmp_path: Path, greet: Path) -> None:
    assert ok("list") == "no plugins installed; try: wtm plugin install plugins/face_detection\n"
    assert json.loads(ok("list", "--json")) == []
    ok(
        "install",
        greet,
        copy_plugin(DESCRIBE, tmp_path / "d1"),
        copy_plugin(DESCRIBE_V2, tmp_path / "d2"),
    )
    rows = table_rows(ok("list"))
    assert [row[:2] for row in rows] == [
        ["describe", "2.1.0"],
        ["describe", "1.0.0"],
        ["greet", "1.0.0"],
    ]
    package = build_package(greet)
    assert rows[2][2:5] == [package.digest[:12], str(package.size), "registry"]
    data = json.loads(ok("list", "--json"))
    assert [(r["name"], r["version"]) for r in data] == [
        ("describe", "2.1.0"),
        ("describe", "1.0.0"),
        ("greet", "1.0.0"),
    ]
    assert data[2]["digest"] == build_package(greet).digest
    assert data[2]["object_key"] == blob_key(data[2]["digest"])
    assert set(data[2]) == {
        "name",
        "version",
        "digest",
        "size",
        "object_key",
        "source",
        "installed_at",
    }


# show


def test_show_ports_table(greet: Path) -> None:
    ok("install", greet)
    digest = build_package(greet).digest
    out = ok("show", "greet")
    lines = out.splitlines()
    assert lines[0] == "greet@1.0.0  Greet someone by name; the smallest useful wtm task plugin."
    assert lines[1] == f"sha256 {digest}  {build_package(greet).size} bytes  key {blob_key(digest)}"
    assert lines[2] == "timeout 5.0s  retries 1  requirements none"
    assert table_rows(out) == [
        ["input", "name", "string", "yes", "", "Who to greet."],
        ["input", "punctuation", "string", "no", "'!'", ""],
        ["output", "greeting", "string", "", "", "The greeting."],
    ]


def test_show_json_has_digest_object_key_and_manifest(greet: Path) -> None:
    ok("install", greet)
    data = json.loads(ok("show", "greet@1.0.0", "--json"))
    digest = build_package(greet).digest
    assert (data["name"], data["version"], data["digest"]) == ("greet", "1.0.0", digest)
    assert data["object_key"] == blob_key(digest)
    assert data["source"] == "registry"
    assert data["manifest"]["entrypoint"] == "plugin"


@pytest.fixture
def describes(tmp_path: Path) -> None:
    ok("install", copy_plugin(DESCRIBE, tmp_path / "d100"))
    for version in ("1.2.0", "1.2.7", "1.4.0", "2.0.0"):
        ok("install", copy_plugin(DESCRIBE, tmp_path / f"d{version}", version=version))
    ok("install", copy_plugin(DESCRIBE_V2, tmp_path / "d210"))


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        ("describe", "2.1.0"),
        ("describe@latest", "2.1.0"),
        ("describe@^1", "1.4.0"),
        ("describe@~1.2", "1.2.7"),
        ("describe@>=1.0,<2", "1.4.0"),
        ("describe@>=1.2.1 <1.4", "1.2.7"),
        ("describe@1.2.0", "1.2.0"),
        ("describe@^2", "2.1.0"),
        ("describe@~2.0", "2.0.0"),
    ],
)
def test_show_constraints(describes: None, ref: str, version: str) -> None:
    assert json.loads(ok("show", ref, "--json"))["version"] == version
    assert ok("show", ref).startswith(f"describe@{version}  ")


def test_show_unknown_or_unsatisfied(describes: None) -> None:
    assert refused("show", "nope") == "plugin 'nope' is not installed"
    assert refused("show", "describe@^3") == (
        "no installed version of 'describe' satisfies '^3' "
        "(have 2.1.0, 2.0.0, 1.4.0, 1.2.7, 1.2.0, 1.0.0)"
    )
    assert refused("show", "describe@^x").startswith("invalid version constraint '^x'")


# remove


def test_remove_needs_an_exact_version(greet: Path, home: Path) -> None:
    ok("install", greet)
    for ref in ("greet", "greet@latest", "greet@^1", "greet@1"):
        assert refused("remove", ref) == "give the exact version to remove: NAME@VERSION"
    assert _records(home) == [("greet", "1.0.0")]


def test_remove_deletes_record_and_package(greet: Path, home: Path) -> None:
    ok("install", greet)
    assert ok("remove", "greet@1.0.0") == "removed greet@1.0.0\n"
    assert _records(home) == [] and _objects(home) == []
    assert refused("remove", "greet@1.0.0") == "plugin greet@1.0.0 is not installed"
    assert ok("list").startswith("no plugins installed")


def test_remove_refused_while_a_run_uses_it(greet: Path, home: Path) -> None:
    ok("install", greet)
    digest = build_package(greet).digest
    with open_services(home) as services:
        services.metadata.create_run(
            RunRecord(
                "run-42", "hello", "1.0.0", status="running", plugins=[f"greet@1.0.0#{digest}"]
            )
        )
    assert refused("remove", "greet@1.0.0") == (
        "greet@1.0.0 is used by active run(s) run-42; wait for them or cancel them first"
    )
    assert _records(home) == [("greet", "1.0.0")] and _objects(home) == [blob_key(digest)]
    with open_services(home) as services:
        services.metadata.update_run("run-42", status="cancelled")
    assert ok("remove", "greet@1.0.0") == "removed greet@1.0.0\n"
    assert _objects(home) == []


def test_help_lists_the_subcommands() -> None:
    out = ok("--help")
    for command in ("install", "list", "show", "remove"):
        assert command in out
