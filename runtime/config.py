"""Where things live: the one place settings are decided.

Each setting comes from the first of: flags (``overrides``), the environment,
a ``wtm.toml`` file (in the current folder, else in ``$WTM_HOME``), and an
embedded default that needs none of them. The AWS variables are a fallback
for the S3 settings below the file. Relative paths are taken from the current
folder, or from the file's folder for paths written in the file.

``wtm.toml`` uses the setting names; ``[s3]`` holds the ``s3_`` ones::

    home = ".wtm"
    artifacts = "s3://wtm/artifacts"
    metadata = "mongodb://db.example:27017/wtm"
    max_package_bytes = "200MiB"

    [s3]
    endpoint = "http://127.0.0.1:9000"
    access_key = "wtm"
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "wtm.toml"
MASK = "****"
ARTIFACT_SCHEMES = ("file", "s3")
METADATA_SCHEMES = ("sqlite", "mongodb", "mongodb+srv")
BROKER_SCHEMES = ("redis", "rediss")
SECRETS = frozenset({"s3_secret_key"})
_SIZE = re.compile(r"\s*(\d+)\s*(?:([kmg])i?)?b?\s*", re.IGNORECASE)
_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_AGE = 3650 * 86400.0
"""The longest age accepted (about ten years)."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """Configuration that cannot be used; the message is one line saying where and why."""


@dataclass(frozen=True, repr=False)
class Settings:
    """Resolved settings; build them with :meth:`load`. Its repr masks secrets too."""

    home: Path
    artifacts: str
    metadata: str
    cache_dir: Path
    broker_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = True
    max_package_bytes: int = 200 << 20
    max_unpacked_bytes: int = 1 << 30
    inline_threshold: int = 64 << 10
    cache_max_age: float = 30 * 86400.0
    """Cached step results older than this many seconds are not reused."""
    config_file: Path | None = None
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each setting came from: ``flag``, ``env NAME``, the file's path, or ``default``."""

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] = os.environ,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Settings from flags (``overrides``; None values are unset), ``env`` and ``wtm.toml``."""
        here = Path(cwd if cwd is not None else os.getcwd()).absolute()
        flags = {k: v for k, v in (overrides or {}).items() if v is not None and v != ""}
        unknown = sorted(set(flags) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        config_file = _find_file(flags, env, here)
        in_file = _read_file(config_file) if config_file else {}
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for name, option in _OPTIONS.items():
            found = _pick(name, option, flags, env, in_file, config_file)
            if found is not None:
                raw, origin = found
                base = config_file.parent if config_file and origin == str(config_file) else here
                values[name] = option.parse(raw, f"{origin}: {name}", base)
                origins[name] = origin
        home = values.get("home", here / ".wtm")
        defaults = {
            "home": home,
            "artifacts": (home / "artifacts").as_uri(),
            "metadata": f"sqlite:///{home / 'wtm.db'}",
            "cache_dir": home / "cache",
            "s3_secure": not str(values.get("s3_endpoint", "")).startswith("http://"),
        }
        for name, value in defaults.items():
            if name not in values:
                values[name] = value
                origins[name] = "default"
        return cls(**values, config_file=config_file, origins=origins)

    def masked(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict for display, with secrets masked."""
        shown: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "origins":
                continue
            if f.name in SECRETS and value:
                value = MASK
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.masked().items())})"


_SECRET_QUERY = re.compile(
    r"([?&;](?:password|passwd|pwd|secret|secret_key|access_key|token|auth|api_?key"
    r"|sessiontoken|x-amz-[a-z-]+)=)[^&;#]*",
    re.IGNORECASE,
)
"""Query parameters that carry secrets (``?password=``, as redis-py and kombu accept)."""


def mask_url(url: str) -> str:
    """``url`` with its secrets masked: the password of its user info (``user:password@``)
    and the values of query parameters like ``password=`` or ``token=``."""
    url = _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, url)
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:{MASK}@{hosts}{slash}{path}"


@dataclass(frozen=True)
class _Option:
    env: tuple[str, ...]
    parse: Callable[[Any, str, Path], Any]  # (raw value, "where: name", base folder) -> value
    fallback_env: tuple[str, ...] = ()  # read after the file


def _text(raw: Any, where: str, base: Path) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    return raw


def _path(raw: Any, where: str, base: Path) -> Path:
    text = os.fspath(raw) if isinstance(raw, os.PathLike) else _text(raw, where, base)
    return base / Path(text).expanduser()


