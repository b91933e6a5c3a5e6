"""The pieces under the screens, on real records: flow, lineage, polling, filters, actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.lineage import final_values, lineage
from runtime.stores.metadata import NO_ITEM
from tests.tui.conftest import DIAMOND, Bench, Filled
from tui.actions import ActionError, cancel_run, find_manifest, input_args, plan_rerun
from tui.flow import lineage_trees, stages, step_flow, step_values, value_item, value_step
from tui.format import duration, preview, size
from tui.poller import StorePoller
from tui.query import STATUS_CHOICES, RunFilter


def flatten(item) -> list[str]:
    found = [item.value.value_id]
    for source in item.sources:
        found += flatten(source)
    return found


def test_stages_and_flow_of_the_diamond(filled: Filled) -> None:
    steps = filled.bench.services.metadata.list_steps(filled.diamond)
    assert stages(steps) == {"001": 1, "002": 2, "003": 2, "004": 3}
    flow = step_flow("001", steps)
    assert flow.incoming == ("pipeline_input_x -> input_001_a",)
    assert flow.outgoing == ("output_001_sum -> input_002_a", "output_001_sum -> input_003_a")


def test_value_names_split_back() -> None:
    assert value_step("output_001_faces_array") == "001"
    assert value_step("input_002_faces_array[3]") == "002"
    assert value_step("pipeline_input_image_path") is None
    assert value_item("output_003_x[12]") == 12 and value_item("output_003_x") == NO_ITEM


def test_lineage_trees_match_runtime_lineage(filled: Filled) -> None:
    store = filled.bench.services.metadata
    for run_id in (filled.diamond, filled.faces):
        values = {v.value_id: v for v in store.list_values(run_id)}
        roots = final_values(store, run_id)
        trees = lineage_trees(values, roots)
        assert [t.value.value_id for t in trees] == roots
        for tree in trees:
            assert set(flatten(tree)) == set(
                flatten_runtime(lineage(store, run_id, tree.value.value_id))
            )
    values = {v.value_id: v for v in store.list_values(filled.diamond)}
    [tree] = lineage_trees(values, ["output_004_sum"])
    repeats = [i for i in walk(tree) if i.repeat]
    assert [r.value.value_id for r in repeats] == ["output_001_sum"], "expanded once"
    [small] = lineage_trees(values, ["output_004_sum"], limit=3)
    assert sum(1 for _ in walk(small)) <= 4 and any(i.cut for i in walk(small))


def flatten_runtime(node) -> list[str]:
    found = [node.value.value_id]
    for source in node.sources:
        found += flatten_runtime(source)
    return found


def walk(item):
    yield item
    for source in item.sources:
        yield from walk(source)


def test_step_values_of_whole_chunk_and_failed_steps(filled: Filled) -> None:
    store = filled.bench.services.metadata
    values = store.list_values(filled.faces)
    steps = {(s.step_id, s.item): s for s in store.list_steps(filled.faces)}
    whole = step_values(steps[("002", NO_ITEM)], values)
    assert [s.value_id for s in whole if s.direction == "out"] == ["output_002_described"]
    assert len([s for s in whole if s.direction == "in"]) == 80  # 40 chunks x 2 ports
    chunk = step_values(steps[("002", 7)], values)
    assert [s.value_id for s in chunk] == [
        "input_002_faces_array[7]",
        "input_002_image_path[7]",
        "output_002_described[7]",
    ]
    assert all(s.record is not None for s in chunk)
    failing = filled.bench.services.metadata
    failed_step = failing.get_step(filled.failing, "001")
    slots = {s.port: s for s in step_values(failed_step, failing.list_values(filled.failing))}
    assert set(slots) == {"value", "attempt"}
    slot = slots["value"]
    assert slot.value_id == "input_001_value" and slot.record is not None
    assert slot.record.value_id == "pipeline_input_value", "found by its data ID"


def test_poller_reads_only_what_changed(bench: Bench) -> None:
    poller = StorePoller(bench.services.metadata)
    first = poller.poll_runs()
    assert first.first and first.runs == {} and not first.changed
    run_id = bench.run("diamond", DIAMOND, {"x": 1}).run_id
    update = poller.poll_runs()
    assert update.changed == {run_id}
    counts = update.runs[run_id].counts
    assert counts is not None and (counts.done, counts.total, counts.failed) == (4, 4, 0)
    assert {w.worker for w in counts.workers}, "workers seen in step records"
    assert not poller.poll_runs().changed, "nothing changed, nothing reported"
    steps = poller.poll_steps(run_id)
    assert len(steps.changed) == 4 and steps.run.status == "succeeded"
    again = poller.poll_steps(run_id)
    assert not again.changed and len(again.steps) == 4


def test_run_filter(filled: Filled) -> None:
    store = filled.bench.services.metadata
    diamond, failing = store.get_run(filled.diamond), store.get_run(filled.failing)
    assert RunFilter().matches(diamond)
    assert RunFilter("failed").matches(failing) and not RunFilter("failed").matches(diamond)
    assert not RunFilter("active").matches(diamond)
    assert RunFilter(text="DIAMOND x=1").matches(diamond)
    assert RunFilter(text="planned failure").matches(failing)
    assert not RunFilter(text="diamond nothing").matches(diamond)
    cycle, f = [], RunFilter()
    for _ in STATUS_CHOICES:
        f = f.next_status()
        cycle.append(f.status)
    assert cycle[-1] == "all" and cycle[:2] == ["active", "pending"]


def test_rerun_plan_finds_the_manifest_and_keeps_input_types(
    tmp_path: Path, filled: Filled
) -> None:
    store = filled.bench.services.metadata
    failing = store.get_run(filled.failing)
    plan = plan_rerun(failing, filled.bench.folder)
    assert plan.manifest == filled.bench.folder / "manifests" / "failing.yaml"
    assert plan.shown == "wtm run manifests/failing.yaml --input value=v"
    with pytest.raises(ActionError, match="only failed or cancelled"):
        plan_rerun(store.get_run(filled.diamond), filled.bench.folder)
    with pytest.raises(ActionError, match="no manifests/"):
        plan_rerun(failing, tmp_path)
    manifest = tmp_path / "manifests" / "p.yaml"
    manifest.parent.mkdir()
    manifest.write_text(
        "kind: Pipeline\nname: p\nversion: 2.0.0\ninputs:\n"
        "  s: {schema: {type: string}}\n  n: {schema: {type: number}}\n"
        "  o: {schema: {}}\n"
    )
    (tmp_path / "manifests" / "broken.yaml").write_text("kind: [unclosed\n")
    assert find_manifest(tmp_path, "p", "2.0.0") == manifest
    assert find_manifest(tmp_path, "p", "1.0.0") is None
    args = input_args(manifest, {"s": "7", "n": 7, "o": "text"})
    assert args == ["--input", "s=7", "--input", "n=7", "--input", 'o="text"']
    assert json.loads(args[-1].partition("=")[2]) == "text"


def test_cancel_only_active_runs(filled: Filled) -> None:
    with pytest.raises(ActionError, match="already succeeded"):
        cancel_run(filled.bench.services.metadata, filled.diamond)
    with pytest.raises(ActionError, match="no run"):
        cancel_run(filled.bench.services.metadata, "missing")


def test_formats() -> None:
    assert [duration(s) for s in (0.234, 12.34, 125, 7384, None)] == [
        "0.23s",
        "12.3s",
        "2m05s",
        "2h03m",
        "",
    ]
    assert [size(n) for n in (57, 2760, 5 << 20)] == ["57 B", "2.7 KiB", "5.0 MiB"]
    assert preview([{"face_id": 0, "bbox": [1, 2, 3, 4]}]) == "1 record: face_id, bbox"
    assert preview(list(range(100))).startswith("100 items: [0, 1, 2, 3, …]")
    assert len(preview("x" * 500, 40)) == 40


def test_a_cached_step_is_marked_wherever_its_status_shows() -> None:
    from runtime.stores.metadata import StepRecord
    from tui.format import step_status_text

    computed = StepRecord(run_id="r2", step_id="001", status="succeeded")
    served = StepRecord(run_id="r2", step_id="001", status="succeeded", cached_from="r1/001")
    assert step_status_text(computed).plain == "✔ succeeded"
    assert step_status_text(served).plain == "✔ succeeded cached"
