"""The run state as a table of transitions: no Redis, no processes, no metadata store.

Every test drives a :class:`RunState` through a :class:`Run` harness that checks,
after each transition, that the state survives a JSON round trip unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from runtime.executors import runstate
from runtime.executors.calls import WHOLE, StepCall, StepResult, TaskPin
from runtime.executors.plan import ForeachPlan, RunPlan, StepPlan
from runtime.executors.runstate import DEFAULT_MAX_LOST, RunState, Transition
from runtime.values import data_id, decode, encode

RUN_ID = "run-1"
THRESHOLD = 1024
NOW = 1000.0
DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


class MemoryStore:
    """The artifact store values need (runtime.values.BlobStore), in a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put_json_blob(self, data: bytes) -> str:
        uri = "artifact://sha256/" + hashlib.sha256(data).hexdigest()
        self.blobs[uri] = data
        return uri

    def get_blob(self, uri: str) -> bytes:
        return self.blobs[uri]


class Clock:
    """What runstate sees as the ``time`` module: a clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(runstate, "time", fake)
    return fake


def pin(sid: str, retries: int = 0) -> TaskPin:
    return TaskPin(f"task_{sid}", "1.0.0", f"sha256:{sid * 8}", max_retries=retries)


def default_bindings(sid: str, needs: list[str]) -> dict[str, dict[str, Any]]:
    """``x`` from the pipeline input ``x`` for a first step, else ``from_N`` <- ``N.y``."""
    if not needs:
        return {"x": {"ref": "pipeline_input_x"}}
    return {f"from_{n}": {"ref": f"output_{n}_y"} for n in needs}


def make_plan(
    graph: Mapping[str, list[str]],
    bindings: Mapping[str, dict[str, dict[str, Any]]] | None = None,
    *,
    outputs: Mapping[str, tuple[str, ...]] | None = None,
    foreach: Mapping[str, ForeachPlan] | None = None,
    retries: Mapping[str, int] | None = None,
    pipeline_outputs: dict[str, Any] | None = None,
    threshold: int = THRESHOLD,
) -> RunPlan:
    """A plan from ``{step: [needs]}`` (in execution order); every step makes port ``y``."""
    bindings, outputs, foreach, retries = (
        bindings or {},
        outputs or {},
        foreach or {},
        retries or {},
    )
    order = list(graph)
    depth: dict[str, int] = {}
    steps = {}
    for rank, sid in enumerate(order):
        depth[sid] = 1 + max((depth[n] for n in graph[sid]), default=-1)
        step_bindings = bindings.get(sid, default_bindings(sid, graph[sid]))
        edges = [
            f"{b['ref']} -> input_{sid}_{port}" for port, b in step_bindings.items() if "ref" in b
        ]
        if sid in foreach:
            edges.append(f"{foreach[sid].source} -> input_{sid}_{foreach[sid].port}")
        steps[sid] = StepPlan(
            step_id=sid,
            pin=pin(sid, retries.get(sid, 0)),
            needs=tuple(sorted(graph[sid])),
            bindings=step_bindings,
            outputs=outputs.get(sid, ("y",)),
            edges=tuple(edges),
            dependants=tuple(child for child in order if sid in graph[child]),
            foreach=foreach.get(sid),
            rank=rank,
            depth=depth[sid],
        )
    return RunPlan("test@1.0.0", steps, pipeline_outputs or {}, threshold)


def round_trip(state: RunState) -> RunState:
    return RunState.from_json(json.loads(json.dumps(state.to_json(), allow_nan=False)))


def assert_round_trips(state: RunState) -> None:
    restored = round_trip(state)
    assert restored == state
    assert restored.to_json() == state.to_json()


class Run:
    """A run state, its plan and store, and shorthand for its transitions."""

    def __init__(
        self, plan: RunPlan, inputs: Mapping[str, Any] | None = None, *, reload: bool = False
    ) -> None:
        self.plan = plan
        self.store = MemoryStore()
        self.reload = reload
        given = {"x": 1} if inputs is None else inputs
        refs = {name: encode(v, self.store, plan.threshold) for name, v in given.items()}
        self.state = RunState.new(RUN_ID, plan, refs)
        self.transitions: list[Transition] = []
        self.snapshots = [self.snapshot()]
        assert_round_trips(self.state)

    def _do(self, change: Callable[[RunState], Transition]) -> Transition:
        if self.reload:  # as the celery executor does: the state lives as JSON in between
            self.state = round_trip(self.state)
        transition = change(self.state)
        assert_round_trips(self.state)
        self.transitions.append(transition)
        self.snapshots.append(self.snapshot())
        return transition

    def ref(self, value: Any) -> dict[str, Any]:
        """The ValueRef JSON ``value`` travels as in this run."""
        return encode(value, self.store, self.plan.threshold).to_json()

    def result(self, seconds: float, outputs: Mapping[str, Any]) -> StepResult:
        return StepResult({port: self.ref(v) for port, v in outputs.items()}, seconds, "w1")

    def start(self) -> Transition:
        return self._do(lambda s: s.start(self.plan, self.store))

    def succeed(self, call: StepCall, seconds: float = 0.5, **outputs: Any) -> Transition:
        result = self.result(seconds, outputs or {"y": call.step_id.upper()})
        return self._do(lambda s: s.succeeded(self.plan, self.store, call, result))

    def fail(self, call: StepCall, error: str = "boom") -> Transition:
        return self._do(lambda s: s.attempt_failed(self.plan, call, error))

    def lose(self, call: StepCall, max_lost: int = DEFAULT_MAX_LOST) -> Transition:
        return self._do(lambda s: s.worker_lost(self.plan, call, max_lost))

    def cancel(self, reason: str = "cancelled") -> Transition:
        return self._do(lambda s: s.cancel(reason))

    def held(self, key: str) -> StepCall:
        """The call in flight under ``key``."""
        call = self.state.call(key)
        assert call is not None, f"{key} is not in flight"
        return call

    def snapshot(self) -> str:
        return json.dumps(self.state.to_json(), sort_keys=True)


def keys(transition: Transition) -> list[str]:
    return [c.key for c in transition.calls]


def whole(run: Run, sid: str, inputs: dict[str, Any], attempt: int = 1) -> StepCall:
    """The call of the whole step ``sid`` as the plan describes it."""
    step = run.plan.steps[sid]
    return StepCall(RUN_ID, sid, WHOLE, step.pin, inputs, list(step.edges), attempt)


def lost_reason(label: str, times: str) -> str:
    return f"{label}: worker lost {times} while running this step"


# --- start


@pytest.mark.parametrize(
    ("graph", "started"),
    [
        ({"a": []}, ["a"]),
        (DIAMOND, ["a"]),
        ({"a": [], "b": [], "c": ["a", "b"]}, ["a", "b"]),
        ({"a": [], "b": ["a"], "c": []}, ["a", "c"]),
        ({"a": [], "b": ["a"], "c": ["b"], "d": []}, ["a", "d"]),
    ],
)
def test_start_calls_only_the_steps_with_no_needs(graph, started):
    run = Run(make_plan(graph))
    transition = run.start()
    assert keys(transition) == started
    assert transition.changed == []  # a running step is recorded by the call itself
    assert transition.calls == [whole(run, sid, {"x": run.ref(1)}) for sid in started]
    assert run.state.status == {sid: "running" if sid in started else "pending" for sid in graph}
    assert list(run.state.inflight) == started
    assert run.state.calls() == transition.calls
    assert run.state.invocations == dict.fromkeys(started, 1)
    assert run.state.started == dict.fromkeys(started, NOW)
    assert run.state.outcome == "running" and not run.state.finished
    assert run.start() == Transition()  # starting again starts nothing


@pytest.mark.parametrize("threshold", [THRESHOLD, 0])
def test_start_binds_pipeline_inputs_and_constants(threshold):
    inline = encode(7, MemoryStore(), THRESHOLD).to_json()
    stored = {"id": data_id("big"), "size": 5, "uri": "artifact://sha256/big"}
    bindings = {
        "a": {
            "x": {"ref": "pipeline_input_x"},
            "z": {"ref": "pipeline_input_z"},
            "k": {"value": inline},
            "big": {"value": stored},
        }
    }
    run = Run(make_plan({"a": [], "b": ["a"]}, bindings, threshold=threshold), {"x": 1, "z": "zed"})
    assert run.state.values == {"pipeline_input_x": run.ref(1), "pipeline_input_z": run.ref("zed")}
    assert ("uri" in run.state.values["pipeline_input_z"]) == (threshold == 0)
    (call,) = run.start().calls
    assert call == whole(
        run, "a", {"x": run.ref(1), "z": run.ref("zed"), "k": inline, "big": stored}
    )
    assert call.edges == ["pipeline_input_x -> input_a_x", "pipeline_input_z -> input_a_z"]
    assert decode(call.input_refs()["z"], run.store) == "zed"


def test_new_state_is_all_pending_with_nothing_in_flight():
    run = Run(make_plan(DIAMOND))
    state = run.state
    assert state.run_id == RUN_ID
    assert state.status == dict.fromkeys(DIAMOND, "pending")
    assert (state.inflight, state.chunk_outputs, state.reasons) == ({}, {}, {})
    assert (state.failures, state.lost, state.seconds, state.invocations) == ({}, {}, {}, {})
    assert state.ended is None and state.calls() == [] and state.call("a") is None


# --- readiness: a step starts as soon as its own inputs are done


@pytest.mark.parametrize(
    ("graph", "finish", "started"),
    [
        pytest.param(
            {"a": [], "b": ["a"], "c": ["a"], "d": ["c"]},
            ["a", "c", "d", "b"],
            [["b", "c"], ["d"], [], []],
            id="d-starts-while-b-runs",
        ),
        pytest.param(
            {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": ["d"]},
            ["a", "d", "e", "b", "c"],
            [["b", "d"], ["e"], [], ["c"], []],
            id="two-chains",
        ),
        pytest.param(DIAMOND, ["a", "b", "c", "d"], [["b", "c"], [], ["d"], []], id="join-b-first"),
        pytest.param(DIAMOND, ["a", "c", "b", "d"], [["b", "c"], [], ["d"], []], id="join-c-first"),
        pytest.param(
            {"a": [], "b": [], "c": [], "j": ["a", "b", "c"]},
            ["c", "a", "b", "j"],
            [[], [], ["j"], []],
            id="three-way-join",
        ),
        pytest.param(
            {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]},
            ["a", "b", "c", "d"],
            [["b"], ["c"], ["d"], []],
            id="join-over-a-chain",
        ),
    ],
)
def test_a_step_starts_as_soon_as_its_needs_succeeded_and_exactly_once(graph, finish, started):
    run = Run(make_plan(graph))
    run.start()
    for sid, expected in zip(finish, started, strict=True):
        transition = run.succeed(run.held(sid), y=f"{sid}-out")
        assert keys(transition) == expected, f"after {sid}"
        assert transition.changed == [sid]
        for call in transition.calls:
            needs = run.plan.steps[call.step_id].needs
            assert all(run.state.status[n] == "succeeded" for n in needs)
            assert call.inputs == {f"from_{n}": run.ref(f"{n}-out") for n in needs}
    assert run.state.status == dict.fromkeys(graph, "succeeded")
    assert run.state.invocations == dict.fromkeys(graph, 1)
    assert run.state.seconds == dict.fromkeys(graph, 0.5)
    assert run.state.inflight == {}
    # values every reader has taken are dropped; what nobody reads stays to the end
    assert run.state.values == {
        f"output_{sid}_y": run.ref(f"{sid}-out")
        for sid in graph
        if f"output_{sid}_y" not in run.plan.readers
    }
    assert run.state.outcome == "succeeded"


def test_d_starts_when_c_succeeded_while_b_is_still_running():
    run = Run(make_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["c"]}))
    (a,) = run.start().calls
    b, c = run.succeed(a, y=5).calls
    assert b.inputs == c.inputs == {"from_a": run.ref(5)}
    transition = run.succeed(c, y=7)
    assert transition == Transition([whole(run, "d", {"from_c": run.ref(7)})], ["c"])
    assert transition.calls[0].edges == ["output_c_y -> input_d_from_c"]
    assert run.state.status == {"a": "succeeded", "b": "running", "c": "succeeded", "d": "running"}
    assert sorted(run.state.inflight) == ["b", "d"]


def test_a_join_starts_once_even_when_a_need_reports_twice():
    run = Run(make_plan(DIAMOND))
    (a,) = run.start().calls
    b, c = run.succeed(a).calls
    assert run.succeed(b) == Transition(changed=["b"])
    assert run.state.status["d"] == "pending"
    assert keys(run.succeed(c)) == ["d"]
    assert run.succeed(c) == Transition()
    assert run.succeed(b) == Transition()
    assert run.state.invocations["d"] == 1
    assert list(run.state.inflight) == ["d"]


# --- failure


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("attempt_failed", "a broke"),
        ("worker_lost", lost_reason("step a (task_a@1.0.0)", "once")),
    ],
)
def test_a_failure_skips_its_dependants_transitively_naming_the_root_cause(clock, how, reason):
    run = Run(make_plan({"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e": []}))
    a, e = run.start().calls
    transition = run.fail(a, "a broke") if how == "attempt_failed" else run.lose(a, max_lost=1)
    assert transition == Transition(changed=["a", "b", "c", "d"])
    assert run.state.status == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "d": "skipped",
        "e": "running",
    }
    assert run.state.reasons == {
        "a": reason,
        "b": "skipped: step a failed",
        "c": "skipped: step a failed",
        "d": "skipped: step a failed",
    }
    assert list(run.state.inflight) == ["e"]
    assert (run.state.outcome, run.state.finished, run.state.ended) == ("running", False, None)
    clock.now = 2000.0
    assert run.succeed(e) == Transition(changed=["e"])  # the independent branch goes on
    assert (run.state.outcome, run.state.finished, run.state.ended) == ("failed", True, 2000.0)
    assert run.state.errors(run.plan) == [reason]


def test_a_failed_branch_skips_the_join_while_the_other_branch_finishes():
    run = Run(make_plan(DIAMOND))
    (a,) = run.start().calls
    b, c = run.succeed(a).calls
    assert run.fail(b, "b broke") == Transition(changed=["b", "d"])
    assert run.state.reasons == {"b": "b broke", "d": "skipped: step b failed"}
    assert run.state.outcome == "running"
    assert run.succeed(c) == Transition(changed=["c"])  # d stays skipped, never starts
    assert run.state.status == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": "skipped"}
    assert run.state.invocations == {"a": 1, "b": 1, "c": 1}
    assert run.state.outcome == "failed"
    assert run.state.errors(run.plan) == ["b broke"]


def test_errors_are_in_execution_order_and_a_skip_keeps_its_first_cause():
    graph = {"a": [], "b": [], "c": ["a"], "j": ["a", "b"], "d": ["b"]}
    run = Run(make_plan(graph))
    a, b = run.start().calls
    assert run.fail(b, "b broke") == Transition(changed=["b", "d", "j"])
    assert run.fail(a, "a broke") == Transition(changed=["a", "c"])
    assert run.state.reasons == {
        "a": "a broke",
        "b": "b broke",
        "c": "skipped: step a failed",
        "d": "skipped: step b failed",
        "j": "skipped: step b failed",
    }
    assert run.state.errors(run.plan) == ["a broke", "b broke"]
    assert run.state.outcome == "failed"


# --- retries and lost workers

A_LABEL = "step a (task_a@1.0.0)"


@pytest.mark.parametrize(
    ("max_retries", "max_lost", "events", "expected"),
    [
        (0, 3, ["fail"], ["failed: boom 1"]),
        (2, 3, ["fail", "fail", "fail"], [2, 3, "failed: boom 3"]),
        (2, 3, ["fail", "fail", "ok"], [2, 3, "succeeded"]),
        (
            0,
            3,
            ["lost", "lost", "lost"],
            [2, 3, "failed: " + lost_reason(A_LABEL, "3 times")],
        ),
        (0, 1, ["lost"], ["failed: " + lost_reason(A_LABEL, "once")]),
        (0, 2, ["lost", "lost"], [2, "failed: " + lost_reason(A_LABEL, "2 times")]),
        (0, 3, ["lost", "fail"], [2, "failed: boom 2"]),
        (1, 3, ["lost", "fail", "lost", "fail"], [2, 3, 4, "failed: boom 4"]),
        (
            1,
            2,
            ["fail", "lost", "lost"],
            [2, 3, "failed: " + lost_reason(A_LABEL, "2 times")],
        ),
        (2, 3, ["fail", "lost", "fail", "lost", "ok"], [2, 3, 4, 5, "succeeded"]),
    ],
)
def test_retries_and_lost_workers(max_retries, max_lost, events, expected):
    run = Run(make_plan({"a": [], "b": ["a"]}, retries={"a": max_retries}))
    (first,) = run.start().calls
    for event, outcome in zip(events, expected, strict=True):
        call = run.held("a")
        if event == "ok":
            transition = run.succeed(call)
        elif event == "fail":
            transition = run.fail(call, f"boom {call.attempt}")
        else:
            transition = run.lose(call, max_lost)
        if isinstance(outcome, int):  # the same call again, one attempt later
            assert transition == Transition([replace(first, attempt=outcome)])
            assert run.state.inflight["a"]["attempt"] == outcome
            assert run.state.status["a"] == "running"
        elif outcome == "succeeded":
            assert keys(transition) == ["b"] and transition.changed == ["a"]
        else:
            assert transition == Transition(changed=["a", "b"])
            assert run.state.status == {"a": "failed", "b": "skipped"}
            assert run.state.reasons["a"] == outcome.removeprefix("failed: ")
            assert run.state.inflight == {}
    fails, losses = events.count("fail"), events.count("lost")
    assert run.state.failures == ({"a": fails} if fails else {})
    assert run.state.lost == ({"a": losses} if losses else {})
    assert run.state.invocations == {"a": 1, **({"b": 1} if "ok" in events else {})}
    assert run.state.started["a"] == NOW


def test_a_retry_keeps_the_step_start_time(clock):
    run = Run(make_plan({"a": []}, retries={"a": 1}))
    (a,) = run.start().calls
    clock.now = NOW + 5
    (again,) = run.fail(a).calls
    run.succeed(again, seconds=0.25)
    assert run.state.started == {"a": NOW}
    assert run.state.seconds == {"a": 0.25}  # a failed attempt adds no seconds
    assert run.state.ended == NOW + 5


# --- idempotency: only the current call's report changes anything


def _stale_attempt(report: str) -> Callable[[], tuple[Run, Callable[[], Transition]]]:
    def setup() -> tuple[Run, Callable[[], Transition]]:
        run = Run(make_plan({"a": [], "b": ["a"]}, retries={"a": 1}))
        (a1,) = run.start().calls
        run.fail(a1)
        assert run.held("a").attempt == 2
        return run, {
            "ok": lambda: run.succeed(a1),
            "fail": lambda: run.fail(a1),
            "lost": lambda: run.lose(a1, max_lost=1),
        }[report]

    return setup


def _duplicate_result() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"]}))
    (a,) = run.start().calls
    assert keys(run.succeed(a)) == ["b"]
    return run, lambda: run.succeed(a, y="other")


def _after_cancel(report: str) -> Callable[[], tuple[Run, Callable[[], Transition]]]:
    def setup() -> tuple[Run, Callable[[], Transition]]:
        run = Run(make_plan({"a": [], "b": ["a"]}, retries={"a": 3}))
        (a,) = run.start().calls
        run.cancel("stop")
        return run, {
            "ok": lambda: run.succeed(a),
            "fail": lambda: run.fail(a),
            "lost": lambda: run.lose(a),
        }[report]

    return setup


def _later_attempt_after_success() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"]}, retries={"a": 3}))
    (a,) = run.start().calls
    run.succeed(a)
    return run, lambda: run.succeed(a.next_attempt())


def _lost_worker_returns_after_the_retry_succeeded() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"]}))
    (a1,) = run.start().calls
    (a2,) = run.lose(a1).calls
    assert keys(run.succeed(a2)) == ["b"]
    return run, lambda: run.succeed(a1, y="late")


def _result_for_a_failed_step() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"], "c": []}))
    a, _ = run.start().calls
    run.fail(a)
    return run, lambda: run.succeed(a)


def _result_for_a_step_not_started() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"]}))
    run.start()
    return run, lambda: run.succeed(whole(run, "b", {"from_a": run.ref("A")}))


def _result_for_a_skipped_step() -> tuple[Run, Callable[[], Transition]]:
    run = Run(make_plan({"a": [], "b": ["a"], "c": []}))
    a, _ = run.start().calls
    run.fail(a)
    return run, lambda: run.succeed(whole(run, "b", {"from_a": run.ref("A")}))


def _duplicate_chunk_result() -> tuple[Run, Callable[[], Transition]]:
    run = Run(foreach_plan(1), {"x": [1, 2]})
    (a,) = run.start().calls
    b0, _ = run.succeed(a, y=[1, 2]).calls
    assert run.succeed(b0, y=[10]) == Transition()
    return run, lambda: run.succeed(b0, y=[99])


def _chunk_of_a_failed_step() -> tuple[Run, Callable[[], Transition]]:
    run = Run(foreach_plan(1), {"x": [1, 2, 3]})
    (a,) = run.start().calls
    b0, b1, _ = run.succeed(a, y=[1, 2, 3]).calls
    run.fail(b1)
    return run, lambda: run.succeed(b0, y=[10])


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(_stale_attempt("ok"), id="stale-attempt-result"),
        pytest.param(_stale_attempt("fail"), id="stale-attempt-failure"),
        pytest.param(_stale_attempt("lost"), id="stale-attempt-lost"),
        pytest.param(_duplicate_result, id="duplicate-result"),
        pytest.param(_after_cancel("ok"), id="result-after-cancel"),
        pytest.param(_after_cancel("fail"), id="failure-after-cancel"),
        pytest.param(_after_cancel("lost"), id="lost-after-cancel"),
        pytest.param(_later_attempt_after_success, id="later-attempt-of-a-succeeded-step"),
        pytest.param(_lost_worker_returns_after_the_retry_succeeded, id="lost-worker-returns"),
        pytest.param(_result_for_a_failed_step, id="result-for-a-failed-step"),
        pytest.param(_result_for_a_step_not_started, id="result-for-a-pending-step"),
        pytest.param(_result_for_a_skipped_step, id="result-for-a-skipped-step"),
        pytest.param(_duplicate_chunk_result, id="duplicate-chunk-result"),
        pytest.param(_chunk_of_a_failed_step, id="chunk-of-a-failed-step"),
    ],
)
def test_a_report_that_is_not_current_changes_nothing(setup):
    run, report = setup()
    before = run.snapshot()
    assert report() == Transition()
    assert run.snapshot() == before


# --- foreach


def foreach_plan(chunk: int, threshold: int = THRESHOLD, retries: int = 0) -> RunPlan:
    """a -> b (foreach over a.y, ``chunk`` items a call, constant ``k``) -> c."""
    return make_plan(
        {"a": [], "b": ["a"], "c": ["b"]},
        {"b": {"k": {"value": {"id": data_id(7), "size": 1, "value": 7}}}},
        foreach={"b": ForeachPlan("item", "output_a_y", chunk)},
        retries={"b": retries},
        threshold=threshold,
    )


@pytest.mark.parametrize("order", ["forward", "reversed", "rotated"])
@pytest.mark.parametrize("threshold", [THRESHOLD, 0])
@pytest.mark.parametrize(
    ("chunk", "items", "parts"),
    [
        (1, [10, 20, 30], [[10], [20], [30]]),
        (2, [10, 20, 30], [[10, 20], [30]]),
        (2, [10, 20, 30, 40], [[10, 20], [30, 40]]),
        (5, [10, 20, 30], [[10, 20, 30]]),
    ],
)
def test_foreach_chunks_and_gathers_in_chunk_order(chunk, items, parts, threshold, order):
    run = Run(foreach_plan(chunk, threshold))
    (a,) = run.start().calls
    transition = run.succeed(a, y=items)
    constant = {"id": data_id(7), "size": 1, "value": 7}
    step = run.plan.steps["b"]
    assert transition.changed == ["a"]
    assert transition.calls == [
        StepCall(RUN_ID, "b", i, step.pin, {"k": constant, "item": run.ref(part)}, list(step.edges))
        for i, part in enumerate(parts)
    ]
    assert keys(transition) == [f"b[{i}]" for i in range(len(parts))]
    assert run.state.chunk_outputs == {"b": [None] * len(parts)}
    assert run.state.invocations["b"] == len(parts)
    indexes = list(range(len(parts)))
    finishing = {
        "forward": indexes,
        "reversed": indexes[::-1],
        "rotated": indexes[1:] + indexes[:1],
    }
    for n, i in enumerate(finishing[order]):
        transition = run.succeed(run.held(f"b[{i}]"), y=[v * 2 for v in parts[i]])
        if n < len(parts) - 1:
            assert transition == Transition()
            assert run.state.status["b"] == "running"
    gathered = [v * 2 for v in items]
    assert transition == Transition([whole(run, "c", {"from_b": run.ref(gathered)})], ["b"])
    assert run.state.values["output_b_y"] == run.ref(gathered)
    assert decode(run.state.value("output_b_y"), run.store) == gathered
    assert run.state.chunk_outputs == {}  # gathered into output_b_y, then dropped
    assert run.state.seconds["b"] == 0.5 * len(parts)
    assert run.state.inflight == {"c": whole(run, "c", {"from_b": run.ref(gathered)}).to_json()}


@pytest.mark.parametrize("threshold", [THRESHOLD, 0])
def test_foreach_over_an_empty_list_succeeds_at_once_and_starts_its_dependants(threshold):
    run = Run(foreach_plan(2, threshold))
    (a,) = run.start().calls
    transition = run.succeed(a, y=[])
    assert transition == Transition([whole(run, "c", {"from_b": run.ref([])})], ["a", "b"])
    assert run.state.status == {"a": "succeeded", "b": "succeeded", "c": "running"}
    assert run.state.values["output_b_y"] == run.ref([])
    assert run.state.invocations == {"a": 1, "b": 0, "c": 1}
    assert run.state.chunk_outputs == {}
    assert run.state.started["b"] == NOW
    assert list(run.state.inflight) == ["c"]


def test_a_join_reached_twice_in_one_transition_starts_once():
    """a's success completes the empty foreach b, whose completion starts d; a's own
    dependants loop then reaches d again, already running."""
    plan = make_plan(
        {"a": [], "b": ["a"], "d": ["a", "b"]},
        {"b": {}},
        foreach={"b": ForeachPlan("item", "output_a_y", 1)},
    )
    run = Run(plan)
    (a,) = run.start().calls
    transition = run.succeed(a, y=[])
    assert transition == Transition(
        [whole(run, "d", {"from_a": run.ref([]), "from_b": run.ref([])})], ["a", "b"]
    )
    assert run.state.invocations == {"a": 1, "b": 0, "d": 1}


def test_foreach_over_an_empty_pipeline_input_succeeds_at_start():
    plan = make_plan(
        {"b": [], "c": ["b"]},
        {"b": {}},
        foreach={"b": ForeachPlan("item", "pipeline_input_items", 1)},
    )
    run = Run(plan, {"items": []})
    transition = run.start()
    assert transition == Transition([whole(run, "c", {"from_b": run.ref([])})], ["b"])
    assert run.state.status == {"b": "succeeded", "c": "running"}


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("attempt_failed", "chunk broke"),
        ("worker_lost", lost_reason("step b[1] (task_b@1.0.0)", "once")),
    ],
)
def test_one_chunk_failing_fails_the_step_and_drops_its_other_chunks(how, reason):
    run = Run(foreach_plan(1))
    (a,) = run.start().calls
    b0, b1, b2 = run.succeed(a, y=[1, 2, 3]).calls
    run.succeed(b0, y=[10])
    transition = run.fail(b1, "chunk broke") if how == "attempt_failed" else run.lose(b1, 1)
    assert transition == Transition(changed=["b", "c"])
    assert run.state.status == {"a": "succeeded", "b": "failed", "c": "skipped"}
    assert run.state.reasons == {"b": reason, "c": "skipped: step b failed"}
    assert run.state.inflight == {}
    assert run.state.outcome == "failed"
    assert "output_b_y" not in run.state.values
    before = run.snapshot()
    assert run.succeed(b2, y=[30]) == Transition()
    assert run.snapshot() == before


def test_chunk_failures_are_counted_per_chunk():
    run = Run(foreach_plan(1, retries=1))
    (a,) = run.start().calls
    b0, b1, b2 = run.succeed(a, y=[1, 2, 3]).calls
    assert run.fail(b1) == Transition([b1.next_attempt()])
    assert run.fail(b2) == Transition([b2.next_attempt()])
    assert run.state.failures == {"b[1]": 1, "b[2]": 1}
    assert {k: c["attempt"] for k, c in run.state.inflight.items()} == {
        "b[0]": 1,
        "b[1]": 2,
        "b[2]": 2,
    }
    assert run.lose(run.held("b[0]")) == Transition([b0.next_attempt()])
    assert run.state.lost == {"b[0]": 1}
    assert run.succeed(run.held("b[2]"), y=[30]) == Transition()
    assert run.fail(run.held("b[1]"), "second failure") == Transition(changed=["b", "c"])
    assert run.state.failures == {"b[1]": 2, "b[2]": 1}
    assert run.state.reasons["b"] == "second failure"
    assert run.state.inflight == {}
    assert run.state.invocations["b"] == 3  # chunks, not attempts


# --- cancel


@pytest.mark.parametrize(
    ("done", "cancelled"),
    [
        ([], ["a", "b", "c", "d"]),
        (["start"], ["a", "b", "c", "d"]),
        (["start", "a"], ["b", "c", "d"]),
        (["start", "a", "b"], ["c", "d"]),
        (["start", "a", "c", "b"], ["d"]),
    ],
)
def test_cancel_cancels_every_unfinished_step_with_the_reason(clock, done, cancelled):
    run = Run(make_plan(DIAMOND))
    for what in done:
        if what == "start":
            run.start()
        else:
            run.succeed(run.held(what))
    clock.now = 2000.0
    transition = run.cancel("SIGTERM")
    assert transition == Transition(changed=cancelled)
    assert run.state.status == {
        sid: "cancelled" if sid in cancelled else "succeeded" for sid in DIAMOND
    }
    assert run.state.reasons == dict.fromkeys(cancelled, "SIGTERM")
    assert run.state.inflight == {}
    assert (run.state.outcome, run.state.finished, run.state.ended) == ("cancelled", True, 2000.0)
    assert run.state.errors(run.plan) == []
    clock.now = 3000.0
    before = run.snapshot()
    assert run.cancel("again") == Transition()
    assert run.snapshot() == before


def test_cancel_has_a_default_reason():
    run = Run(make_plan({"a": []}))
    run.start()
    run.cancel()
    assert run.state.reasons == {"a": "cancelled"}


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_cancel_after_the_run_finished_changes_nothing(clock, outcome):
    run = Run(make_plan({"a": [], "b": ["a"]}))
    (a,) = run.start().calls
    if outcome == "succeeded":
        run.succeed(run.succeed(a).calls[0])
    else:
        run.fail(a)
    clock.now = 2000.0
    before = run.snapshot()
    assert run.cancel("too late") == Transition()
    assert run.snapshot() == before
    assert (run.state.outcome, run.state.ended) == (outcome, NOW)


def test_cancel_after_a_failure_leaves_the_run_failed():
    run = Run(make_plan({"a": [], "b": []}))
    a, _ = run.start().calls
    run.fail(a, "a broke")
    assert run.cancel("SIGTERM") == Transition(changed=["b"])
    assert run.state.status == {"a": "failed", "b": "cancelled"}
    assert run.state.reasons == {"a": "a broke", "b": "SIGTERM"}
    assert run.state.outcome == "failed"
    assert run.state.errors(run.plan) == ["a broke"]


# --- JSON


def _scenario(run: Run) -> None:
    """Every kind of transition: a retry, a lost worker, chunks out of order, a failure."""
    a, e = run.start().calls
    (a2,) = run.fail(a, "flaky").calls
    (a3,) = run.lose(a2).calls
    b0, b1, b2 = run.succeed(a3, y=[1, 2, 3]).calls
    run.succeed(b2, y=[6], seconds=0.25)
    (b0_again,) = run.lose(b0).calls
    run.succeed(b1, y=[4])
    (c,) = run.succeed(b0_again, y=[2]).calls
    run.fail(e, "e broke")
    run.succeed(c, y="done")


def scenario_plan() -> RunPlan:
    return make_plan(
        {"a": [], "b": ["a"], "c": ["b"], "e": [], "f": ["e"]},
        {"b": {}},
        foreach={"b": ForeachPlan("item", "output_a_y", 1)},
        retries={"a": 2},
        threshold=4,  # a.y and b.y travel by reference, the chunks' [2], [4], [6] inline
    )


def test_a_state_restored_from_json_at_any_point_runs_on_identically():
    kept, reloaded = Run(scenario_plan()), Run(scenario_plan(), reload=True)
    reloaded.state.created = kept.state.created
    _scenario(kept)
    _scenario(reloaded)
    assert reloaded.transitions == kept.transitions
    assert reloaded.state == kept.state
    assert kept.state.status == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "succeeded",
        "e": "failed",
        "f": "skipped",
    }
    assert decode(kept.state.value("output_b_y"), kept.store) == [2, 4, 6]
    assert kept.state.failures == {"a": 1, "e": 1}
    assert kept.state.lost == {"a": 1, "b[0]": 1}
    assert kept.state.seconds == {"a": 0.5, "b": 1.25, "c": 0.5}
    assert kept.state.outcome == "failed"
    assert kept.state.errors(kept.plan) == ["e broke"]


def test_every_intermediate_state_round_trips():
    run = Run(scenario_plan())
    _scenario(run)  # Run checks the round trip after every transition; here, the snapshots
    assert len(run.snapshots) == 11  # the initial state and ten transitions
    assert len(set(run.snapshots)) == 11  # every transition changed the state
    for snapshot in run.snapshots:
        data = json.loads(snapshot)
        assert RunState.from_json(data).to_json() == data
    retried = RunState.from_json(json.loads(run.snapshots[3]))  # a lost once, after a failure
    assert retried.inflight["a"]["attempt"] == 3
    assert (retried.failures, retried.lost) == ({"a": 1}, {"a": 1})
    mid = RunState.from_json(json.loads(run.snapshots[5]))  # one chunk of three back
    assert mid.chunk_outputs == {"b": [None, None, {"y": run.ref([6])}]}
    assert {k: c["attempt"] for k, c in mid.inflight.items()} == {"e": 1, "b[0]": 1, "b[1]": 1}
    assert "output_a_y" not in mid.values  # b, its only reader, took it: dropped
    final = RunState.from_json(json.loads(run.snapshots[-1]))
    assert "uri" in final.values["output_b_y"]  # by reference, through every round trip


def test_run_plan_round_trips_through_json():
    plan = make_plan(
        {"a": [], "b": ["a"], "c": ["a", "b"]},
        {
            "a": {"x": {"ref": "pipeline_input_x"}, "k": {"value": {"id": "sha256:1", "size": 1}}},
            "b": {},
            "c": {"from_a": {"ref": "output_a_y"}, "from_b": {"ref": "output_b_y"}},
        },
        outputs={"a": ("y", "z")},
        foreach={"b": ForeachPlan("item", "output_a_z", 3)},
        retries={"c": 2},
        pipeline_outputs={
            "total": {"ref": "output_c_y"},
            "joined": {"join": "id", "from": {"left": "output_a_y", "right": "output_b_y"}},
        },
        threshold=64,
    )
    plan.steps["a"] = replace(plan.steps["a"], pin=replace(plan.steps["a"].pin, timeout=2.5))
    restored = RunPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert restored == plan
    assert list(restored.steps) == ["a", "b", "c"]
    assert restored.to_json() == plan.to_json()
    assert restored.steps["b"].foreach == ForeachPlan("item", "output_a_z", 3)
    assert restored.steps["c"].needs == ("a", "b") and restored.steps["a"].dependants == ("b", "c")
    assert restored.steps["a"].pin.timeout == 2.5 and restored.steps["c"].pin.max_retries == 2
    assert (restored.steps["c"].rank, restored.steps["c"].depth) == (2, 2)


# --- outcome, finished, ended


@pytest.mark.parametrize(
    ("status", "finished", "outcome"),
    [
        ({"a": "pending"}, False, "running"),
        ({"a": "running", "b": "pending"}, False, "running"),
        ({"a": "succeeded", "b": "running"}, False, "running"),
        ({"a": "failed", "b": "running"}, False, "running"),
        ({"a": "cancelled", "b": "pending"}, False, "running"),
        ({"a": "succeeded"}, True, "succeeded"),
        ({"a": "succeeded", "b": "succeeded"}, True, "succeeded"),
        ({"a": "succeeded", "b": "failed", "c": "skipped"}, True, "failed"),
        ({"a": "failed", "b": "cancelled"}, True, "failed"),
        ({"a": "succeeded", "b": "cancelled"}, True, "cancelled"),
        ({"a": "cancelled"}, True, "cancelled"),
    ],
)
def test_outcome_and_finished(status, finished, outcome):
    state = RunState(RUN_ID, status)
    assert state.finished is finished
    assert state.outcome == outcome


def test_ended_is_set_once_when_the_last_step_ends(clock):
    run = Run(make_plan({"a": [], "b": ["a"], "c": []}))
    a, c = run.start().calls
    clock.now = 1001.0
    (b,) = run.succeed(a).calls
    clock.now = 1002.0
    run.succeed(c)
    assert (run.state.finished, run.state.ended) == (False, None)
    clock.now = 1003.0
    run.succeed(b)
    assert (run.state.finished, run.state.outcome, run.state.ended) == (True, "succeeded", 1003.0)
    clock.now = 1004.0
    run.succeed(b)
    run.cancel()
    assert run.state.ended == 1003.0


def test_created_is_when_the_state_was_made():
    before = time.time()
    state = RunState.new(RUN_ID, make_plan({"a": []}), {})
    assert before <= state.created <= time.time()


def test_outputs_are_the_pipeline_outputs_that_exist():
    plan = make_plan(
        DIAMOND,
        pipeline_outputs={"first": {"ref": "output_a_y"}, "total": {"ref": "output_d_y"}},
    )
    run = Run(plan)
    assert run.state.outputs(plan, run.store) == {}
    (a,) = run.start().calls
    b, c = run.succeed(a, y=[1, 2]).calls
    assert run.state.outputs(plan, run.store) == {"first": [1, 2]}
    run.succeed(b)
    (d,) = run.succeed(c).calls
    run.succeed(d, y={"sum": 3})
    assert run.state.outputs(plan, run.store) == {"first": [1, 2], "total": {"sum": 3}}
