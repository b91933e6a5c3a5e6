"""What travels between an orchestrator and a worker: JSON-only step calls and results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from runtime import ids
from runtime.values import ValueRef

WHOLE = -1  # the item index of a step that is not split by foreach


@dataclass(frozen=True)
class TaskPin:
    """The exact task a step runs: name, version and package digest, with its limits."""

    name: str
    version: str
    digest: str
    timeout: float | None = None
    max_retries: int = 0
    retry_backoff: float = 0.0
    cache: bool = False
    """Whether the result of a call may be stored in, and served from, the step cache."""
    file_ports: tuple[str, ...] = ()
    """Inputs naming a file (``format: file``): the cache knows them by the file's content."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_ports", tuple(self.file_ports))  # from JSON: a list

    def to_json(self) -> dict[str, Any]:
        """The pin as JSON-ready data (lists, as it reads back)."""
        return {**asdict(self), "file_ports": list(self.file_ports)}


@dataclass(frozen=True)
class StepCall:
    """One invocation of a task: a whole step, or one foreach chunk (``item`` >= 0)."""

    run_id: str
    step_id: str
    item: int
    task: TaskPin
    inputs: dict[str, dict[str, Any]]
    edges: list[str] = field(default_factory=list)
    attempt: int = 1

    @property
    def key(self) -> str:
        """What the run state calls this invocation: ``002``, or ``002[3]`` for a chunk."""
        return ids.chunk(self.step_id, self.item)

    def next_attempt(self) -> StepCall:
        """The same invocation, one attempt later."""
        return replace(self, attempt=self.attempt + 1)

    def input_refs(self) -> dict[str, ValueRef]:
        return {port: ValueRef.from_json(ref) for port, ref in self.inputs.items()}

    def to_json(self) -> dict[str, Any]:
        """The call as JSON-ready data, sharing its input values (not copied: ``asdict``
        deep-copied every inline value, a tenth of the local executor's own time on the
        face batch)."""
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "item": self.item,
            "task": self.task.to_json(),
            "inputs": self.inputs,
            "edges": list(self.edges),
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepCall:
        return cls(**{**data, "task": TaskPin(**data["task"]), "edges": list(data["edges"])})

    def label(self) -> str:
        return f"step {self.key} ({self.task.name}@{self.task.version})"


@dataclass(frozen=True)
class StepResult:
    """What a finished invocation produced."""

    outputs: dict[str, dict[str, Any]]
    seconds: float
    worker: str

    def output_refs(self) -> dict[str, ValueRef]:
        return {port: ValueRef.from_json(ref) for port, ref in self.outputs.items()}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data, sharing the output values (see :meth:`StepCall.to_json`)."""
        return {"outputs": self.outputs, "seconds": self.seconds, "worker": self.worker}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepResult:
        return cls(**data)
