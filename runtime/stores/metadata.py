"""The metadata store interface and its records: plugins, runs, steps and lineage values.

Records are frozen dataclasses holding JSON-ready fields; every timestamp is a
UTC ISO 8601 string with microseconds (normalized on construction, so they
sort as text in every backend). Backends share the rules written here:
:func:`step_update_allowed` for redelivered steps, :func:`apply_run_update`
for run updates.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Self

RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
ACTIVE_RUN_STATUSES = ("pending", "running")
STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
NO_ITEM = -1
"""The ``item`` of a step that is not one chunk of a foreach."""


def utc_now() -> str:
    """Now, as a UTC ISO 8601 string."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_iso(value: str | datetime) -> str:
    """``value`` as a UTC ISO 8601 string with microseconds; naive times are taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def plugin_ref(name: str, version: str, digest: str) -> str:
    """How a run names a plugin it uses: ``name@version#digest``."""
    return f"{name}@{version}#{digest}"


@dataclass(frozen=True)
class Record:
    """Shared behaviour of records: timestamp normalization, status check, dict round trip."""

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ()
    STATUSES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.TIMESTAMPS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc_iso(value))
        status = getattr(self, "status", None)
        if self.STATUSES and status not in self.STATUSES:
            raise ValueError(f"{type(self).__name__}: unknown status {status!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (a deep copy)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """A record from a dict; keys that are not fields are ignored."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class PluginRecord(Record):
    """An installed plugin version: its package and its ports."""

    name: str
    version: str
    digest: str
    size: int
    object_key: str
    manifest: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    source: str = "registry"
    installed_at: str = field(default_factory=utc_now)

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ("installed_at",)

    @property
    def ref(self) -> str:
        """``name@version#digest``, as runs record it."""
        return plugin_ref(self.name, self.version, self.digest)


@dataclass(frozen=True)
class PipelineRecord(Record):
    """A registered pipeline version: its manifest text, checked when it was registered."""

    name: str
    version: str
    digest: str
    """sha256 of ``text``: the same version with other content is refused."""
    text: str
    description: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    registered_at: str = field(default_factory=utc_now)

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ("registered_at",)


@dataclass(frozen=True)
class RunRecord(Record):
    """One run of a pipeline."""

    run_id: str
    pipeline: str
    pipeline_version: str
    inputs: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    executor: str = "local"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    batch_id: str | None = None
    owner: str | None = None
    """The process driving a local run (``host:pid:start``): when it is gone, so is the run."""

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ("created_at", "started_at", "finished_at")
    STATUSES: ClassVar[tuple[str, ...]] = RUN_STATUSES


@dataclass(frozen=True)
class StepRecord(Record):
    """One execution of a step (or of one foreach chunk of it, ``item`` >= 0)."""

    run_id: str
    step_id: str
    item: int = NO_ITEM
    task: str = ""
    task_version: str = ""
    digest: str = ""
    input_id: str = ""
    output_id: str = ""
    status: str = "pending"
    attempt: int = 1
    worker: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)
    error: str | None = None
    traceback_tail: str | None = None
    cached_from: str | None = None
    """Served from the step cache: the execution that computed it (``RUN_ID/STEP[ITEM]``)."""

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ("started_at", "finished_at")
    STATUSES: ClassVar[tuple[str, ...]] = STEP_STATUSES


@dataclass(frozen=True)
class ValueRecord(Record):
    """A value of a run and where it came from: inline when small, else by ``uri``."""

    run_id: str
    value_id: str
    data_id: str
    producer: str
    port: str
    value: Any = None
    uri: str | None = None
    size: int = 0
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheEntry(Record):
    """A step execution that can be reused: ``key`` names its package and input data IDs
    (see :mod:`runtime.executors.cache`); ``outputs`` are its outputs' ValueRef JSON."""

    key: str
    task: str
    task_version: str
    digest: str
    run_id: str
    step_id: str
    item: int = NO_ITEM
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    size: int = 0
    created_at: str = field(default_factory=utc_now)
    artifacts: list[str] = field(default_factory=list)
    """The ``artifact://`` URIs the outputs need (an entry missing one is not reused)."""

    TIMESTAMPS: ClassVar[tuple[str, ...]] = ("created_at",)

    @property
    def origin(self) -> str:
        """The execution that computed it: ``RUN_ID/STEP`` or ``RUN_ID/STEP[ITEM]``."""
        chunk = f"[{self.item}]" if self.item != NO_ITEM else ""
        return f"{self.run_id}/{self.step_id}{chunk}"


@dataclass(frozen=True)
class CacheStats:
    """The step cache of one task version: entries, their output bytes, and reuses."""

    task: str
    task_version: str
    entries: int
    size: int
    oldest: str | None
    newest: str | None
    hits: int


_STEP_RANK = {"pending": 0, "running": 1}  # every other status is final: 2


def step_update_allowed(current: StepRecord | None, new: StepRecord) -> bool:
    """Whether ``new`` may replace ``current``: the rule that makes redelivery idempotent.

    A succeeded step stays as it is. A later attempt replaces an earlier one and
    an earlier one is ignored. Within one attempt a step only moves forward
    (pending, running, then a final status), so a late duplicate cannot move it back.
    """
    if current is None:
        return True
    if current.status == "succeeded":
        return False
    if new.attempt != current.attempt:
        return new.attempt > current.attempt
    return _STEP_RANK.get(new.status, 2) >= _STEP_RANK.get(current.status, 2)


