"""The context handed to a task when it runs."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Cancelled(Exception):
    """Raised inside a task when its run was cancelled."""


class ArtifactReader(Protocol):
    """What a task may do with the artifact store."""

    def local_path(self, ref: str) -> Path:
        """A readable local file for a path or an ``artifact://`` URI."""
        ...

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        """Store bytes once (by digest) and return their ``artifact://`` URI."""
        ...


@dataclass
class TaskContext:
    """Run ID, step ID, a logger, artifact access and cancellation for one step execution."""

    run_id: str
    step_id: str
    artifacts: ArtifactReader
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("wtm.task"))
    attempt: int = 1
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled; long tasks should check it between items."""
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the run was cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled(f"run {self.run_id} was cancelled")

    def local_path(self, ref: str) -> Path:
        """A local file for ``ref``: a plain path, or an ``artifact://`` URI fetched to cache."""
        return self.artifacts.local_path(ref)
