"""One behaviour suite for every executor: data flow, failures, retries, limits, lineage."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from runtime.execute import execute, prepare
from runtime.lineage import lineage
from runtime.services import Services

DIAMOND = """
inputs:
  x: {schema: {type: number}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x, b: 1}}
  - {id: "002", task: add, with: {a: $001.sum, b: 10}}
  - {id: "003", task: add, with: {a: $001.sum, b: 100}}
  - {id: "004", task: add, with: {a: $002.sum, b: $003.sum}}
outputs:
  total: $004.sum
"""


def steps_by_id(services: Services, run_id: str) -> dict[str, object]:
    return {(s.step_id, s.item): s for s in services.metadata.list_steps(run_id)}


def test_diamond_routes_values_and_records_everything(run, services):
    session = run(DIAMOND, {"x": 1})
    result = session.result
    assert result["total"] == (1 + 1 + 10) + (1 + 1 + 100)
    summary = result["processing_summary"]
    assert summary["status"] == "succeeded"
    assert "output_001_sum -> input_003_a" in summary["data_lineage"]
    run_record = services.metadata.get_run(session.run_id)
    assert run_record.status == "succeeded" and run_record.outputs == {"total": 114}
    steps = steps_by_id(services, session.run_id)
    assert {k[0] for k in steps} == {"001", "002", "003", "004"}
    four = steps[("004", -1)]
    assert four.status == "succeeded" and four.input_id == "add_input_004"
    assert four.output_id == "add_output_004" and four.digest
    assert sorted(four.edges) == ["output_002_sum -> input_004_a", "output_003_sum -> input_004_b"]
    tree = lineage(services.metadata, session.run_id, "output_004_sum")
    flat = []

    def walk(node):
        flat.append(node.value.value_id)
        for source in node.sources:
            walk(source)

    walk(tree)
    assert "pipeline_input_x" in flat and "output_001_sum" in flat


def test_fan_out_feeds_both_consumers_the_same_value(run, services):
    session = run(DIAMOND, {"x": 5})
    values = {v.value_id: v for v in services.metadata.list_values(session.run_id)}
    assert values["input_002_a"].data_id == values["output_001_sum"].data_id
    assert values["input_003_a"].data_id == values["output_001_sum"].data_id
    assert values["input_002_a"].sources == ["output_001_sum"]


def test_independent_steps_run_at_the_same_time(run, services):
    session = run("""
steps:
  - {id: a, task: sleep, with: {seconds: 0.4}}
  - {id: b, task: sleep, with: {seconds: 0.4}}
""")
    a, b = (steps_by_id(services, session.run_id)[(s, -1)] for s in ("a", "b"))
    assert a.worker != b.worker
    start = max(datetime.fromisoformat(a.started_at), datetime.fromisoformat(b.started_at))
    end = min(datetime.fromisoformat(a.finished_at), datetime.fromisoformat(b.finished_at))
    assert start < end, "the two steps did not overlap"


def test_failure_skips_dependants_and_keeps_other_outputs(run, services):
    session = run("""
steps:
  - {id: "001", task: fail_until, with: {value: 1, attempt: 0}}
  - {id: "002", task: add, with: {a: $001.value}}
  - {id: "003", task: add, with: {a: 2, b: 3}}
outputs:
  bad: $002.sum
  good: $003.sum
""")
    result = session.result
    summary = result["processing_summary"]
    assert summary["status"] == "failed"
    assert result["good"] == 5 and "bad" not in result
    assert summary["steps"]["002"]["status"] == "skipped"
    assert summary["errors"] == [
        "step 001 (fail_until@1.0.0): RuntimeError: planned failure on attempt 3"
    ]
    steps = steps_by_id(services, session.run_id)
    assert steps[("001", -1)].status == "failed" and steps[("001", -1)].attempt == 3
    assert "planned failure" in steps[("001", -1)].traceback_tail
    assert steps[("002", -1)].status == "skipped"
    assert services.metadata.get_run(session.run_id).status == "failed"


def test_retry_then_success(run, services):
    session = run("""
