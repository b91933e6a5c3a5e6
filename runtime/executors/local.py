"""The local executor: a pool of worker processes on this machine, no server needed.

Processes, not threads: dlib's face descriptor holds the GIL (two threads ran
0.97x as fast as one, measured), so only processes run CPU-bound plugins side
by side. ``pool="thread"`` is there for plugins that release the GIL.
Each worker process opens its own stores and keeps loaded plugins (and their
models) for the life of the pool.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from runtime.config import Settings
from runtime.executors.base import Executor, ExecutorOptions, Interrupted, Pool
from runtime.executors.calls import StepCall, StepResult, TaskPin
from runtime.executors.runner import StepFailed, one_line, run_call
from runtime.executors.session import RunSession, cancelled_elsewhere
from runtime.executors.threads import ThreadPool
from runtime.executors.warm import pins_of, warm
from runtime.services import Services
from runtime.timeouts import HARD_LIMIT_GRACE

POLL_SECONDS = 0.05
IN_FLIGHT_PER_WORKER = 2
"""Calls handed to the pool per process: one running, one queued behind it (its time
limit counts from when it starts, as its worker reports)."""
CANCEL_CHECK_SECONDS = 0.5

Queued = tuple[float, int, RunSession, StepCall]
"""A call waiting in a heap: its sort key (priority or due time), a tie-breaker, its run."""
Running = dict[Future[dict[str, Any]], tuple[RunSession, StepCall]]
"""The calls handed to the pool, by their futures."""
CallId = tuple[str, str, int]
"""A call as its worker reports it started: run ID, call key, attempt."""

_worker_services: Services | None = None
_shared_services: Services | None = None
_starts: Any = None
"""In a pool process: the queue its calls' start times go to (see :func:`_started`)."""


