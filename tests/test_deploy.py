"""The compose stack's broker is locked (issue 13), and wtm works over a locked Redis.

Whoever can publish to Redis can run any installed task with any inputs, so the
stack's Redis asks for a password, is not published to the host, and every wtm
service carries the password in its broker URL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from runtime.execute import execute, prepare
from tests.conftest import ROOT, TASKS
from tests.helpers_plugins import open_services
from tests.services import redis_server, start_worker, stop_worker

DEPLOY = ROOT / "deploy"
PASSWORD = "${REDIS_PASSWORD:-change-me-redis}"


def compose(name: str) -> dict[str, Any]:
    return dict(YAML(typ="safe").load((DEPLOY / name).read_text()))


def test_the_stacks_redis_asks_for_a_password_and_stays_off_the_host() -> None:
    stack = compose("docker-compose.yml")
    services = stack["services"]
    redis_service = services["redis"]
    assert "ports" not in redis_service
    command = redis_service["command"]
    assert command[command.index("--requirepass") + 1] == PASSWORD
    urls = [stack["x-wtm-env"]["WTM_BROKER_URL"]] + [
        arg.removeprefix("--broker=")
        for arg in services["flower"]["command"]
        if arg.startswith("--broker=")
    ]
    assert urls == [f"redis://:{PASSWORD}@redis:6379/0"] * 2
    assert services["worker"]["environment"]["WTM_BROKER_URL"] == urls[0]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)
    client = compose("docker-compose.client.yml")
    assert client["services"] == {"redis": {"ports": ["127.0.0.1:6379:6379"]}}
    assert not re.search(r"(?m)^broker_url", (DEPLOY / "wtm.toml").read_text())


@pytest.mark.celery
def test_a_run_goes_through_a_redis_that_asks_for_a_password(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with open_services(home) as services:
        services.registry.install(TASKS / "add")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "apiVersion: wtm/v1\nkind: Pipeline\nname: locked\nversion: 1.0.0\n"
        'steps:\n  - {id: "001", task: add, with: {a: 2, b: 3}}\n'
        "outputs:\n  total: $001.sum\n"
    )
    with redis_server(tmp_path) as open_url:
        redis.Redis.from_url(open_url).config_set("requirepass", "s3cret-pw")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(open_url).ping()
        locked = open_url.replace("redis://", "redis://:s3cret-pw@")
        worker = start_worker(locked, {"WTM_HOME": str(home)}, tmp_path / "worker.log", 1)
        try:
            with open_services(home) as services:
                checked, pins = prepare(services, pipeline)
                [session] = execute(
                    services, checked, pins, [{}], executor="celery", broker_url=locked
                )
        finally:
            stop_worker(worker)
    assert session.result is not None
    assert session.result["total"] == 5
