"""The executor interface, and the table that picks one by name.

An executor drives :class:`~runtime.executors.session.RunSession` objects to
their end; the rules of a run live in the run state, so an executor only
decides where calls run and how their results come back.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from runtime.config import ConfigError
from runtime.executors.session import RunSession
from runtime.manifest import PipelineManifest
from runtime.services import Services

Pool = Literal["process", "thread"]


@dataclass(frozen=True)
class ExecutorOptions:
    """What a user may choose about execution; each executor reads what applies to it."""

    workers: int | None = None
    pool: Pool = "process"
    broker_url: str | None = None
    timeout: float | None = None
    """Seconds to wait for the runs before cancelling them (celery)."""
    on_notice: Callable[[str], None] | None = None
    """Told about conditions a user should know while waiting (no worker consuming)."""


class Interrupted(Exception):
    """The process running an executor was asked to stop (a signal); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Executor(ABC):
    """Runs sessions to completion on some pool of processes."""

    name: ClassVar[str]
    in_process: ClassVar[bool] = False
    """True if a run ends with the process that started it (its record names that owner)."""

    def prepare_inputs(
        self, pipeline: PipelineManifest, inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The inputs as this executor's workers will read them."""
        return dict(inputs)

    @abstractmethod
    def run(
        self, sessions: list[RunSession], on_finished: Callable[[RunSession], None] | None = None
    ) -> None:
        """Drive every session to its end; each is handed to ``on_finished`` as it ends."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release pools and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


EXECUTORS = {
    "local": "runtime.executors.local:LocalExecutor",
    "celery": "runtime.executors.celery_executor:CeleryExecutor",
}
"""Executor name -> its class, imported on first use (Celery is not loaded to run locally)."""


def open_executor(name: str, services: Services, options: ExecutorOptions) -> Executor:
    """The executor called ``name``, configured from ``options``."""
    try:
        module, _, attribute = EXECUTORS[name].partition(":")
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}"
        ) from None
    factory = getattr(importlib.import_module(module), attribute)
    executor: Executor = factory.from_options(services, options)
    return executor
