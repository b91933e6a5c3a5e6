"""The MongoDB metadata store beyond the contract: indexes, documents, races, failures.

Runs on mongomock; the contract suite also runs against a real MongoDB when
``WTM_TEST_MONGO_URL`` is set.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest

import runtime.stores.mongo as mongo
from runtime.stores import open_metadata_store
from runtime.stores.errors import Conflict, StoreError
from runtime.stores.metadata import PluginRecord, RunRecord, StepRecord, ValueRecord
from runtime.stores.mongo import MongoMetadataStore, database_name, hosts_of

SECRET = "s3cret-Pass"


@pytest.fixture
def store() -> Iterator[MongoMetadataStore]:
    opened = MongoMetadataStore("mongodb://localhost/wtm", client=mongomock.MongoClient())
    yield opened
    opened.close()


def raw(store: MongoMetadataStore, collection: str) -> Any:
    return store.client[store.database][collection]


def step(status: str, attempt: int = 1, **fields: Any) -> StepRecord:
    return StepRecord(run_id="r1", step_id="002", status=status, attempt=attempt, **fields)


def test_indexes_exist_with_their_unique_flags(store: MongoMetadataStore) -> None:
    expected = {
        "plugins": {(("name", 1), ("version", 1)): True},
        "runs": {
            (("run_id", 1),): True,
            (("created_at", -1), ("run_id", -1)): False,
            (("status", 1), ("created_at", -1), ("run_id", -1)): False,
            (("plugins", 1), ("status", 1)): False,
        },
        "steps": {(("run_id", 1), ("step_id", 1), ("item", 1)): True},
        "values": {(("run_id", 1), ("value_id", 1)): True},
    }
    for collection, indexes in expected.items():
        info = raw(store, collection).index_information()
        found = {
            tuple((k, int(d)) for k, d in index["key"]): bool(index.get("unique"))
            for name, index in info.items()
            if name != "_id_"
        }
        assert found == indexes, collection


def test_opening_twice_keeps_the_indexes(store: MongoMetadataStore) -> None:
    again = MongoMetadataStore("mongodb://localhost/wtm", client=store.client)
    assert len(raw(again, "runs").index_information()) == 5


def test_every_document_carries_its_schema_version(store: MongoMetadataStore) -> None:
    store.add_plugin(PluginRecord("p", "1.0.0", "ab" * 32, 1, "k"))
    store.create_run(RunRecord("r1", "pipe", "1.0.0"))
    store.update_run("r1", status="running")
    store.record_step(step("running"))
    store.record_step(step("succeeded"))
    store.record_value(ValueRecord("r1", "v", "d", "001", "x"))
    for collection in ("plugins", "runs", "steps", "values"):
        docs = list(raw(store, collection).find())
        assert docs
        assert all(doc["schema_version"] == 1 for doc in docs), collection


def test_a_newer_schema_is_refused(store: MongoMetadataStore) -> None:
    store.create_run(RunRecord("r1", "pipe", "1.0.0"))
    raw(store, "runs").update_one({"run_id": "r1"}, {"$set": {"schema_version": 2}})
    with pytest.raises(StoreError, match="upgrade wtm"):
        store.get_run("r1")


def test_arbitrary_json_round_trips(store: MongoMetadataStore) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/x"}
    plugin = PluginRecord(
        "p", "1.0.0", "ab" * 32, 1, "k", manifest={"a.b": 1}, inputs={"x": schema}
    )
    store.add_plugin(plugin)
    assert store.get_plugin("p", "1.0.0") == plugin
    huge = ValueRecord("r1", "v", "d", "001", "x", value={"n": 2**70, "$where": [1.5, None]})
    store.record_value(huge)
    assert store.get_value("r1", "v") == huge


def test_duplicates_are_conflicts_or_first_write_wins(store: MongoMetadataStore) -> None:
    store.create_run(RunRecord("r1", "pipe", "1.0.0"))
    with pytest.raises(Conflict):
        store.create_run(RunRecord("r1", "other", "2.0.0"))
    assert store.record_value(ValueRecord("r1", "v", "first", "001", "x")) is True
    assert store.record_value(ValueRecord("r1", "v", "second", "001", "x")) is False
    assert store.get_value("r1", "v").data_id == "first"  # type: ignore[union-attr]
    assert raw(store, "values").count_documents({}) == 1


def test_update_run_changes_only_its_fields(store: MongoMetadataStore) -> None:
    store.create_run(RunRecord("r1", "pipe", "1.0.0"))
    real_find_one = mongomock.Collection.find_one

    # another process sets the error between this update's read and its write
    def racing(self: Any, *args: Any, **kwargs: Any) -> Any:
        doc = real_find_one(self, *args, **kwargs)
        real_update = mongomock.Collection.update_one
        real_update(self, {"run_id": "r1"}, {"$set": {"error": "from elsewhere"}})
        return doc

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mongomock.Collection, "find_one", racing)
        updated = store.update_run("r1", status="failed")
    assert (updated.status, updated.error) == ("failed", "from elsewhere")


class Racer:
    """Let another writer record ``other`` right after the store's first read of a step."""

    def __init__(self, store: MongoMetadataStore, other: StepRecord) -> None:
        self.store, self.other, self.done = store, other, False
        self.real = mongomock.Collection.find_one

    def find_one(self, collection: Any, *args: Any, **kwargs: Any) -> Any:
        doc = self.real(collection, *args, **kwargs)
        if collection.name == "steps" and not self.done:
            self.done = True
            assert self.store.record_step(self.other)
        return doc