def apply_run_update(current: RunRecord, fields: Mapping[str, Any]) -> RunRecord:
    """``current`` with ``fields`` changed; :class:`ValueError` on an unknown field or status.
    A cancelled run stays cancelled (its last step may end after the request)."""
    names = {f.name for f in dataclasses.fields(RunRecord)} - {"run_id"}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"cannot update run field(s): {', '.join(unknown)}")
    if current.status == "cancelled" and "status" in fields:
        fields = {**fields, "status": "cancelled"}
    return dataclasses.replace(current, **fields)


def status_filter(status: str | Collection[str] | None) -> tuple[str, ...] | None:
    """``list_runs``'s status argument as a tuple of run statuses (None: any)."""
    if status is None:
        return None
    wanted = (status,) if isinstance(status, str) else tuple(status)
    unknown = [s for s in wanted if s not in RUN_STATUSES]
    if unknown:
        raise ValueError(f"unknown run status(es): {', '.join(map(repr, unknown))}")
    return wanted


class MetadataStore(ABC):
    """Where plugins, runs, steps and lineage values are recorded."""

    # plugins

    @abstractmethod
    def add_plugin(self, record: PluginRecord) -> None:
        """Record a plugin version; :class:`Conflict` if name and version are taken."""

    @abstractmethod
    def replace_plugin(self, record: PluginRecord) -> None:
        """Record a plugin version, replacing one with the same name and version."""

    @abstractmethod
    def get_plugin(self, name: str, version: str) -> PluginRecord | None:
        """The plugin ``name`` at ``version``, or None."""

    @abstractmethod
    def list_plugins(self, name: str | None = None) -> list[PluginRecord]:
        """All plugin versions (of ``name`` only, if given), sorted by name then version text."""

    @abstractmethod
    def remove_plugin(self, name: str, version: str) -> bool:
        """Forget a plugin version; False if it was not there."""

    # pipelines

    @abstractmethod
    def add_pipeline(self, record: PipelineRecord) -> None:
        """Register a pipeline version; :class:`Conflict` if name and version are taken."""

    @abstractmethod
    def replace_pipeline(self, record: PipelineRecord) -> None:
        """Register a pipeline version, replacing one with the same name and version."""

    @abstractmethod
    def get_pipeline(self, name: str, version: str) -> PipelineRecord | None:
        """The pipeline ``name`` at ``version``, or None."""

    @abstractmethod
    def list_pipelines(self, name: str | None = None) -> list[PipelineRecord]:
        """All pipeline versions (of ``name`` only, if given), sorted by name then version."""

    @abstractmethod
    def remove_pipeline(self, name: str, version: str) -> bool:
        """Forget a pipeline version; False if it was not there."""

    # runs

    @abstractmethod
    def create_run(
        self,
        record: RunRecord,
        values: Sequence[ValueRecord] = (),
        steps: Sequence[StepRecord] = (),
    ) -> None:
        """Record a new run with its first ``values`` and ``steps`` (see :meth:`record`; in
        one transaction where the store can); :class:`Conflict` if its run ID is taken."""

    @abstractmethod
    def update_run(self, run_id: str, /, **fields: Any) -> RunRecord:
        """Change fields of a run and return it; :class:`NotFound` if there is no such run."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, or None."""

    @abstractmethod
    def list_runs(
        self,
        status: str | Collection[str] | None = None,
        limit: int | None = 50,
        since: str | datetime | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, optionally of some statuses and created at or after ``since``."""

    @abstractmethod
    def runs_using_plugin(self, name: str, version: str) -> list[str]:
        """IDs of pending or running runs that use plugin ``name`` at ``version``."""

    # steps

    @abstractmethod
    def record_step(self, record: StepRecord) -> bool:
        """Upsert a step execution unless :func:`step_update_allowed` refuses; True if written."""

    @abstractmethod
    def get_step(self, run_id: str, step_id: str, item: int = NO_ITEM) -> StepRecord | None:
        """One step execution, or None."""

    @abstractmethod
    def list_steps(self, run_id: str) -> list[StepRecord]:
        """The step executions of a run, sorted by step ID then item."""

    # values

    @abstractmethod
    def record_value(self, record: ValueRecord) -> bool:
        """Record a value once per (run, value ID): the first write wins; True if written."""

    def record(
        self,
        values: Sequence[ValueRecord] = (),
        steps: Sequence[StepRecord] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> None:
        """Record ``values``, then ``steps``, by the rules of :meth:`record_value` and
        :meth:`record_step`, then the ``cache`` entries. A store that can writes them in one
        transaction (a step's outputs and its record land together, at one commit)."""
        for value in values:
            self.record_value(value)
        for step in steps:
            self.record_step(step)
        if cache:
            self.put_cache_entries(cache)

    @abstractmethod
    def get_value(self, run_id: str, value_id: str) -> ValueRecord | None:
        """One value of a run, or None."""

    @abstractmethod
    def list_values(self, run_id: str) -> list[ValueRecord]:
        """The values of a run, sorted by value ID."""

    # step cache

    @abstractmethod
    def put_cache_entries(self, entries: Sequence[CacheEntry]) -> None:
        """Store cache entries, replacing any with the same key."""

    @abstractmethod
    def cache_entries(self, keys: Collection[str]) -> dict[str, CacheEntry]:
        """The entries of those ``keys`` that are stored, by key."""

    @abstractmethod
    def cache_stats(self) -> list[CacheStats]:
        """Per task version with entries: their count, output bytes, ages and reuses."""

    @abstractmethod
    def clear_cache(
        self,
        task: str | None = None,
        version: str | None = None,
        before: str | datetime | None = None,
    ) -> int:
        """Delete entries (of ``task``, at ``version``, created before ``before``, as
        given); how many."""

    # lifetime

    @abstractmethod
    def describe(self) -> str:
        """The store's URL, without secrets."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; closing twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
