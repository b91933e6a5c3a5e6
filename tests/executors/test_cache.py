"""The step cache on every executor: reuse, per chunk, opting out, honest records."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.lineage import lineage
from runtime.stores.artifacts import blob_key, parse_artifact_uri

ONE_STEP = """
inputs:
  xs: {schema: {type: array}}
  probe: {schema: {type: string}}
steps:
  - {id: "001", task: square, with: {xs: $inputs.xs, probe: $inputs.probe}}
outputs:
  ys: $001.ys
"""

CHUNKED = """
inputs:
  xs: {schema: {type: array}}
  probe: {schema: {type: string}}
steps:
  - id: "001"
    task: square
    foreach: {port: xs, from: $inputs.xs, chunk: 1}
    with: {probe: $inputs.probe}
  - {id: "002", task: square, with: {xs: $001.ys, probe: $inputs.probe}}
outputs:
  ys: $002.ys
"""


def executions(probe: Path) -> list[list[float]]:
    """The inputs of every execution of the square task that wrote into ``probe``."""
    return sorted(json.loads(p.read_text())["xs"] for p in probe.iterdir())


def probe_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir()
    return folder


def test_a_step_run_again_on_the_same_data_is_served_from_the_cache(run, services, tmp_path):
    probe = probe_folder(tmp_path)
    inputs = {"xs": [1, 2, 3], "probe": str(probe)}
    first = run(ONE_STEP, inputs)
    second = run(ONE_STEP, inputs)
    assert executions(probe) == [[1, 2, 3]]
    assert first.result["ys"] == second.result["ys"] == [1, 4, 9]
    step = services.metadata.get_step(second.run_id, "001")
    assert step.status == "succeeded" and step.worker == "cache"
    assert step.cached_from == f"{first.run_id}/001"
    assert services.metadata.get_step(first.run_id, "001").cached_from is None
    summary = second.result["processing_summary"]
    assert summary["status"] == "succeeded"
    assert summary["steps"]["001"]["cached"] == 1  # calls served from the cache
    assert summary["sequential_time"] == 0  # served results are not counted as work
    tree = lineage(services.metadata, second.run_id, "output_001_ys")
    assert tree.cached_from == f"{first.run_id}/001"  # its lineage goes on in that run
    assert lineage(services.metadata, first.run_id, "output_001_ys").cached_from is None
    output = services.metadata.get_value(second.run_id, "output_001_ys")
    assert output.value == [1, 4, 9] and output.sources == [
        "input_001_probe",
        "input_001_xs",
    ]


def test_chunks_are_cached_one_by_one(run, services, tmp_path):
    probe = probe_folder(tmp_path)
    run(CHUNKED, {"xs": [1, 2, 3], "probe": str(probe)})
    again = run(CHUNKED, {"xs": [1, 2, 4], "probe": str(probe)})
    assert again.result["ys"] == [1, 16, 256]
    assert executions(probe) == [[1], [1, 4, 9], [1, 4, 16], [2], [3], [4]]
    steps = {(s.step_id, s.item): s.cached_from for s in services.metadata.list_steps(again.run_id)}
    assert steps[("001", 0)] and steps[("001", 1)]
    assert steps[("001", 2)] is None and steps[("002", -1)] is None


def test_no_cache_runs_every_step_and_refreshes_the_entries(run, services, tmp_path):
    probe = probe_folder(tmp_path)
    inputs = {"xs": [5], "probe": str(probe)}
    run(ONE_STEP, inputs)
    fresh = run(ONE_STEP, inputs, reuse=False)
    assert executions(probe) == [[5], [5]]
    assert services.metadata.get_step(fresh.run_id, "001").cached_from is None
    third = run(ONE_STEP, inputs)
    assert services.metadata.get_step(third.run_id, "001").cached_from == f"{fresh.run_id}/001"


def test_a_step_can_opt_out(run, services, tmp_path):
    probe = probe_folder(tmp_path)
    pipeline = ONE_STEP.replace(
        '{id: "001", task: square,', '{id: "001", task: square, cache: false,'
    )
    inputs = {"xs": [6], "probe": str(probe)}
    run(pipeline, inputs)
    run(pipeline, inputs)
    assert executions(probe) == [[6], [6]]


def test_a_result_whose_artifact_is_gone_is_computed_again(run, services, tmp_path):
    probe = probe_folder(tmp_path)
    pipeline = ONE_STEP.replace("probe: $inputs.probe}", "probe: $inputs.probe, pad: 100000}")
    pipeline = pipeline.replace("  ys: $001.ys", "  padding: $001.padding")
    inputs = {"xs": [7], "probe": str(probe)}
    first = run(pipeline, inputs)
    uri = services.metadata.get_value(first.run_id, "output_001_padding").uri
    assert uri is not None  # over the inline threshold: stored by reference
    services.artifacts.delete(blob_key(parse_artifact_uri(uri)))
    again = run(pipeline, inputs)
    assert executions(probe) == [[7], [7]]
    assert again.result["padding"] == ["." * 100000]
    assert services.metadata.get_step(again.run_id, "001").cached_from is None


def cached_tasks(services) -> set[str]:
    return {s.task for s in services.metadata.cache_stats()}


def test_removing_or_replacing_a_plugin_version_forgets_its_results(tmp_path):
    from runtime.execute import execute, prepare
    from tests.conftest import TASKS
    from tests.executors.conftest import installed

    with installed(tmp_path / "home") as services:
        path = tmp_path / "one.yaml"
        path.write_text("apiVersion: wtm/v1\nkind: Pipeline\nname: t\nversion: 1.0.0\n" + ONE_STEP)
        probe = probe_folder(tmp_path)
        checked, pins = prepare(services, path)
        execute(services, checked, pins, [{"xs": [1], "probe": str(probe)}], workers=1)
        assert cached_tasks(services) == {"square"}
        services.registry.remove("square", "1.0.0")
        assert cached_tasks(services) == set()
        services.registry.install(TASKS / "square")
        checked, pins = prepare(services, path)
        execute(services, checked, pins, [{"xs": [1], "probe": str(probe)}], workers=1)
        assert executions(probe) == [[1], [1]]
        assert cached_tasks(services) == {"square"}


def test_a_file_input_is_known_by_its_content_not_its_path(tmp_path):
    from runtime.inputs import file_data_id

    image = tmp_path / "photo.jpg"
    image.write_bytes(b"one")
    first = file_data_id(str(image))
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(b"one")
    assert file_data_id(str(copy)) == first
    image.write_bytes(b"two")
    assert file_data_id(str(image)) != first
    assert file_data_id("artifact://sha256/" + "ab" * 32) == "sha256:" + "ab" * 32
    assert file_data_id(str(tmp_path / "missing.jpg")) is None


def test_a_file_named_by_a_constant_is_known_by_its_content(run, services, tmp_path):
    probe, notes = probe_folder(tmp_path), tmp_path / "latest.txt"
    pipeline = f"""
steps:
  - {{id: "001", task: read_text, with: {{path: "{notes}", probe: "{probe}"}}}}
outputs:
  text: $001.text
"""
    notes.write_text("monday")
    assert run(pipeline).result["text"] == "monday"
    notes.write_text("tuesday")  # the same path, other content: not the cached result
    changed = run(pipeline)
    assert changed.result["text"] == "tuesday"
    assert services.metadata.get_step(changed.run_id, "001").cached_from is None
    again = run(pipeline)
    assert services.metadata.get_step(again.run_id, "001").cached_from == f"{changed.run_id}/001"
    assert len(list(probe.iterdir())) == 2
