"""Runtime extensions hear every step start, finish and failure."""

from __future__ import annotations

import pytest

from runtime import extensions
from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.hooks import hookimpl
from runtime.services import Services
from tests.conftest import TASKS


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    @hookimpl
    def wtm_step_started(self, run_id, step_id, attempt):
        self.events.append(("started", step_id, attempt))

    @hookimpl
    def wtm_step_finished(self, run_id, step_id, outputs, seconds):
        self.events.append(("finished", step_id, dict(outputs)))

    @hookimpl
    def wtm_step_failed(self, run_id, step_id, error, attempt):
        self.events.append(("failed", step_id, attempt))


class Broken:
    @hookimpl
    def wtm_step_started(self, run_id, step_id, attempt):
        raise RuntimeError("a broken extension")


@pytest.fixture
def recorder():
    recorder, broken = Recorder(), Broken()
    extensions.register(recorder)
    extensions.register(broken)
    yield recorder
    extensions.unregister(recorder)
    extensions.unregister(broken)


def test_hooks_are_called_and_a_broken_extension_is_harmless(recorder, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""apiVersion: wtm/v1
kind: Pipeline
name: ext
version: 1.0.0
steps:
  - {id: "001", task: add, with: {a: 1, b: 2}}
  - {id: "002", task: fail_until, with: {value: 1, attempt: 2}}
""")
    with Services.open(Settings.load({"home": str(tmp_path / "home")})) as services:
        for name in ("add", "fail_until"):
            services.registry.install(TASKS / name)
        checked, pins = prepare(services, path)
        [session] = execute(services, checked, pins, [{}], pool="thread")
    assert session.result["processing_summary"]["status"] == "succeeded"
    assert ("finished", "001", {"sum": 3}) in recorder.events
    assert ("failed", "002", 1) in recorder.events
    assert ("started", "002", 2) in recorder.events
    assert ("finished", "002", {"value": 1}) in recorder.events
