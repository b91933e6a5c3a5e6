"""Every command, driven with malformed arguments and files (issue 13): each is refused
with exit 2 (1 for a run that failed) and one line naming the problem, never a traceback
or an internal error, and nothing already stored changes."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.cli import cli
from tests.conftest import ROOT

GREET = """\
apiVersion: wtm/v1
kind: Pipeline
name: hello
version: 1.0.0
inputs:
  name: {schema: {type: string, minLength: 1}}
steps:
  - {id: "001", task: greet, with: {name: $inputs.name}}
outputs:
  greeting: $001.greeting
"""

POSITIONED = r"^\S+:\d+:\d+: (error|warning): "


def write_files(folder: Path) -> None:
    """The malformed files the cases name, in ``folder``."""
    (folder / "greet.yaml").write_text(GREET)
    (folder / "bad.yaml").write_text("a: [1, 2\n")
    (folder / "binary.yaml").write_bytes(b"\x00\xff\xfe\x00garbage")
    (folder / "empty.yaml").write_text("")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "task_as_pipeline.yaml").write_text(
        (ROOT / "examples/greet/manifest.yaml").read_text()
    )
    (folder / "a_folder").mkdir()
    (folder / "object.jsonl").write_text('{"name": "a"}\n5\n')
    (folder / "not_utf8.jsonl").write_bytes(b'{"name": "\xff\xfe"}\n')
    (folder / "not_json.jsonl").write_text("{name: a}\n")
    (folder / "not_a_zip.zip").write_text("plain text")
    with zipfile.ZipFile(folder / "empty.zip", "w"):
        pass
    with zipfile.ZipFile(folder / "escape.zip", "w") as archive:
        archive.writestr("../escaped.txt", "out of the folder")
        archive.writestr("manifest.yaml", (ROOT / "examples/greet/manifest.yaml").read_text())
    (folder / "no_manifest").mkdir()
    (folder / "no_manifest" / "plugin.py").write_text("")
    (folder / "not_an_image.png").write_text("not an image")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path, str]]:
    """A home with greet installed and one run of it; the files; that run's ID."""
    folder = tmp_path_factory.mktemp("corpus")
    write_files(folder)
    env = {"WTM_HOME": str(folder / "home"), "WTM_BROKER_URL": "redis://127.0.0.1:1/0"}
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["plugin", "install", str(ROOT / "examples/greet")], env=env).exit_code
        == 0
    )
    ran = runner.invoke(
        cli,
        ["run", str(folder / "greet.yaml"), "-i", "name=a", "--json", "--pool", "thread"],
        env=env,
    )
    assert ran.exit_code == 0, ran.output
    yield env, folder, json.loads(ran.stdout)["processing_summary"]["run_id"]


