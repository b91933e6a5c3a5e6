"""The thread pool of ``--pool thread``: time limits it can enforce, threads it can give up.

A thread cannot be killed. At a call's soft limit the pool raises
:class:`~runtime.timeouts.StepTimeout` in the thread running it (CPython's
``PyThreadState_SetAsyncExc``: Python code stops at its next bytecode, a C call stops when
it returns); past the hard limit the thread is *abandoned*: a new thread takes its place
and, being a daemon, the stuck one never keeps the process from exiting. With
:class:`concurrent.futures.ThreadPoolExecutor` an endless plugin kept ``wtm run --pool
thread`` alive forever, since its threads are joined at exit (issue 13).
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from runtime.timeouts import StepTimeout

_messages: dict[int, str] = {}
"""Thread ident -> the message of the :class:`ThreadTimedOut` about to be raised in it."""


class ThreadTimedOut(StepTimeout):
    """A :class:`StepTimeout` raised in a pool thread from outside. Python instantiates it
    in that thread without arguments, so its message waits in :data:`_messages`."""

    def __init__(self) -> None:
        super().__init__(_messages.pop(threading.get_ident(), "timed out"))


ThreadTimedOut.__name__ = StepTimeout.__name__  # errors read alike on both pools


@dataclass
class _Work:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class ThreadPool(Executor):
    """``workers`` daemon threads taking calls in order; see the module docstring."""

    def __init__(self, workers: int, name: str = "wtm-step") -> None:
        self._workers = workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._running: dict[Future[Any], threading.Thread] = {}
        self._abandoned: set[threading.Thread] = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("ThreadPool.submit takes positional arguments only")
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            future: Future[Any] = Future()
            self._queue.put(_Work(future, fn, args))
            if len(self._threads) < self._workers:
                self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while me not in self._abandoned:
            work: _Work | None = None
            try:
                work = self._queue.get()
                if work is None:
                    break
                self._call(me, work)
            except ThreadTimedOut as late:  # raised just after its call returned
                if work is not None and not work.future.done():
                    work.future.set_exception(late)
        with self._lock:
            self._threads.discard(me)
            self._abandoned.discard(me)

    def _call(self, me: threading.Thread, work: _Work) -> None:
        if not work.future.set_running_or_notify_cancel():
            return
        with self._lock:
            self._running[work.future] = me
        try:
            result = work.fn(*work.args)
        except BaseException as exc:  # handed to the future's owner
            work.future.set_exception(exc)
        else:
            work.future.set_result(result)
        finally:
            with self._lock:
                self._running.pop(work.future, None)

    def interrupt(self, future: Future[Any], message: str) -> bool:
        """Raise :class:`ThreadTimedOut` with ``message`` in the thread running ``future``;
        whether it was running."""
        with self._lock:
            thread = self._running.get(future)
            if thread is None or thread.ident is None:
                return False
            _messages[thread.ident] = message
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(ThreadTimedOut)
            )
            return True

    def abandon(self, future: Future[Any]) -> None:
        """Give up the thread running ``future``: it ends when (if ever) the call returns,
        and a new thread takes its place now."""
        with self._lock:
            thread = self._running.pop(future, None)
            if thread is None:
                return
            self._abandoned.add(thread)
            self._threads.discard(thread)
            if not self._shutdown:
                self._start_thread()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``wait``, join the threads that were not abandoned."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work.future.cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
