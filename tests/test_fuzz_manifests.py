"""Mutated manifests give "exit 2 with a positioned message, or valid", never an exception."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.catalog import DirectoryCatalog
from runtime.cli.manifests import check_file
from runtime.problems import errors
from tests.conftest import TASKS
from tests.test_manifest import TASK
from tests.test_validate import GOOD

CATALOG = DirectoryCatalog([TASKS])
TOKENS = [
    "$001.faces_array",
    "$inputs.image_path",
    "$002.described",
    "{",
    "}",
    "[",
    "]",
    ":",
    "- ",
    "  ",
    "\n",
    "&a ",
    "*a",
    '"',
    "'",
    "001",
    "002",
    "null",
    "-1",
    "1.0",
    "foreach: {port: faces_array, from: $002.described}",
    "task: describe@^2",
    "@",
    "\t",
    "type: object",
    "required: [x]",
    "!!python/object:os.system",
    "%YAML 1.1\n---\n",
]
LENIENT = [HealthCheck.function_scoped_fixture]
POSITIONED = re.compile(r"^.+:\d+:\d+: (error|warning): \S")


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for where, cut, token in edits:
        i = where % (len(text) + 1)
        text = text[:i] + token + text[i + cut % 8 :]
    return text


edits = st.lists(
    st.tuples(
        st.integers(0, 10_000), st.integers(0, 7), st.sampled_from(TOKENS) | st.text(max_size=3)
    ),
    min_size=1,
    max_size=4,
)


def assert_clean_outcome(tmp_path, text: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    summary, problems = check_file(str(path), CATALOG)
    for problem in problems:
        assert POSITIONED.match(str(problem)), problem
        assert "\n" not in str(problem)
    assert bool(errors(problems)) != bool(summary)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits)
def test_mutated_pipelines(tmp_path, changes):
    assert_clean_outcome(tmp_path, mutate(GOOD, changes))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits)
def test_mutated_tasks(tmp_path, changes):
    assert_clean_outcome(tmp_path, mutate(TASK, changes))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    summary, problems = check_file(str(path), CATALOG)
    assert summary or errors(problems)
