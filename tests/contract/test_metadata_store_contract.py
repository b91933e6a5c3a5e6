"""What every metadata store backend does: plugins, runs, steps, lineage values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.stores.errors import Conflict, NotFound
from runtime.stores.metadata import (
    CacheEntry,
    MetadataStore,
    PipelineRecord,
    PluginRecord,
    RunRecord,
    StepRecord,
    ValueRecord,
    plugin_ref,
    utc_iso,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return utc_iso(T0 + timedelta(minutes=minutes))


def plugin(name: str = "face_detection", version: str = "1.0.0", **fields: object) -> PluginRecord:
    base: dict[str, object] = {
        "digest": "ab" * 32,
        "size": 1234,
        "object_key": f"blobs/sha256/ab/{'ab' * 32}",
        "manifest": {"name": name, "version": version, "retries": {"max": 2}},
        "inputs": {"image_path": {"schema": {"type": "string"}}},
        "outputs": {"faces_array": {"schema": {"type": "array"}}},
        "installed_at": at(0),
    }
    return PluginRecord(name=name, version=version, **{**base, **fields})  # type: ignore[arg-type]


def run(run_id: str, minutes: float = 0, status: str = "pending", **fields: object) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        pipeline="face_processing",
        pipeline_version="1.0.0",
        inputs={"image_path": "/data/a.jpg"},
        status=status,
        created_at=at(minutes),
        **fields,  # type: ignore[arg-type]
    )


def step(status: str = "running", attempt: int = 1, item: int = -1, **fields: object) -> StepRecord:
    return StepRecord(
        run_id="r1",
        step_id="002",
        item=item,
        task="face_attributes",
        task_version="1.0.0",
        digest="cd" * 32,
        input_id="face_attributes_input_002",
        output_id="face_attributes_output_002",
        status=status,
        attempt=attempt,
        **fields,  # type: ignore[arg-type]
    )


def value(value_id: str = "output_001_faces_array", **fields: object) -> ValueRecord:
    base: dict[str, object] = {
        "data_id": "sha256:" + "ef" * 32,
        "producer": "001",
        "port": "faces_array",
        "value": [{"face_id": 0, "bbox": [1, 2, 3, 4], "confidence": 0.9}],
        "size": 60,
        "sources": ["pipeline_input_image_path"],
    }
    return ValueRecord(run_id="r1", value_id=value_id, **{**base, **fields})  # type: ignore[arg-type]


# plugins


def test_add_and_get_plugin(metadata_store: MetadataStore) -> None:
    record = plugin()
    metadata_store.add_plugin(record)
    assert metadata_store.get_plugin("face_detection", "1.0.0") == record
    assert metadata_store.get_plugin("face_detection", "2.0.0") is None
    assert metadata_store.get_plugin("nope", "1.0.0") is None


def test_add_plugin_twice_conflicts(metadata_store: MetadataStore) -> None:
    metadata_store.add_plugin(plugin())
    with pytest.raises(Conflict):
        metadata_store.add_plugin(plugin(digest="cd" * 32))
    assert metadata_store.get_plugin("face_detection", "1.0.0").digest == "ab" * 32  # type: ignore[union-attr]


def test_replace_plugin(metadata_store: MetadataStore) -> None:
    metadata_store.replace_plugin(plugin())
    metadata_store.replace_plugin(plugin(digest="cd" * 32, source="path"))
    found = metadata_store.get_plugin("face_detection", "1.0.0")
    assert found is not None
    assert (found.digest, found.source) == ("cd" * 32, "path")
    assert len(metadata_store.list_plugins()) == 1


def test_list_plugins(metadata_store: MetadataStore) -> None:
    for name, version in [("b", "1.0.0"), ("a", "1.10.0"), ("a", "1.2.0"), ("c", "0.1.0")]:
        metadata_store.add_plugin(plugin(name, version))
    assert [p.name for p in metadata_store.list_plugins()] == ["a", "a", "b", "c"]
    assert {p.version for p in metadata_store.list_plugins("a")} == {"1.10.0", "1.2.0"}
    assert metadata_store.list_plugins("zzz") == []


def test_remove_plugin(metadata_store: MetadataStore) -> None:
    metadata_store.add_plugin(plugin())
    metadata_store.add_plugin(plugin(version="2.0.0"))
    assert metadata_store.remove_plugin("face_detection", "1.0.0") is True
    assert metadata_store.remove_plugin("face_detection", "1.0.0") is False
    assert [p.version for p in metadata_store.list_plugins()] == ["2.0.0"]


def pipeline(name: str = "face_processing", version: str = "1.0.0", **fields: object):
    base: dict[str, object] = {
        "digest": "sha256:" + "aa" * 32,
        "text": "apiVersion: wtm/v1\nkind: Pipeline\n",
        "description": "faces",
        "inputs": {"image_path": {"schema": {"type": "string", "format": "file"}}},
        "steps": 3,
    }
    return PipelineRecord(name=name, version=version, **{**base, **fields})  # type: ignore[arg-type]


def test_pipelines_are_registered_listed_replaced_and_removed(
    metadata_store: MetadataStore,
) -> None:
    metadata_store.add_pipeline(pipeline(version="1.0.0", registered_at=at(0)))
    metadata_store.add_pipeline(pipeline(version="1.2.0"))
    metadata_store.add_pipeline(pipeline(name="ocr"))
    with pytest.raises(Conflict, match=r"face_processing@1\.0\.0 is already registered"):
        metadata_store.add_pipeline(pipeline(version="1.0.0", digest="sha256:" + "bb" * 32))
    assert metadata_store.get_pipeline("face_processing", "1.0.0") == pipeline(
        version="1.0.0", registered_at=at(0)
    )
    assert [(p.name, p.version) for p in metadata_store.list_pipelines()] == [
        ("face_processing", "1.0.0"),
        ("face_processing", "1.2.0"),
        ("ocr", "1.0.0"),
    ]
    assert len(metadata_store.list_pipelines("face_processing")) == 2
    metadata_store.replace_pipeline(pipeline(version="1.0.0", text="changed"))
    assert metadata_store.get_pipeline("face_processing", "1.0.0").text == "changed"
    assert metadata_store.remove_pipeline("face_processing", "1.0.0")
    assert not metadata_store.remove_pipeline("face_processing", "1.0.0")
    assert metadata_store.get_pipeline("face_processing", "1.0.0") is None


# runs


def test_create_and_get_run(metadata_store: MetadataStore) -> None:
    record = run("r1", plugins=[plugin_ref("face_detection", "1.0.0", "ab" * 32)], batch_id="b1")
    metadata_store.create_run(record)
    assert metadata_store.get_run("r1") == record
    assert metadata_store.get_run("r2") is None


def test_create_run_twice_conflicts(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1"))
    with pytest.raises(Conflict):
        metadata_store.create_run(run("r1", status="running"))
    assert metadata_store.get_run("r1").status == "pending"  # type: ignore[union-attr]


def test_update_run(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1"))
    updated = metadata_store.update_run(
        "r1",
        status="failed",
        started_at=at(1),
        finished_at=T0 + timedelta(minutes=2),
        error="002: boom",
        outputs={"faces": []},
    )
    assert metadata_store.get_run("r1") == updated
    assert updated.status == "failed"
    assert updated.finished_at == at(2)
    assert updated.inputs == {"image_path": "/data/a.jpg"}


def test_create_run_with_its_first_values_and_steps(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1"), [value("pipeline_input_x")], [step("pending")])
    assert metadata_store.get_value("r1", "pipeline_input_x") is not None
    assert [s.status for s in metadata_store.list_steps("r1")] == ["pending"]
    with pytest.raises(Conflict):
        metadata_store.create_run(run("r1"), [value("other")])
    assert metadata_store.get_value("r1", "other") is None  # nothing of a refused run


def test_a_cancelled_run_stays_cancelled(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1", status="running"))
    metadata_store.update_run("r1", status="cancelled")
    ended = metadata_store.update_run("r1", status="succeeded", error="late", finished_at=at(1))
    assert (ended.status, ended.error) == ("cancelled", "late")
    assert metadata_store.get_run("r1").status == "cancelled"


def test_update_run_refuses_bad_updates(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1"))
    with pytest.raises(NotFound):
        metadata_store.update_run("nope", status="running")
    with pytest.raises(ValueError):
        metadata_store.update_run("r1", colour="red")
    with pytest.raises(ValueError):
        metadata_store.update_run("r1", run_id="r2")
    with pytest.raises(ValueError):
        metadata_store.update_run("r1", status="exploded")
    assert metadata_store.get_run("r1") == run("r1")


def test_list_runs_newest_first(metadata_store: MetadataStore) -> None:
    for n, status in enumerate(["succeeded", "failed", "running", "pending", "succeeded"]):
        metadata_store.create_run(run(f"r{n}", minutes=n, status=status))
    assert [r.run_id for r in metadata_store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in metadata_store.list_runs(limit=2)] == ["r4", "r3"]
    assert len(metadata_store.list_runs(limit=None)) == 5
    assert [r.run_id for r in metadata_store.list_runs(status="succeeded")] == ["r4", "r0"]
    assert [r.run_id for r in metadata_store.list_runs(status=["pending", "running"])] == [
        "r3",
        "r2",
    ]
    assert [r.run_id for r in metadata_store.list_runs(since=at(3))] == ["r4", "r3"]
    assert [r.run_id for r in metadata_store.list_runs(since=T0 + timedelta(minutes=2.5))] == [
        "r4",
        "r3",
    ]
    assert [r.run_id for r in metadata_store.list_runs(status="succeeded", since=at(1))] == ["r4"]
    with pytest.raises(ValueError):
        metadata_store.list_runs(status="exploded")


def test_list_runs_default_limit(metadata_store: MetadataStore) -> None:
    for n in range(55):
        metadata_store.create_run(run(f"r{n:02}", minutes=n))
    runs = metadata_store.list_runs()
    assert len(runs) == 50
    assert runs[0].run_id == "r54"


def test_runs_using_plugin(metadata_store: MetadataStore) -> None:
    uses = [
        plugin_ref("face_detection", "1.0.0", "ab" * 32),
        plugin_ref("face_features", "1.0.0", "cd" * 32),
    ]
    metadata_store.create_run(run("active", 1, "running", plugins=uses))
    metadata_store.create_run(run("queued", 2, "pending", plugins=uses[:1]))
    metadata_store.create_run(run("done", 3, "succeeded", plugins=uses))
    metadata_store.create_run(
        run("other", 4, "running", plugins=[plugin_ref("faceXdetection", "1.0.0", "ef" * 32)])
    )
    metadata_store.create_run(
        run("newer", 5, "running", plugins=[plugin_ref("face_detection", "1.0.01", "ef" * 32)])
    )
    assert sorted(metadata_store.runs_using_plugin("face_detection", "1.0.0")) == [
        "active",
        "queued",
    ]
    assert metadata_store.runs_using_plugin("face_features", "1.0.0") == ["active"]
    assert metadata_store.runs_using_plugin("face_detection", "2.0.0") == []
    metadata_store.update_run("active", status="cancelled")
    assert metadata_store.runs_using_plugin("face_features", "1.0.0") == []


# steps


def test_record_and_get_step(metadata_store: MetadataStore) -> None:
    record = step(
        worker="celery@host-1",
        started_at=at(0),
        inputs={"faces_array": "sha256:" + "01" * 32},
        edges=["output_001_faces_array -> input_002_faces_array"],
    )
    assert metadata_store.record_step(record) is True
    assert metadata_store.get_step("r1", "002") == record
    assert metadata_store.get_step("r1", "002", item=0) is None
    assert metadata_store.get_step("r1", "003") is None
    assert metadata_store.get_step("r2", "002") is None


def test_foreach_items_are_separate_steps(metadata_store: MetadataStore) -> None:
    for item in (1, 0, -1):
        metadata_store.record_step(step(item=item))
    assert [s.item for s in metadata_store.list_steps("r1")] == [-1, 0, 1]
    assert metadata_store.get_step("r1", "002", 1) == step(item=1)


def test_list_steps_of_a_run(metadata_store: MetadataStore) -> None:
    metadata_store.record_step(step())
    metadata_store.record_step(StepRecord(run_id="r1", step_id="001", status="succeeded"))
    metadata_store.record_step(StepRecord(run_id="r2", step_id="001"))
    assert [s.step_id for s in metadata_store.list_steps("r1")] == ["001", "002"]
    assert metadata_store.list_steps("r3") == []


def test_a_step_moves_forward(metadata_store: MetadataStore) -> None:
    assert metadata_store.record_step(step("pending"))
    assert metadata_store.record_step(step("running", started_at=at(0)))
    done = step(
        "succeeded",
        started_at=at(0),
        finished_at=at(1),
        seconds=60.0,
        outputs={"attributes": "sha256:" + "02" * 32},
    )
    assert metadata_store.record_step(done)
    assert metadata_store.get_step("r1", "002") == done


@pytest.mark.parametrize("late", ["pending", "running", "failed", "cancelled", "succeeded"])
def test_a_succeeded_step_stays_succeeded(metadata_store: MetadataStore, late: str) -> None:
    done = step("succeeded", worker="w1", outputs={"attributes": "sha256:" + "02" * 32})
    metadata_store.record_step(done)
    assert metadata_store.record_step(step(late, worker="w2", error="late duplicate")) is False
    assert metadata_store.record_step(step(late, attempt=2, worker="w2")) is False
    assert metadata_store.get_step("r1", "002") == done


def test_a_redelivered_step_is_idempotent(metadata_store: MetadataStore) -> None:
    running = step("running", worker="w1")
    metadata_store.record_step(running)
    assert metadata_store.record_step(running) is True
    assert metadata_store.record_step(step("running", worker="w2")) is True
    assert metadata_store.get_step("r1", "002").worker == "w2"  # type: ignore[union-attr]
    assert metadata_store.record_step(step("pending")) is False
    assert metadata_store.get_step("r1", "002").status == "running"  # type: ignore[union-attr]


def test_a_retry_replaces_a_failed_attempt(metadata_store: MetadataStore) -> None:
    metadata_store.record_step(step("failed", attempt=1, error="timeout"))
    assert metadata_store.record_step(step("running", attempt=1)) is False
    assert metadata_store.record_step(step("running", attempt=2)) is True
    assert metadata_store.record_step(step("failed", attempt=1, error="late")) is False
    retried = metadata_store.get_step("r1", "002")
    assert retried is not None
    assert (retried.status, retried.attempt, retried.error) == ("running", 2, None)


def test_a_final_status_is_not_undone_within_an_attempt(metadata_store: MetadataStore) -> None:
    metadata_store.record_step(step("skipped"))
    assert metadata_store.record_step(step("running")) is False
    assert metadata_store.record_step(step("pending")) is False
    assert metadata_store.get_step("r1", "002").status == "skipped"  # type: ignore[union-attr]


def test_unknown_statuses_are_refused() -> None:
    with pytest.raises(ValueError):
        step("exploded")
    with pytest.raises(ValueError):
        run("r1", status="exploded")


# values


def test_record_and_get_value(metadata_store: MetadataStore) -> None:
    record = value()
    assert metadata_store.record_value(record) is True
    assert metadata_store.get_value("r1", "output_001_faces_array") == record
    assert metadata_store.get_value("r1", "nope") is None
    assert metadata_store.get_value("r2", "output_001_faces_array") is None


def test_record_value_is_idempotent(metadata_store: MetadataStore) -> None:
    first = value()
    metadata_store.record_value(first)
    assert metadata_store.record_value(value(data_id="sha256:" + "00" * 32, value=[])) is False
    assert metadata_store.record_value(first) is False
    assert metadata_store.list_values("r1") == [first]


def test_large_and_null_values(metadata_store: MetadataStore) -> None:
    by_reference = value(
        "output_001_image", value=None, uri="artifact://sha256/" + "aa" * 32, size=10 << 20
    )
    null = value("output_001_none", value=None, size=4)
    for record in (by_reference, null):
        metadata_store.record_value(record)
    assert metadata_store.get_value("r1", "output_001_image") == by_reference
    assert metadata_store.get_value("r1", "output_001_none") == null


def test_list_values_of_a_run(metadata_store: MetadataStore) -> None:
    metadata_store.record_value(
        value("output_002_attributes", producer="002", sources=["output_001_faces_array"])
    )
    metadata_store.record_value(value("output_001_faces_array"))
    metadata_store.record_value(
        value("pipeline_input_image_path", producer="pipeline", value="/a.jpg", sources=[])
    )
    metadata_store.record_value(
        ValueRecord(run_id="r2", value_id="x", data_id="d", producer="p", port="x")
    )
    ids = [v.value_id for v in metadata_store.list_values("r1")]
    assert ids == ["output_001_faces_array", "output_002_attributes", "pipeline_input_image_path"]
    assert metadata_store.list_values("r9") == []


# records and lifetime


def test_record_writes_values_and_steps_by_their_own_rules(metadata_store: MetadataStore) -> None:
    metadata_store.record_value(value("output_002_age", data_id="sha256:" + "01" * 32))
    metadata_store.record_step(step("succeeded", seconds=1.0))
    metadata_store.record(
        [value("output_002_age", data_id="sha256:" + "02" * 32), value("output_002_gender")],
        [step("running"), step("failed", item=0), step("pending", item=1)],
    )
    first = metadata_store.get_value("r1", "output_002_age")
    assert first is not None and first.data_id == "sha256:" + "01" * 32  # first write wins
    assert metadata_store.get_value("r1", "output_002_gender") is not None
    statuses = {s.item: s.status for s in metadata_store.list_steps("r1")}
    assert statuses == {-1: "succeeded", 0: "failed", 1: "pending"}  # succeeded stays
    metadata_store.record()  # nothing to write is harmless
    assert len(metadata_store.list_values("r1")) == 2


def entry(key: str, task: str = "face_features", version: str = "1.1.1", **fields: object):
    base: dict[str, object] = {
        "digest": "ab" * 32,
        "run_id": "r1",
        "step_id": "003",
        "outputs": {"faces_with_features": {"id": "sha256:" + "cd" * 32, "value": [1.5]}},
        "seconds": 0.25,
        "size": 100,
    }
    return CacheEntry(key=key, task=task, task_version=version, **{**base, **fields})  # type: ignore[arg-type]


def test_cache_entries_are_stored_found_by_key_and_replaced(metadata_store: MetadataStore) -> None:
    metadata_store.put_cache_entries([entry("k1"), entry("k2", item=3)])
    found = metadata_store.cache_entries(["k1", "k2", "k3", "k1"])
    assert sorted(found) == ["k1", "k2"]
    assert found["k1"] == entry("k1", created_at=found["k1"].created_at)
    assert found["k2"].origin == "r1/003[3]" and found["k1"].origin == "r1/003"
    metadata_store.record(cache=[entry("k1", run_id="r2", seconds=1.0)])
    assert metadata_store.cache_entries(["k1"])["k1"].run_id == "r2"
    assert metadata_store.cache_entries([]) == {}


def test_cache_stats_count_entries_bytes_and_reuses(metadata_store: MetadataStore) -> None:
    attributes = {"task": "face_attributes", "version": "1.0.0"}  # as step() records
    metadata_store.put_cache_entries(
        [
            entry("k1", created_at=at(0), **attributes),
            entry("k2", created_at=at(5), **attributes),
            entry("k3", task="a"),
        ]
    )
    metadata_store.record_step(step("succeeded"))
    metadata_store.record_step(step("succeeded", item=0, cached_from="r0/002"))
    stats = {(s.task, s.task_version): s for s in metadata_store.cache_stats()}
    assert sorted(stats) == [("a", "1.1.1"), ("face_attributes", "1.0.0")]
    found = stats[("face_attributes", "1.0.0")]
    assert (found.entries, found.size, found.hits) == (2, 200, 1)
    assert (found.oldest, found.newest) == (at(0), at(5))
    assert stats[("a", "1.1.1")].hits == 0


def test_clear_cache_by_task_version_and_age(metadata_store: MetadataStore) -> None:
    metadata_store.put_cache_entries(
        [
            entry("old", created_at=at(0)),
            entry("new", created_at=at(10)),
            entry("other", version="2.0.0", created_at=at(0)),
            entry("a", task="a", created_at=at(0)),
        ]
    )
    assert metadata_store.clear_cache(task="face_features", before=at(5)) == 2
    assert sorted(metadata_store.cache_entries(["old", "new", "other", "a"])) == ["a", "new"]
    assert metadata_store.clear_cache(task="face_features", version="1.1.1") == 1
    assert metadata_store.clear_cache() == 1
    assert metadata_store.cache_stats() == []


def test_timestamps_are_stored_as_utc(metadata_store: MetadataStore) -> None:
    metadata_store.create_run(run("r1", started_at="2024-05-01T14:00:00+02:00"))
    found = metadata_store.get_run("r1")
    assert found is not None
    assert found.started_at == "2024-05-01T12:00:00.000000+00:00"
    assert found.created_at == "2024-05-01T12:00:00.000000+00:00"


def test_records_round_trip_through_dicts() -> None:
    for record in (plugin(), run("r1"), step(), value()):
        assert type(record).from_dict(record.to_dict()) == record
        assert type(record).from_dict({**record.to_dict(), "_id": "ignored"}) == record


def test_describe_and_close(metadata_store: MetadataStore) -> None:
    assert "://" in metadata_store.describe()
    with metadata_store as store:
        store.create_run(run("r1"))
    metadata_store.close()
