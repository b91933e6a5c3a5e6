"""Installs that race (issue 13): a recorded package is always in the store.

Real processes released together by a barrier install (or remove) the same plugin
version in the same stores, round after round; after each round the record, if
any, must point to a package that is there and loads. A reinstall puts back a
package that went missing from the store.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from runtime.services import Services
from tests.conftest import ROOT
from tests.helpers_plugins import GREET, copy_plugin, forget_modules, open_services, plugin_modules

ROUNDS = 25


@pytest.fixture(autouse=True)
def _isolated_modules() -> Iterator[None]:
    before = plugin_modules()
    yield
    forget_modules(before)


def _worker(jobs: Any, barrier: Barrier, results: Any) -> None:
    """Runs ``(operation, home, source)`` jobs, each released by the barrier with its peer's."""
    while (job := jobs.get()) is not None:
        operation, home, source = job
        with open_services(Path(home)) as services:
            registry = services.registry
            barrier.wait(60)
            try:
                if operation == "install":
                    outcome = registry.install(Path(source)).action
                else:
                    outcome = f"removed {registry.remove('greet', '1.0.0').version}"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
        results.put((home, operation, outcome))


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Any, Any]]:
    """Two spawned processes sharing one barrier: put two jobs, get two outcomes."""
    context = multiprocessing.get_context("spawn")
    jobs, results, barrier = context.Queue(), context.Queue(), context.Barrier(2)
    workers = [context.Process(target=_worker, args=(jobs, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    yield jobs, results
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        worker.join(30)


def race(pair: tuple[Any, Any], home: Path, *operations: tuple[str, Path]) -> list[str]:
    jobs, results = pair
    for operation, source in operations:
        jobs.put((operation, str(home), str(source)))
    return sorted(results.get(timeout=60)[2] for _ in operations)


def assert_recorded_package_is_stored(services: Services) -> None:
    for record in services.metadata.list_plugins():
        assert services.artifacts.exists(record.object_key), f"{record.ref}: package missing"
        assert services.loader.load(record.digest).manifest.key == "greet@1.0.0"


def test_two_installs_of_one_version_at_once_leave_its_package_stored(
    pair: tuple[Any, Any], tmp_path: Path
) -> None:
    source = copy_plugin(GREET, tmp_path / "greet")
    for n in range(ROUNDS):
        home = tmp_path / f"home{n}"
        outcomes = race(pair, home, ("install", source), ("install", source))
        assert outcomes == ["installed", "unchanged"], f"round {n}"
        with open_services(home) as services:
            assert len(services.metadata.list_plugins()) == 1
            assert_recorded_package_is_stored(services)


def test_an_install_racing_a_remove_leaves_no_record_without_its_package(
    pair: tuple[Any, Any], tmp_path: Path
) -> None:
    source = copy_plugin(GREET, tmp_path / "greet")
    for n in range(ROUNDS):
        home = tmp_path / f"home{n}"
        with open_services(home) as services:
            services.registry.install(source)
        outcomes = race(pair, home, ("install", source), ("remove", source))
        assert "removed 1.0.0" in outcomes, f"round {n}: {outcomes}"
        with open_services(home) as services:
            assert_recorded_package_is_stored(services)


def wtm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WTM_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_reinstall_puts_back_a_package_missing_from_the_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = copy_plugin(GREET, tmp_path / "greet")
    assert wtm(home, "plugin", "install", str(source)).returncode == 0
    with open_services(home) as services:
        [record] = services.metadata.list_plugins()
        services.artifacts.delete(record.object_key)
    reinstalled = wtm(home, "plugin", "install", str(source))
    assert (reinstalled.returncode, reinstalled.stderr) == (0, "")
    assert reinstalled.stdout.startswith(f"greet@1.0.0 installed (sha256 {record.digest[:12]}")
    again = wtm(home, "plugin", "install", str(source))
    assert "already installed with the same content; nothing to do" in again.stdout
    with open_services(home) as services:
        assert services.metadata.list_plugins() == [record]  # the record was kept as it was
        assert_recorded_package_is_stored(services)
