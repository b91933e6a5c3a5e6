"""``wtm config show`` and ``wtm doctor`` against real services."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runtime.cli import cli
from tests.services import free_port, redis_server


def invoke(*args: str, env: dict[str, str]):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_config_show_masks_secrets(tmp_path):
    env = {
        "WTM_HOME": str(tmp_path),
        "WTM_S3_SECRET_KEY": "hunter2",
        "WTM_BROKER_URL": "redis://:pw123@127.0.0.1:6379/0",
    }
    result = invoke("config", "show", "--json", env=env)
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert shown["s3_secret_key"] == "****"
    assert "pw123" not in result.output and "hunter2" not in result.output
    assert shown["home"] == str(tmp_path)


def test_doctor_embedded_default_is_healthy(tmp_path):
    result = invoke("doctor", "--json", env={"WTM_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    checks = {c["component"]: c for c in json.loads(result.output)}
    assert checks["metadata"]["ok"] and checks["metadata"]["version"].startswith("SQLite")
    assert checks["artifacts"]["ok"] and checks["cache"]["ok"]


@pytest.mark.celery
def test_doctor_reports_redis_and_missing_workers(tmp_path):
    with redis_server(tmp_path) as url:
        result = invoke("doctor", "--json", env={"WTM_HOME": str(tmp_path), "WTM_BROKER_URL": url})
    assert result.exit_code == 1
    checks = {c["component"]: c for c in json.loads(result.output)}
    assert checks["broker"]["ok"] and checks["broker"]["version"].startswith("Redis ")
    assert not checks["workers"]["ok"]
    assert "no worker answered" in checks["workers"]["detail"]


def test_doctor_dead_broker_is_one_line(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke("doctor", env={"WTM_HOME": str(tmp_path), "WTM_BROKER_URL": url})
    assert result.exit_code == 1
    assert "failed" in result.output and "Traceback" not in result.output
