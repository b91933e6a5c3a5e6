"""Shared fixtures, a suite that never reads the developer's environment, and one that
fails on any "internal error" a command reports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.services import require_redis_server

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TASKS = FIXTURES / "tasks"
ROOT = Path(__file__).resolve().parent.parent
"""The repository; reach its files (manifests/, plugins/, examples/) from here, never ``.``."""

KEPT_ENV_PREFIX = "WTM_TEST_"
"""Switches of the suite itself (``WTM_TEST_MONGO_URL``), not wtm settings: they are kept."""
FALLBACK_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Variables :class:`runtime.config.Settings` falls back to for the S3 settings."""


def _clear_wtm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if (name.startswith("WTM_") and not name.startswith(KEPT_ENV_PREFIX)) or (
            name in FALLBACK_ENV
        ):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session and module fixtures too run without ``WTM_*`` and outside the repository."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_wtm_env(monkeypatch)
        monkeypatch.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test: no ``WTM_*`` variable and a fresh empty current folder.

    So no ``./wtm.toml``, ``./.wtm`` or exported setting of the developer's is read. Tests
    that want a variable set it with ``monkeypatch.setenv`` (this fixture runs first).
    """
    _clear_wtm_env(monkeypatch)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


INTERNAL_ERROR = "internal error:"
"""What wtm prints for a bug (exit 70): anywhere in a test's output, it fails the test."""


@pytest.fixture(autouse=True)
def _no_internal_error(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A command run through ``CliRunner`` that reports an internal error fails the test,
    whatever the test asserts about it (issue 13)."""
    reported: list[str] = []
    invoke = CliRunner.invoke

    def checked(self: CliRunner, *args: object, **kwargs: object) -> Result:
        result = invoke(self, *args, **kwargs)  # type: ignore[arg-type]
        if INTERNAL_ERROR in result.output:
            reported.append(result.output)
        return result

    monkeypatch.setattr(CliRunner, "invoke", checked)
    yield
    assert not reported, f"a command reported an internal error: {reported[0]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Output captured from a test (its processes' too) that holds an internal error fails
    a test that otherwise passed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.passed:
        return
    for title, content in report.sections:
        if INTERNAL_ERROR in content:
            report.outcome = "failed"
            report.longrepr = f"{INTERNAL_ERROR!r} in {title}:\n{content[-3000:]}"
            return


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``celery`` test without redis-server skips, or fails when ``$CI`` is set."""
    if item.get_closest_marker("celery"):
        require_redis_server()


@pytest.fixture
def tasks_dir() -> Path:
    """Folder of test plugin folders (twins of the face plugins with the same ports)."""
    return TASKS