steps:
  - {id: "001", task: fail_until, with: {value: ok, attempt: 2}}
outputs:
  value: $001.value
""")
    assert session.result["value"] == "ok"
    record = steps_by_id(services, session.run_id)[("001", -1)]
    assert (record.status, record.attempt) == ("succeeded", 2)


def test_timeout_fails_the_step(run, services):
    session = run("""
steps:
  - {id: "001", task: sleep, with: {seconds: 5}}
""")
    summary = session.result["processing_summary"]
    assert summary["status"] == "failed"
    assert summary["errors"] == ["step 001 (sleep@1.0.0): StepTimeout: timed out after 1s"]


def test_schema_violation_names_port_step_and_path(run, services):
    session = run("""
steps:
  - {id: "001", task: make_list, with: {n: 3, bad: true}}
""")
    assert session.result["processing_summary"]["errors"] == [
        "step 001 (make_list@1.0.0): output 'items' at $[0]: '0' is not of type 'integer'"
    ]


def test_bad_pipeline_input_fails_at_the_step_boundary(run, services):
    session = run(
        """
inputs:
  x: {schema: {}}
steps:
  - {id: "001", task: add, with: {a: $inputs.x}}
""",
        {"x": "seven"},
    )
    assert session.result["processing_summary"]["errors"] == [
        "step 001 (add@1.0.0): input 'a' at $: 'seven' is not of type 'number'"
    ]


def test_large_values_travel_by_reference(run, services):
    session = run("""
steps:
  - {id: "001", task: make_list, with: {n: 20000}}
  - {id: "002", task: fail_until, with: {value: $001.items}}
outputs:
  items: $002.value
""")
    assert session.result["items"] == list(range(20000))
    values = {v.value_id: v for v in services.metadata.list_values(session.run_id)}
    big = values["output_001_items"]
    assert big.uri and big.uri.startswith("artifact://sha256/") and big.value is None
    assert big.size > services.settings.inline_threshold
    assert values["output_001_total"].value == sum(range(20000))
    assert values["input_002_value"].data_id == big.data_id


def test_foreach_fans_out_and_gathers_in_order(run, services, tmp_path):
    image = tmp_path / "faces.txt"
    image.write_text("a\nb\nc\nd\ne\n")
    session = run(
        """
inputs:
  image_path: {schema: {type: string}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image_path}}
  - id: "002"
    task: describe@^2
    foreach: {port: faces_array, from: $001.faces_array, chunk: 2}
    with: {image_path: $inputs.image_path}
outputs:
  faces: $002.described
""",
        {"image_path": str(image)},
    )
    faces = session.result["faces"]
    assert [f["face_id"] for f in faces] == [0, 1, 2, 3, 4]
    assert {f["label"] for f in faces} == {"described-v2"}
    assert session.result["processing_summary"]["steps"]["002"]["invocations"] == 3
    steps = steps_by_id(services, session.run_id)
    assert {k for k in steps if k[0] == "002"} == {("002", -1), ("002", 0), ("002", 1), ("002", 2)}
    gathered = services.metadata.get_value(session.run_id, "output_002_described")
    assert gathered.sources == [f"output_002_described[{i}]" for i in range(3)]


def test_foreach_over_nothing_runs_nothing(run, services, tmp_path):
    image = tmp_path / "empty.txt"
    image.write_text("")
    session = run(
        """
inputs:
  image_path: {schema: {type: string}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image_path}}
  - id: "002"
    task: describe
    foreach: {port: faces_array, from: $001.faces_array}
    with: {image_path: $inputs.image_path}
outputs:
  faces: $002.described
""",
        {"image_path": str(image)},
    )
    assert session.result["faces"] == []
    assert session.result["processing_summary"]["status"] == "succeeded"
    assert session.result["processing_summary"]["steps"]["002"]["invocations"] == 0


def test_join_output_has_the_seed_report_shape(run, services, tmp_path):
    image = tmp_path / "faces.txt"
    image.write_text("a\nb\n")
    session = run(
        """
