"""Check values against port schemas at a step boundary, naming port, step and JSON path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from runtime.manifest import Port


class PortError(ValueError):
    """A value that breaks its port's schema, or a port without a value."""


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


def _validator_for(port: Port) -> jsonschema.Draft202012Validator:
    return _validator(json.dumps(port.schema, sort_keys=True))


def json_path(path: Any) -> str:
    """``$.faces[0].bbox`` for a jsonschema error path."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def check_inputs(
    ports: Mapping[str, Port], values: Mapping[str, Any], label: str
) -> dict[str, Any]:
    """Values with defaults filled in; raises :class:`PortError` on a missing or bad value."""
    unknown = sorted(set(values) - set(ports))
    if unknown:
        raise PortError(f"{label}: unknown input port {unknown[0]!r}")
    checked = dict(values)
    for name, port in ports.items():
        if name not in checked:
            if port.has_default:
                checked[name] = port.default
                continue
            if port.required:
                raise PortError(f"{label}: input {name!r} is missing")
            continue
        check_value(port, checked[name], f"{label}: input {name!r}")
    return checked


def check_outputs(ports: Mapping[str, Port], values: Any, label: str) -> dict[str, Any]:
    """The outputs a task returned, checked; raises :class:`PortError`."""
    if not isinstance(values, Mapping):
        raise PortError(
            f"{label}: the task returned {type(values).__name__}, "
            "expected a mapping of output port -> value"
        )
    missing = [name for name in ports if name not in values]
    if missing:
        raise PortError(f"{label}: output {missing[0]!r} is missing")
    unknown = sorted(set(values) - set(ports))
    if unknown:
        raise PortError(f"{label}: unknown output port {unknown[0]!r}")
    for name, port in ports.items():
        check_value(port, values[name], f"{label}: output {name!r}")
    return dict(values)


def check_value(port: Port, value: Any, where: str) -> None:
    """Raise :class:`PortError` naming ``where`` and the JSON path if ``value`` breaks
    ``port``'s schema."""
    error = next(_validator_for(port).iter_errors(value), None)
    if error is not None:
        if error.context:
            error = best_match(error.context)
        message = " ".join(error.message.split())
        if len(message) > 200:
            message = message[:197] + "..."
        raise PortError(f"{where} at {json_path(error.absolute_path)}: {message}")
