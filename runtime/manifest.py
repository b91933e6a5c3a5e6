"""Task and Pipeline manifests: load, check against the format's JSON Schema, build models.

Semantic checks that need more than one manifest (references, task versions,
port compatibility, cycles) live in :mod:`runtime.validate`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from runtime.problems import ManifestError, Problem
from runtime.yamlsource import Key, Located, load_yaml

if TYPE_CHECKING:  # lark loads only for a manifest with a when (60 ms of every command)
    from runtime.conditions import Condition
    from runtime.conditions import Reference as ConditionReference

Kind = Literal["Task", "Pipeline"]
KINDS: tuple[Kind, ...] = ("Task", "Pipeline")
MAX_SCHEMA_ERRORS = 50
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_REFERENCE = re.compile(r"^\$(inputs|[A-Za-z0-9][A-Za-z0-9-]*)\.([a-z_][a-z0-9_]*)$")


@cache
def format_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a manifest kind (``task`` or ``pipeline``), as shipped."""
    text = resources.files("runtime.schemas").joinpath(f"{kind.lower()}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(format_schema(kind))


MAX_DURATION = 7 * 24 * 3600.0
"""Longest timeout or retry backoff, in seconds (168h). Durations feed ``setitimer``,
Celery's time limits and countdowns and monotonic deadlines, which all need finite
numbers: ``timeout: .inf`` once passed validation and then failed every run with
OverflowError (issue 13). A week is past any step wtm runs; longer work belongs in
several steps or outside one task call."""


def parse_duration(value: str | float | int) -> float:
    """Seconds in a duration like ``500ms``, ``30s``, ``5m``; plain numbers are seconds.

    Raises ValueError, saying what a duration must be, for text of another form and
    for anything not from 0 to :data:`MAX_DURATION` (NaN and infinities included).
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError("must be a duration like 500ms, 30s, 5m or 1h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 <= seconds <= MAX_DURATION:  # False for NaN too
        raise ValueError(f"must be a duration from 0 to {MAX_DURATION / 3600:g}h")
    return seconds


@dataclass(frozen=True)
class Port:
    """A typed input or output of a task or pipeline."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = True
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class Requirement:
    """A pip requirement a task needs; ``module`` is what to import to check it."""

    requirement: str
    no_deps: bool = False
    module: str | None = None


@dataclass(frozen=True)
class TaskManifest:
    """A task plugin's manifest."""

    name: str
    version: str
    description: str
    entrypoint: str
    requirements: tuple[Requirement, ...]
    timeout: float | None
    max_retries: int
    retry_backoff: float
    inputs: dict[str, Port]
    outputs: dict[str, Port]
    source: Located = field(repr=False, compare=False)
    cache: bool = False
    """Whether a result may be reused for the same package and input data."""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Reference:
    """``$inputs.NAME`` (step is None) or ``$STEP.PORT``."""

    step: str | None
    port: str

    @classmethod
    def parse(cls, text: str) -> Reference | None:
        match = _REFERENCE.match(text)
        if not match:
            return None
        step = match.group(1)
        return cls(None if step == "inputs" else step, match.group(2))

    def __str__(self) -> str:
        return f"${self.step or 'inputs'}.{self.port}"


@dataclass(frozen=True)
class Binding:
    """What feeds one input port of a step: a reference or a constant."""

    port: str
    reference: Reference | None = None
    constant: Any = None
    key: Key = ()


@dataclass(frozen=True)
class Foreach:
    """Split the array at ``source`` into chunks, one task invocation per chunk on ``port``."""

    port: str
    source: Reference
    chunk: int = 1
    key: Key = ()


@dataclass(frozen=True)
class Step:
    """One step of a pipeline."""

    id: str
    task: str
    constraint: str
    bindings: dict[str, Binding]
    foreach: Foreach | None
    index: int
    cache: bool = True
    """False: never reuse a cached result for this step (its task must opt in as well)."""
    when: Condition | None = None
    """The condition the step runs under (see :mod:`runtime.conditions`)."""

    @property
    def key(self) -> Key:
        return ("steps", self.index)

    def references(self) -> list[tuple[Reference, Key]]:
        """Every reference this step reads, its condition's included, with its manifest
        position."""
        refs = self.input_references()
        if self.when is not None:
            refs += [(condition_reference(r), (*self.key, "when")) for r in self.when.references]
        return refs

    def input_references(self) -> list[tuple[Reference, Key]]:
        """The references feeding the step's inputs (bindings and foreach)."""
        refs = [(b.reference, b.key) for b in self.bindings.values() if b.reference]
        if self.foreach:
            refs.append((self.foreach.source, self.foreach.key))
        return refs


def condition_reference(ref: ConditionReference) -> Reference:
    """A condition's reference as a manifest :class:`Reference`."""
    return Reference(None if ref.source == "inputs" else ref.source, ref.port)


@dataclass(frozen=True)
class JoinOutput:
    """A pipeline output merging arrays of objects from several steps by a shared key."""

    key_field: str
    sources: dict[str, Reference]


@dataclass(frozen=True)
class PipelineManifest:
    """A pipeline manifest."""

    name: str
    version: str
    description: str
    inputs: dict[str, Port]
    steps: tuple[Step, ...]
    outputs: dict[str, Reference | JoinOutput]
    source: Located = field(repr=False, compare=False)

    @cached_property
    def _steps_by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}

    def step(self, step_id: str) -> Step:
        """The step with ID ``step_id`` (KeyError if there is none)."""
        return self._steps_by_id[step_id]


