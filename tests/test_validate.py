"""Every pipeline check: its message and the position of the node at fault."""

from __future__ import annotations

import textwrap

import pytest

from runtime.catalog import DirectoryCatalog
from runtime.manifest import load_pipeline
from runtime.problems import ManifestError, Problem
from runtime.validate import check_pipeline
from tests.conftest import TASKS

GOOD = """\
apiVersion: wtm/v1
kind: Pipeline
name: faces
version: 1.0.0
inputs:
  image_path: {schema: {type: string}}
steps:
  - id: "001"
    task: detect@^1
    with: {image_path: $inputs.image_path}
  - id: "002"
    task: describe@^1
    with: {image_path: $inputs.image_path, faces_array: $001.faces_array}
  - id: "003"
    task: describe@>=2.0,<3
    foreach: {port: faces_array, from: $001.faces_array}
    with: {image_path: $inputs.image_path, label: features}
outputs:
  faces:
    join: face_id
    from: {detection: $001.faces_array, attributes: $002.described}
"""


def problems_of(tmp_path, text: str) -> list[Problem]:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    try:
        checked = check_pipeline(load_pipeline(path), DirectoryCatalog([TASKS]))
    except ManifestError as exc:
        return exc.problems
    return checked.warnings


def with_step(text: str, step: str) -> str:
    """Insert a step before the outputs section."""
    return text.replace("outputs:\n", textwrap.indent(textwrap.dedent(step), "  ") + "outputs:\n")


def only(problems: list[Problem]) -> tuple[int, int, str]:
    assert len(problems) == 1, problems
    p = problems[0]
    return p.line, p.column, p.message


