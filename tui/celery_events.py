"""Celery workers, live: Celery events and the broker's queue depth, read on one thread.

:class:`CeleryMonitor` runs a daemon thread that connects to the broker, captures
events with ``app.events.Receiver(conn, handlers={"*": ...}).capture(timeout=1)``
in a loop (it raises ``socket.timeout`` after a second without events), keeps
them in ``app.events.State()`` plus per-worker task tallies, reads the depth of
the queue (redis ``LLEN`` of its priority lists) at most once a second, and
hands an immutable :class:`CelerySnapshot` to a callback at most twice a
second. The loop calls the receiver's ``consume`` (what ``capture`` runs) with
a quarter-second ``safety_interval``, so the last change of a burst is shown
within about half a second rather than at the next event or quiet second.

A broker that goes away is reported in a snapshot (``error``, the next try) and
reconnected with backoff; the thread never dies of it.

Counts of tasks (processed, failed) are those finished since the dashboard
connected, from task events, like Flower's. Active tasks are those started and
not finished, from task events, with two corrections: a task stops counting
when it sends children (a task replaced by a canvas sends no event of its
end), and each heartbeat's own count
of active tasks caps those started before it. Until a worker's first task
event after a (re)connection, its heartbeat's count is shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from runtime.config import mask_url

if TYPE_CHECKING:
    from celery import Celery
    from celery.events.state import State, Worker

QUEUE = "celery"
PRIORITY_SEP = "\x06\x16"
"""How kombu's Redis transport names the lists of a queue's priorities: ``celery\\x06\\x163``."""
PRIORITIES = (3, 6, 9)
UNACKED_KEY = "unacked"
CAPTURE_TIMEOUT = 1.0
PUBLISH_EVERY = 0.5
WAIT_SLICE = 0.25
QUEUE_POLL_EVERY = 1.0
MAX_BACKOFF = 5.0
SOCKET_TIMEOUT = 2.0
FINISHED = frozenset({"task-succeeded", "task-failed"})
GONE = frozenset({"task-retried", "task-revoked", "task-rejected"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CeleryWorker:
    """One Celery worker (a node name like ``w1@host``) as last heard of."""

    hostname: str
    active: int = 0
    processed: int = 0
    failed: int = 0
    last_seen: float | None = None
    """When its last event arrived (epoch seconds, this machine's clock)."""
    expires: float = 0.0
    """When it counts as offline without another heartbeat (0: it said it went offline)."""
    load: float | None = None
    pid: int | None = None

    def online(self, now: float) -> bool:
        """Whether it sent a heartbeat recently enough (Celery's rule: twice its frequency)."""
        return now < self.expires


@dataclass(frozen=True)
class CelerySnapshot:
    """What the monitor knows at one moment; safe to hand to another thread."""

    broker: str
    """The broker URL, password masked."""
    connected: bool = False
    workers: tuple[CeleryWorker, ...] = ()
    queue: str = QUEUE
    depth: int | None = None
    """Messages waiting in ``queue``; None before the first read."""
    unacked: int | None = None
    """Messages delivered to workers and not acknowledged yet (every queue)."""
    error: str | None = None
    """Why the broker cannot be read, while it cannot."""
    failures: int = 0
    retry_in: float = 0.0
    since: float | None = None
    """When the monitor first connected: counts are since then."""
    last_ok: float | None = None
    """When the broker last answered."""
    events: int = 0


@dataclass
class _Tally:
    """Task events of one worker since the monitor connected."""

    active: dict[str, float] = field(default_factory=dict)
    """Started tasks not finished: uuid -> the worker's timestamp of task-started."""
    processed: int = 0
    failed: int = 0
    seen_task: bool = False
    last_seen: float | None = None


Publish = Callable[[CelerySnapshot], None]


class CeleryMonitor:
    """Follows the Celery workers of ``broker_url`` on a daemon thread; see the module."""

    def __init__(self, broker_url: str, publish: Publish, queue: str = QUEUE) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self._publish = publish
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._app: Celery | None = None
        self._state: State | None = None
        self._known: dict[str, Worker] = {}
        self._tallies: dict[str, _Tally] = {}
        self._redis: Any = None
        self._receiver: Any = None
        self._snapshot = CelerySnapshot(mask_url(broker_url), queue=queue)
        self._dirty = False
        self._published = 0.0
        self._polled = 0.0
        self._events = 0

    # lifetime

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.run, name="wtm-dashboard-celery", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop; it does within about a second, publishing nothing more."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (never from the thread that receives snapshots)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Capture events until stopped; reconnect with backoff after any failure."""
        failures = 0
        while not self._stop.is_set():
            try:
                self._session()
                failures = 0
            except Exception as exc:  # a broker gone away, or anything odd: report, retry
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2 ** (failures - 1))
                self._failed(exc, failures, delay)
                self._stop.wait(delay)
        self._close_redis()

    # one connection

    def _ensure_app(self) -> Celery:
        """The Celery app of the broker and its ``app.events.State()``, made once."""
        if self._app is None:
            from runtime.executors.celery_app import make_app

            self._app = make_app(self.broker_url)
            self._state = self._app.events.State()
        return self._app

    def _session(self) -> None:
        """Connect, then capture until stopped or until the connection fails."""
        app = self._ensure_app()
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0)
            receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
            receiver.connect_max_retries = 0
            receiver.on_iteration = self._iteration  # before each wait: after events, or idle
            self._receiver = receiver
            self._connected()
            wakeup = True  # ask every worker for a heartbeat at once, after each connection
            while not self._stop.is_set():
                first, wakeup = wakeup, False
                try:
                    # receiver.capture(timeout=1, wakeup=...) with a shorter wait per poll
                    for _ in receiver.consume(
                        limit=None,
                        timeout=CAPTURE_TIMEOUT,
                        safety_interval=WAIT_SLICE,
                        wakeup=first,
                    ):
                        pass
                except TimeoutError:  # a second without events (socket.timeout)
                    self._due()

    def _connected(self) -> None:
        """A (re)connection: forget task events that may have been missed meanwhile."""
        for tally in self._tallies.values():
            tally.active.clear()
            tally.seen_task = False
        now = time.time()
        self._poll_queue()
        self._polled = time.monotonic()
        self._snapshot = self._build(
            connected=True,
            error=None,
            failures=0,
            retry_in=0.0,
            since=self._snapshot.since or now,
            last_ok=now,
        )
        self._send()

    def _failed(self, exc: BaseException, failures: int, delay: float) -> None:
        self._close_redis()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        log.info("celery events: %s; retry %d in %.1fs", reason, failures, delay)
        self._snapshot = self._build(
            connected=False, error=reason, failures=failures, retry_in=delay
        )
        self._send()

    # events

    def _iteration(self) -> None:
        """Before each wait for events (at least every quarter second): stop or publish."""
        if self._stop.is_set():
            if self._receiver is not None:
                self._receiver.should_stop = True
            return
        self._due()

    def _on_event(self, event: dict[str, Any]) -> None:
        """Every event: into the State and the tallies (published by :meth:`_iteration`)."""
        if not self._stop.is_set():
            self.apply(event)

    def apply(self, event: dict[str, Any]) -> None:
        """Take one Celery event into account (on the monitor's thread, or in tests)."""
        self._ensure_app()
        self._events += 1
        state = self._state
        assert state is not None
        try:
            state.event(event)
        except Exception:  # a malformed event must not end the capture
            log.debug("celery events: cannot apply %r", event, exc_info=True)
        kind = str(event.get("type", ""))
        host = event.get("hostname")
        if kind in ("task-sent", "task-received") and event.get("parent_id"):
            self._parent_done(str(event["parent_id"]))
        if host and kind != "task-sent":  # task-sent comes from the client, not a worker
            self._count(kind, str(host), event)
        self._dirty = True

    def _count(self, kind: str, host: str, event: dict[str, Any]) -> None:
        tally = self._tallies.setdefault(host, _Tally())
        tally.last_seen = event.get("local_received") or time.time()
        if kind.startswith("worker-"):
            worker = self._state.workers.get(host) if self._state else None
            if worker is not None:
                self._known[host] = worker
            if kind == "worker-offline":
                tally.active.clear()
            elif kind == "worker-heartbeat" and event.get("active") is not None:
                _reconcile(tally, int(event["active"]), float(event.get("timestamp") or 0))
            return
        if not kind.startswith("task-"):
            return
        tally.seen_task = True
        uuid = str(event.get("uuid", ""))
        if kind == "task-started":
            # events of one task come from different processes and can arrive out of order:
            # the State merges them by precedence; a task already finished is not active
            task = self._state.tasks.get(uuid) if self._state else None
            if task is None or task.state == "STARTED":
                tally.active[uuid] = float(event.get("timestamp") or 0)
        elif kind in FINISHED:
            tally.active.pop(uuid, None)
            tally.processed += 1
            tally.failed += kind == "task-failed"
        elif kind in GONE:
            tally.active.pop(uuid, None)

    def _parent_done(self, parent: str) -> None:
        """A task sends children when it ends, or replaces itself (``Task.replace``, which
        sends no event at all): either way it has stopped working."""
        for tally in self._tallies.values():
            tally.active.pop(parent, None)

    def _due(self) -> None:
        """Read the queue if a second passed, publish if half a second passed and news came."""
        now = time.monotonic()
        if now - self._polled >= QUEUE_POLL_EVERY:
            self._polled = now
            if self._poll_queue():
                self._dirty = True
        if self._dirty and now - self._published >= PUBLISH_EVERY:
            self._snapshot = self._build(last_ok=time.time())
            self._send()

    def _send(self) -> None:
        self._dirty = False
        self._published = time.monotonic()
        if not self._stop.is_set():
            self._publish(self._snapshot)

    # the queue

    def _poll_queue(self) -> bool:
        """Read the queue depth and the unacked count; whether they changed."""
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(
                self.broker_url,
                socket_connect_timeout=SOCKET_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
            )
        pipe = self._redis.pipeline(transaction=False)
        pipe.llen(self.queue)
        for priority in PRIORITIES:
            pipe.llen(f"{self.queue}{PRIORITY_SEP}{priority}")
        pipe.hlen(UNACKED_KEY)
        *depths, unacked = pipe.execute()
        depth = int(sum(depths))
        changed = (depth, unacked) != (self._snapshot.depth, self._snapshot.unacked)
        self._snapshot = replace(
            self._snapshot, depth=depth, unacked=int(unacked), last_ok=time.time()
        )
        return changed

    def _close_redis(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            try:
                client.close()
            except Exception:  # it failed already; let it go
                log.debug("celery events: closing redis", exc_info=True)

    # snapshots

    def snapshot(self) -> CelerySnapshot:
        """What the monitor knows now (on the monitor's thread, or in tests)."""
        return self._build()

    def _build(self, **changes: Any) -> CelerySnapshot:
        """The current snapshot with fresh workers and ``changes``."""
        return replace(self._snapshot, workers=self._workers(), events=self._events, **changes)

    def _workers(self) -> tuple[CeleryWorker, ...]:
        state = self._state
        live = dict(state.workers.items()) if state is not None else {}
        hosts = sorted(set(live) | set(self._known))
        return tuple(self._worker(host, live.get(host) or self._known.get(host)) for host in hosts)

    def _worker(self, host: str, worker: Worker | None) -> CeleryWorker:
        tally = self._tallies.get(host, _Tally())
        heartbeats = worker.heartbeats if worker is not None else []
        loadavg = getattr(worker, "loadavg", None) or ()
        active = len(tally.active) if tally.seen_task else int(getattr(worker, "active", 0) or 0)
        return CeleryWorker(
            hostname=host,
            active=active,
            processed=tally.processed,
            failed=tally.failed,
            last_seen=tally.last_seen,
            expires=float(worker.heartbeat_expires) if worker is not None and heartbeats else 0.0,
            load=float(loadavg[0]) if loadavg else None,
            pid=getattr(worker, "pid", None),
        )


def _reconcile(tally: _Tally, active: int, at: float) -> None:
    """Trust a heartbeat's count of active tasks for the tasks started before it.

    Of the tasks started at or before ``at`` (the worker's clock), keep the
    ``active`` most recent: the others ended without an event reaching us (a
    lost event, a task that ended in ``Ignore``) and would count forever.
    """
    before = sorted((started, uuid) for uuid, started in tally.active.items() if started <= at)
    for _, uuid in before[: max(0, len(before) - active)]:
        del tally.active[uuid]