def _bool(raw: Any, where: str, base: Path) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigError(f"{where}: expected true or false, got {raw!r}")


def parse_age(raw: str) -> float:
    """Seconds in an age like ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``; ValueError
    saying so for anything else."""
    match = _AGE.fullmatch(raw)
    if match is None:
        raise ValueError(f"expected an age like 12h, 7d or 2w, got {raw!r}")
    seconds = float(match.group(1)) * _AGE_UNITS[match.group(2)]
    if seconds > MAX_AGE:
        raise ValueError(f"{raw!r} is longer than {MAX_AGE / 86400:g} days")
    return seconds


def _age(raw: Any, where: str, base: Path) -> float:
    try:
        return parse_age(raw if isinstance(raw, str) else f"{raw}s")
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _size(raw: Any, where: str, base: Path) -> int:
    """A byte count: an integer, or text like ``64KiB``, ``200 MiB``, ``1G`` (powers of 1024)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    match = _SIZE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected a size in bytes like 65536 or 64KiB, got {raw!r}")
    number, unit = match.groups()
    return int(number) << {None: 0, "k": 10, "m": 20, "g": 30}[unit and unit.lower()]


def _url(schemes: tuple[str, ...]) -> Callable[[Any, str, Path], str]:
    """A parser of URLs with one of ``schemes``; relative file and sqlite paths made absolute."""
    expected = " or ".join(f"{s}://" for s in schemes)

    def parse(raw: Any, where: str, base: Path) -> str:
        url = _text(raw, where, base).strip()
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in schemes:
            raise ConfigError(f"{where}: {mask_url(url)!r} is not a {expected} URL")
        if scheme == "file":
            if not rest:
                raise ConfigError(f"{where}: {url!r}: write file:///path/to/folder")
            return url if rest.startswith("/") else (base / rest).as_uri()
        if scheme == "sqlite":
            if not rest.startswith("/") or rest == "/":
                hint = "write sqlite:///relative/path or sqlite:////absolute/path"
                raise ConfigError(f"{where}: {url!r}: {hint}")
            return f"sqlite:///{base / rest[1:]}"
        return url

    return parse


_OPTIONS: dict[str, _Option] = {
    "home": _Option(("WTM_HOME",), _path),
    "artifacts": _Option(("WTM_ARTIFACTS",), _url(ARTIFACT_SCHEMES)),
    "metadata": _Option(("WTM_METADATA",), _url(METADATA_SCHEMES)),
    "cache_dir": _Option(("WTM_CACHE",), _path),
    "broker_url": _Option(("WTM_BROKER_URL",), _url(BROKER_SCHEMES)),
    "s3_endpoint": _Option(("WTM_S3_ENDPOINT",), _text, ("AWS_ENDPOINT_URL",)),
    "s3_access_key": _Option(("WTM_S3_ACCESS_KEY",), _text, ("AWS_ACCESS_KEY_ID",)),
    "s3_secret_key": _Option(("WTM_S3_SECRET_KEY",), _text, ("AWS_SECRET_ACCESS_KEY",)),
    "s3_secure": _Option(("WTM_S3_SECURE",), _bool),
    "max_package_bytes": _Option(("WTM_MAX_PACKAGE_BYTES",), _size),
    "max_unpacked_bytes": _Option(("WTM_MAX_UNPACKED_BYTES",), _size),
    "inline_threshold": _Option(("WTM_INLINE_THRESHOLD",), _size),
    "cache_max_age": _Option(("WTM_CACHE_MAX_AGE",), _age),
}


def _pick(
    name: str,
    option: _Option,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    in_file: Mapping[str, Any],
    config_file: Path | None,
) -> tuple[Any, str] | None:
    """The raw value of one setting and where it came from, by precedence."""
    if name in flags:
        return flags[name], "flag"
    for var in option.env:
        if env.get(var):
            return env[var], f"env {var}"
    if name in in_file:
        return in_file[name], str(config_file)
    for var in option.fallback_env:
        if env.get(var):
            return env[var], f"env {var}"
    return None


def _find_file(flags: Mapping[str, Any], env: Mapping[str, str], here: Path) -> Path | None:
    """``wtm.toml`` in the current folder, else in the home folder given by flag or env."""
    home = flags.get("home") or env.get("WTM_HOME") or ".wtm"
    for folder in (here, here / Path(str(home)).expanduser()):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def _read_file(path: Path) -> dict[str, Any]:
    """The settings in a ``wtm.toml``, with ``[table] key`` read as ``table_key``."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    return flat
