"""The Workers screen with a broker: a real redis-server, a real `wtm worker`, Celery events."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runtime.execute import execute, prepare
from tests.services import redis_server, start_worker, stop_worker
from tests.tui.conftest import Bench, make_bench, screen_text, until
from tests.tui.helpers import dashboard
from tui.app import DashboardApp
from tui.celery_events import CeleryMonitor
from tui.screens.workers import WorkersScreen
from tui.widgets import LiveTable, plain

PARALLEL_HELD = """
inputs:
  gate1: {schema: {type: string}}
  gate2: {schema: {type: string}}
steps:
  - {id: "001", task: hold, with: {gate: $inputs.gate1}}
  - {id: "002", task: hold, with: {gate: $inputs.gate2}}
  - {id: "003", task: hold, with: {gate: $inputs.gate1, after: $001.held}}
  - {id: "004", task: hold, with: {gate: $inputs.gate2, after: $002.held}}
"""
"""Two branches of two steps; 001 and 002 run (on both worker slots) until their gates open."""
NAME = "tuitest"


@pytest.fixture(scope="module")
def celery_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bench, str]]:
    """A store with the test plugins, a private redis-server and a `wtm worker -c 2` on both."""
    root = tmp_path_factory.mktemp("celery-tui")
    for bench in make_bench(root):
        env = {"WTM_HOME": str(bench.home), "WTM_VISIBILITY_TIMEOUT": "30"}
        with redis_server(root) as broker:
            worker = start_worker(broker, env, root / "worker.log", name=NAME)
            try:
                yield bench, broker
            finally:
                stop_worker(worker)


@contextmanager
def restarted_redis(url: str, folder: Path) -> Iterator[None]:
    """A redis-server again on the port of ``url`` (after :func:`redis_server` stopped it)."""
    port = urlsplit(url).port
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(folder)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


def run_on_celery(
    bench: Bench, broker: str, name: str, steps_yaml: str, inputs: dict[str, str]
) -> str:
    """Run a pipeline on the celery executor to its end; its status."""
    checked, pins = prepare(bench.services, bench.manifest(name, steps_yaml))
    [session] = execute(
        bench.services, checked, pins, [inputs], executor="celery", workers=2, broker_url=broker
    )
    return str(bench.services.metadata.get_run(session.run_id).status)


def celery_row(app: DashboardApp) -> dict[str, str] | None:
    """Our worker's row of the Celery table, by column, as plain text."""
    screen = app.screen
    if not isinstance(screen, WorkersScreen):
        return None
    table = screen.celery_table
    key = next((k for k in table.row_keys if k.startswith(f"{NAME}@")), None)
    cells = table.row_cells(key) if key else None
    if cells is None:
        return None
    names = ["worker", "state", "active", "processed", "failed", "heartbeat", "load"]
    return dict(zip(names, map(plain, cells), strict=True))


@pytest.mark.celery
async def test_workers_screen_lists_the_celery_worker_live(
    celery_bench: tuple[Bench, str],
) -> None:
    bench, broker = celery_bench
    app = dashboard(bench, broker_url=broker)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        assert isinstance(app.screen, WorkersScreen)

        def online() -> bool:
            row = celery_row(app)
            return row is not None and row["state"] == "● online"

        await until(pilot, online, what="the worker online")
        text = screen_text(app)
        assert "queue celery: 0 waiting, 0 unacked" in text
        assert broker.removeprefix("redis://") in text
        row = celery_row(app)
        assert row is not None and row["heartbeat"].endswith("s ago")
        before = int(row["processed"])

        gates = {"gate1": str(bench.gate(1)), "gate2": str(bench.gate(2))}
        running = asyncio.create_task(
            asyncio.to_thread(run_on_celery, bench, broker, "held", PARALLEL_HELD, gates)
        )
        most_active = 0

        def active(wanted: int) -> bool:
            nonlocal most_active
            row = celery_row(app)
            assert row is not None
            most_active = max(most_active, int(row["active"]))
            return int(row["active"]) == wanted

        # 001 and 002 hold both worker slots until their gates open: 2 active tasks.
        await until(pilot, lambda: active(2), what="001 and 002 active on the worker")
        assert not running.done()
        bench.open_gate(1)
        bench.open_gate(2)

        def finished() -> bool:
            row = celery_row(app)
            assert row is not None
            return active(0) and running.done() and int(row["processed"]) >= before + 4

        await until(pilot, finished, timeout=60, what="processed to rise by 4 steps")
        assert await running == "succeeded"
        assert most_active == 2, "running steps show as active tasks, at most -c 2"
        row = celery_row(app)
        assert row is not None and row["failed"] == "0" and row["state"] == "● online"
        local = app.screen.query_one("#workers", LiveTable)
        await until(pilot, lambda: local.row_count >= 1, what="the workers in step records")


