"""Fault tests against real processes: private redis-servers with persistence, real
``wtm worker`` and ``wtm run`` processes, SIGKILL. Each test adds a row to the summary
table printed at the end of the session: faults injected, runs submitted, how they ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.execute import execute, prepare
from runtime.executors.session import RunSession
from runtime.services import Services
from runtime.stores.metadata import ACTIVE_RUN_STATUSES
from tests.executors.conftest import installed
from tests.reliability.servers import PersistentRedis
from tests.services import start_worker, stop_worker


@dataclass
class Outcome:
    """One row of the summary: a fault and what became of the runs it hit."""

    fault: str
    submitted: int = 0
    succeeded: int = 0
    failed: list[str] = field(default_factory=list)
    """How each run that did not succeed ended: ``status: reason``."""
    lost: int = 0
    stuck: int = 0


ROWS: list[Outcome] = []


def tally(fault: str, services: Services, run_ids: list[str]) -> Outcome:
    """How the runs ended, as a summary row (lost: no record; stuck: still active)."""
    row = Outcome(fault, submitted=len(run_ids))
    for run_id in run_ids:
        record = services.metadata.get_run(run_id)
        if record is None:
            row.lost += 1
        elif record.status in ACTIVE_RUN_STATUSES:
            row.stuck += 1
        elif record.status == "succeeded":
            row.succeeded += 1
        else:
            row.failed.append(f"{record.status}: {record.error or 'cancelled'}")
    ROWS.append(row)
    return row


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability: faults injected and how the runs ended")
    write(f"{'fault':<58} {'runs':>4} {'ok':>4} {'ended otherwise':>15} {'lost':>4} {'stuck':>5}")
    for row in ROWS:
        write(
            f"{row.fault:<58} {row.submitted:>4} {row.succeeded:>4} {len(row.failed):>15} "
            f"{row.lost:>4} {row.stuck:>5}"
        )
        for reason in sorted(set(row.failed)):
            write(f"    ended {reason[:150]}")


def in_background(
    cluster: Cluster, path: Path, runs: list[dict[str, Any]]
) -> tuple[threading.Thread, list[RunSession]]:
    """``execute`` of one run per inputs in ``runs`` on the celery executor, in a client
    thread; the thread and the list its sessions land in when they end. Nothing is served
    from the step cache: every step of every run is work a fault can hit."""
    checked, pins = prepare(cluster.services, path)
    sessions: list[RunSession] = []
    client = threading.Thread(
        target=lambda: sessions.extend(
            execute(
                cluster.services,
                checked,
                pins,
                runs,
                executor="celery",
                broker_url=cluster.redis.url,
                reuse=False,
            )
        ),
        daemon=True,
    )
    client.start()
    return client, sessions


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Cluster:
    """A persistent Redis, shared stores with the test plugins, and workers on demand."""

    folder: Path
    redis: PersistentRedis
    home: Path
    services: Services
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        # the visibility timeout is only a backstop: recovery must not wait for it
        return {"WTM_HOME": str(self.home), "WTM_VISIBILITY_TIMEOUT": "600"}

    def worker(self, name: str, concurrency: int = 1) -> subprocess.Popen[bytes]:
        process = start_worker(
            self.redis.url, self.env, self.folder / f"{name}.log", concurrency, name
        )
        self.workers.append(process)
        return process

    def pipeline(self, text: str) -> Path:
        path = self.folder / "pipeline.yaml"
        path.write_text("apiVersion: wtm/v1\nkind: Pipeline\nname: faults\nversion: 1.0.0\n" + text)
        return path

    def wtm(self, *args: str) -> subprocess.Popen[str]:
        """A ``wtm`` command on this cluster, in its own process group."""
        return wtm_process({**self.env, "WTM_BROKER_URL": self.redis.url}, self.folder, *args)


def wtm_process(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    """A ``wtm`` command with ``env`` added, in ``cwd``, in its own process group (so a test
    can signal it with its pool)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    redis = PersistentRedis(tmp_path)
    redis.start()
    home = tmp_path / "home"
    installed(home).close()
    services = Services.open(Settings.load({"home": str(home)}))
    found = Cluster(tmp_path, redis, home, services)
    try:
        yield found
    finally:
        for worker in found.workers:
            stop_worker(worker, signal.SIGKILL)
        services.close()
        redis.stop()
