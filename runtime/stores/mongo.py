"""The production metadata store: MongoDB through ``pymongo``.

A ``mongodb://`` (or ``mongodb+srv://``) URL names the server and, in its path,
the database (``wtm`` by default). Six collections (``plugins``, ``pipelines``, ``runs``,
``steps``, ``values``, ``step_cache``) hold one document per record with ``schema_version``;
unique indexes on the record keys make repeated writes idempotent, and a step
update is a read, a decision by :func:`step_update_allowed`, and a replace
conditional on what was read, retried when another writer got there first.
Fields that may hold arbitrary JSON (manifests and port schemas, run inputs
and outputs, values) are stored as JSON text, so keys such as ``$ref`` and
integers beyond 64 bits round-trip as they do in the SQLite store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pymongo
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection as MongoCollection
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from runtime.config import MASK, mask_url
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

SCHEMA_VERSION = 1
DEFAULT_DATABASE = "wtm"
TIMEOUT_MS = 3000
STEP_ATTEMPTS = 8
"""How many times :meth:`MongoMetadataStore.record_step` retries after losing a race."""

R = TypeVar("R", bound=Record)
Document = dict[str, Any]

_JSON_FIELDS: dict[type[Record], tuple[str, ...]] = {
    PluginRecord: ("manifest", "inputs", "outputs"),
    RunRecord: ("inputs", "outputs"),
    StepRecord: (),
    ValueRecord: ("value",),
    CacheEntry: ("outputs", "artifacts"),
    PipelineRecord: ("inputs",),
}
_KEYS: dict[type[Record], tuple[str, ...]] = {
    PluginRecord: ("name", "version"),
    RunRecord: ("run_id",),
    StepRecord: ("run_id", "step_id", "item"),
    ValueRecord: ("run_id", "value_id"),
    CacheEntry: ("key",),
    PipelineRecord: ("name", "version"),
}
INDEXES: dict[str, list[tuple[str, list[tuple[str, int]], bool]]] = {
    "plugins": [("plugins_by_name_version", [("name", ASCENDING), ("version", ASCENDING)], True)],
    "runs": [
        ("runs_by_id", [("run_id", ASCENDING)], True),
        ("runs_by_created", [("created_at", DESCENDING), ("run_id", DESCENDING)], False),
        (
            "runs_by_status",
            [("status", ASCENDING), ("created_at", DESCENDING), ("run_id", DESCENDING)],
            False,
        ),
        ("runs_by_plugin", [("plugins", ASCENDING), ("status", ASCENDING)], False),
    ],
    "steps": [
        (
            "steps_by_key",
            [("run_id", ASCENDING), ("step_id", ASCENDING), ("item", ASCENDING)],
            True,
        )
    ],
    "values": [("values_by_key", [("run_id", ASCENDING), ("value_id", ASCENDING)], True)],
    "pipelines": [
        ("pipelines_by_name_version", [("name", ASCENDING), ("version", ASCENDING)], True)
    ],
    "step_cache": [
        ("cache_by_key", [("key", ASCENDING)], True),
        ("cache_by_task", [("task", ASCENDING), ("task_version", ASCENDING)], False),
    ],
}
"""Per collection: (index name, keys, unique)."""
_NOISE = re.compile(r"\s*\(configured timeouts:[^)]*\)|^[^\s:]+:\d+: |\[Errno -?\d+\] ")


def database_name(url: str) -> str:
    """The database named by the path of a MongoDB URL, or ``wtm``."""
    path = urlsplit(url).path.lstrip("/")
    return unquote(path) or DEFAULT_DATABASE


def hosts_of(url: str) -> str:
    """The ``host:port`` list of a MongoDB URL, without user info."""
    authority = url.partition("://")[2].partition("/")[0].partition("?")[0]
    return authority.rpartition("@")[2] or "localhost"


def _key(record: Record) -> Document:
    return {name: getattr(record, name) for name in _KEYS[type(record)]}


def _encode(record: Record) -> Document:
    doc = record.to_dict()
    for name in _JSON_FIELDS[type(record)]:
        doc[name] = json.dumps(doc[name])
    doc["schema_version"] = SCHEMA_VERSION
    return doc


class MongoMetadataStore(MetadataStore):
    """Metadata in the MongoDB database named by ``url``.

    ``client`` replaces the connection made from ``url`` (tests pass a
    ``mongomock.MongoClient()``); ``timeout_ms`` bounds how long an unreachable
    server is waited for; ``database`` overrides the URL's. Indexes are created
    on opening, so an unreachable server fails here.
    """

    def __init__(
        self,
        url: str,
        client: pymongo.MongoClient[Document] | None = None,
        timeout_ms: int = TIMEOUT_MS,
        database: str | None = None,
    ) -> None:
        self.url = url
        self.hosts = hosts_of(url)
        self.database = database or database_name(url)
        with self._errors():
            try:
                self.client: pymongo.MongoClient[Document] = client or pymongo.MongoClient(
                    url,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=max(timeout_ms, 30_000),
                )
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{self.describe()}: {self._scrub(_first_line(exc))}") from None
        db = self.client[self.database]
        self._plugins: MongoCollection[Document] = db["plugins"]
        self._runs: MongoCollection[Document] = db["runs"]
        self._steps: MongoCollection[Document] = db["steps"]
        self._values: MongoCollection[Document] = db["values"]
        self._cache: MongoCollection[Document] = db["step_cache"]
        self._pipelines: MongoCollection[Document] = db["pipelines"]
        try:
            with self._errors():
                for name, indexes in INDEXES.items():
                    for index, keys, unique in indexes:
                        db[name].create_index(keys, name=index, unique=unique)
        except StoreError:
            if client is None:
                self.client.close()  # stop its monitor threads
            raise

    # plumbing

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn pymongo failures into one-line StoreErrors without the password."""
        try:
            yield
        except ConnectionFailure as exc:
            reason = self._scrub(_first_line(exc))
            raise StoreError(f"cannot reach MongoDB at {self.hosts} ({reason})") from None
        except DuplicateKeyError:
            raise
        except OperationFailure as exc:
            message = exc.details.get("errmsg") if exc.details else None
            text = self._scrub(_first_line(message or exc))
            raise StoreError(f"{self.describe()}: {text}") from None
        except (PyMongoError, ConfigurationError) as exc:
            raise StoreError(f"{self.describe()}: {self._scrub(_first_line(exc))}") from None

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should pymongo ever quote it."""
        userinfo = self.url.partition("://")[2].partition("/")[0].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        for secret in {password, unquote(password)} - {""}:
            text = text.replace(secret, MASK)
        return text

    def _load(self, cls: type[R], doc: Mapping[str, Any] | None) -> R | None:
        if doc is None:
            return None
        version = doc.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.describe()} has schema version {version}; "
                f"this wtm knows up to {SCHEMA_VERSION}: upgrade wtm"
            )
        data = dict(doc)
        for name in _JSON_FIELDS[cls]:
            if name in data:
                data[name] = json.loads(data[name])
        return cls.from_dict(data)

    def _find_one(
        self, collection: MongoCollection[Document], cls: type[R], key: Document
    ) -> R | None:
        with self._errors():
            return self._load(cls, collection.find_one(key))

    def _find(
        self,
        collection: MongoCollection[Document],
        cls: type[R],
        query: Document,
        sort: list[tuple[str, int]],
        limit: int = 0,
    ) -> list[R]:
        with self._errors():
            docs = list(collection.find(query).sort(sort).limit(limit))
        return [record for doc in docs if (record := self._load(cls, doc)) is not None]

    def _replace(self, collection: MongoCollection[Document], record: Record) -> None:
        """Upsert ``record`` by its key (two concurrent upserts may both insert: the one
        that fails tries again, and replaces)."""
        for attempt in range(2):
            with self._errors():
                try:
                    collection.replace_one(_key(record), _encode(record), upsert=True)
                    return
                except DuplicateKeyError:
                    if attempt:
                        name = type(record).__name__
                        raise StoreError(f"{self.describe()}: could not replace {name}") from None

    def _insert(self, collection: MongoCollection[Document], record: Record) -> bool:
        """Insert ``record``; False if its key is taken."""
        with self._errors():
            try:
                collection.insert_one(_encode(record))
            except DuplicateKeyError:
                return False
        return True

    # plugins

    def add_plugin(self, record: PluginRecord) -> None:
        if not self._insert(self._plugins, record):
            raise Conflict(f"plugin {record.name}@{record.version} is already installed")

    def replace_plugin(self, record: PluginRecord) -> None:
        self._replace(self._plugins, record)

    def get_plugin(self, name: str, version: str) -> PluginRecord | None:
        return self._find_one(self._plugins, PluginRecord, {"name": name, "version": version})

    def list_plugins(self, name: str | None = None) -> list[PluginRecord]:
        query = {} if name is None else {"name": name}
        return self._find(self._plugins, PluginRecord, query, [("name", 1), ("version", 1)])

    def remove_plugin(self, name: str, version: str) -> bool:
        with self._errors():
            return self._plugins.delete_one({"name": name, "version": version}).deleted_count > 0

    # pipelines

    def add_pipeline(self, record: PipelineRecord) -> None:
        if not self._insert(self._pipelines, record):
            raise Conflict(f"pipeline {record.name}@{record.version} is already registered")

    def replace_pipeline(self, record: PipelineRecord) -> None:
        self._replace(self._pipelines, record)

    def get_pipeline(self, name: str, version: str) -> PipelineRecord | None:
        return self._find_one(self._pipelines, PipelineRecord, {"name": name, "version": version})

    def list_pipelines(self, name: str | None = None) -> list[PipelineRecord]:
        query = {} if name is None else {"name": name}
        return self._find(self._pipelines, PipelineRecord, query, [("name", 1), ("version", 1)])

    def remove_pipeline(self, name: str, version: str) -> bool:
        with self._errors():
            return self._pipelines.delete_one({"name": name, "version": version}).deleted_count > 0

    # runs

    def create_run(
        self,
        record: RunRecord,
        values: Sequence[ValueRecord] = (),
        steps: Sequence[StepRecord] = (),
    ) -> None:
        if not self._insert(self._runs, record):
            raise Conflict(f"run {record.run_id} already exists")
        self.record(values, steps)

    def update_run(self, run_id: str, /, **fields: Any) -> RunRecord:
        for _ in range(2):  # a cancel landing between the read and the write: again
            current = self.get_run(run_id)
            if current is None:
                raise NotFound(f"no run {run_id}")
            encoded = _encode(apply_run_update(current, fields))
            changes = {name: encoded[name] for name in fields}
            query: dict[str, Any] = {"run_id": run_id}
            if changes.get("status", "cancelled") != "cancelled":
                query["status"] = {"$ne": "cancelled"}  # a cancelled run stays cancelled
            with self._errors():
                doc = self._runs.find_one_and_update(
                    query, {"$set": changes}, return_document=ReturnDocument.AFTER
                )
            updated = self._load(RunRecord, doc)
            if updated is not None:
                return updated
        raise NotFound(f"no run {run_id}")

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._find_one(self._runs, RunRecord, {"run_id": run_id})

    def list_runs(
        self,
        status: str | Collection[str] | None = None,
        limit: int | None = 50,
        since: str | datetime | None = None,
    ) -> list[RunRecord]:
        query: Document = {}
        statuses = status_filter(status)
        if statuses is not None:
            query["status"] = {"$in": list(statuses)}
        if since is not None:
            query["created_at"] = {"$gte": utc_iso(since)}
        if limit == 0:
            return []
        newest = [("created_at", -1), ("run_id", -1)]
        return self._find(self._runs, RunRecord, query, newest, max(limit or 0, 0))

    def runs_using_plugin(self, name: str, version: str) -> list[str]:
        ref = f"{name}@{version}"
        query = {
            "status": {"$in": list(ACTIVE_RUN_STATUSES)},
            "$or": [
                {"plugins": ref},
                {"plugins": {"$regex": "^" + re.escape(ref + "#")}},
            ],
        }
        with self._errors():
            docs = self._runs.find(query, {"run_id": 1}).sort([("created_at", 1), ("run_id", 1)])
            return [doc["run_id"] for doc in docs]

    # steps

    def record_step(self, record: StepRecord) -> bool:
        key = _key(record)
        for _ in range(STEP_ATTEMPTS):
            with self._errors():
                doc = self._steps.find_one(key)
                if not step_update_allowed(self._load(StepRecord, doc), record):
                    return False
                if doc is None:
                    try:
                        self._steps.insert_one(_encode(record))
                        return True
                    except DuplicateKeyError:
                        continue  # another writer inserted it first: decide again
                seen = {**key, "status": doc["status"], "attempt": doc["attempt"]}
                if self._steps.replace_one(seen, _encode(record)).matched_count:
                    return True
        raise StoreError(
            f"{self.describe()}: step {record.run_id}/{record.step_id} kept changing under "
            f"{STEP_ATTEMPTS} attempts to record it"
        )

    def get_step(self, run_id: str, step_id: str, item: int = NO_ITEM) -> StepRecord | None:
        key = {"run_id": run_id, "step_id": step_id, "item": item}
        return self._find_one(self._steps, StepRecord, key)

    def list_steps(self, run_id: str) -> list[StepRecord]:
        order = [("step_id", 1), ("item", 1)]
        return self._find(self._steps, StepRecord, {"run_id": run_id}, order)

    # values

    def record_value(self, record: ValueRecord) -> bool:
        return self._insert(self._values, record)

    def get_value(self, run_id: str, value_id: str) -> ValueRecord | None:
        return self._find_one(self._values, ValueRecord, {"run_id": run_id, "value_id": value_id})

    def list_values(self, run_id: str) -> list[ValueRecord]:
        return self._find(self._values, ValueRecord, {"run_id": run_id}, [("value_id", 1)])

    # step cache

    def put_cache_entries(self, entries: Sequence[CacheEntry]) -> None:
        for entry in entries:
            self._replace(self._cache, entry)

    def cache_entries(self, keys: Collection[str]) -> dict[str, CacheEntry]:
        with self._errors():
            docs = list(self._cache.find({"key": {"$in": list(dict.fromkeys(keys))}}))
        found = (self._load(CacheEntry, doc) for doc in docs)
        return {entry.key: entry for entry in found if entry is not None}

    def cache_stats(self) -> list[CacheStats]:
        with self._errors():
            groups: dict[tuple[str, str], list[CacheEntry]] = {}
            for doc in self._cache.find({}, {"outputs": 0, "artifacts": 0}):
                entry = self._load(CacheEntry, {**doc, "outputs": "{}", "artifacts": "[]"})
                if entry is not None:
                    groups.setdefault((entry.task, entry.task_version), []).append(entry)
            hits: dict[tuple[str, str], int] = {}
            for doc in self._steps.find(
                {"cached_from": {"$ne": None}}, {"task": 1, "task_version": 1}
            ):
                version = (doc["task"], doc["task_version"])
                hits[version] = hits.get(version, 0) + 1
        return [
            CacheStats(
                task,
                version,
                len(entries),
                sum(e.size for e in entries),
                min(e.created_at for e in entries),
                max(e.created_at for e in entries),
                hits.get((task, version), 0),
            )
            for (task, version), entries in sorted(groups.items())
        ]

    def clear_cache(
        self,
        task: str | None = None,
        version: str | None = None,
        before: str | datetime | None = None,
    ) -> int:
        query: dict[str, Any] = {}
        if task is not None:
            query["task"] = task
        if version is not None:
            query["task_version"] = version
        if before is not None:
            query["created_at"] = {"$lt": utc_iso(before)}
        with self._errors():
            return int(self._cache.delete_many(query).deleted_count)

    # lifetime

    def describe(self) -> str:
        return mask_url(self.url)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"MongoMetadataStore({self.describe()!r})"


def _first_line(exc: object) -> str:
    """The first line of an error message, trimmed (pymongo appends timeouts and topology)."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = text.split(", Timeout:")[0]
    text = _NOISE.sub("", text).strip()
    return text[:300] or type(exc).__name__
