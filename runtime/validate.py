"""Semantic checks of a pipeline against the tasks it uses.

Every problem carries the ``file:line:column`` of the node at fault. The
checks: duplicate step IDs, unknown tasks or versions, unknown steps and
ports in references, missing required inputs, constants that break a port's
schema, outputs that cannot feed the inputs they are mapped to, foreach
misuse, cycles, and (as warnings) pipeline inputs nothing reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from runtime.catalog import TaskCatalog, UnknownTask, resolve
from runtime.compat import incompatibilities
from runtime.graph import PipelineGraph, compile_pipeline, dependencies, find_cycle
from runtime.manifest import (
    JoinOutput,
    PipelineManifest,
    Reference,
    Step,
    TaskManifest,
    condition_reference,
)
from runtime.problems import ManifestError, Problem, errors
from runtime.versions import ConstraintError, parse_constraint
from runtime.yamlsource import Key, Located


@dataclass(frozen=True)
class CheckedPipeline:
    """A pipeline that passed every check, its resolved tasks and its compiled graph."""

    pipeline: PipelineManifest
    graph: PipelineGraph
    warnings: list[Problem]


def check_pipeline(pipeline: PipelineManifest, catalog: TaskCatalog) -> CheckedPipeline:
    """Run every check; raise :class:`ManifestError` on errors, return the graph otherwise."""
    checker = _Checker(pipeline, catalog)
    problems = check_ports(pipeline.source, "inputs", pipeline.inputs) + checker.run()
    if errors(problems):
        raise ManifestError(sorted(problems))
    graph = compile_pipeline(pipeline, checker.tasks)
    return CheckedPipeline(pipeline, graph, sorted(problems))


class _Checker:
    def __init__(self, pipeline: PipelineManifest, catalog: TaskCatalog) -> None:
        self.pipeline = pipeline
        self.catalog = catalog
        self.src: Located = pipeline.source
        self.steps: dict[str, Step] = {}
        self.tasks: dict[str, TaskManifest] = {}
        self.problems: list[Problem] = []
        self.compat_cache: dict[tuple[int, int], list[str]] = {}

    def error(self, key: Key, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.src.problem(key, message, at_key=at_key))

    def run(self) -> list[Problem]:
        self._collect_steps()
        for step in self.pipeline.steps:
            if self.steps.get(step.id) is step and step.id in self.tasks:
                self._check_step(step, self.tasks[step.id])
        self._check_cycles()
        self._check_outputs()
        self._warn_unused_inputs()
        return self.problems

    def _collect_steps(self) -> None:
        resolved: dict[tuple[str, str], TaskManifest | str] = {}
        for step in self.pipeline.steps:
            if step.id in self.steps:
                first = self.steps[step.id].index + 1
                self.error(
                    (*step.key, "id"),
                    f"duplicate step ID {step.id!r} (first used by step #{first})",
                )
                continue
            self.steps[step.id] = step
            wanted = (step.task, step.constraint)
            if wanted not in resolved:
                resolved[wanted] = self._resolve(step)
            found = resolved[wanted]
            if isinstance(found, str):
                self.error((*step.key, "task"), f"step {step.id}: {found}")
            else:
                self.tasks[step.id] = found

    def _resolve(self, step: Step) -> TaskManifest | str:
        try:
            parse_constraint(step.constraint)
            return resolve(self.catalog, step.task, step.constraint)
        except (ConstraintError, UnknownTask) as exc:
            return str(exc)

    def _check_step(self, step: Step, task: TaskManifest) -> None:
        label = f"step {step.id} ({task.key})"
        for port, binding in step.bindings.items():
            if port not in task.inputs:
                self.error(
                    binding.key,
                    f"{label} has no input port {port!r} (inputs: {_names(task.inputs)})",
                    at_key=True,
                )
                continue
            schema = task.inputs[port].schema
            if binding.reference:
                self._check_reference(step, binding.reference, binding.key, schema, label, port)
            else:
                self._check_constant(binding.constant, binding.key, schema, label, port)
        if step.when is not None:
            self._check_condition(step, label)
        self._check_conditional_inputs(step, label)
        fed = set(step.bindings)
        if step.foreach:
            fed.add(step.foreach.port)
            self._check_foreach(step, task, label)
        missing = [p.name for p in task.inputs.values() if p.required and p.name not in fed]
        if missing:
            where = (
                (*step.key, "with")
                if "with" in self.src.data["steps"][step.index]
                else (*step.key, "id")
            )
            self.error(
                where, f"{label}: missing required input {', '.join(repr(m) for m in missing)}"
            )

    def _check_foreach(self, step: Step, task: TaskManifest, label: str) -> None:
        foreach = step.foreach
        assert foreach is not None
        key = (*step.key, "foreach", "port")
        if foreach.port not in task.inputs:
            self.error(
                key,
                f"{label}: foreach port {foreach.port!r} is not an input "
                f"(inputs: {_names(task.inputs)})",
            )
            return
        if foreach.port in step.bindings:
            self.error(
                step.bindings[foreach.port].key,
                f"{label}: port {foreach.port!r} is fed by foreach; remove it from with",
                at_key=True,
            )
        if task.inputs[foreach.port].schema.get("type") != "array":
            self.error(key, f"{label}: foreach port {foreach.port!r} must take an array")
        not_arrays = [p.name for p in task.outputs.values() if p.schema.get("type") != "array"]
        if not_arrays:
            self.error(
                (*step.key, "foreach"),
                f"{label}: foreach needs array outputs to "
                f"concatenate; {', '.join(not_arrays)} are not arrays",
            )
        self._check_reference(
            step, foreach.source, foreach.key, task.inputs[foreach.port].schema, label, foreach.port
        )

    def _check_condition(self, step: Step, label: str) -> None:
        """The references of the step's ``when``: known, and not its own outputs."""
        assert step.when is not None
        key = (*step.key, "when")
        for ref in step.when.references:
            if ref.source == step.id:
                message = f"{label}: when reads its own output {ref.text}"
            else:
                _, why = self._producer_schema(condition_reference(ref))
                if why is None:
                    continue
                message = f"{label}: when: {why}"
            self.problems.append(self.src.problem_inside(key, ref.column, message))

    def _check_conditional_inputs(self, step: Step, label: str) -> None:
        """Warn of a step reading a conditional step's outputs without a ``when`` of its
        own: it is skipped whenever its source is, which its own ``when`` states."""
        if step.when is not None:
            return
        for ref, key in step.input_references():
            source = self.steps.get(ref.step or "")
            if source is not None and source.when is not None:
                message = (
                    f"{label} reads {ref}, but step {source.id} runs only when "
                    f"{source.when.text}: {step.id} is skipped whenever {source.id} is "
                    f"(give {step.id} a when to say so)"
                )
                self.problems.append(self.src.problem(key, message, warning=True))

    def _producer_schema(self, ref: Reference) -> tuple[dict[str, Any] | None, str | None]:
        """The schema a reference yields, or (None, why not)."""
        if ref.step is None:
            port = self.pipeline.inputs.get(ref.port)
            if port is None:
                return (
                    None,
                    f"unknown pipeline input {ref.port!r} (inputs: {_names(self.pipeline.inputs)})",
                )
            return port.schema, None
        if ref.step not in self.steps:
            return None, f"unknown step {ref.step!r} (steps: {', '.join(self.steps)})"
        producer = self.tasks.get(ref.step)
        if producer is None:
            return None, None
        if ref.port not in producer.outputs:
            return (
                None,
                f"step {ref.step} ({producer.key}) has no output port {ref.port!r} "
                f"(outputs: {_names(producer.outputs)})",
            )
        return producer.outputs[ref.port].schema, None

    def _check_reference(
        self, step: Step, ref: Reference, key: Key, schema: dict[str, Any], label: str, port: str
    ) -> None:
        if ref.step == step.id:
            self.error(key, f"{label} reads its own output {ref}")
            return
        produced, why = self._producer_schema(ref)
        if why:
            self.error(key, f"{label}: {why}")
        if produced is None:
            return
        cache_key = (id(produced), id(schema))
        if cache_key not in self.compat_cache:
            self.compat_cache[cache_key] = incompatibilities(produced, schema)
        for reason in self.compat_cache[cache_key]:
            self.error(key, f"{ref} cannot feed input {port!r} of {label}: {reason}")

    def _check_constant(
        self, value: Any, key: Key, schema: dict[str, Any], label: str, port: str
    ) -> None:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(value)
        )
        if error is not None:
            self.error(
                key,
                f"constant for input {port!r} of {label} is invalid: "
                f"{' '.join(error.message.split())[:160]}",
            )

    def _check_cycles(self) -> None:
        deps = dependencies(self.pipeline)
        cycle = find_cycle({s: deps[s] for s in self.steps})
        if cycle:
            first = self.steps[cycle[0]]
            self.error((*first.key, "id"), "cycle: " + " -> ".join(cycle))

    def _check_outputs(self) -> None:
        for name, spec in self.pipeline.outputs.items():
            if isinstance(spec, Reference):
                _, why = self._producer_schema(spec)
                if why:
                    self.error(("outputs", name), f"output {name!r}: {why}")
                continue
            self._check_join(name, spec)

    def _check_join(self, name: str, join: JoinOutput) -> None:
        for section, ref in join.sources.items():
            key = ("outputs", name, "from", section)
            schema, why = self._producer_schema(ref)
            if why:
                self.error(key, f"output {name!r}: {why}")
            if schema is None:
                continue
            items = schema.get("items", {}) if schema.get("type") == "array" else None
            if items is None:
                self.error(key, f"output {name!r}: {ref} must be an array to join")
            elif join.key_field not in items.get("required", []):
                self.error(
                    key,
                    f"output {name!r}: items of {ref} do not declare the join "
                    f"key {join.key_field!r} as required",
                )

    def _warn_unused_inputs(self) -> None:
        used = {r.port for s in self.pipeline.steps for r, _ in s.references() if r.step is None}
        for out in self.pipeline.outputs.values():
            refs = out.sources.values() if isinstance(out, JoinOutput) else [out]
            used |= {r.port for r in refs if r.step is None}
        for name in self.pipeline.inputs:
            if name not in used:
                self.problems.append(
                    self.src.problem(
                        ("inputs", name),
                        f"pipeline input {name!r} is never used",
                        at_key=True,
                        warning=True,
                    )
                )


