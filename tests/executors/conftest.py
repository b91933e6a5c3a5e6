"""Fixtures of the executor behaviour suite: a registry of test plugins, a run helper."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.session import RunSession
from runtime.services import Services
from tests.conftest import TASKS

TEST_TASKS = ["add", "fail_until", "sleep", "make_list", "detect", "describe", "describe_v2"]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Embedded stores in a temporary WTM_HOME, with the test plugins installed."""
    with Services.open(Settings.load({"home": str(tmp_path / "home")})) as opened:
        for name in TEST_TASKS:
            opened.registry.install(TASKS / name)
        yield opened


Runner = Callable[..., RunSession]


@pytest.fixture(params=["local"])
def executor(request: pytest.FixtureRequest) -> str:
    """The executor under test."""
    return str(request.param)


@pytest.fixture
def run(services: Services, executor: str, tmp_path: Path) -> Runner:
    """Run a pipeline given as YAML text (header added) with inputs; returns its session."""

    def runner(steps_yaml: str, inputs: dict[str, Any] | None = None, **kwargs: Any
               ) -> RunSession:
        path = tmp_path / "pipeline.yaml"
        path.write_text("apiVersion: wtm/v1\nkind: Pipeline\nname: test\nversion: 1.0.0\n"
                        + textwrap.dedent(steps_yaml))
        checked, pins = prepare(services, path)
        [session] = execute(services, checked, pins, [inputs or {}], workers=2, **kwargs)
        return session

    return runner
