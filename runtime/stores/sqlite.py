"""The embedded metadata store: one SQLite file shared by threads and worker processes.

The journal is WAL (readers never wait for the writer). Every write is one
``BEGIN IMMEDIATE`` transaction: it takes the write lock up front, waits for
it up to the busy timeout, and is retried a bounded number of times, so
concurrent workers queue instead of failing with "database is locked". Each
thread, and each process after a fork, opens its own connection. JSON fields
are stored as TEXT. The schema version is ``PRAGMA user_version``, upgraded
by :data:`MIGRATIONS`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from runtime.stores.errors import Conflict, NotFound, StoreError
from runtime.stores.metadata import (
    ACTIVE_RUN_STATUSES,
    NO_ITEM,
    CacheEntry,
    CacheStats,
    MetadataStore,
    PipelineRecord,
    PluginRecord,
    Record,
    RunRecord,
    StepRecord,
    ValueRecord,
    apply_run_update,
    status_filter,
    step_update_allowed,
    utc_iso,
)

_SCHEMA_V1 = (
    """CREATE TABLE plugins (
        name TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL,
        size INTEGER NOT NULL, object_key TEXT NOT NULL, manifest TEXT NOT NULL,
        inputs TEXT NOT NULL, outputs TEXT NOT NULL, source TEXT NOT NULL,
        installed_at TEXT NOT NULL,
        PRIMARY KEY (name, version))""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, pipeline_version TEXT NOT NULL,
        inputs TEXT NOT NULL, status TEXT NOT NULL, executor TEXT NOT NULL,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, error TEXT,
        outputs TEXT NOT NULL, plugins TEXT NOT NULL, batch_id TEXT)""",
    "CREATE INDEX runs_by_created ON runs (created_at)",
    "CREATE INDEX runs_by_status ON runs (status, created_at)",
    """CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, item INTEGER NOT NULL,
        task TEXT NOT NULL, task_version TEXT NOT NULL, digest TEXT NOT NULL,
        input_id TEXT NOT NULL, output_id TEXT NOT NULL, status TEXT NOT NULL,
        attempt INTEGER NOT NULL, worker TEXT, started_at TEXT, finished_at TEXT,
        seconds REAL, inputs TEXT NOT NULL, outputs TEXT NOT NULL, edges TEXT NOT NULL,
        error TEXT, traceback_tail TEXT,
        PRIMARY KEY (run_id, step_id, item))""",
    """CREATE TABLE run_values (
        run_id TEXT NOT NULL, value_id TEXT NOT NULL, data_id TEXT NOT NULL,
        producer TEXT NOT NULL, port TEXT NOT NULL, value TEXT NOT NULL, uri TEXT,
        size INTEGER NOT NULL, sources TEXT NOT NULL,
        PRIMARY KEY (run_id, value_id))""",
)
_RUN_OWNER = ("ALTER TABLE runs ADD COLUMN owner TEXT",)
_STEP_CACHE = (
    "ALTER TABLE steps ADD COLUMN cached_from TEXT",
    """CREATE TABLE step_cache (
        key TEXT PRIMARY KEY, task TEXT NOT NULL, task_version TEXT NOT NULL,
        digest TEXT NOT NULL, run_id TEXT NOT NULL, step_id TEXT NOT NULL,
        item INTEGER NOT NULL, outputs TEXT NOT NULL, seconds REAL NOT NULL,
        size INTEGER NOT NULL, created_at TEXT NOT NULL, artifacts TEXT NOT NULL)""",
    "CREATE INDEX step_cache_by_task ON step_cache (task, task_version, created_at)",
)
_PIPELINES_TABLE = (
    """CREATE TABLE pipelines (
        name TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL, text TEXT NOT NULL,
        description TEXT NOT NULL, inputs TEXT NOT NULL, steps INTEGER NOT NULL,
        registered_at TEXT NOT NULL,
        PRIMARY KEY (name, version))""",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _SCHEMA_V1,
    _RUN_OWNER,
    _STEP_CACHE,
    _PIPELINES_TABLE,
)
"""``MIGRATIONS[i]`` upgrades schema version ``i`` to ``i + 1``."""

WRITE_ATTEMPTS = 5
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

R = TypeVar("R", bound=Record)
T = TypeVar("T")


class _Table(Generic[R]):
    """Maps one record class to one table: a column per field, JSON fields as TEXT."""

    def __init__(self, name: str, record: type[R], key: Sequence[str], json_fields: Sequence[str]):
        self.name = name
        self.record = record
        self.key = tuple(key)
        self.json_fields = frozenset(json_fields)
        self.columns = tuple(f.name for f in dataclasses.fields(record))
        cols = ", ".join(self.columns)
        marks = ", ".join("?" * len(self.columns))
        self.insert = f"INSERT INTO {name} ({cols}) VALUES ({marks})"
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c not in self.key)
        self.upsert = f"{self.insert} ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"
        self.insert_new = f"{self.insert} ON CONFLICT DO NOTHING"
        self.where_key = " AND ".join(f"{c} = ?" for c in self.key)

    def row(self, record: R) -> tuple[Any, ...]:
        return tuple(
            json.dumps(getattr(record, c)) if c in self.json_fields else getattr(record, c)
            for c in self.columns
        )

    def load(self, row: sqlite3.Row) -> R:
        return self.record(
            **{c: json.loads(row[c]) if c in self.json_fields else row[c] for c in self.columns}
        )


_PLUGINS = _Table("plugins", PluginRecord, ("name", "version"), ("manifest", "inputs", "outputs"))
_RUNS = _Table("runs", RunRecord, ("run_id",), ("inputs", "outputs", "plugins"))
_STEPS = _Table("steps", StepRecord, ("run_id", "step_id", "item"), ("inputs", "outputs", "edges"))
_VALUES = _Table("run_values", ValueRecord, ("run_id", "value_id"), ("value", "sources"))
_PIPELINES = _Table("pipelines", PipelineRecord, ("name", "version"), ("inputs",))
_CACHE = _Table("step_cache", CacheEntry, ("key",), ("outputs", "artifacts"))


class SqliteMetadataStore(MetadataStore):
    """Metadata in the SQLite file at ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 10.0) -> None:
        self.path = Path(path).absolute()
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc}") from None
        self._migrate()

    # connections and transactions

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.describe()} is closed")
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.conn, self._local.pid = self._connect(), pid
            with self._lock:
                # connections inherited through fork() stay referenced and are never closed
                self._connections.append((pid, self._local.conn))
        conn: sqlite3.Connection = self._local.conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.describe()}: {exc}") from None
        conn.row_factory = sqlite3.Row
        return conn

    def _retry(self, work: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._connection()
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if not write:
                    return work(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.Error as exc:
                busy = exc.sqlite_errorcode & 0xFF in _BUSY_CODES
                if not busy or attempt + 1 == WRITE_ATTEMPTS:
                    raise StoreError(f"{self.describe()}: {exc}") from exc
                time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
        raise AssertionError("unreachable")

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return self._retry(work, write=True)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._retry(lambda conn: conn.execute(sql, params).fetchall(), write=False)

    def _migrate(self) -> None:
        def version(conn: sqlite3.Connection) -> int:
            found: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > len(MIGRATIONS):
                raise StoreError(
                    f"{self.describe()} has schema version {found}; "
                    f"this wtm knows up to {len(MIGRATIONS)}: upgrade wtm"
                )
            return found

        def upgrade(conn: sqlite3.Connection) -> None:
            for statements in MIGRATIONS[version(conn) :]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

        self._retry(lambda conn: conn.execute("PRAGMA journal_mode = WAL"), write=False)
        if self._retry(version, write=False) < len(MIGRATIONS):
            self._write(upgrade)

    def _get(self, table: _Table[R], *key: Any) -> R | None:
        rows = self._query(f"SELECT * FROM {table.name} WHERE {table.where_key}", key)
        return table.load(rows[0]) if rows else None

    def _insert(self, table: _Table[R], record: R, conflict: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(table.insert, table.row(record))
            except sqlite3.IntegrityError:
                raise Conflict(conflict) from None

        self._write(work)

    # plugins

    def add_plugin(self, record: PluginRecord) -> None:
        conflict = f"plugin {record.name}@{record.version} is already installed"
        self._insert(_PLUGINS, record, conflict)

    def replace_plugin(self, record: PluginRecord) -> None:
        self._write(lambda conn: conn.execute(_PLUGINS.upsert, _PLUGINS.row(record)))

    def get_plugin(self, name: str, version: str) -> PluginRecord | None:
        return self._get(_PLUGINS, name, version)

    def list_plugins(self, name: str | None = None) -> list[PluginRecord]:
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._query(f"SELECT * FROM plugins {where} ORDER BY name, version", params)
        return [_PLUGINS.load(row) for row in rows]

    def remove_plugin(self, name: str, version: str) -> bool:
        sql = "DELETE FROM plugins WHERE name = ? AND version = ?"
        return self._write(lambda conn: conn.execute(sql, (name, version)).rowcount > 0)

    # pipelines

    def add_pipeline(self, record: PipelineRecord) -> None:
        conflict = f"pipeline {record.name}@{record.version} is already registered"
        self._insert(_PIPELINES, record, conflict)

    def replace_pipeline(self, record: PipelineRecord) -> None:
        self._write(lambda conn: conn.execute(_PIPELINES.upsert, _PIPELINES.row(record)))

    def get_pipeline(self, name: str, version: str) -> PipelineRecord | None:
        return self._get(_PIPELINES, name, version)

    def list_pipelines(self, name: str | None = None) -> list[PipelineRecord]:
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._query(f"SELECT * FROM pipelines {where} ORDER BY name, version", params)
        return [_PIPELINES.load(row) for row in rows]

    def remove_pipeline(self, name: str, version: str) -> bool:
        sql = "DELETE FROM pipelines WHERE name = ? AND version = ?"
        return self._write(lambda conn: conn.execute(sql, (name, version)).rowcount > 0)

    # runs

    def create_run(
        self,
        record: RunRecord,
        values: Sequence[ValueRecord] = (),
        steps: Sequence[StepRecord] = (),
    ) -> None:
        rows = [_VALUES.row(v) for v in values]

        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_RUNS.insert, _RUNS.row(record))
            except sqlite3.IntegrityError:
                raise Conflict(f"run {record.run_id} already exists") from None
            _write_records(conn, rows, steps, [])

        self._write(work)

    def update_run(self, run_id: str, /, **fields: Any) -> RunRecord:
        def work(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id}")
            record = apply_run_update(_RUNS.load(row), fields)
            conn.execute(_RUNS.upsert, _RUNS.row(record))
            return record

        return self._write(work)

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._get(_RUNS, run_id)

    def list_runs(
        self,
        status: str | Collection[str] | None = None,
        limit: int | None = 50,
        since: str | datetime | None = None,
    ) -> list[RunRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        statuses = status_filter(status)
        if statuses is not None:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(utc_iso(since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM runs {where} ORDER BY created_at DESC, run_id DESC LIMIT ?"
        rows = self._query(sql, [*params, -1 if limit is None else limit])
        return [_RUNS.load(row) for row in rows]

    def runs_using_plugin(self, name: str, version: str) -> list[str]:
        ref = f"{name}@{version}"
        marks = ", ".join("?" * len(ACTIVE_RUN_STATUSES))
        sql = (
            "SELECT DISTINCT runs.run_id, runs.created_at FROM runs, json_each(runs.plugins) AS p"
            f" WHERE runs.status IN ({marks})"
            " AND (p.value = ? OR substr(p.value, 1, ?) = ?)"
            " ORDER BY runs.created_at, runs.run_id"
        )
        params = [*ACTIVE_RUN_STATUSES, ref, len(ref) + 1, ref + "#"]
        return [row["run_id"] for row in self._query(sql, params)]

    # steps

    def record_step(self, record: StepRecord) -> bool:
        return self._write(lambda conn: _record_step(conn, record))

    def get_step(self, run_id: str, step_id: str, item: int = NO_ITEM) -> StepRecord | None:
        return self._get(_STEPS, run_id, step_id, item)

    def list_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY step_id, item", (run_id,))
        return [_STEPS.load(row) for row in rows]

    # values

    def record_value(self, record: ValueRecord) -> bool:
        row = _VALUES.row(record)
        return self._write(lambda conn: conn.execute(_VALUES.insert_new, row).rowcount > 0)

    def record(
        self,
        values: Sequence[ValueRecord] = (),
        steps: Sequence[StepRecord] = (),
        cache: Sequence[CacheEntry] = (),
    ) -> None:
        """Values, steps and cache entries in one transaction."""
        rows = [_VALUES.row(v) for v in values]
        entries = [_CACHE.row(e) for e in cache]
        if rows or steps or entries:
            self._write(lambda conn: _write_records(conn, rows, steps, entries))

    # step cache

    def put_cache_entries(self, entries: Sequence[CacheEntry]) -> None:
        self.record(cache=entries)

    def cache_entries(self, keys: Collection[str]) -> dict[str, CacheEntry]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CacheEntry] = {}
        for start in range(0, len(wanted), 500):  # SQLite's bound on ? parameters
            part = wanted[start : start + 500]
            sql = f"SELECT * FROM step_cache WHERE key IN ({', '.join('?' * len(part))})"
            found |= {row["key"]: _CACHE.load(row) for row in self._query(sql, part)}
        return found

    def cache_stats(self) -> list[CacheStats]:
        entries = self._query(
            "SELECT task, task_version, count(*) AS entries, sum(size) AS size,"
            " min(created_at) AS oldest, max(created_at) AS newest"
            " FROM step_cache GROUP BY task, task_version ORDER BY task, task_version"
        )
        hits = {
            (row["task"], row["task_version"]): row["hits"]
            for row in self._query(
                "SELECT task, task_version, count(*) AS hits FROM steps"
                " WHERE cached_from IS NOT NULL GROUP BY task, task_version"
            )
        }
        return [
            CacheStats(
                row["task"],
                row["task_version"],
                row["entries"],
                row["size"] or 0,
                row["oldest"],
                row["newest"],
                hits.get((row["task"], row["task_version"]), 0),
            )
            for row in entries
        ]

    def clear_cache(
        self,
        task: str | None = None,
        version: str | None = None,
        before: str | datetime | None = None,
    ) -> int:
        clauses, params = [], []
        for column, value in (("task", task), ("task_version", version)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("created_at < ?")
            params.append(utc_iso(before))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"DELETE FROM step_cache{where}"
        return self._write(lambda conn: conn.execute(sql, params).rowcount)

    def get_value(self, run_id: str, value_id: str) -> ValueRecord | None:
        return self._get(_VALUES, run_id, value_id)

    def list_values(self, run_id: str) -> list[ValueRecord]:
        sql = "SELECT * FROM run_values WHERE run_id = ? ORDER BY value_id"
        return [_VALUES.load(row) for row in self._query(sql, (run_id,))]

    # lifetime

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            self._closed = True
            for owner, conn in self._connections:
                if owner == pid:
                    conn.close()
            self._connections = [(o, c) for o, c in self._connections if o != pid]


def _record_step(conn: sqlite3.Connection, record: StepRecord) -> bool:
    """Within a write transaction: upsert ``record`` if :func:`step_update_allowed`."""
    key = (record.run_id, record.step_id, record.item)
    row = conn.execute(f"SELECT * FROM steps WHERE {_STEPS.where_key}", key).fetchone()
    if not step_update_allowed(_STEPS.load(row) if row else None, record):
        return False
    conn.execute(_STEPS.upsert, _STEPS.row(record))
    return True


def _write_records(
    conn: sqlite3.Connection,
    values: list[tuple[Any, ...]],
    steps: Sequence[StepRecord],
    entries: list[tuple[Any, ...]],
) -> None:
    """Within a write transaction: value rows, step records and cache entry rows."""
    if values:
        conn.executemany(_VALUES.insert_new, values)
    for step in steps:
        _record_step(conn, step)
    if entries:
        conn.executemany(_CACHE.upsert, entries)
