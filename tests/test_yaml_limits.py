"""YAML that wtm refuses: each case one positioned problem, quickly, never a crash (issue 13).

The findings of issue 13 this covers, each through the command a user met it with
and through :func:`runtime.yamlsource.load_yaml` for the exact position: aliases of
scalars were unbounded, merge keys, python tags and a 5,000-digit integer were
internal errors, other tags were read as strings, and 5,000-deep flow nesting took
seconds to refuse.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.cli import cli
from runtime.problems import ManifestError
from runtime.yamlsource import INT_BITS, MAX_BYTES, MAX_DEPTH, MAX_EXPANDED, load_yaml
from tests.conftest import ROOT

GREET = (ROOT / "examples/greet/manifest.yaml").read_text()
DESCRIPTION = "description: Greet someone by name; the smallest useful wtm task plugin."
POSITIONED = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<column>\d+): error: (?P<message>\S.*)$")
GENEROUS = 1.0
"""Seconds for something that takes milliseconds: a bound that holds on a loaded machine."""


def refused(text: str) -> tuple[int, int, str]:
    """Line, column and message of the one problem ``text`` is refused with."""
    with pytest.raises(ManifestError) as caught:
        load_yaml("m.yaml", text)
    [problem] = caught.value.problems
    assert problem.severity == "error"
    return problem.line, problem.column, problem.message


def greet_with(old: str, new: str) -> str:
    """The greet task manifest with one line changed."""
    assert old in GREET
    return GREET.replace(old, new)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_positioned_line(result: Result, path: Path) -> tuple[int, int, str]:
    """Exit 2 with one ``path:line:col: error: message`` line: its position and message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = [line for line in result.output.splitlines() if f"{path}:" in line]
    assert len(lines) == 1, result.output
    match = POSITIONED.match(lines[0][lines[0].index(str(path)) :])
    assert match, lines[0]
    return int(match["line"]), int(match["column"]), match["message"]


# aliases of scalars


def alias_bomb(length: int = 100_000, aliases: int = 1_500) -> str:
    """The finding: a task manifest whose description, ``length`` characters, is
    repeated ``aliases`` times by aliases (106 KB that installed as 150 MB)."""
    text = greet_with(DESCRIPTION, f'description: &d "{"x" * length}"')
    many = ", ".join(["*d"] * aliases)
    return text.replace(
        "    schema: {type: string}\n    description: The greeting.",
        (f"    schema: {{type: string, examples: [{many}]}}\n    description: The greeting."),
    )


def test_scalar_alias_bomb_install_is_refused_and_stores_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WTM_HOME", str(home))
    plugin = tmp_path / "bomb"
    plugin.mkdir()
    (plugin / "plugin.py").write_text((ROOT / "examples/greet/plugin.py").read_text())
    manifest = plugin / "manifest.yaml"
    manifest.write_text(alias_bomb())
    assert 100_000 < manifest.stat().st_size < 110_000
    started = time.perf_counter()
    result = invoke("plugin", "install", plugin)
    elapsed = time.perf_counter() - started
    line, column, message = one_positioned_line(result, manifest)
    assert message == f"document larger than {MAX_EXPANDED} characters once aliases are expanded"
    assert line == 19 and column > 40  # at an alias on the examples line, not at the anchor
    assert elapsed < 5 * GENEROUS  # was 9 s and 1 GB
    listed = invoke("plugin", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    stored = sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) if home.exists() else 0
    assert stored < 1 << 20  # was 300 MB


def expansion(padding: int) -> str:
    """A document expanding to exactly ``MAX_EXPANDED - 94_254 + padding`` units.

    One unit per node plus one per character of each string: the mapping (1), keys
    ``a``, ``b`` and ``c`` (2 each), the sequence (1), the anchored string and its 40
    aliases (41 x 100,001), and the string of ``c`` (1 + its length).
    """
    aliases = ", ".join(["*d"] * 40)
    return f'a: &d "{"x" * 100_000}"\nb: [{aliases}]\nc: "{"y" * padding}"\n'


def test_expanded_size_bound_is_exact():
    padding = MAX_EXPANDED - (1 + 3 * 2 + 1 + 41 * 100_001 + 1)
    assert padding == 94_254
    assert len(expansion(padding).encode()) < MAX_BYTES
    assert len(load_yaml("m.yaml", expansion(padding)).data["b"]) == 40
    line, column, message = refused(expansion(padding + 1))
    assert (line, column) == (3, 4)  # the string that crosses the bound
    assert message == f"document larger than {MAX_EXPANDED} characters once aliases are expanded"