@pytest.mark.parametrize(
    ("first", "other", "late", "written", "final"),
    [
        # both read "running"; the other finishes first; the late "failed" must not undo it
        ("running", "succeeded", "failed", False, "succeeded"),
        # nothing there yet; the other inserts first; the late write then decides again
        (None, "running", "succeeded", True, "succeeded"),
        (None, "succeeded", "running", False, "succeeded"),
    ],
)
def test_record_step_decides_again_after_losing_a_race(
    store: MongoMetadataStore, first: str | None, other: str, late: str, written: bool, final: str
) -> None:
    if first:
        store.record_step(step(first))
    racer = Racer(store, step(other, worker="other"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            mongomock.Collection,
            "find_one",
            lambda c, *a, **k: racer.find_one(c, *a, **k),
        )
        assert store.record_step(step(late, worker="late")) is written
    assert racer.done
    assert store.get_step("r1", "002").status == final  # type: ignore[union-attr]
    assert raw(store, "steps").count_documents({}) == 1


def test_record_step_gives_up_on_endless_races(
    store: MongoMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.record_step(step("running"))
    monkeypatch.setattr(mongomock.Collection, "replace_one", lambda *a, **k: _NoMatch())
    with pytest.raises(StoreError, match="kept changing"):
        store.record_step(step("succeeded"))


class _NoMatch:
    matched_count = 0


# names, secrets, failures


def test_urls() -> None:
    assert database_name("mongodb://h/prod?authSource=admin") == "prod"
    assert database_name("mongodb://h") == "wtm"
    assert database_name("mongodb://h/") == "wtm"
    assert database_name("mongodb+srv://u:p@cluster.example.net/runs?retryWrites=true") == "runs"
    assert hosts_of("mongodb://u:p@a:1,b:2/db?x=y") == "a:1,b:2"
    assert hosts_of("mongodb://h?x=y") == "h"


def test_opened_by_url(monkeypatch: pytest.MonkeyPatch) -> None:
    clients: list[Any] = []

    def client(url: str, **options: Any) -> Any:
        clients.append((url, options))
        return mongomock.MongoClient()

    monkeypatch.setattr(mongo.pymongo, "MongoClient", client)
    with open_metadata_store(f"mongodb://wtm:{SECRET}@db.example:27017/prod") as opened:
        assert isinstance(opened, MongoMetadataStore)
        assert opened.database == "prod"
        assert opened.describe() == "mongodb://wtm:****@db.example:27017/prod"
        assert SECRET not in repr(opened)
    assert clients[0][1]["serverSelectionTimeoutMS"] == 3000


def test_an_unreachable_server_is_one_line_naming_the_host() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        MongoMetadataStore(f"mongodb://wtm:{SECRET}@127.0.0.1:{port}/wtm", timeout_ms=300)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach MongoDB at 127.0.0.1:{port} (")
    assert "\n" not in message
    assert SECRET not in message
    assert caught.value.__suppress_context__


def test_a_bad_url_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        MongoMetadataStore(f"mongodb://wtm:{SECRET}@host:notaport/wtm")
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_cancel_between_the_read_and_the_final_update_is_kept(
    store: MongoMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_run(RunRecord(run_id="r1", pipeline="p", pipeline_version="1.0.0"))
    store.update_run("r1", status="running")
    read = store.get_run

    def cancelled_meanwhile(run_id: str) -> RunRecord | None:
        found = read(run_id)
        if found is not None and found.status == "running":  # `wtm runs cancel`, right now
            raw(store, "runs").update_one({"run_id": run_id}, {"$set": {"status": "cancelled"}})
        return found

    monkeypatch.setattr(store, "get_run", cancelled_meanwhile)
    ended = store.update_run("r1", status="succeeded", error=None)
    assert ended.status == "cancelled"
    assert read("r1").status == "cancelled"
