"""Conditional steps (``when``) on every executor."""

from __future__ import annotations

BRANCHES = """
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x, b: 1}}
  - {id: "002", task: add, when: "$001.sum > 10", with: {a: $001.sum, b: 100}}
  - {id: "003", task: add, when: "true", with: {a: $002.sum, b: 1000}}
  - {id: "004", task: add, when: "$002.sum == null", with: {a: $001.sum, b: -1}}
outputs:
  big: $003.sum
  small: $004.sum
"""


def statuses(services, run_id):
    return {s.step_id: (s.status, s.error) for s in services.metadata.list_steps(run_id)}


def test_a_false_condition_skips_the_step_and_its_readers_and_the_run_succeeds(run, services):
    session = run(BRANCHES, {"x": 1})
    summary = session.result["processing_summary"]
    assert summary["status"] == "succeeded", summary.get("errors")
    reason = "condition false: $001.sum > 10"
    assert statuses(services, session.run_id) == {
        "001": ("succeeded", None),
        "002": ("skipped", reason),
        "003": ("skipped", reason),
        "004": ("succeeded", None),  # its condition reads 002's output as null
    }
    assert session.result["big"] is None and session.result["small"] == 1


def test_a_true_condition_runs_the_step(run, services):
    session = run(BRANCHES, {"x": 20})
    assert session.result["big"] == 1121
    status = statuses(services, session.run_id)
    assert status["004"] == ("skipped", "condition false: $002.sum == null")
    assert session.result["small"] is None
    assert session.result["processing_summary"]["status"] == "succeeded"


def test_a_condition_that_cannot_be_evaluated_fails_its_step(run, services):
    session = run(
        """
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x}}
  - {id: "002", task: add, when: "len($001.sum) > 0", with: {a: $001.sum}}
""",
        {"x": 1},
    )
    summary = session.result["processing_summary"]
    assert summary["status"] == "failed"
    assert summary["errors"] == [
        "step 002 (add@1.0.0): when len($001.sum) > 0: "
        "$001.sum is a number, not a string, list or object"
    ]