def stored(home: Path) -> dict[str, str]:
    """What the home holds: each metadata table's rows and each stored file's digest."""
    found: dict[str, str] = {}
    for path in sorted(home.rglob("*")):
        if path.suffix in (".db", ".sqlite") and path.is_file():
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                found[str(path)] = "\n".join(db.iterdump())
        elif path.is_file() and not path.name.endswith(("-wal", "-shm", ".lock")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def refused(result: Result, code: int = 2) -> list[str]:
    """The error lines the command printed, checked: exit ``code``, no traceback, no
    internal error, and either one ``error: ...`` line or positioned problems
    (``path:line:col: error: ...``, then ``validate``'s count of invalid files)."""
    text = result.output
    assert "Traceback" not in text and "internal error" not in text, text
    assert result.exit_code == code, (result.exit_code, text)
    lines = result.output.strip().splitlines()
    if len(lines) == 1 and lines[0].startswith("error: "):
        return lines
    problems = [line for line in lines if not line.endswith("file(s) invalid")]
    assert problems and all(re.match(POSITIONED, p) for p in problems), text
    return lines


CASES: list[tuple[str, list[str], int]] = [
    # (name, arguments; {f} is the folder of malformed files, {run} the recorded run, exit)
    ("no command", ["nope"], 2),
    ("unknown global option", ["--bogus"], 2),
    ("validate: no file", ["validate"], 2),
    ("validate: missing file", ["validate", "{f}/missing.yaml"], 2),
    ("validate: a folder", ["validate", "{f}/a_folder"], 2),
    (
        "validate: unknown --task-path",
        ["validate", "--task-path", "{f}/nowhere", "{f}/greet.yaml"],
        2,
    ),
    ("schema: unknown kind", ["schema", "widget"], 2),
    ("graph: bad YAML", ["graph", "{f}/bad.yaml"], 2),
    ("graph: binary", ["graph", "--json", "{f}/binary.yaml"], 2),
    ("graph: a list", ["graph", "{f}/list.yaml"], 2),
    ("graph: a task", ["graph", "{f}/task_as_pipeline.yaml"], 2),
    ("install: missing", ["plugin", "install", "{f}/missing"], 2),
    ("install: not a zip", ["plugin", "install", "{f}/not_a_zip.zip"], 2),
    ("install: empty zip", ["plugin", "install", "{f}/empty.zip"], 2),
    ("install: zip escaping its folder", ["plugin", "install", "{f}/escape.zip"], 2),
    ("install: no manifest", ["plugin", "install", "{f}/no_manifest"], 2),
    ("install: a YAML file", ["plugin", "install", "{f}/binary.yaml"], 2),
    ("show: unknown plugin", ["plugin", "show", "nope"], 2),
    ("show: bad constraint", ["plugin", "show", "greet@>>1"], 2),
    ("show: no name", ["plugin", "show", "@"], 2),
    ("show: markup", ["plugin", "show", "[/x]"], 2),
    ("show: no such version", ["plugin", "show", "greet@9"], 2),
    ("remove: unknown", ["plugin", "remove", "nope@1.0.0"], 2),
    ("remove: markup", ["plugin", "remove", "[/x]@1.0.0"], 2),
    ("run: missing file", ["run", "{f}/missing.yaml"], 2),
    ("run: bad YAML", ["run", "{f}/bad.yaml"], 2),
    ("run: binary", ["run", "{f}/binary.yaml"], 2),
    ("run: empty", ["run", "{f}/empty.yaml"], 2),
    ("run: a folder", ["run", "{f}/a_folder"], 2),
    ("run: input without =", ["run", "{f}/greet.yaml", "-i", "name"], 2),
    ("run: unknown input", ["run", "{f}/greet.yaml", "-i", "nope=1"], 2),
    ("run: markup input name", ["run", "{f}/greet.yaml", "-i", "[/x]=1"], 2),
    ("run: empty input", ["run", "{f}/greet.yaml", "-i", "name="], 2),
    ("run: batch line not an object", ["run", "{f}/greet.yaml", "--batch", "{f}/object.jsonl"], 2),
    ("run: batch not UTF-8", ["run", "{f}/greet.yaml", "--batch", "{f}/not_utf8.jsonl"], 2),
    ("run: batch not JSON", ["run", "{f}/greet.yaml", "--batch", "{f}/not_json.jsonl"], 2),
    ("run: batch matches nothing", ["run", "{f}/greet.yaml", "--batch", "{f}/none-*.png"], 2),
    (
        "run: unknown batch input",
        ["run", "{f}/greet.yaml", "--batch", "{f}/*.png", "--batch-input", "nope"],
        2,
    ),
    ("run: zero workers", ["run", "{f}/greet.yaml", "-i", "name=a", "--workers", "0"], 2),
    ("run: unknown executor", ["run", "{f}/greet.yaml", "-i", "name=a", "--executor", "x"], 2),
    ("run: negative timeout", ["run", "{f}/greet.yaml", "-i", "name=a", "--timeout", "-1"], 2),
    (
        "run: output into a folder",
        ["run", "{f}/greet.yaml", "-i", "name=a", "-o", "{f}/a_folder"],
        2,
    ),
    (
        "run: output where no folder is",
        ["run", "{f}/greet.yaml", "-i", "name=a", "-o", "{f}/nowhere/r.json"],
        2,
    ),
    (
        "run: broker not a URL",
        ["run", "{f}/greet.yaml", "-i", "name=a", "--executor", "celery", "--broker", "nope"],
        2,
    ),
    ("runs list: zero limit", ["runs", "list", "--limit", "0"], 2),
    ("runs list: unknown status", ["runs", "list", "--status", "lost"], 2),
    ("runs show: unknown run", ["runs", "show", "nope"], 2),
    ("runs show: a path", ["runs", "show", "../../etc/passwd"], 2),
    ("runs show: a long ID", ["runs", "show", "x" * 300], 2),
    ("runs cancel: unknown run", ["runs", "cancel", "nope"], 2),
    ("runs cancel: a finished run", ["runs", "cancel", "{run}"], 2),
    ("runs watch: unknown run", ["runs", "watch", "nope"], 2),
    ("runs watch: zero interval", ["runs", "watch", "{run}", "--interval", "0"], 2),
    ("runs watch: NaN interval", ["runs", "watch", "{run}", "--interval", "nan"], 2),
    ("lineage: unknown run", ["lineage", "nope"], 2),
    ("cache clear: a bad age", ["cache", "clear", "--older-than", "7 days"], 2),
    ("cache clear: an age too long", ["cache", "clear", "--older-than", "1000000w"], 2),
    ("pipeline show: unknown", ["pipeline", "show", "nope"], 2),
    ("pipeline show: a bad constraint", ["pipeline", "show", "nope@^^1"], 2),
    ("pipeline register: a missing file", ["pipeline", "register", "missing.yaml"], 2),
    ("pipeline remove: not a version", ["pipeline", "remove", "sums@^1"], 2),
    ("run: an unknown registered pipeline", ["run", "nope@^1"], 2),
    ("lineage: unknown value", ["lineage", "{run}", "nope"], 2),
    ("demo: missing image", ["demo", "--image", "{f}/missing.png"], 2),
    ("demo: unknown sample", ["demo", "--sample", "[/x]"], 2),
    ("worker: zero concurrency", ["worker", "--concurrency", "0"], 2),
    ("worker: unknown log level", ["worker", "-l", "loud"], 2),
    ("config: unknown subcommand", ["config", "nope"], 2),
    ("doctor: unknown option", ["doctor", "--bogus"], 2),
    ("dashboard: negative interval", ["dashboard", "--interval", "-1"], 2),
    ("dashboard: zero limit", ["dashboard", "--limit", "0"], 2),
]


@pytest.mark.parametrize(("args", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_argument_is_one_line_and_changes_nothing(
    world: tuple[dict[str, str], Path, str], args: list[str], code: int
) -> None:
    env, folder, run_id = world
    before = stored(folder / "home")
    filled = [a.replace("{f}", str(folder)).replace("{run}", run_id) for a in args]
    result = CliRunner().invoke(cli, filled, env=env)
    refused(result, code)
    assert stored(folder / "home") == before
    assert not (folder.parent / "escaped.txt").exists()


@pytest.mark.parametrize("name", ["bad.yaml", "binary.yaml", "empty.yaml", "list.yaml"])
def test_validate_prints_positioned_problems(
    world: tuple[dict[str, str], Path, str], name: str
) -> None:
    env, folder, _ = world
    result = CliRunner().invoke(cli, ["validate", str(folder / name)], env=env)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    problems = result.output.strip().splitlines()
    assert problems[-1] == "1 of 1 file(s) invalid"
    assert all(p.startswith(str(folder / name) + ":") for p in problems[:-1]), problems


READ_ONLY = [
    ["validate"],
    ["graph"],
    ["schema"],
    ["plugin", "show"],
    ["plugin", "list"],
    ["runs", "list"],
    ["runs", "show"],
    ["lineage"],
    ["config", "show"],
]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(READ_ONLY),
    extra=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(["--json", "--limit", "-1", "--status", "--task-path", "="]),
        ),
        max_size=4,
    ),
)
def test_any_arguments_to_a_read_only_command_end_cleanly(
    world: tuple[dict[str, str], Path, str], command: list[str], extra: list[str]
) -> None:
    env, folder, _ = world
    before = stored(folder / "home")
    result = CliRunner().invoke(cli, [*command, *extra], env=env)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert stored(folder / "home") == before
