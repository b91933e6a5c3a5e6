"""The Celery application of wtm workers and clients: Redis, JSON only, late acks.

Settings that matter (see ../shared/INFRA_NOTES.md and Celery issues #5935,
#8182, #3317, #6029, #4207, #1789): Redis as broker, JSON serialization only,
prefetch 1, task events on for Flower and the dashboard. Recovery is wtm's own
(:mod:`runtime.executors.liveness`), not Celery's: a pool process that dies is
*not* redelivered by Celery (``reject_on_worker_lost`` off: that redelivered a
plugin killing its process forever), running tasks are *not* cancelled when
the broker connection drops (a cancelled call would only run again), and
publishing retries for two minutes while Redis restarts. ``acks_late`` with
the ``visibility_timeout`` remain as a backstop for a message taken by a
worker that died before it claimed the call.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import redis
from celery import Celery
from kombu import Producer

from runtime.config import ConfigError, mask_url

DEFAULT_VISIBILITY_TIMEOUT = 3600
RESULT_EXPIRES = 24 * 3600
PUBLISH_RETRY = {"max_retries": 120, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
"""Publishing waits up to about two minutes for a broker that restarts (celery #1789)."""


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"env {name}: {raw!r} is not a number of seconds") from None


class BrokerUnavailable(ConfigError):
    """The broker does not answer."""


@functools.lru_cache(maxsize=8)
def _redis_client(broker_url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)


def require_redis_url(broker_url: str) -> None:
    """Raise :class:`ConfigError` unless ``broker_url`` is a ``redis://`` or ``rediss://``
    URL (the one broker wtm supports)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        raise ConfigError(
            f"broker {mask_url(broker_url)!r}: the celery executor needs a redis:// "
            "or rediss:// URL"
        )


def check_broker(broker_url: str, timeout: float = 3.0) -> None:
    """Raise :class:`BrokerUnavailable` (one line, no password) unless Redis answers a ping."""
    require_redis_url(broker_url)
    try:
        _redis_client(broker_url, timeout).ping()
    except redis.RedisError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerUnavailable(
            f"cannot reach the broker at {mask_url(broker_url)}: {reason}"
        ) from None


def client_app(broker_url: str) -> Celery:
    """The configured app this process submits runs with: one per broker and settings,
    kept with its connection pools (a new app per run costs several milliseconds)."""
    return _cached_app(
        broker_url,
        os.environ.get("WTM_VISIBILITY_TIMEOUT"),
        os.environ.get("WTM_UNACKED_RESTORE_INTERVAL"),
    )


@functools.lru_cache(maxsize=8)
def _cached_app(broker_url: str, *settings: str | None) -> Celery:
    """``make_app``, cached on the URL and the environment settings it reads."""
    return make_app(broker_url)


def make_app(broker_url: str) -> Celery:
    """A configured Celery app for ``broker_url`` (a ``redis://`` URL)."""
    require_redis_url(broker_url)
    app = Celery(
        "wtm", broker=broker_url, backend=broker_url, include=["runtime.executors.celery_tasks"]
    )
    transport = {
        "visibility_timeout": _seconds("WTM_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT)
    }
    restore = os.environ.get("WTM_UNACKED_RESTORE_INTERVAL")
    if restore:
        transport["unacked_restore_interval"] = _seconds("WTM_UNACKED_RESTORE_INTERVAL", 10)
        transport["unacked_restore_throttle"] = 1
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=RESULT_EXPIRES,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry=True,
        task_publish_retry_policy=PUBLISH_RETRY,
        broker_connection_retry_on_startup=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
    )
    return app


@contextlib.contextmanager
def batched_publishing(app: Celery) -> Iterator[Producer]:
    """A producer whose messages go to Redis in pipelined batches, flushed on exit.

    Publishing one message per round trip is what limits a wide fan-out; kombu's
    ``Producer.batch`` (kombu 5.7) buffers them. Where kombu or the connection cannot
    batch safely, messages are published at once as usual.
    """
    with app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)
        with batch() if batch is not None else contextlib.nullcontext():
            yield producer