def _context() -> multiprocessing.context.BaseContext:
    """Workers come from a fork server: clean processes, even when this one runs threads
    (forking a process with threads, e.g. a Celery client's, can deadlock the child)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["runtime.executors.local"])
    return context


def _init_worker(settings: Settings, pins: list[TaskPin], report: Any, starts: Any) -> None:
    """A pool process starts: open its stores, load the plugins (and models) of the runs it
    was started for, and report how long that took on ``report`` (a queue); the calls it
    takes will say when they start on ``starts``."""
    global _worker_services, _starts
    _worker_services, _starts = Services.open(settings), starts
    report.put(warm(_worker_services.loader, pins))


def _started(call: StepCall, starts: Any) -> None:
    """Tell the executor ``call`` starts now: its time limit counts from here (a call
    handed to the pool may wait behind another). ``time.monotonic`` is the system's
    monotonic clock, the same in every process."""
    starts.put((call.run_id, call.key, call.attempt, time.monotonic()))


def _run_in_process(data: dict[str, Any]) -> dict[str, Any]:
    assert _worker_services is not None
    call = StepCall.from_json(data)
    _started(call, _starts)
    return run_call(call, _worker_services).to_json()


class LocalExecutor(Executor):
    """Runs calls on a process (or thread) pool; one pool serves many runs."""

    name = "local"
    in_process = True

    def __init__(
        self, services: Services, workers: int | None = None, pool: Pool = "process"
    ) -> None:
        self.services = services
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.pool_kind = pool
        self._pool: PoolExecutor | None = None
        self._cancel = threading.Event()
        self._interrupted: set[Future[dict[str, Any]]] = set()
        self._warm_pins: list[TaskPin] = []
        self._warm_reports: Any = None
        self.warm_seconds = 0.0
        """The longest a pool process took to load its plugins before its first step."""
        self._fresh_pool = False
        self._on_finished: Callable[[RunSession], None] | None = None
        self._starts: Any = None
        self._began: dict[CallId, float] = {}
        """When each call handed to the pool started, as its worker reported."""

    @classmethod
    def from_options(cls, services: Services, options: ExecutorOptions) -> LocalExecutor:
        return cls(services, options.workers, options.pool)

    def _new_pool(self) -> PoolExecutor:
        self._began.clear()
        if self.pool_kind == "thread":
            self.warm_seconds = warm(self.services.loader, self._warm_pins)
            self._starts = queue.SimpleQueue()
            return ThreadPool(self.workers)
        context = _context()
        self._warm_reports, self._starts = context.SimpleQueue(), context.SimpleQueue()
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.services.settings, self._warm_pins, self._warm_reports, self._starts),
        )

    @property
    def pool(self) -> PoolExecutor:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if isinstance(pool, ProcessPoolExecutor):
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, call: StepCall) -> Future[dict[str, Any]]:
        pool = self.pool
        if self.pool_kind == "thread":
            args = (call.to_json(), self.services, self._cancel, self._starts)
            return pool.submit(_run_in_thread, *args)
        return pool.submit(_run_in_process, call.to_json())

    def run(
        self, sessions: list[RunSession], on_finished: Callable[[RunSession], None] | None = None
    ) -> None:
        """Drive ``sessions`` to completion, interleaving their steps on the pool.

        Ready calls wait here, deepest step first, and go to the pool only as it has
        room (:data:`IN_FLIGHT_PER_WORKER` a process): a batch's runs finish one after
        another rather than all at the end, and a call's time limit counts from when a
        process takes it, not from when it became ready. Each session is finished (its
        outcome recorded) as soon as its last step ends, then handed to ``on_finished``.
        Interrupted (Ctrl-C, SIGTERM), every unfinished run is recorded cancelled with
        the reason before this returns.
        """
        running: Running = {}
        ready: list[Queued] = []
        retries: list[Queued] = []
        counter = itertools.count()
        next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS

        self._on_finished = on_finished
        self._fresh_pool = self._pool is None
        if self._fresh_pool:  # a new pool loads these runs' plugins as it starts
            self._warm_pins = pins_of(s.plan for s in sessions)

        def enqueue(session: RunSession, call: StepCall) -> None:
            depth = session.plan.steps[call.step_id].depth
            heapq.heappush(ready, (-depth, next(counter), session, call))

        def submit(session: RunSession, calls: list[StepCall]) -> None:
            for call in calls:
                if call.attempt > 1 and call.task.retry_backoff:
                    due = time.monotonic() + call.task.retry_backoff
                    heapq.heappush(retries, (due, next(counter), session, call))
                else:
                    enqueue(session, call)
            self._finish_if_done(session)

        def dispatch() -> None:
            room = self.workers * IN_FLIGHT_PER_WORKER - len(running)
            while ready and room > 0:
                _, _, session, call = heapq.heappop(ready)
                if session.state.current(call):
                    running[self._submit(call)] = (session, call)
                    room -= 1

        try:
            for session in sessions:
                submit(session, session.start())
            while running or ready or retries:
                now = time.monotonic()
                while retries and retries[0][0] <= now:
                    _, _, session, call = heapq.heappop(retries)
                    enqueue(session, call)
                dispatch()
                timeout = (
                    max(0.0, min(POLL_SECONDS, retries[0][0] - now)) if retries else POLL_SECONDS
                )
                done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    if future not in running:
                        continue  # dropped by a recovery in this same round
                    session, call = running.pop(future)
                    self._interrupted.discard(future)
                    self._began.pop((call.run_id, call.key, call.attempt), None)
                    try:
                        result = StepResult.from_json(future.result())
                    except StepFailed as exc:
                        submit(session, session.attempt_failed(call, str(exc)))
                        continue
                    except BrokenProcessPool:
                        self._recover(running, session, call, None)
                        continue
                    except Exception as exc:  # the stores failed around the step (disk full)
                        submit(session, session.attempt_failed(call, one_line(exc, call.label())))
                        continue
                    submit(session, session.succeeded(call, result))
                self._enforce_hard_limits(running)
                if time.monotonic() >= next_cancel_check:
                    next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
                    self._drop_cancelled(sessions, running, ready, retries)
        except (KeyboardInterrupt, Interrupted) as exc:
            self._cancel.set()
            reason = exc.reason if isinstance(exc, Interrupted) else "cancelled (interrupted)"
            for session in sessions:
                if session.result is None:
                    session.cancel(reason)
                    session.finish()
            self._kill_pool()
            raise

    def _finish_if_done(self, session: RunSession) -> None:
        if session.result is None and session.state.finished:
            session.finish(self._warmed() if self._fresh_pool else 0.0)
            if self._on_finished:
                self._on_finished(session)

    def _warmed(self) -> float:
        """:attr:`warm_seconds`, with the reports of pool processes started since."""
        reports = self._warm_reports
        while reports is not None and not reports.empty():
            self.warm_seconds = max(self.warm_seconds, reports.get())
        return self.warm_seconds

    def _recover(
        self,
        running: Running,
        session: RunSession,
        call: StepCall,
        why: str | None,
    ) -> None:
        """A pool process died under ``call`` (or was killed: ``why``): count it against
        the call, rebuild the pool, resubmit what else was in flight."""
        if why is None:
            retry = session.worker_lost(call)
        else:
            retry = session.attempt_failed(call, f"{call.label()}: {why}")
        inflight = list(running.values())
        running.clear()
        self._kill_pool()
        for other_session, other_call in inflight:
            running[self._submit(other_call)] = (other_session, other_call)
        for again in retry:
            running[self._submit(again)] = (session, again)
        self._finish_if_done(session)

    def _enforce_hard_limits(self, running: Running) -> None:
        while self._starts is not None and not self._starts.empty():
            run_id, key, attempt, began = self._starts.get()
            self._began[(run_id, key, attempt)] = began
        now = time.monotonic()
        for future, (session, call) in list(running.items()):
            limit = call.task.timeout
            started = self._began.get((call.run_id, call.key, call.attempt))
            if not limit or started is None or future.done() or now - started <= limit:
                continue  # no limit, not started yet (waiting in the pool), or in time
            late = now - started - limit
            if isinstance(self._pool, ThreadPool):
                self._limit_thread(self._pool, running, future, late)
            elif late > HARD_LIMIT_GRACE:
                running.pop(future)
                self._recover(running, session, call, f"timed out after {limit:g}s (killed)")
                return

    def _limit_thread(
        self,
        pool: ThreadPool,
        running: Running,
        future: Future[dict[str, Any]],
        late: float,
    ) -> None:
        """A thread's call is past its limit: interrupt it (the soft limit, as a process's
        alarm does), and past the grace give its thread up (a thread cannot be killed)."""
        session, call = running[future]
        limit = call.task.timeout or 0.0
        if late <= HARD_LIMIT_GRACE:
            if future not in self._interrupted:
                self._interrupted.add(future)
                pool.interrupt(future, f"timed out after {limit:g}s")
            return
        running.pop(future)
        self._interrupted.discard(future)
        pool.abandon(future)
        why = f"timed out after {limit:g}s (its thread did not stop and was abandoned)"
        for again in session.attempt_failed(call, f"{call.label()}: {why}"):
            running[self._submit(again)] = (session, again)
        self._finish_if_done(session)

    def _drop_cancelled(
        self,
        sessions: list[RunSession],
        running: Running,
        ready: list[Queued],
        retries: list[Queued],
    ) -> None:
        going = [s for s in sessions if not s.state.finished]
        for session in cancelled_elsewhere(self.services, going):
            session.cancel()
            self._finish_if_done(session)
            for future, (owner, _) in list(running.items()):
                if owner is session:
                    future.cancel()
                    running.pop(future)
            for waiting in (ready, retries):
                waiting[:] = [q for q in waiting if q[2] is not session]
                heapq.heapify(waiting)


def _run_in_thread(
    data: dict[str, Any], services: Services, cancel: threading.Event, starts: Any
) -> dict[str, Any]:
    call = StepCall.from_json(data)
    _started(call, starts)
    return run_call(call, services, cancel).to_json()
