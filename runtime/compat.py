"""Can a value of one JSON Schema always feed a port of another?

A conservative structural check, not a full schema-subsumption proof: it
finds the mistakes people make when wiring steps (a type mismatch, an array
where an object is expected, a required property the producer never declares)
and stays silent where it cannot tell.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _types(schema: Schema) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        if "const" in schema:
            return {_json_type(schema["const"])}
        if "enum" in schema:
            return {_json_type(v) for v in schema["enum"]}
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepts(consumer: set[str], produced: str) -> bool:
    return produced in consumer or (produced == "integer" and "number" in consumer)


def incompatibilities(producer: Schema, consumer: Schema, where: str = "") -> list[str]:
    """Reasons a value valid for ``producer`` may be invalid for ``consumer`` (empty if none)."""
    at = f" at {where}" if where else ""
    produced, accepted = _types(producer), _types(consumer)
    if produced is not None and accepted is not None:
        wrong = sorted(t for t in produced if not _accepts(accepted, t))
        if wrong:
            return [
                f"type mismatch{at}: produces {' or '.join(wrong)}, "
                f"expects {' or '.join(sorted(accepted))}"
            ]
    problems: list[str] = []
    if "enum" in consumer and "enum" in producer:
        extra = [v for v in producer["enum"] if v not in consumer["enum"]]
        if extra:
            problems.append(f"values{at} {extra!r} are not accepted (enum {consumer['enum']!r})")
    both = (produced or set()) & (accepted or set())
    if "object" in both or (produced is None and "properties" in producer):
        problems += _object_problems(producer, consumer, where)
    if (
        "array" in both
        and isinstance(producer.get("items"), dict)
        and isinstance(consumer.get("items"), dict)
    ):
        problems += incompatibilities(producer["items"], consumer["items"], f"{where}[]")
    return problems


def _object_problems(producer: Schema, consumer: Schema, where: str) -> list[str]:
    problems = []
    declared = producer.get("properties", {})
    guaranteed = set(producer.get("required", []))
    open_ended = producer.get("additionalProperties", True) is not False and not declared
    for name in consumer.get("required", []):
        if name in guaranteed or open_ended:
            continue
        path = f"{where}.{name}" if where else name
        if name in declared:
            problems.append(f"requires property '{path}' that the producer declares optional")
        else:
            problems.append(f"requires property '{path}' that the producer does not declare")
    for name, sub in consumer.get("properties", {}).items():
        if name in declared and isinstance(sub, dict) and isinstance(declared[name], dict):
            path = f"{where}.{name}" if where else name
            problems += incompatibilities(declared[name], sub, path)
    return problems
