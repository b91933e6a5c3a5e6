"""The celery executor's client side: store each run once in Redis, publish its first calls,
wait for the workers to end it.

Workers (``wtm worker``) do the rest: each call they finish starts the calls it
unlocks, and the worker that finishes a run's last call records its outcome, so
a run goes on and ends even when the client is gone (``wtm runs watch``
re-attaches). The client is woken through a Redis list when a run ends; every
``SWEEP_SECONDS`` it also looks for cancellations, says when no worker is
alive, and cancels its runs when ``--timeout`` passes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from runtime.config import ConfigError
from runtime.executors.base import Executor, ExecutorOptions
from runtime.executors.celery_app import batched_publishing, check_broker, client_app
from runtime.executors.celery_tasks import publish
from runtime.executors.records import record_changes
from runtime.executors.redis_runs import (
    CLIENT_LEASE_SECONDS,
    Envelope,
    Lease,
    RedisRuns,
)
from runtime.executors.runstate import RunState
from runtime.executors.session import (
    RunSession,
    cancelled_elsewhere,
    record_outcome,
    result_document,
)
from runtime.executors.uploads import upload_files
from runtime.manifest import PipelineManifest
from runtime.owner import host_pid
from runtime.services import Services
from runtime.stores.metadata import ACTIVE_RUN_STATUSES

SWEEP_SECONDS = 0.5
"""How often every pending run is checked for a cancellation and the workers for life."""
NO_WORKER_NOTICE_SECONDS = 5.0
"""How long runs wait with no live worker before the client says so."""
ANNOUNCE_GRACE_SECONDS = 10.0
"""A run that ended this long ago unannounced lost its finisher: the client records it."""
START_KEY = "@start"
"""The lease a client holds on a run between saving it and publishing its first calls."""


class CeleryExecutor(Executor):
    """Submits runs to Redis and waits for workers to end them."""

    name = "celery"

    def __init__(
        self,
        services: Services,
        broker_url: str | None,
        timeout: float | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        broker = broker_url or services.settings.broker_url
        if not broker:
            raise ConfigError(
                "the celery executor needs a broker: --broker, WTM_BROKER_URL "
                "or broker_url in wtm.toml"
            )
        self.services = services
        self.broker = broker
        check_broker(broker)
        self.app = client_app(broker)
        self.runs = RedisRuns.at(broker)
        self.timeout = timeout
        self.on_notice = on_notice
        visibility = self.app.conf.broker_transport_options["visibility_timeout"]
        self.visibility_timeout = float(visibility)

    @classmethod
    def from_options(cls, services: Services, options: ExecutorOptions) -> CeleryExecutor:
        return cls(services, options.broker_url, options.timeout, options.on_notice)

    def prepare_inputs(
        self, pipeline: PipelineManifest, inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Local files named by file inputs are uploaded: workers may be on other hosts."""
        return upload_files(self.services, pipeline, inputs)

    def check_limits(self, session: RunSession) -> None:
        """Refuse a task time limit at or above the broker's visibility timeout (#5935)."""
        for step in session.plan.steps.values():
            pin = step.pin
            if pin.timeout and pin.timeout >= self.visibility_timeout:
                raise ConfigError(
                    f"{pin.name}@{pin.version} timeout {pin.timeout:g}s is not "
                    f"below the broker visibility timeout "
                    f"{self.visibility_timeout:g}s (WTM_VISIBILITY_TIMEOUT)"
                )

    def run(
        self, sessions: list[RunSession], on_finished: Callable[[RunSession], None] | None = None
    ) -> None:
        """Submit every run, then wait for each to end.

        Interrupted (Ctrl-C), the runs go on on the workers: ``wtm runs watch RUN``
        follows them.
        """
        for session in sessions:
            self.check_limits(session)
        reply_to = f"wtm:reply:{uuid.uuid4().hex}"
        pending = self._submit(sessions, reply_to)
        for session in sessions:
            if session.run_id not in pending:
                self._finished(session, on_finished)
        started = time.monotonic()
        next_sweep = started + SWEEP_SECONDS
        noticed = False
        while pending:
            wait = max(0.0, next_sweep - time.monotonic())
            for state in self._replies(reply_to, wait):
                ended = pending.pop(state.run_id, None)
                if ended is not None:
                    self._finished(ended, on_finished, state)
            if time.monotonic() < next_sweep:
                continue
            next_sweep = time.monotonic() + SWEEP_SECONDS
            for state in self.runs.finished(list(pending)):
                if state.ended is not None and time.time() - state.ended > ANNOUNCE_GRACE_SECONDS:
                    self._finished(pending.pop(state.run_id), on_finished)
            for session in cancelled_elsewhere(self.services, list(pending.values())):
                self._cancel(session, "cancelled")
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                for session in list(pending.values()):
                    self._cancel(session, f"cancelled: no result within {self.timeout:g}s")
            if not noticed and time.monotonic() - started > NO_WORKER_NOTICE_SECONDS:
                noticed = self._notice_no_worker()

    def _notice_no_worker(self) -> bool:
        """Say so if no worker is alive; whether it was said."""
        if self.on_notice is None or self.runs.call(self.runs.nodes):
            return False
        self.on_notice(
            "no wtm worker is alive on this broker: runs wait until one starts "
            "(wtm worker), or pass --timeout"
        )
        return True

    def _replies(self, reply_to: str, wait: float) -> list[RunState]:
        return self.runs.call(lambda: self.runs.wait_replies(reply_to, wait))

    def _submit(self, sessions: list[RunSession], reply_to: str) -> dict[str, RunSession]:
        """Store each run and publish its first calls; the runs still going."""
        pending: dict[str, RunSession] = {}
        leases = []
        with batched_publishing(self.app) as producer:
            for session in sessions:
                calls = session.start()
                if session.state.finished:
                    continue  # nothing to run (an empty foreach): ended already
                now = time.time()
                lease = Lease(
                    session.run_id,
                    START_KEY,
                    host_pid(),
                    0,
                    now,
                    expires=now + CLIENT_LEASE_SECONDS,
                )
                leases.append((lease.run_id, lease.key))
                envelope = Envelope(session.plan, reply_to)
                self.runs.create(session.state, envelope, lease)
                publish(self.app, session.plan, calls, producer)
                pending[session.run_id] = session
        self.runs.release(*leases)
        return pending

    def _cancel(self, session: RunSession, reason: str) -> None:
        """Cancel a run in Redis and in the records; its workers drop what is left of it."""
        self.services.metadata.update_run(session.run_id, status="cancelled")
        changed = self.runs.change(session.run_id, lambda s: s.cancel(reason))
        if changed is not None:
            state, transition = changed
            record_changes(self.services.metadata, session.plan, state, transition.changed)
            if state.finished:
                self.runs.announce(state)

    def _finished(
        self,
        session: RunSession,
        on_finished: Callable[[RunSession], None] | None,
        state: RunState | None = None,
    ) -> None:
        """A run ended: take the final state (``state``, as announced, or read); record its
        outcome if no worker could."""
        if state is None:
            state = self.runs.state(session.run_id)
        if state is not None:
            session.state = state
        record = self.services.metadata.get_run(session.run_id)
        if record is None or record.status in ACTIVE_RUN_STATUSES or record.finished_at is None:
            metadata = self.services.metadata
            record_changes(metadata, session.plan, session.state, list(session.plan.steps))
            outputs = record_outcome(self.services, session.plan, session.state)
        else:
            outputs = session.state.outputs(session.plan, self.services.access)
        session.result = result_document(session.plan, session.state, self.name, outputs)
        if on_finished:
            on_finished(session)