def _names(ports: Mapping[str, object]) -> str:
    return ", ".join(ports) or "none"


def check_ports(source: Located, section: str, ports: Mapping[str, Any]) -> list[Problem]:
    """Port schemas must be valid JSON Schemas and defaults must satisfy them."""
    problems = []
    validator_cls = jsonschema.Draft202012Validator
    for name, port in ports.items():
        try:
            validator_cls.check_schema(port.schema)
        except jsonschema.SchemaError as exc:
            where = (section, name, "schema", *exc.absolute_path)
            problems.append(
                source.problem(
                    where,
                    f"{section} port {name!r}: invalid JSON "
                    f"Schema: {' '.join(exc.message.split())[:160]}",
                )
            )
            continue
        if port.has_default:
            error = jsonschema.exceptions.best_match(
                validator_cls(port.schema).iter_errors(port.default)
            )
            if error is not None:
                problems.append(
                    source.problem(
                        (section, name, "default"),
                        f"default of {section} port {name!r} is invalid: "
                        f"{' '.join(error.message.split())[:160]}",
                    )
                )
    return problems


def check_task(task: TaskManifest) -> list[Problem]:
    """Problems of a task manifest beyond its format: bad port schemas and defaults."""
    return check_ports(task.source, "inputs", task.inputs) + check_ports(
        task.source, "outputs", task.outputs
    )
