"""Runs whose executor is gone end ``failed`` with the reason, instead of staying ``running``.

A local run ends with the ``wtm`` process that drives it: when that process no
longer exists (SIGKILL, a crash, a reboot), the run is ended here. A celery run
lives in Redis: when Redis no longer holds its state (a restart without
persistence), nothing can finish it; when the state ended but no record says
so (its finisher died), the records are completed from it. ``wtm runs list``,
``wtm runs show`` and ``wtm plugin remove`` reconcile first.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from runtime.owner import gone
from runtime.services import Services
from runtime.stores.metadata import ACTIVE_RUN_STATUSES, MetadataStore, RunRecord, utc_now

CELERY_GRACE_SECONDS = 60.0
"""A celery run younger than this may not be in Redis yet (its client is storing it)."""


def reconcile(services: Services) -> list[str]:
    """End the active runs whose executor is gone; their IDs."""
    ended = []
    for run in services.metadata.list_runs(status=ACTIVE_RUN_STATUSES, limit=None):
        reason = _local_owner_gone(run) if run.executor == "local" else None
        if run.executor == "celery" and services.settings.broker_url:
            reason = _celery_state_lost(services, run, services.settings.broker_url)
        if reason is not None:
            end_run(services.metadata, run.run_id, reason)
            ended.append(run.run_id)
    return ended


def _local_owner_gone(run: RunRecord) -> str | None:
    if run.owner is None or not gone(run.owner):
        return None
    pid = run.owner.split(":")[1]
    return f"the wtm process (pid {pid}) running it ended before the run did"


def _celery_state_lost(services: Services, run: RunRecord, broker_url: str) -> str | None:
    import redis

    from runtime.executors.records import record_changes
    from runtime.executors.redis_runs import RedisRuns, state_key
    from runtime.executors.session import record_outcome

    age = datetime.now(UTC) - datetime.fromisoformat(run.created_at)
    if age.total_seconds() < CELERY_GRACE_SECONDS:
        return None
    runs = RedisRuns.at(broker_url)
    try:
        state = runs.redis.get(state_key(run.run_id))
    except redis.RedisError:
        return None  # the broker is away: it cannot tell
    if state is None:
        return "the broker no longer holds the run's state (a Redis restart without persistence?)"
    found, envelope = runs.state(run.run_id), runs.envelope(run.run_id)
    if found is not None and envelope is not None and found.finished:
        record_changes(services.metadata, envelope.plan, found, list(envelope.plan.steps))
        record_outcome(services, envelope.plan, found)
    return None


def end_run(metadata: MetadataStore, run_id: str, reason: str) -> None:
    """Fail a run and its unfinished steps with ``reason`` (pending steps: cancelled)."""
    for step in metadata.list_steps(run_id):
        if step.status in ("pending", "running"):
            status = "failed" if step.status == "running" else "cancelled"
            metadata.record_step(
                dataclasses.replace(step, status=status, error=reason, finished_at=utc_now())
            )
    metadata.update_run(run_id, status="failed", error=reason, finished_at=utc_now())
