"""A hard wall-clock limit for code running in a process's main thread."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StepTimeout(Exception):
    """A step ran past its time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`StepTimeout` in this block after ``seconds`` (main thread only).

    Elsewhere (a thread) the block runs unlimited: the executor enforces the
    limit from outside instead.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(f"timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HARD_LIMIT_GRACE = 5.0
"""Seconds past a step's timeout before its process is killed, on every executor: the
soft limit (:func:`time_limit`) raises first and lets the step record its failure."""
