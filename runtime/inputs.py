"""A run's pipeline inputs as a user gives them, made ready before the run is created.

``NAME=VALUE`` pairs and JSON-lines rows become values, defaults fill the gaps, and every
value is checked against its input's schema, so a bad input is refused with one line
naming it instead of failing a step later (issue 13).

A string is a value, never a file by accident: only an input whose schema says
``format: file`` names a file. Its value must be an existing local file (made absolute,
so workers started elsewhere find it) or an ``artifact://`` URI; the celery executor
uploads such files (:mod:`runtime.executors.uploads`), and nothing else is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runtime.manifest import PipelineManifest, Port
from runtime.portcheck import PortError, check_value
from runtime.stores.artifacts import URI_PREFIX, file_sha256, parse_artifact_uri

FILE_FORMAT = "file"
"""The schema ``format`` of an input naming a file: ``{type: string, format: file}``."""


class InputError(ValueError):
    """Inputs a run cannot start with; the message is one line naming the input."""


def is_file_input(port: Port) -> bool:
    """Whether ``port`` takes a file (a path or an ``artifact://`` URI)."""
    return port.schema.get("format") == FILE_FORMAT


def file_data_id(value: str) -> str | None:
    """The data ID of a file input's value: the sha256 of the file's content, for a local
    path as for an ``artifact://`` URI (the same image has the same ID on every executor,
    and a file changed in place gets a new one, so no cached result of the old one is
    reused); None if the file cannot be read (its step will say so)."""
    if value.startswith(URI_PREFIX):
        return "sha256:" + parse_artifact_uri(value)
    try:
        return "sha256:" + file_sha256(value)
    except OSError:
        return None


def shorten(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error lines."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_pairs(pipeline: PipelineManifest, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as values: the text for string inputs, JSON otherwise."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise InputError(f"--input {shorten(pair)}: write NAME=VALUE")
        port = pipeline.inputs.get(name)
        if port is None:
            raise InputError(
                f"--input {shorten(name)}: the pipeline has no input {shorten(name)} "
                f"(inputs: {', '.join(pipeline.inputs) or 'none'})"
            )
        values[name] = raw if port.schema.get("type") == "string" else _json(name, raw)
    return values


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"--input {name}: {shorten(raw)} is not a JSON value") from None


def jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(FILE:LINE, inputs)`` of each non-blank line of a JSON-lines file of inputs."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise InputError(f"{where}: not JSON: {getattr(exc, 'msg', exc)}") from None
                if not isinstance(row, dict):
                    raise InputError(
                        f"{where}: expected a JSON object of inputs, got {type(row).__name__}"
                    )
                yield where, row
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def complete(
    pipeline: PipelineManifest, values: Mapping[str, Any], where: str = ""
) -> dict[str, Any]:
    """The inputs of one run: defaults filled in, files resolved, every value checked
    against its schema. ``where`` (like ``FILE:LINE``) starts each error line."""
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(pipeline.inputs))
    if unknown:
        raise InputError(
            f"{prefix}the pipeline has no input {shorten(unknown[0])} "
            f"(inputs: {', '.join(pipeline.inputs) or 'none'})"
        )
    full = dict(values)
    for name, port in pipeline.inputs.items():
        if name not in full:
            if port.has_default:
                full[name] = port.default
            elif port.required:
                raise InputError(f"{prefix}missing input {name!r}: pass --input {name}=VALUE")
            continue
        if is_file_input(port):
            full[name] = _file(full[name], f"{prefix}input {name!r}")
        try:
            check_value(port, full[name], f"{prefix}input {name!r}")
        except PortError as exc:
            raise InputError(str(exc)) from None
    return full


def _file(value: Any, where: str) -> Any:
    """An absolute path for an existing file, or an ``artifact://`` URI as it is."""
    if not isinstance(value, str):
        return value  # the schema check names the type
    if value.startswith(URI_PREFIX):
        try:
            parse_artifact_uri(value)
        except ValueError:
            raise InputError(f"{where}: {shorten(value)} is not an artifact:// URI") from None
        return value
    path = Path(value)
    try:
        found = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        found = False
    if not found:
        what = "a folder, not a file" if _is_dir(path) else "no such file"
        raise InputError(f"{where}: {what}: {shorten(value)}")
    return str(path.resolve())


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False