def test_good_pipeline_compiles(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    checked = check_pipeline(load_pipeline(path), DirectoryCatalog([TASKS]))
    assert checked.warnings == []
    assert checked.graph.stages == (("001",), ("002", "003"))
    assert checked.graph.tasks["003"].version == "2.1.0"
    assert checked.graph.tasks["002"].version == "1.0.0"


def test_duplicate_step_id(tmp_path):
    text = GOOD.replace('id: "003"', 'id: "002"')
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (14, 9)
    assert msg == "duplicate step ID '002' (first used by step #2)"


def test_unknown_step_in_reference(tmp_path):
    text = GOOD.replace("faces_array: $001.faces_array}", "faces_array: $009.faces_array}")
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (13, 57)
    assert msg == "step 002 (describe@1.0.0): unknown step '009' (steps: 001, 002, 003)"


def test_unknown_output_port(tmp_path):
    text = GOOD.replace("faces_array: $001.faces_array}", "faces_array: $001.boxes}")
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (13, 57)
    assert "step 001 (detect@1.2.0) has no output port 'boxes' (outputs: faces_array, count)" in msg


def test_unknown_input_port(tmp_path):
    text = GOOD.replace("label: features}", "labels: features}")
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (17, 44)
    assert msg == (
        "step 003 (describe@2.1.0) has no input port 'labels' "
        "(inputs: image_path, faces_array, label)"
    )


def test_unknown_pipeline_input(tmp_path):
    text = GOOD.replace("with: {image_path: $inputs.image_path}", "with: {image_path: $inputs.img}")
    found = problems_of(tmp_path, text)
    assert [str(p).split(": ", 1)[1] for p in found if p.severity == "error"] == [
        "error: step 001 (detect@1.2.0): unknown pipeline input 'img' (inputs: image_path)"
    ]
    assert (found[0].line, found[0].column) == (10, 24)


def test_cycle_is_named(tmp_path):
    text = GOOD.replace(
        "with: {image_path: $inputs.image_path}",
        "with: {image_path: $inputs.image_path, detector: hog}",
    )
    text = text.replace(
        "task: detect@^1",
        "task: describe@^1\n    foreach: {port: faces_array, from: $003.described}",
    )
    found = [p for p in problems_of(tmp_path, text) if "cycle" in p.message]
    assert len(found) == 1
    assert found[0].message == "cycle: 001 -> 003 -> 001"
    assert (found[0].line, found[0].column) == (8, 9)


def test_self_reference(tmp_path):
    text = GOOD.replace("faces_array: $001.faces_array}", "faces_array: $002.described}")
    assert any(
        p.message == "step 002 (describe@1.0.0) reads its own output $002.described"
        for p in problems_of(tmp_path, text)
    )


def test_missing_required_input(tmp_path):
    text = GOOD.replace(
        "with: {image_path: $inputs.image_path, faces_array: $001.faces_array}",
        "with: {faces_array: $001.faces_array}",
    )
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (13, 11)
    assert msg == "step 002 (describe@1.0.0): missing required input 'image_path'"


def test_unknown_task(tmp_path):
    text = GOOD.replace("task: detect@^1", "task: detector@^1")
    found = problems_of(tmp_path, text)
    assert (found[0].line, found[0].column, found[0].message) == (
        9,
        11,
        "step 001: unknown task 'detector'",
    )


def test_no_version_satisfies(tmp_path):
    text = GOOD.replace("task: detect@^1", "task: detect@^3")
    found = problems_of(tmp_path, text)
    assert (found[0].line, found[0].column) == (9, 11)
    assert found[0].message == "step 001: no version of 'detect' satisfies '^3' (have 1.2.0)"


def test_invalid_constraint(tmp_path):
    text = GOOD.replace("task: detect@^1", "task: detect@banana")
    assert "invalid version constraint 'banana'" in problems_of(tmp_path, text)[0].message


@pytest.mark.parametrize(
    ("constraint", "version"),
    [
        ("^1", "1.0.0"),
        ("~2.1", "2.1.0"),
        (">=1.0,<2", "1.0.0"),
        (">=1.0, <3", "2.1.0"),
        ("2.1.0", "2.1.0"),
        ("latest", "2.1.0"),
        ("", "2.1.0"),
    ],
)
def test_version_resolution(tmp_path, constraint, version):
    task = f"describe@{constraint}" if constraint else "describe"
    text = GOOD.replace("task: describe@^1", f"task: {task}")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    checked = check_pipeline(load_pipeline(path), DirectoryCatalog([TASKS]))
    assert checked.graph.tasks["002"].version == version


def test_type_mismatch(tmp_path):
    text = GOOD.replace("faces_array: $001.faces_array}", "faces_array: $001.count}")
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (13, 57)
    assert msg == (
        "$001.count cannot feed input 'faces_array' of step 002 (describe@1.0.0): "
        "type mismatch: produces integer, expects array"
    )


def test_array_versus_object(tmp_path):
    text = with_step(
        GOOD,
        """\
      - id: "004"
        task: summarize
        with: {record: $001.faces_array}
    """,
    )
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (20, 20)
    assert msg.endswith("type mismatch: produces array, expects object")


def test_required_property_not_declared(tmp_path):
    text = GOOD.replace(
        "inputs:\n  image_path: {schema: {type: string}}",
        "inputs:\n  image_path: {schema: {type: string}}\n"
        "  record: {schema: {type: object, properties: {name: {type: string}}}}",
    )
    text = with_step(text, '- id: "004"\n  task: summarize\n  with: {record: $inputs.record}\n')
    found = [p for p in problems_of(tmp_path, text) if p.severity == "error"]
    assert [p.message for p in found] == [
        "$inputs.record cannot feed input 'record' of step 004 (summarize@1.0.0): "
        "requires property 'name' that the producer declares optional",
        "$inputs.record cannot feed input 'record' of step 004 (summarize@1.0.0): "
        "requires property 'size' that the producer does not declare",
    ]
    assert (found[0].line, found[0].column) == (21, 20)


def test_nested_item_property_checked(tmp_path):
    text = GOOD.replace('$001.faces_array}\n  - id: "003"', '$001.faces_array}\n  - id: "003"')
    text = text.replace("faces: {schema: {type: string}}", "")
    # describe needs items with face_id and bbox; feed it items lacking bbox
    text = text.replace(
        "inputs:\n  image_path: {schema: {type: string}}",
        "inputs:\n  image_path: {schema: {type: string}}\n"
        "  boxes: {schema: {type: array, items: {type: object, required: [face_id],"
        " properties: {face_id: {type: integer}}, additionalProperties: false}}}",
    )
    text = text.replace("faces_array: $001.faces_array}", "faces_array: $inputs.boxes}")
    found = [p for p in problems_of(tmp_path, text) if p.severity == "error"]
    assert [p.message.split(": ", 1)[1] for p in found] == [
        "requires property '[].bbox' that the producer does not declare"
    ]


def test_bad_constant(tmp_path):
    text = GOOD.replace(
        "with: {image_path: $inputs.image_path}",
        "with: {image_path: $inputs.image_path, detector: cnn}",
    )
    line, col, msg = only(problems_of(tmp_path, text))
    assert (line, col) == (10, 54)
    assert msg.startswith("constant for input 'detector' of step 001 (detect@1.2.0) is invalid:")
    assert "'cnn' is not one of ['hog', 'haar']" in msg


def test_escaped_dollar_is_a_constant(tmp_path):
    text = GOOD.replace("label: features", "label: $$money")
    assert problems_of(tmp_path, text) == []


def test_unused_input_is_a_warning(tmp_path):
    text = GOOD.replace(
        "inputs:\n  image_path: {schema: {type: string}}",
        "inputs:\n  image_path: {schema: {type: string}}\n  extra: {schema: {type: integer}}",
    )
    found = problems_of(tmp_path, text)
    assert [(p.severity, p.line, p.column, p.message) for p in found] == [
        ("warning", 7, 3, "pipeline input 'extra' is never used")
    ]


def test_foreach_port_must_be_an_input(tmp_path):
    text = GOOD.replace("foreach: {port: faces_array", "foreach: {port: faces")
    found = problems_of(tmp_path, text)
    assert found[0].message.startswith(
        "step 003 (describe@2.1.0): foreach port 'faces' is not an input"
    )
    assert (found[0].line, found[0].column) == (16, 21)


def test_foreach_needs_array_outputs(tmp_path):
    text = GOOD.replace(
        "task: describe@>=2.0,<3\n    foreach: {port: faces_array, from: "
        "$001.faces_array}\n    with: {image_path: $inputs.image_path, label: "
        "features}",
        "task: summarize\n    foreach: {port: record, from: $001.faces_array}",
    )
    messages = [p.message for p in problems_of(tmp_path, text)]
    assert "step 003 (summarize@1.0.0): foreach port 'record' must take an array" in messages
    assert (
        "step 003 (summarize@1.0.0): foreach needs array outputs to concatenate; "
        "text are not arrays"
    ) in messages


def test_join_key_must_be_required(tmp_path):
    text = GOOD.replace("join: face_id", "join: label")
    found = problems_of(tmp_path, text)
    assert found[0].message == (
        "output 'faces': items of $001.faces_array do not declare the join key 'label' as required"
    )
    assert (found[0].line, found[0].column) == (21, 23)


def test_bad_output_reference(tmp_path):
    text = GOOD.replace("attributes: $002.described", "attributes: $002.nope")
    assert problems_of(tmp_path, text)[0].message.startswith(
        "output 'faces': step 002 (describe@1.0.0) has no output port 'nope'"
    )


# when: conditions


def conditional(when: str) -> str:
    return with_step(
        GOOD,
        f"""\
        - id: "004"
          task: describe@^1
          when: "{when}"
          with: {{image_path: $inputs.image_path, faces_array: $001.faces_array}}
        """,
    )


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        ("len($001.faces_array > 0", 36, "when: unexpected end of condition at column 25"),
        ("len($009.faces) > 0", 16, "step 004 (describe@1.0.0): when: unknown step '009'"),
        (
            "$001.faces == 1",
            12,
            "step 004 (describe@1.0.0): when: step 001 (detect@1.2.0) has no output port 'faces'",
        ),
        ("$inputs.size > 1", 12, "step 004 (describe@1.0.0): when: unknown pipeline input 'size'"),
        ("$004.described == null", 12, "step 004 (describe@1.0.0): when reads its own output"),
        ("size($001.faces_array)", 12, "when: unknown function 'size' at column 1"),
    ],
)
def test_a_bad_condition_is_reported_where_it_is(tmp_path, when, column, message):
    # line 20 is `    when: "..."`: the expression starts at column 12, after the quote
    found = [p for p in problems_of(tmp_path, conditional(when)) if "when" in p.message]
    line, found_column, text = only(found)
    assert (line, found_column) == (20, column)
    assert text.startswith(message), text


def test_a_condition_orders_the_steps_it_reads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(conditional("len($002.described) > 0"))
    checked = check_pipeline(load_pipeline(path), DirectoryCatalog([TASKS]))
    assert "002" in checked.graph.deps["004"]


def test_reading_a_conditional_step_without_a_condition_is_warned_of(tmp_path):
    text = with_step(
        conditional("true"),
        """\
        - id: "005"
          task: describe@^1
          with: {image_path: $inputs.image_path, faces_array: $004.described}
        """,
    )
    problem = problems_of(tmp_path, text)
    assert [(p.severity, p.message) for p in problem] == [
        (
            "warning",
            "step 005 (describe@1.0.0) reads $004.described, but step 004 runs only when "
            "true: 005 is skipped whenever 004 is (give 005 a when to say so)",
        )
    ]
