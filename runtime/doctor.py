"""``wtm doctor``: does every configured service answer, how fast, and which version?"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from runtime.config import Settings, mask_url
from runtime.stores import open_artifact_store, open_metadata_store

PROBE_KEY = "wtm-doctor/probe"


@dataclass(frozen=True)
class Check:
    """The answer of one service."""

    component: str
    target: str
    ok: bool
    version: str = ""
    latency_ms: float | None = None
    detail: str = ""


def _timed(component: str, target: str, probe: Callable[[], tuple[str, str]]) -> Check:
    started = time.perf_counter()
    try:
        version, detail = probe()
    except Exception as exc:  # a service that does not answer is the finding, not a crash
        message = " ".join(str(exc).split()) or type(exc).__name__
        return Check(component, target, False, detail=message[:200])
    return Check(
        component, target, True, version, round((time.perf_counter() - started) * 1000, 1), detail
    )


def check_artifacts(settings: Settings) -> Check:
    def probe() -> tuple[str, str]:
        store = open_artifact_store(settings.artifacts, settings)
        store.exists(PROBE_KEY)
        return getattr(store, "server_version", lambda: "")(), ""

    return _timed("artifacts", mask_url(settings.artifacts), probe)


def check_metadata(settings: Settings) -> Check:
    def probe() -> tuple[str, str]:
        store = open_metadata_store(settings.metadata)
        try:
            runs = store.list_runs(limit=1)
            version = getattr(store, "server_version", lambda: "")() or (
                f"SQLite {sqlite3.sqlite_version}" if settings.metadata.startswith("sqlite") else ""
            )
            latest = f"latest run {runs[0].run_id}" if runs else "no runs yet"
            return version, latest
        finally:
            store.close()

    return _timed("metadata", mask_url(settings.metadata), probe)


def check_broker(settings: Settings) -> Check:
    url = settings.broker_url
    if not url:
        return Check("broker", "not configured", True, detail="the local executor needs none")

    def probe() -> tuple[str, str]:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        info = client.info("server")
        queued = client.llen("celery")
        return f"Redis {info['redis_version']}", f"{queued} task(s) queued"

    return _timed("broker", mask_url(url), probe)


def check_workers(settings: Settings) -> Check:
    url = settings.broker_url
    if not url:
        return Check("workers", "not configured", True, detail="no broker")

    def probe() -> tuple[str, str]:
        from runtime.executors.celery_app import make_app

        answers = make_app(url).control.ping(timeout=1.0)
        if not answers:
            raise RuntimeError("no worker answered a ping within 1 s: start one with wtm worker")
        names = sorted(name for answer in answers for name in answer)
        return "", f"{len(names)} answering: {', '.join(names)}"

    return _timed("workers", mask_url(url), probe)


def check_cache(settings: Settings) -> Check:
    folder = Path(settings.cache_dir)

    def probe() -> tuple[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder} is not writable")
        free = shutil.disk_usage(folder).free
        return "", f"{free / 2**30:.1f} GiB free"

    return _timed("cache", str(folder), probe)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in a fixed order."""
    return [
        check(settings)
        for check in (check_artifacts, check_metadata, check_broker, check_workers, check_cache)
    ]