def load_manifest(path: str | Path, text: str | None = None) -> TaskManifest | PipelineManifest:
    """Load and schema-check a manifest of either kind; raises :class:`ManifestError`."""
    located = load_yaml(path, text)
    kind = _kind(located)
    _check_format(located, kind)
    return parse_task(located) if kind == "Task" else parse_pipeline(located)


def load_task(path: str | Path) -> TaskManifest:
    """Load a Task manifest; raises :class:`ManifestError` for anything else."""
    manifest = load_manifest(path)
    if not isinstance(manifest, TaskManifest):
        raise ManifestError([manifest.source.problem(("kind",), "expected kind: Task")])
    return manifest


def load_pipeline(path: str | Path) -> PipelineManifest:
    """Load a Pipeline manifest; raises :class:`ManifestError` for anything else."""
    manifest = load_manifest(path)
    if not isinstance(manifest, PipelineManifest):
        raise ManifestError([manifest.source.problem(("kind",), "expected kind: Pipeline")])
    return manifest


def _kind(located: Located) -> Kind:
    data = located.data
    if not isinstance(data, dict):
        raise ManifestError([located.problem((), "a manifest is a YAML mapping (key: value)")])
    kind = data.get("kind")
    if kind not in KINDS:
        where: Key = ("kind",) if "kind" in data else ()
        found = f"got {kind!r}" if "kind" in data else "it is missing"
        raise ManifestError([located.problem(where, f"kind must be Task or Pipeline; {found}")])
    return kind


def _check_format(located: Located, kind: Kind) -> None:
    validator = _validator(kind)
    found = sorted(validator.iter_errors(located.data), key=lambda e: list(map(str, e.path)))
    problems = [_schema_problem(located, e) for e in found[:MAX_SCHEMA_ERRORS]]
    if problems:
        raise ManifestError(sorted(set(problems)))


def _schema_problem(located: Located, error: ValidationError) -> Problem:
    if error.validator in ("oneOf", "anyOf") and error.context:
        error = best_match(error.context)
    key = tuple(error.absolute_path)
    field_name = ".".join(str(k) for k in key) or "manifest"
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if "propertyNames" in error.schema_path:
        return located.problem(
            (*key, error.instance),
            f"{field_name}: name {error.instance!r} {custom or 'is not allowed'}",
            at_key=True,
        )
    match error.validator:
        case "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            name = extra[0] if extra else "?"
            return located.problem(
                (*key, name),
                f"unknown field {name!r} in {field_name} (allowed: {allowed})",
                at_key=True,
            )
        case "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            return located.problem(
                key,
                f"{field_name}: missing required field "
                f"{missing[0] if missing else error.message!r}",
            )
        case "propertyNames":
            return located.problem(
                key, f"{field_name}: name {error.instance!r} {custom or 'is not allowed'}"
            )
        case "type":
            got = _type_name(error.instance)
            if custom:
                return located.problem(key, f"{field_name} {custom}; got {got}")
            expected = _types(error.validator_value)
            return located.problem(key, f"{field_name}: expected {expected}, got {got}")
        case "const":
            return located.problem(key, f"{field_name} must be {error.validator_value!r}")
        case _ if custom:
            return located.problem(key, f"{field_name} {custom}; got {_short(error.instance)}")
        case _:
            return located.problem(key, f"{field_name}: {_short_message(error.message)}")


