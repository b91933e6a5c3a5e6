"""The SQLite metadata store shared by several worker processes and threads at once."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import sqlite3
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runtime.stores.errors import StoreError
from runtime.stores.metadata import RunRecord, StepRecord, ValueRecord
from runtime.stores.sqlite import MIGRATIONS, SqliteMetadataStore
from tests.conftest import ROOT

PROCESSES = 4
RECORDS = 40


def write_records(store: SqliteMetadataStore, worker: int) -> None:
    """What one worker process does: its own steps and values, plus a step all of them share."""
    store.create_run(RunRecord(run_id=f"run-{worker}", pipeline="p", pipeline_version="1"))
    for n in range(RECORDS):
        step_id = f"{worker:02}{n:03}"
        store.record_step(StepRecord(run_id="shared", step_id=step_id, status="running"))
        store.record_value(
            ValueRecord(
                run_id="shared",
                value_id=f"output_{step_id}_x",
                data_id=f"d{n}",
                producer=step_id,
                port="x",
                value={"n": n},
            )
        )
        store.record_step(
            StepRecord(run_id="shared", step_id=step_id, status="succeeded", worker=str(worker))
        )
        store.update_run(f"run-{worker}", status="running", outputs={"done": n})
    # every worker got the same redelivered task: one success must win and stay
    for status in ("running", "succeeded", "running", "failed"):
        store.record_step(
            StepRecord(run_id="shared", step_id="redelivered", status=status, worker=str(worker))
        )
    store.record_value(
        ValueRecord(run_id="shared", value_id="same", data_id=str(worker), producer="p", port="x")
    )


def open_and_write(path: str, worker: int, start: Any, results: Any) -> None:
    """A spawned worker: open the (maybe not yet created) database when all are ready, write."""
    try:
        start.wait()
        with SqliteMetadataStore(path) as store:
            write_records(store, worker)
        results.put((worker, "ok"))
    except BaseException:
        results.put((worker, traceback.format_exc()))


def write_with_inherited(store: SqliteMetadataStore, worker: int, results: Any) -> None:
    """A forked worker using the store its parent opened."""
    try:
        write_records(store, worker)
        results.put((worker, "ok"))
    except BaseException:
        results.put((worker, traceback.format_exc()))


def check_all_written(store: SqliteMetadataStore, workers: int) -> None:
    steps = {s.step_id: s for s in store.list_steps("shared")}
    assert len(steps) == workers * RECORDS + 1
    assert all(s.status == "succeeded" for s in steps.values())
    assert len(store.list_values("shared")) == workers * RECORDS + 1
    assert {r.run_id for r in store.list_runs(status="running")} == {
        f"run-{w}" for w in range(workers)
    }
    assert all(r.outputs == {"done": RECORDS - 1} for r in store.list_runs())


def run_processes(ctx: Any, target: Any, args: list[tuple[Any, ...]]) -> None:
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, results)) for a in args]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
    reports = {}
    with contextlib.suppress(queue.Empty):
        for _ in processes:
            worker, report = results.get(timeout=5)
            reports[worker] = report
    failures = [r for r in reports.values() if r != "ok"]
    assert not failures, "\n".join(failures)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    assert len(reports) == len(processes)


def test_processes_create_and_write_one_database_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "wtm.db")
    start = ctx.Barrier(PROCESSES)
    run_processes(ctx, open_and_write, [(path, w, start) for w in range(PROCESSES)])
    with SqliteMetadataStore(path) as store:
        check_all_written(store, PROCESSES)


def forked_reuse(path: str) -> None:
    """Fork workers that use a store their parent opened (as Celery's prefork pool does)."""
    ctx = multiprocessing.get_context("fork")
    store = SqliteMetadataStore(path)
    assert store.list_runs() == []  # the parent holds a connection when it forks
    run_processes(ctx, write_with_inherited, [(store, w) for w in range(PROCESSES)])
    check_all_written(store, PROCESSES)
    store.close()


def test_forked_workers_reuse_a_store_opened_before_the_fork(tmp_path: Path) -> None:
    # Forked from a fresh interpreter: forking the test process, whose other tests leave
    # threads running, can deadlock a child on a lock some thread held at the fork.
    script = (
        f"from tests.test_sqlite_concurrency import forked_reuse; "
        f"forked_reuse({str(tmp_path / 'wtm.db')!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_threads_share_one_store(tmp_path: Path) -> None:
    with SqliteMetadataStore(tmp_path / "wtm.db") as store, ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda w: write_records(store, w), range(6)))
        check_all_written(store, 6)


def test_the_database_persists_with_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "state" / "wtm.db"
    with SqliteMetadataStore(path) as store:
        store.create_run(RunRecord(run_id="r1", pipeline="p", pipeline_version="1"))
    with SqliteMetadataStore(path) as store:
        assert store.get_run("r1") is not None
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="upgrade wtm"):
        SqliteMetadataStore(path)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "wtm.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_run("r1")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "wtm.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        SqliteMetadataStore(path)


def test_a_busy_database_is_retried_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "wtm.db"
    store = SqliteMetadataStore(path, timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    store.create_run(RunRecord(run_id="r1", pipeline="p", pipeline_version="1"))
    release.join()
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="locked"):
        store.create_run(RunRecord(run_id="r2", pipeline="p", pipeline_version="1"))
    holder.execute("ROLLBACK")
    holder.close()
    assert [r.run_id for r in store.list_runs()] == ["r1"]
    store.close()