inputs:
  image_path: {schema: {type: string}}
steps:
  - {id: "001", task: detect, with: {image_path: $inputs.image_path}}
  - {id: "002", task: describe, with: {image_path: $inputs.image_path, faces_array: $001.faces_array}}
outputs:
  faces:
    join: face_id
    from: {detection: $001.faces_array, attributes: $002.described}
""",
        {"image_path": str(image)},
    )
    first = session.result["faces"][0]
    assert first["face_id"] == 0
    assert first["detection"] == {
        "bbox": [0, 0, 10, 10],
        "confidence": 0.9,
        "source": "output_001_faces_array",
    }
    assert first["attributes"]["source"] == "output_002_described"
    summary = session.result["processing_summary"]
    assert {"total_time", "sequential_time", "parallel_speedup", "data_lineage"} <= set(summary)


def test_cancel_stops_the_run(run, services):
    def cancel_soon():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            active = services.metadata.list_runs(status="running")
            if active:
                time.sleep(0.2)
                services.metadata.update_run(active[0].run_id, status="cancelled")
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    started = time.monotonic()
    session = run("""
steps:
  - {id: "001", task: sleep, with: {seconds: 0.8}}
  - {id: "002", task: sleep, with: {seconds: 0.8, after: $001.slept}}
  - {id: "003", task: sleep, with: {seconds: 0.8, after: $002.slept}}
""")
    canceller.join()
    assert time.monotonic() - started < 2.0
    assert session.result["processing_summary"]["status"] == "cancelled"
    assert services.metadata.get_run(session.run_id).status == "cancelled"
    states = {s.step_id: s.status for s in services.metadata.list_steps(session.run_id)}
    assert states["003"] == "cancelled"


def test_batch_one_bad_input_fails_only_its_run(request, services, executor, tmp_path):
    path = tmp_path / "batch.yaml"
    path.write_text("apiVersion: wtm/v1\nkind: Pipeline\nname: batch\nversion: 1.0.0\n" + DIAMOND)
    checked, pins = prepare(services, path)
    broker = request.getfixturevalue("celery_worker")[0] if executor == "celery" else None
    finished = []
    sessions = execute(
        services,
        checked,
        pins,
        [{"x": 1}, {"x": "bad"}, {"x": 3}],
        executor=executor,
        broker_url=broker,
        on_finished=finished.append,
    )
    statuses = [s.result["processing_summary"]["status"] for s in sessions]
    assert statuses == ["succeeded", "failed", "succeeded"]
    assert [s.result.get("total") for s in sessions] == [114, None, 118]
    assert sorted(s.run_id for s in finished) == sorted(s.run_id for s in sessions)
    batch_ids = {services.metadata.get_run(s.run_id).batch_id for s in sessions}
    assert len(batch_ids) == 1 and None not in batch_ids


def test_a_step_starts_when_its_own_inputs_are_done_not_its_stage(run, services):
    session = run("""
steps:
  - {id: a, task: sleep, with: {seconds: 0.05}}
  - {id: b, task: sleep, with: {seconds: 0.8, after: $a.slept}}
  - {id: c, task: sleep, with: {seconds: 0.05, after: $a.slept}}
  - {id: d, task: sleep, with: {seconds: 0.05, after: $c.slept}}
""")
    assert session.result["processing_summary"]["status"] == "succeeded"
    steps = steps_by_id(services, session.run_id)
    b, d = steps[("b", -1)], steps[("d", -1)]
    assert datetime.fromisoformat(d.finished_at) < datetime.fromisoformat(b.finished_at), (
        "d waited for b, which it does not read"
    )


def test_skips_name_the_root_failure_however_deep(run, services):
    session = run("""
steps:
  - {id: "001", task: fail_until, with: {value: 1, attempt: 9}}
  - {id: "002", task: add, with: {a: $001.value, b: 1}}
  - {id: "003", task: add, with: {a: $002.sum, b: 1}}