def _types(expected: str | list[str]) -> str:
    return " or ".join(expected) if isinstance(expected, list) else expected


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _short_message(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= 160 else message[:157] + "..."


def _ports(data: dict[str, Any], *, inputs: bool) -> dict[str, Port]:
    ports = {}
    for name, spec in (data or {}).items():
        has_default = "default" in spec
        required = inputs and spec.get("required", True) and not has_default
        ports[name] = Port(
            name,
            spec["schema"],
            spec.get("description", ""),
            bool(required),
            spec.get("default"),
            has_default,
        )
    return ports


def parse_task(located: Located) -> TaskManifest:
    """Build a :class:`TaskManifest` from schema-checked data; bad durations are problems.

    Durations are checked here rather than only by the format schema, since a
    registry record is parsed without it and ``1000h`` is well-formed text.
    """
    data = located.data
    retries = data.get("retries", {})
    problems: list[Problem] = []
    timeout = _seconds(located, ("timeout",), data.get("timeout"), problems)
    if timeout == 0:
        message = "timeout must be longer than 0; leave it out for no limit"
        problems.append(located.problem(("timeout",), message))
    backoff = _seconds(located, ("retries", "backoff"), retries.get("backoff", 0), problems)
    if problems:
        raise ManifestError(problems)
    requirements = tuple(
        Requirement(r)
        if isinstance(r, str)
        else Requirement(r["requirement"], r.get("no_deps", False), r.get("module"))
        for r in data.get("requirements", [])
    )
    return TaskManifest(
        name=data["name"],
        version=data["version"],
        description=data.get("description", ""),
        entrypoint=data["entrypoint"],
        requirements=requirements,
        timeout=timeout,
        max_retries=retries.get("max", 0),
        retry_backoff=backoff or 0.0,
        inputs=_ports(data.get("inputs", {}), inputs=True),
        outputs=_ports(data["outputs"], inputs=False),
        source=located,
        cache=data.get("cache", False),
    )


def _seconds(located: Located, key: Key, value: Any, problems: list[Problem]) -> float | None:
    """The duration at ``key`` in seconds; None if absent or bad (a problem is added)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        name = ".".join(key)
        problems.append(located.problem(key, f"{name} {exc}; got {_short(value)}"))
        return None


def parse_pipeline(located: Located) -> PipelineManifest:
    """Build a :class:`PipelineManifest`; bad references are reported as problems."""
    data = located.data
    problems: list[Problem] = []
    steps = tuple(_step(located, i, raw, problems) for i, raw in enumerate(data["steps"]))
    outputs: dict[str, Reference | JoinOutput] = {}
    for name, spec in data.get("outputs", {}).items():
        if isinstance(spec, str):
            outputs[name] = _reference(located, ("outputs", name), spec, problems)
        else:
            sources = {
                k: _reference(located, ("outputs", name, "from", k), v, problems)
                for k, v in spec["from"].items()
            }
            outputs[name] = JoinOutput(spec["join"], sources)
    if problems:
        raise ManifestError(problems)
    return PipelineManifest(
        name=data["name"],
        version=data["version"],
        description=data.get("description", ""),
        inputs=_ports(data.get("inputs", {}), inputs=True),
        steps=steps,
        outputs=outputs,
        source=located,
    )


def _reference(located: Located, key: Key, text: str, problems: list[Problem]) -> Reference:
    ref = Reference.parse(text)
    if ref is None:
        problems.append(
            located.problem(key, f"{text!r} is not a reference like $inputs.NAME or $STEP_ID.PORT")
        )
        return Reference(None, "?")
    return ref


def _step(located: Located, index: int, raw: dict[str, Any], problems: list[Problem]) -> Step:
    key: Key = ("steps", index)
    name, _, constraint = raw["task"].partition("@")
    bindings = {}
    for port, value in raw.get("with", {}).items():
        bkey = (*key, "with", port)
        if isinstance(value, str) and value.startswith("$$"):
            bindings[port] = Binding(port, constant=value[1:], key=bkey)
        elif isinstance(value, str) and value.startswith("$"):
            ref = _reference(located, bkey, value, problems)
            bindings[port] = Binding(port, reference=ref, key=bkey)
        else:
            bindings[port] = Binding(port, constant=value, key=bkey)
    foreach = None
    if "foreach" in raw:
        spec = raw["foreach"]
        source = _reference(located, (*key, "foreach", "from"), spec["from"], problems)
        foreach = Foreach(spec["port"], source, spec.get("chunk", 1), (*key, "foreach", "from"))
    return Step(
        raw["id"],
        name,
        constraint or "latest",
        bindings,
        foreach,
        index,
        raw.get("cache", True),
        _condition(located, (*key, "when"), raw["when"], problems) if "when" in raw else None,
    )


def _condition(located: Located, key: Key, text: str, problems: list[Problem]) -> Condition | None:
    from runtime.conditions import ConditionError, parse

    try:
        return parse(text)
    except ConditionError as exc:
        problems.append(located.problem_inside(key, exc.column, f"when: {exc}"))
        return None
