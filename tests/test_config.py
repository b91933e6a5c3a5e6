"""Settings: flags beat environment beat wtm.toml beat defaults; secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.config import ConfigError, Settings, mask_url
from runtime.stores import open_artifact_store, open_metadata_store
from runtime.stores.errors import StoreError
from runtime.stores.local import FileArtifactStore
from runtime.stores.sqlite import SqliteMetadataStore


def load(cwd: Path, env: dict[str, str] | None = None, **flags: object) -> Settings:
    return Settings.load(flags, env=env or {}, cwd=cwd)


def write_toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wtm.toml"
    path.write_text(text)
    return path


def test_embedded_defaults_need_nothing(tmp_path: Path) -> None:
    settings = load(tmp_path)
    home = tmp_path / ".wtm"
    assert settings.home == home
    assert settings.artifacts == f"file://{home}/artifacts"
    assert settings.metadata == f"sqlite:///{home}/wtm.db"
    assert settings.cache_dir == home / "cache"
    assert settings.broker_url is None
    assert (settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key) == (
        None,
        None,
        None,
    )
    assert settings.s3_secure is True
    assert settings.max_package_bytes == 200 << 20
    assert settings.max_unpacked_bytes == 1 << 30
    assert settings.inline_threshold == 64 << 10
    assert settings.config_file is None
    assert set(settings.origins.values()) == {"default"}


def test_home_moves_the_embedded_stores(tmp_path: Path) -> None:
    settings = load(tmp_path, {"WTM_HOME": "state"})
    assert settings.home == tmp_path / "state"
    assert settings.artifacts == f"file://{tmp_path}/state/artifacts"
    assert settings.metadata == f"sqlite:///{tmp_path}/state/wtm.db"
    assert settings.cache_dir == tmp_path / "state" / "cache"
    assert settings.origins["home"] == "env WTM_HOME"


@pytest.mark.parametrize(
    ("name", "var", "flag", "env", "in_file", "default"),
    [
        (
            "broker_url",
            "WTM_BROKER_URL",
            "redis://flag:6379/0",
            "redis://env:6379/0",
            '"redis://file:6379/0"',
            None,
        ),
        ("inline_threshold", "WTM_INLINE_THRESHOLD", 1, "2", "3", 64 << 10),
        ("artifacts", "WTM_ARTIFACTS", "s3://flag/p", "s3://env/p", '"s3://file/p"', None),
        (
            "metadata",
            "WTM_METADATA",
            "mongodb://flag/wtm",
            "mongodb://env/wtm",
            '"mongodb://file/wtm"',
            None,
        ),
    ],
)
def test_flags_beat_env_beat_file_beat_defaults(
    tmp_path: Path, name: str, var: str, flag: object, env: str, in_file: str, default: object
) -> None:
    def get(settings: Settings) -> object:
        return getattr(settings, name)

    assert default is None or get(load(tmp_path)) == default
    write_toml(tmp_path, f"{name} = {in_file}\n")
    from_file = load(tmp_path)
    assert str(get(from_file)) in in_file
    assert from_file.origins[name] == str(tmp_path / "wtm.toml")
    assert str(get(load(tmp_path, {var: env}))) == env
    assert get(load(tmp_path, {var: env}, **{name: flag})) == flag
    assert load(tmp_path, {var: env}, **{name: flag}).origins[name] == "flag"
    assert str(get(load(tmp_path, {var: env}, **{name: None}))) == env


def test_the_file_in_the_current_folder_beats_the_one_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_toml(home, 'broker_url = "redis://home:6379/0"\ncache_dir = "c"\n')
    from_home = load(tmp_path, {"WTM_HOME": str(home)})
    assert from_home.config_file == home / "wtm.toml"
    assert from_home.broker_url == "redis://home:6379/0"
    assert from_home.cache_dir == home / "c"
    write_toml(tmp_path, 'broker_url = "redis://here:6379/0"\n')
    assert load(tmp_path, {"WTM_HOME": str(home)}).broker_url == "redis://here:6379/0"


def test_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_toml(
        project / ".wtm",
        'artifacts = "file://blobs"\nmetadata = "sqlite:///meta/wtm.db"\nhome = "/srv/wtm"\n',
    )
    settings = load(project)
    assert settings.artifacts == f"file://{project}/.wtm/blobs"
    assert settings.metadata == f"sqlite:///{project}/.wtm/meta/wtm.db"
    assert settings.home == Path("/srv/wtm")


def test_env_urls_are_made_absolute(tmp_path: Path) -> None:
    settings = load(
        tmp_path, {"WTM_ARTIFACTS": "file://art", "WTM_METADATA": "sqlite:////abs/wtm.db"}
    )
    assert settings.artifacts == f"file://{tmp_path}/art"
    assert settings.metadata == "sqlite:////abs/wtm.db"
    assert (
        load(tmp_path, {"WTM_METADATA": "sqlite:///x.db"}).metadata == f"sqlite:///{tmp_path}/x.db"
    )


def test_s3_settings_from_a_table_and_aws_fallbacks(tmp_path: Path) -> None:
    aws = {
        "AWS_ENDPOINT_URL": "http://aws:9000",
        "AWS_ACCESS_KEY_ID": "aws-key",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    settings = load(tmp_path, aws)
    assert (settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key) == (
        "http://aws:9000",
        "aws-key",
        "aws-secret",
    )
    assert settings.s3_secure is False
    write_toml(tmp_path, '[s3]\nendpoint = "https://file:9000"\naccess_key = "file-key"\n')
    settings = load(tmp_path, aws)
    assert (settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key) == (
        "https://file:9000",
        "file-key",
        "aws-secret",
    )
    assert settings.s3_secure is True
    settings = load(tmp_path, {**aws, "WTM_S3_ACCESS_KEY": "wtm-key", "WTM_S3_SECURE": "no"})
    assert (settings.s3_access_key, settings.s3_secure) == ("wtm-key", False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("65536", 65536), ("64KiB", 64 << 10), ("200 MiB", 200 << 20), ("1g", 1 << 30), ("12b", 12)],
)
def test_sizes(tmp_path: Path, raw: str, expected: int) -> None:
    assert load(tmp_path, {"WTM_MAX_PACKAGE_BYTES": raw}).max_package_bytes == expected
    write_toml(tmp_path, f'max_unpacked_bytes = "{raw}"\ninline_threshold = 1024\n')
    settings = load(tmp_path)
    assert (settings.max_unpacked_bytes, settings.inline_threshold) == (expected, 1024)


def test_secrets_are_masked(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            "WTM_S3_SECRET_KEY": "s3-secret",
            "WTM_S3_ACCESS_KEY": "access",
            "WTM_BROKER_URL": "redis://:redis-secret@host:6379/0",
            "WTM_METADATA": "mongodb://wtm:mongo-secret@h1:27017,h2:27017/wtm?authSource=admin",
        },
    )
    shown = settings.masked()
    text = json.dumps(shown)
    for secret in ("s3-secret", "redis-secret", "mongo-secret"):
        assert secret not in text
        assert secret not in repr(settings)
    assert shown["s3_secret_key"] == "****"
    assert shown["s3_access_key"] == "access"
    assert shown["broker_url"] == "redis://:****@host:6379/0"
    assert shown["metadata"] == "mongodb://wtm:****@h1:27017,h2:27017/wtm?authSource=admin"
    assert shown["home"] == str(tmp_path / ".wtm")
    assert load(tmp_path).masked()["s3_secret_key"] is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://host:6379/0?password=s3cret", "redis://host:6379/0?password=****"),
        ("redis://h/0?db=1&PASSWORD=s3cret;x=1", "redis://h/0?db=1&PASSWORD=****;x=1"),
        ("s3://k:s3cret@h/b?token=s3cret#top", "s3://k:****@h/b?token=****#top"),
    ],
)
def test_passwords_given_as_query_parameters_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_config_show_and_doctor_mask_a_query_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from runtime.cli import cli

    monkeypatch.setenv("WTM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WTM_BROKER_URL", "redis://127.0.0.1:1/0?password=s3cret")
    for args in (["config", "show"], ["doctor"]):
        assert "s3cret" not in CliRunner().invoke(cli, args).output, args
    for args in (["config", "show", "--json"], ["doctor", "--json"]):
        result = CliRunner().invoke(cli, args)
        assert "s3cret" not in result.output, args
        assert "password=****" in result.output, args


@pytest.mark.parametrize(
    "url", ["s3://bucket/prefix", "mongodb://user@host/db", "file:///a/b", "redis://host:6379/0"]
)
def test_urls_without_passwords_are_shown_as_they_are(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize(
    ("env", "toml", "flags", "mentions"),
    [
        ({"WTM_ARTIFACTS": "ftp://host/x"}, None, {}, "env WTM_ARTIFACTS"),
        ({"WTM_METADATA": "postgres://u:pw@h/db"}, None, {}, "not a sqlite://"),
        ({"WTM_METADATA": "sqlite://x.db"}, None, {}, "sqlite:///"),
        ({"WTM_ARTIFACTS": "file://"}, None, {}, "file:///path"),
        ({"WTM_BROKER_URL": "http://host"}, None, {}, "WTM_BROKER_URL"),
        ({"WTM_S3_SECURE": "maybe"}, None, {}, "true or false"),
        ({"WTM_INLINE_THRESHOLD": "lots"}, None, {}, "size in bytes"),
        ({}, "inline_threshold = -1\n", {}, "size in bytes"),
        ({}, "home = [\n", {}, "invalid TOML"),
        ({}, "colour = 'red'\n", {}, "unknown setting(s): colour"),
        ({}, "[s3]\nregion = 'x'\n", {}, "s3_region"),
        ({}, "home = 3\n", {}, "expected a string"),
        ({}, 'artifacts = "gopher://x"\n', {}, "wtm.toml: artifacts"),
        ({}, None, {"colour": "red"}, "unknown setting(s): colour"),
    ],
)
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], toml: str | None, flags: dict[str, object], mentions: str
) -> None:
    if toml is not None:
        write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, **flags)
    message = str(caught.value)
    assert mentions in message
    assert "\n" not in message
    assert "pw@" not in message


def test_settings_open_the_embedded_stores(tmp_path: Path) -> None:
    settings = load(tmp_path)
    artifacts = open_artifact_store(settings.artifacts, settings)
    assert isinstance(artifacts, FileArtifactStore)
    assert artifacts.root == tmp_path / ".wtm" / "artifacts"
    assert artifacts.describe() == settings.artifacts
    with open_metadata_store(settings.metadata) as metadata:
        assert isinstance(metadata, SqliteMetadataStore)
        assert metadata.path == tmp_path / ".wtm" / "wtm.db"
        assert metadata.describe() == settings.metadata
    assert (tmp_path / ".wtm" / "wtm.db").is_file()


@pytest.mark.parametrize(
    ("opener", "url", "mentions"),
    [
        ("artifacts", "ftp://u:pw@host/x", "known: file://, s3://"),
        ("metadata", "postgres://host/db", "known: sqlite://"),
        ("metadata", "sqlite://wtm.db", "sqlite:///"),
        ("artifacts", "file://", "no folder"),
    ],
)
def test_unavailable_backends_say_so(tmp_path: Path, opener: str, url: str, mentions: str) -> None:
    with pytest.raises(StoreError) as caught:
        if opener == "artifacts":
            open_artifact_store(url, load(tmp_path))
        else:
            open_metadata_store(url)
    assert mentions in str(caught.value)
    assert "pw@" not in str(caught.value)
