"""Durations in task manifests are finite and bounded, checked at validate and install.

Issue 13: ``timeout: .inf`` passed ``wtm validate`` and ``wtm plugin install``, then
every run failed with OverflowError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.cli import cli
from runtime.manifest import MAX_DURATION, format_schema, load_manifest, parse_duration, parse_task
from runtime.problems import ManifestError
from runtime.timeouts import time_limit
from runtime.yamlsource import Located
from tests.conftest import ROOT

GREET = ROOT / "examples/greet"
RANGE = "must be a duration from 0 to 168h"


def greet_with(old: str, new: str) -> str:
    text = (GREET / "manifest.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def problem_of(tmp_path: Path, text: str) -> tuple[int, int, str]:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    return problem.line, problem.column, problem.message


def test_the_maximum_is_a_week():
    assert MAX_DURATION == 168 * 3600
    assert parse_duration("168h") == parse_duration(MAX_DURATION) == MAX_DURATION


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, MAX_DURATION + 0.001, "168.1h", "10081m", "1e3s"]
)
def test_parse_duration_refuses_what_is_not_a_bounded_duration(value):
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(value)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.from_regex(r"\A[0-9]{1,400}(\.[0-9]{1,20})?(ms|s|m|h)\Z")
)
def test_a_parsed_duration_is_finite_and_within_bounds(value):
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION


@pytest.mark.parametrize(
    ("written", "got"),
    [
        (".inf", "Infinity"),
        (".nan", "NaN"),
        ("1e9", "1000000000.0"),
        ("604801", "604801"),
        ("1000h", '"1000h"'),
        ("10081m", '"10081m"'),
        pytest.param("9" * 400 + "h", '"' + "9" * 56 + "...", id="400 digits"),
    ],
)
def test_timeout_out_of_range_is_a_positioned_error(tmp_path, written, got):
    text = greet_with("timeout: 5s", f"timeout: {written}")
    assert problem_of(tmp_path, text) == (8, 10, f"timeout {RANGE}; got {got}")


@pytest.mark.parametrize("written", ["0", "0.0", "0s", "0ms", "0.0h"])
def test_timeout_zero_is_refused(tmp_path, written):
    text = greet_with("timeout: 5s", f"timeout: {written}")
    message = "timeout must be longer than 0; leave it out for no limit"
    assert problem_of(tmp_path, text) == (8, 10, message)


@pytest.mark.parametrize(("written", "got"), [(".inf", "Infinity"), ("200h", '"200h"')])
def test_backoff_out_of_range_is_a_positioned_error(tmp_path, written, got):
    text = greet_with("backoff: 100ms", f"backoff: {written}")
    assert problem_of(tmp_path, text) == (9, 28, f"retries.backoff {RANGE}; got {got}")


def test_durations_at_the_bounds_load(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text(greet_with("retries: {max: 1, backoff: 100ms}", "retries: {backoff: 0}"))
    path.write_text(path.read_text().replace("timeout: 5s", "timeout: 168h"))
    task = load_manifest(path)
    assert (task.timeout, task.retry_backoff) == (MAX_DURATION, 0.0)
    path.write_text(path.read_text().replace("timeout: 168h\n", ""))
    assert load_manifest(path).timeout is None  # no limit


def test_the_published_schema_states_the_maximum():
    duration = format_schema("task")["$defs"]["duration"]
    assert duration["allOf"] == [{"maximum": MAX_DURATION, "x-message": RANGE}]


def test_a_stored_record_with_an_infinite_timeout_is_a_manifest_error():
    """A record installed before the bound is refused with a problem, not OverflowError."""
    data = json.loads(json.dumps(load_manifest(GREET / "manifest.yaml").source.data))
    data["timeout"] = math.inf
    with pytest.raises(ManifestError, match=f"timeout {RANGE}; got Infinity"):
        parse_task(Located("registry:greet@1.0.0", data))


def test_the_longest_timeout_can_be_armed():
    """What ``timeout: .inf`` broke: the limit is handed to setitimer (and Celery)."""
    with time_limit(MAX_DURATION):
        pass


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_validate_and_install_refuse_an_infinite_timeout(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WTM_HOME", str(home))
    plugin = tmp_path / "greet"
    plugin.mkdir()
    (plugin / "plugin.py").write_text((GREET / "plugin.py").read_text())
    manifest = plugin / "manifest.yaml"
    manifest.write_text(greet_with("timeout: 5s", "timeout: .inf"))
    line = f"{manifest}:8:10: error: timeout {RANGE}; got Infinity"
    for command in (["validate", manifest], ["plugin", "install", plugin]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert line in result.output and "internal error" not in result.output
    listed = invoke("plugin", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
