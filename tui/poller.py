"""Incremental reads of the metadata store: what changed since the last poll.

:class:`StorePoller` keeps the last state it read and, each poll, asks the
store only for what can have changed: runs created since the newest one seen,
runs that are still active, runs that stopped being active since the last
poll, and the steps of active runs (a bounded number per poll) and of the
runs a screen watches. Finished runs are read once. Every few seconds a full
re-read of the run list catches anything else (another host's clock, say).

A poller is used from one thread at a time (see :mod:`tui.storeio`); what it
returns is immutable or a fresh copy, safe to hand to the UI thread.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.stores.metadata import (
    ACTIVE_RUN_STATUSES,
    NO_ITEM,
    MetadataStore,
    RunRecord,
    StepRecord,
)
from tui.format import FINAL_STATUSES, parse_time

DEFAULT_LIMIT = 500
STEP_READS_PER_POLL = 60
FULL_REFRESH_SECONDS = 10.0

StepKey = tuple[str, int]


@dataclass(frozen=True)
class WorkerUse:
    """What one worker (``host:pid``) did for one run."""

    worker: str
    executions: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    last_seen: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class StepCounts:
    """Whole steps of a run by progress, and the workers that ran its executions."""

    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    workers: tuple[WorkerUse, ...] = ()

    @classmethod
    def of(cls, run_id: str, steps: Iterable[StepRecord]) -> StepCounts:
        """Counts over a run's step records."""
        statuses: Counter[str] = Counter()
        per_worker: dict[str, Counter[str]] = {}
        last: dict[str, str] = {}
        for step in steps:
            if step.item == NO_ITEM:
                statuses[step.status] += 1
            if step.worker:
                tally = per_worker.setdefault(step.worker, Counter())
                tally["executions"] += 1
                tally[step.status] += 1
                seen = step.finished_at or step.started_at or ""
                last[step.worker] = max(last.get(step.worker, ""), seen)
        workers = tuple(
            WorkerUse(
                w, t["executions"], t["running"], t["succeeded"], t["failed"], last[w], run_id
            )
            for w, t in sorted(per_worker.items())
        )
        done = sum(n for s, n in statuses.items() if s in FINAL_STATUSES)
        return cls(sum(statuses.values()), done, statuses["failed"], statuses["running"], workers)


@dataclass(frozen=True)
class RunSummary:
    """A run as the runs list shows it; ``counts`` is None until its steps were read."""

    record: RunRecord
    counts: StepCounts | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def active(self) -> bool:
        return self.record.status in ACTIVE_RUN_STATUSES


@dataclass(frozen=True)
class RunsUpdate:
    """The result of one poll of the run list."""

    runs: dict[str, RunSummary]
    changed: frozenset[str]
    first: bool = False


@dataclass(frozen=True)
class StepsUpdate:
    """The result of one poll of a watched run: its record and its step executions."""

    run: RunRecord | None
    steps: dict[StepKey, StepRecord]
    changed: frozenset[StepKey]


@dataclass
class _Watched:
    steps: dict[StepKey, StepRecord] = field(default_factory=dict)
    final_read: bool = False


class StorePoller:
    """Reads runs and steps incrementally from ``store``."""

    def __init__(self, store: MetadataStore, limit: int = DEFAULT_LIMIT) -> None:
        self.store = store
        self.limit = limit
        self.runs: dict[str, RunSummary] = {}
        self._newest = ""
        self._first = True
        self._next_full = 0.0
        self._watched: dict[str, _Watched] = {}
        self._recount: set[str] = set()

    # runs

    def poll_runs(self) -> RunsUpdate:
        """Read what changed in the run list since the last poll."""
        changed: set[str] = set()
        first = self._first
        now = time.monotonic()
        if self._first or now >= self._next_full:
            fresh = self.store.list_runs(limit=self.limit)
            self._next_full = now + FULL_REFRESH_SECONDS
        else:
            fresh = (
                self.store.list_runs(since=self._newest, limit=self.limit)
                if self._newest
                else self.store.list_runs(limit=self.limit)
            )
            active = self.store.list_runs(status=ACTIVE_RUN_STATUSES, limit=self.limit)
            fresh += active
            seen_active = {r.run_id for r in active}
            for summary in list(self.runs.values()):
                if summary.active and summary.run_id not in seen_active:
                    record = self.store.get_run(summary.run_id)
                    if record is not None:
                        fresh.append(record)
        for record in fresh:
            old = self.runs.get(record.run_id)
            if old is None or old.record != record:
                counts = old.counts if old else None
                self.runs[record.run_id] = RunSummary(record, counts)
                changed.add(record.run_id)
                self._recount.add(record.run_id)
            self._newest = max(self._newest, record.created_at)
        self._trim()
        changed |= self._read_counts()
        self._first = False
        changed &= set(self.runs)
        return RunsUpdate(dict(self.runs), frozenset(changed), first)

    def _trim(self) -> None:
        """Keep the newest ``limit`` runs."""
        if len(self.runs) <= self.limit:
            return
        order = sorted(self.runs.values(), key=lambda s: (s.record.created_at, s.run_id))
        for summary in order[: len(self.runs) - self.limit]:
            del self.runs[summary.run_id]
            self._recount.discard(summary.run_id)

    def _read_counts(self) -> set[str]:
        """Step counts of active or changed runs, then of runs never counted, within budget."""
        wanted = sorted(
            (
                s
                for s in self.runs.values()
                if s.active or s.counts is None or s.run_id in self._recount
            ),
            key=lambda s: (s.counts is None, _desc(s.record.created_at)),
        )
        changed = set()
        for summary in wanted[:STEP_READS_PER_POLL]:
            self._recount.discard(summary.run_id)
            counts = StepCounts.of(summary.run_id, self.store.list_steps(summary.run_id))
            if counts != summary.counts:
                self.runs[summary.run_id] = RunSummary(summary.record, counts)
                changed.add(summary.run_id)
        return changed

    # watched runs

    def watch(self, run_ids: Iterable[str]) -> None:
        """Follow the steps of exactly these runs (the ones open on screen)."""
        wanted = set(run_ids)
        for run_id in list(self._watched):
            if run_id not in wanted:
                del self._watched[run_id]
        for run_id in wanted:
            self._watched.setdefault(run_id, _Watched())

    def poll_steps(self, run_id: str) -> StepsUpdate:
        """The run and the step executions that changed since the last poll of this run.

        Steps of a finished run are read once more after it finished, then not again.
        """
        watched = self._watched.setdefault(run_id, _Watched())
        run = self.store.get_run(run_id)
        if run is None or (watched.final_read and run.status not in ACTIVE_RUN_STATUSES):
            return StepsUpdate(run, dict(watched.steps), frozenset())
        changed = set()
        for step in self.store.list_steps(run_id):
            key = (step.step_id, step.item)
            if watched.steps.get(key) != step:
                watched.steps[key] = step
                changed.add(key)
        watched.final_read = run.status not in ACTIVE_RUN_STATUSES
        return StepsUpdate(run, dict(watched.steps), frozenset(changed))

    def poll_watched(self) -> dict[str, StepsUpdate]:
        """:meth:`poll_steps` for every watched run."""
        return {run_id: self.poll_steps(run_id) for run_id in list(self._watched)}


def _desc(stamp: str) -> float:
    """A sort key putting newer timestamps first."""
    when = parse_time(stamp)
    return -when.timestamp() if when else 0.0