""")
    steps = steps_by_id(services, session.run_id)
    assert [(s, steps[(s, -1)].status, steps[(s, -1)].error) for s in ("002", "003")] == [
        ("002", "skipped", "skipped: step 001 failed"),
        ("003", "skipped", "skipped: step 001 failed"),
    ]
    assert session.result["processing_summary"]["steps"]["003"]["status"] == "skipped"


def test_a_plugin_calling_sys_exit_fails_its_step_and_the_run_ends(run, services):
    session = run("""
steps:
  - {id: "001", task: crash, with: {how: exit}}
  - {id: "002", task: add, with: {a: 1, b: 2}}
""")
    summary = session.result["processing_summary"]
    assert summary["status"] == "failed"
    assert summary["errors"] == ["step 001 (crash@1.0.0): the plugin called sys.exit(3)"]
    assert summary["steps"]["002"]["status"] == "succeeded"
    assert services.metadata.get_run(session.run_id).status == "failed"


def test_a_process_that_dies_under_a_step_is_replaced_and_the_step_runs_again(run, services):
    session = run("""
steps:
  - {id: "001", task: crash, with: {how: os_exit, until: 2}}
outputs:
  attempt: $001.attempt
""")
    assert session.result["attempt"] == 2
    record = steps_by_id(services, session.run_id)[("001", -1)]
    assert (record.status, record.attempt) == ("succeeded", 2)


def test_a_step_whose_process_always_dies_fails_after_three_losses(run, services):
    session = run("""
steps:
  - {id: "001", task: crash, with: {how: sigkill}}
""")
    summary = session.result["processing_summary"]
    assert summary["status"] == "failed"
    assert summary["errors"] == [
        "step 001 (crash@1.0.0): worker lost 3 times while running this step"
    ]
    record = steps_by_id(services, session.run_id)[("001", -1)]
    assert record.status == "failed" and record.attempt == 3


def test_a_step_past_its_hard_limit_is_killed_with_the_same_reason(run, services):
    session = run("""
steps:
  - {id: "001", task: hang, with: {seconds: 30}}
""")
    summary = session.result["processing_summary"]
    assert summary["errors"] == ["step 001 (hang@1.0.0): timed out after 1s (killed)"]
    assert summary["status"] == "failed"


def test_cancelling_one_run_of_a_batch_cancels_only_it(request, services, executor, tmp_path):
    """The executors look for cancelled runs of a batch in one query (``wtm runs cancel``
    of one run of a batch stops that run and no other)."""
    path = tmp_path / "batch.yaml"
    path.write_text(
        "apiVersion: wtm/v1\nkind: Pipeline\nname: batch\nversion: 1.0.0\n"
        "inputs:\n  seconds: {schema: {type: number}}\n"
        "steps:\n"
        '  - {id: "001", task: sleep, with: {seconds: $inputs.seconds}}\n'
        '  - {id: "002", task: sleep, with: {seconds: $inputs.seconds, after: $001.slept}}\n'
        '  - {id: "003", task: sleep, with: {seconds: $inputs.seconds, after: $002.slept}}\n'
    )  # each step under the sleep task's 1 s timeout: the slow run takes 2.7 s
    checked, pins = prepare(services, path)
    broker = request.getfixturevalue("celery_worker")[0] if executor == "celery" else None
    target: list[str] = []

    def cancel_the_slow_run(session):
        if not target:  # the first run to end: the slow one is still going
            [slow] = [
                r
                for r in services.metadata.list_runs(status=("pending", "running"))
                if r.inputs == {"seconds": 0.9}
            ]
            target.append(slow.run_id)
            services.metadata.update_run(slow.run_id, status="cancelled")

    sessions = execute(
        services,
        checked,
        pins,
        [{"seconds": 0.05}, {"seconds": 0.9}, {"seconds": 0.05}],
        executor=executor,
        workers=2,
        broker_url=broker,
        on_finished=cancel_the_slow_run,
    )
    statuses = {s.run_id: s.result["processing_summary"]["status"] for s in sessions}
    assert statuses.pop(target[0]) == "cancelled"
    assert set(statuses.values()) == {"succeeded"}