# merge keys


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("base: &b {max: 1}\nretries:\n  <<: *b\n", (3, 3)),
        ("retries:\n  <<: {max: 1}\n", (2, 3)),
        ("a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], z: 3}\n", (3, 5)),
        ("- <<: {a: 1}\n", (1, 3)),
    ],
)
def test_merge_keys_are_refused_where_they_are(text, position):
    assert refused(text) == (*position, "YAML merge keys (<<) are not allowed")


def test_merge_lookalikes_are_text():
    data = load_yaml("m.yaml", 'quoted: {"<<": 1}\nvalue: <<\nlist: [<<]\n').data
    assert data == {"quoted": {"<<": 1}, "value": "<<", "list": ["<<"]}


# tags


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('!!python/object/apply:os.system ["echo hi"]', "!!python/object/apply:os.system"),
        ("!!python/name:os.system x", "!!python/name:os.system"),
        ("!foo bar", "!foo"),
        ("!!set {a, b}", "!!set"),
        ("!!binary R3JlZXQ=", "!!binary"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!str 001", "!!str"),
        ("! plain", "!"),
        ("!<tag:example.com,2000:x> y", "tag:example.com,2000:x"),
    ],
)
def test_tags_are_refused_where_they_are(value, written):
    assert refused(f"a: 1\nb: {value}\n") == (2, 4, f"YAML tags are not allowed (found {written})")


def test_tag_directive_handles_are_named_as_written():
    text = "%TAG !e! tag:example.com,2000:\n---\na: !e!thing x\n"
    assert refused(text) == (3, 4, "YAML tags are not allowed (found !e!thing)")


# integers


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("9" * 5000, "integer written with more than 100 characters"),
        ("0x" + "f" * 200, "integer written with more than 100 characters"),
        (str(1 << (INT_BITS - 1)), f"integer does not fit in {INT_BITS} bits"),
        (str(-(1 << (INT_BITS - 1)) - 1), f"integer does not fit in {INT_BITS} bits"),
        ("0x1_0000_0000_0000_0000", f"integer does not fit in {INT_BITS} bits"),
    ],
)
def test_huge_integers_are_refused_where_they_are(literal, message):
    assert refused(f"a: 1\nb: [0, {literal}]\n") == (2, 8, message)


def test_integers_of_64_bits_load():
    text = f"a: [{(1 << 63) - 1}, {-(1 << 63)}, 0x7fff_ffff_ffff_ffff, 0o17, 1_000]\n"
    assert load_yaml("m.yaml", text).data["a"] == [
        (1 << 63) - 1,
        -(1 << 63),
        (1 << 63) - 1,
        15,
        1000,
    ]


def test_integer_keys_are_text():
    assert load_yaml("m.yaml", f"{'9' * 90}: x\n").data == {"9" * 90: "x"}


# nesting


def deep(levels: int, shape: str) -> str:
    """``levels`` nested collections under key ``a``, in one of four shapes."""
    match shape:
        case "flow list":
            return "a: " + "[" * levels + "]" * levels + "\n"
        case "flow map":
            return "a: " + "{b: " * levels + "1" + "}" * levels + "\n"
        case "flow list, a line each":
            return "a: " + "[\n" * levels + "]" * levels + "\n"
        case "block list":
            return "a:\n  " + "- " * levels + "x\n"
    raise AssertionError(shape)


SHAPES = ["flow list", "flow map", "flow list, a line each", "block list"]


@pytest.mark.parametrize("shape", SHAPES)
def test_deep_nesting_is_refused_at_the_level_too_many_quickly(shape):
    text = deep(5000, shape)
    started = time.perf_counter()
    line, column, message = refused(text)
    elapsed = time.perf_counter() - started
    assert message == f"nesting deeper than {MAX_DEPTH} levels"
    # Where level MAX_DEPTH + 1 opens (the root mapping is level 1); for flow lists one
    # bracket on, where the scanner, reading ahead of the parser, stops first.
    expected = {
        "flow list": (1, 4 + MAX_DEPTH),
        "flow map": (1, 4 + 4 * (MAX_DEPTH - 1)),
        "flow list, a line each": (MAX_DEPTH + 1, 1),
        "block list": (2, 3 + 2 * (MAX_DEPTH - 1)),
    }[shape]
    assert (line, column) == expected
    assert elapsed < GENEROUS  # the flow list took 3 s, and up to 10 s on a slow machine


@pytest.mark.parametrize("shape", SHAPES)
def test_nesting_up_to_the_limit_loads(shape):
    data = load_yaml("m.yaml", deep(MAX_DEPTH - 1, shape)).data["a"]
    depth = 1
    while isinstance(data, list | dict) and data:
        data = data[0] if isinstance(data, list) else data["b"]
        depth += 1
    assert depth >= MAX_DEPTH - 1


