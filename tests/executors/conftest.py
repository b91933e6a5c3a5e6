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
from tests.services import redis_server, start_worker, stop_worker

TEST_TASKS = [
    "add",
    "fail_until",
    "sleep",
    "make_list",
    "detect",
    "describe",
    "describe_v2",
    "crash",
    "hang",
    "square",
    "read_text",
]


def installed(home: Path) -> Services:
    """Stores in ``home`` with the test plugins installed."""
    opened = Services.open(Settings.load({"home": str(home)}))
    for name in TEST_TASKS:
        opened.registry.install(TASKS / name)
    return opened


@pytest.fixture(scope="session")
def celery_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A private redis-server and a real `wtm worker` (2 processes) over shared stores."""
    folder = tmp_path_factory.mktemp("celery")
    home = folder / "home"
    installed(home).close()
    env = {"WTM_HOME": str(home), "WTM_VISIBILITY_TIMEOUT": "30"}
    with redis_server(folder) as broker:
        worker = start_worker(broker, env, folder / "worker.log")
        try:
            yield broker, home
        finally:
            stop_worker(worker)


@pytest.fixture(params=["local", pytest.param("celery", marks=pytest.mark.celery)])
def executor(request: pytest.FixtureRequest) -> str:
    """The executor under test."""
    return str(request.param)


@pytest.fixture
def services(request: pytest.FixtureRequest, executor: str, tmp_path: Path) -> Iterator[Services]:
    """Stores with the test plugins: per test for local, the workers' for celery."""
    if executor == "celery":
        _, home = request.getfixturevalue("celery_worker")
        opened = Services.open(Settings.load({"home": str(home)}))
    else:
        opened = installed(tmp_path / "home")
    with opened:
        yield opened


Runner = Callable[..., RunSession]


@pytest.fixture
def run(
    request: pytest.FixtureRequest, services: Services, executor: str, tmp_path: Path
) -> Runner:
    """Run a pipeline given as YAML text (header added) with inputs; returns its session."""

    def runner(steps_yaml: str, inputs: dict[str, Any] | None = None, **kwargs: Any) -> RunSession:
        path = tmp_path / "pipeline.yaml"
        path.write_text(
            "apiVersion: wtm/v1\nkind: Pipeline\nname: test\nversion: 1.0.0\n"
            + textwrap.dedent(steps_yaml)
        )
        checked, pins = prepare(services, path)
        broker = request.getfixturevalue("celery_worker")[0] if executor == "celery" else None
        [session] = execute(
            services,
            checked,
            pins,
            [inputs or {}],
            executor=executor,
            workers=2,
            broker_url=broker,
            **kwargs,
        )
        return session

    return runner