@pytest.mark.celery
async def test_a_broker_that_goes_away_shows_a_banner_and_reconnects(
    bench: Bench, tmp_path: Path
) -> None:
    with ExitStack() as redis:
        broker = redis.enter_context(redis_server(tmp_path))
        app = dashboard(bench, broker_url=broker)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await pilot.press("2")
            await until(
                pilot, lambda: "queue celery: 0 waiting" in screen_text(app), what="connected"
            )
            assert "no Celery worker heard of yet" in screen_text(app)
            redis.close()  # the redis-server is terminated
            await until(
                pilot,
                lambda: "Celery broker" in screen_text(app) and "unreachable" in screen_text(app),
                what="the banner",
            )
            assert app.is_running and isinstance(app.screen, WorkersScreen)
            assert any("Celery broker lost" in n for n in app.notices)
            await pilot.press("1", "2")
            assert "unreachable" in screen_text(app), "the banner is back with the screen"
            with restarted_redis(broker, tmp_path):
                await until(
                    pilot,
                    lambda: (
                        "unreachable" not in screen_text(app)
                        and "queue celery: 0 waiting" in screen_text(app)
                    ),
                    timeout=60,
                    what="the reconnection",
                )
                assert any("reconnected" in n for n in app.notices)


def test_events_out_of_order_and_a_worker_going_offline() -> None:
    monitor = CeleryMonitor("redis://127.0.0.1:1/0", lambda snapshot: None)
    now = time.time()

    def event(kind: str, **fields: object) -> None:
        base = {"type": kind, "hostname": "w@h", "timestamp": now, "local_received": now}
        monitor.apply({**base, **fields})

    event("worker-online", freq=2.0)
    event("worker-heartbeat", freq=2.0, active=0, processed=0, loadavg=[0.5, 0.4, 0.3])
    event("task-received", uuid="a", name="wtm.step")
    event("task-succeeded", uuid="a", clock=3)  # before its task-started, from another process
    event("task-started", uuid="a", clock=2)
    event("task-received", uuid="b", name="wtm.step")
    event("task-started", uuid="b")
    event("task-failed", uuid="c")
    [worker] = monitor.snapshot().workers
    assert (worker.active, worker.processed, worker.failed) == (1, 2, 1)
    assert worker.online(now + 1) and not worker.online(now + 5)
    assert worker.load == 0.5
    event("task-started", uuid="x")  # a foreach step replacing itself with a chord:
    event("task-sent", uuid="y", parent_id="x")  # its chunks are sent, no event of its end
    [worker] = monitor.snapshot().workers
    assert worker.active == 1, "only b"
    event("task-started", uuid="p", timestamp=now + 1)  # p ends in an event lost on the way
    event("task-started", uuid="q", timestamp=now + 2)
    event("worker-heartbeat", freq=2.0, active=1, timestamp=now + 3)
    [worker] = monitor.snapshot().workers
    assert worker.active == 1, "the heartbeat counts one active task: q, the most recent"
    event("worker-offline")
    [worker] = monitor.snapshot().workers
    assert worker.hostname == "w@h" and not worker.online(now) and worker.active == 0