# other input the loader used to guess at or crash on


@pytest.mark.parametrize("version", ["1.1", "1.3", "1.0"])
def test_yaml_versions_other_than_1_2_are_refused(version):
    message = f"YAML {version} is not read; wtm reads YAML 1.2"
    assert refused(f"%YAML {version}\n---\na: 1e3\n") == (1, 1, message)


def test_yaml_1_2_directive_loads():
    assert load_yaml("m.yaml", "%YAML 1.2\n---\na: yes\n").data == {"a": "yes"}


def test_dates_stay_text_as_written():
    text = "a: 2024-01-01\nb: 2001-13-45\nc: 2024-01-01 10:00:00\nd: =\n"
    assert load_yaml("m.yaml", text).data == {
        "a": "2024-01-01",
        "b": "2001-13-45",  # was an internal error (month must be in 1..12)
        "c": "2024-01-01 10:00:00",
        "d": "=",
    }


def test_anchors_used_twice_load_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_yaml("m.yaml", "a: &x 1\nb: &x 2\nc: *x\n").data == {"a": 1, "b": 2, "c": 2}


# the findings through the commands


FINDINGS = {
    "merge key": (greet_with("retries: {max: 1, backoff: 100ms}", "retries:\n  <<: {max: 1}"), 10),
    "python tag": (
        greet_with(DESCRIPTION, 'description: !!python/object/apply:os.system ["x"]'),
        6,
    ),
    "python name": (greet_with(DESCRIPTION, "description: !!python/name:os.system x"), 6),
    "own tag": (greet_with(DESCRIPTION, "description: !foo x"), 6),
    "set": (greet_with(DESCRIPTION, "description: !!set {a, b}"), 6),
    "binary": (greet_with(DESCRIPTION, "description: !!binary R3JlZXQ="), 6),
    "5,000 digits": (greet_with("max: 1,", f"max: {'9' * 5000},"), 9),
    "5,000 deep": (greet_with(DESCRIPTION, "description: " + "[" * 5000 + "]" * 5000), 6),
}


@pytest.mark.parametrize("finding", FINDINGS)
def test_validate_gives_one_positioned_line(tmp_path, finding):
    text, line = FINDINGS[finding]
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    started = time.perf_counter()
    result = invoke("validate", path)
    assert time.perf_counter() - started < GENEROUS
    assert one_positioned_line(result, path)[0] == line


def test_run_refuses_a_pipeline_with_a_merge_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WTM_HOME", str(tmp_path / "home"))
    path = tmp_path / "sums.yaml"
    path.write_text(
        "apiVersion: wtm/v1\nkind: Pipeline\nname: sums\nversion: 1.0.0\n"
        "inputs:\n  x: {schema: {type: number}}\n"
        "defaults: &d {a: $inputs.x}\n"
        'steps:\n  - {id: "001", task: add, with: {<<: *d, b: 1}}\n'
        "outputs:\n  total: $001.sum\n"
    )
    result = invoke("run", path, "-i", "x=1")
    assert one_positioned_line(result, path) == (9, 35, "YAML merge keys (<<) are not allowed")


def test_lone_surrogates_are_refused_where_they_are():
    message = "text with a lone surrogate (an escape like \\ud800) cannot be printed"
    assert refused('a: 1\nb: "x\\ud800"\n') == (2, 4, message)
    assert refused('a: 1\n"\\udfff": 1\n') == (2, 1, message)


# any document


FRAGMENTS = [
    *"[]{},:-?&*!|>'\"#%@`\n\t ",
    "&a ",
    "*a",
    "<<: ",
    "!!set ",
    "!!python/object:os.system ",
    "%YAML 1.1\n---\n",
    "%TAG !e! tag:e,2000:\n---\n",
    "9" * 120,
    "0x" + "f" * 20,
    "2001-13-45",
    "[" * 70,
    "- " * 70,
    "{a: " * 70,
    ".inf",
    "a: ",
    "\n  ",
    "---\n",
    '"\\ud800"',
]


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=60))
def test_any_document_loads_or_is_refused_with_a_position(fragments):
    text = "".join(fragments)
    started = time.perf_counter()
    try:
        located = load_yaml("m.yaml", text)
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert POSITIONED.match(str(problem)) and "\n" not in str(problem), problem
            assert problem.line >= 1 and problem.column >= 1
    else:
        json.dumps(located.data)  # plain data, bounded
    assert time.perf_counter() - started < GENEROUS
