"""The graph compiler: stages, edges with the seed report's IDs, critical path, cycles."""

from __future__ import annotations

import pytest

from runtime import ids
from runtime.catalog import DirectoryCatalog
from runtime.graph import CycleError, find_cycle, stages_of
from runtime.manifest import load_pipeline
from runtime.validate import check_pipeline
from tests.conftest import TASKS
from tests.test_validate import GOOD


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    return check_pipeline(load_pipeline(path), DirectoryCatalog([TASKS])).graph


def test_seed_report_ids():
    assert ids.input_id("face_detection", "001") == "face_detection_input_001"
    assert ids.output_id("face_detection", "001") == "face_detection_output_001"
    assert ids.output_value("001", "faces_array") == "output_001_faces_array"
    assert ids.input_value("002", "faces_array") == "input_002_faces_array"
    assert (
        ids.edge("output_001_faces_array", "input_002_faces_array")
        == "output_001_faces_array -> input_002_faces_array"
    )


def test_edges_use_seed_ids(graph):
    assert [str(e) for e in graph.edges] == [
        "pipeline_input_image_path -> input_001_image_path",
        "pipeline_input_image_path -> input_002_image_path",
        "output_001_faces_array -> input_002_faces_array",
        "pipeline_input_image_path -> input_003_image_path",
        "output_001_faces_array -> input_003_faces_array",
    ]
    assert [e.port for e in graph.edges_into("003")] == ["image_path", "faces_array"]


def test_stages_and_dependants(graph):
    assert graph.stages == (("001",), ("002", "003"))
    assert graph.order == ["001", "002", "003"]
    assert graph.dependants() == {"001": {"002", "003"}, "002": set(), "003": set()}


def test_critical_path_weighs_costs(graph):
    assert graph.critical_path({"001": 0.03, "002": 0.01, "003": 0.6}) == ["001", "003"]
    assert graph.critical_path({"001": 0.03, "002": 0.9, "003": 0.6}) == ["001", "002"]


def test_diamond_and_chain_stages():
    deps = {
        "a": frozenset(),
        "b": frozenset({"a"}),
        "c": frozenset({"a"}),
        "d": frozenset({"b", "c"}),
        "e": frozenset({"a"}),
    }
    assert stages_of(deps, list(deps)) == [("a",), ("b", "c", "e"), ("d",)]


def test_cycle_is_found_and_named():
    deps = {
        "a": frozenset(),
        "b": frozenset({"a", "d"}),
        "c": frozenset({"b"}),
        "d": frozenset({"c"}),
    }
    assert find_cycle(deps) == ["b", "d", "c", "b"]
    with pytest.raises(CycleError, match="cycle: b -> d -> c -> b"):
        stages_of(deps, list(deps))


def test_long_chain_has_no_recursion_limit():
    n = 20000
    deps = {str(i): frozenset({str(i - 1)}) if i else frozenset() for i in range(n)}
    assert find_cycle(deps) is None
    assert len(stages_of(deps, list(deps))) == n
