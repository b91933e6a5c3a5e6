"""The one thread that talks to the store.

Every store call of the dashboard runs on a single background thread, so the
UI thread never blocks on I/O and the embedded SQLite store (one connection per
thread) keeps one connection however long the dashboard runs. The store is
opened lazily on that thread, and opened again after a failure to open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from runtime.services import Services
from runtime.stores.metadata import MetadataStore

T = TypeVar("T")
ServicesFactory = Callable[[], Services]


class StoreIO:
    """Runs functions of the opened :class:`Services` on one dedicated thread."""

    def __init__(self, open_services: ServicesFactory) -> None:
        self._open = open_services
        self._services: Services | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="wtm-dashboard-store")
        self.described = ""

    def _ensure(self) -> Services:
        if self._services is None:
            self._services = self._open()
            self.described = self._services.metadata.describe()
        return self._services

    @property
    def services(self) -> Services:
        """The opened services; only for functions running on the store thread."""
        return self._ensure()

    @property
    def store(self) -> MetadataStore:
        """The metadata store; only for functions running on the store thread."""
        return self._ensure().metadata

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store thread, awaited from the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args))

    async def with_store(self, fn: Callable[[MetadataStore], T]) -> T:
        """``fn(store)`` on the store thread (opening the store first if needed)."""
        return await self.call(lambda: fn(self.store))

    def _drop(self) -> None:
        services, self._services = self._services, None
        if services is not None:
            with contextlib.suppress(Exception):  # it failed already; let its connections go
                services.close()

    def reset(self) -> None:
        """Close the store after a failure; the next call opens it again (on its thread)."""
        self._pool.submit(self._drop)

    def close(self) -> None:
        """Close the store on its thread and stop the thread."""

        with contextlib.suppress(Exception):  # closing is best effort; the process is ending
            self._pool.submit(self._drop).result(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
