"""``when:`` conditions: the grammar, the evaluator and every error message with its column."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import conditions
from runtime.conditions import MAX_DEPTH, MAX_LENGTH, ConditionError, Reference, parse

VALUES: dict[str, Any] = {
    "$001.faces_array": [{"confidence": 0.95}, {"confidence": 0.4}],
    "$001.image": {"width": 120, "height": 80, "format": "png"},
    "$001.count": 2,
    "$001.empty": [],
    "$inputs.threshold": 0.6,
    "$inputs.dry_run": False,
    "$inputs.mode": "some",
    "$inputs.tags": ["x", "y"],
    "$inputs.name": "face-42",
    "$inputs.nothing": None,
    "$s-1.flag": True,
    "$detect_faces.ok": True,
}


def resolve(reference: Reference) -> Any:
    return VALUES[reference.text]


def evaluate(text: str) -> bool:
    return parse(text).evaluate(resolve)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len($001.faces_array) > 0", True),
        ("len($001.empty) > 0", False),
        ("$inputs.threshold >= 0.5 and not $inputs.dry_run", True),
        ("$001.image.width > 100 or $inputs.mode == 'all'", True),
        ("$001.image.width > 200 or $inputs.mode == 'all'", False),
        ("$001.faces_array[0].confidence > 0.9", True),
        ("$001.faces_array[-1].confidence > 0.9", False),
        ('$001.image["format"] == "png"', True),
        ('"x" in $inputs.tags', True),
        ('"z" in $inputs.tags', False),
        ('$inputs.mode not in ["a", "b"]', True),
        ('$inputs.mode not in ["a", "some"]', False),
        ('"width" in $001.image', True),
        ('"depth" not in $001.image', True),
        ('"face" in $inputs.name', True),
        ("$inputs.nothing == null", True),
        ("$s-1.flag", True),
        ("$detect_faces.ok and $s-1.flag", True),
    ],
)
def test_pipeline_conditions(text: str, expected: bool) -> None:
    assert evaluate(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("null == None", True),
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("2.5 == 25e-1", True),
        ("1e3 == 1000", True),
        ("true == 1", False),
        ("true != 1", True),
        ("null == 0", False),
        ('"1" == 1', False),
        ("\"a\" == 'a'", True),
        (r'"say \"hi\"" == ' + r"'say \"hi\"'", True),
        (r"'it\'s' == " + '"it\'s"', True),
        (r'"a\nb" != "a\\nb"', True),
        (r'len("a\nb") == 3', True),
        (r'len("\q") == 1', True),
        ("[1, [true, null]] == [1.0, [true, null]]", True),
        ("[1, 2] == [2, 1]", False),
        ("[] == []", True),
        ("[1] == 1", False),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("2 > 2", False),
        ("2 >= 2.0", True),
        ("1 != 2", True),
        ('"apple" < "banana"', True),
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("10 - 4 - 3 == 3", True),
        ("12 / 4 / 3 == 1", True),
        ("7 / 2 == 3.5", True),
        ("-3 + 5 == 2", True),
        ("--3 == 3", True),
        ("-(1 + 2) == -3", True),
        ("2 * -3 == -6", True),
        ("not false", True),
        ("not not true", True),
        ("not 1 == 2", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("true and true and false", False),
        ("false or false or true", True),
        ("1 in [1, 2]", True),
        ("1.0 in [1, 2]", True),
        ("true in [1, 2]", False),
        ("3 not in [1, 2]", True),
        ("[1] in [[1], [2]]", True),
        ('len("abc") == 3', True),
        ("len([1, 2]) == 2", True),
        ("len($001.image) == 3", True),
        ("abs(-2.5) == 2.5", True),
        ("min([3, 1.5, 2]) == 1.5", True),
        ("max([3, 1.5, 2]) == 3", True),
        ("[10, 20, 30][1] == 20", True),
        ("[10, 20, 30][-1] == 30", True),
        ("[10, 20, 30][1 + 1] == 30", True),
        ("  true  ", True),
        ("(((((true)))))", True),
        ("1\n<\n2", True),
    ],
)
def test_each_construct(text: str, expected: bool) -> None:
    assert parse(text).evaluate(resolve) is expected


def test_a_condition_keeps_its_text_and_lists_references_in_order_with_columns() -> None:
    condition = parse(
        '$inputs.a > 1 and len($001.faces_array[$inputs.i].box) > 0 or "x" in $s-1.tags'
    )
    assert condition.text == (
        '$inputs.a > 1 and len($001.faces_array[$inputs.i].box) > 0 or "x" in $s-1.tags'
    )
    assert condition.references == (
        Reference("inputs", "a", 1),
        Reference("001", "faces_array", 23),
        Reference("inputs", "i", 40),
        Reference("s-1", "tags", 70),
    )
    assert [reference.text for reference in condition.references] == [
        "$inputs.a",
        "$001.faces_array",
        "$inputs.i",
        "$s-1.tags",
    ]


def test_a_repeated_reference_is_listed_each_time_it_appears() -> None:
    assert parse("$001.n > 1 and $001.n < 5").references == (
        Reference("001", "n", 1),
        Reference("001", "n", 16),
    )


def test_a_condition_without_references() -> None:
    assert parse("1 < 2").references == ()


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "empty condition", None),
        ("  \n ", "empty condition", None),
        ("len($001.x) > 0)", "unexpected ')' at column 16", 16),
        ("(1 + 2", "unexpected end of condition at column 7", 7),
        ("1 +   ", "unexpected end of condition at column 4", 4),
        ("1 < 2 < 3", "unexpected '<' at column 7", 7),
        ("1 2", "unexpected '2' at column 3", 3),
        ("[1, 2,]", "unexpected ']' at column 7", 7),
        ("1 = 1", "unexpected character '=' at column 3", 3),
        ("true && false", "unexpected character '&' at column 6", 6),
        ('"a" in {"a": 1}', "unexpected character '{' at column 8", 8),
        ('"abc == 1', "unterminated string at column 1", 1),
        (
            "$001 > 1",
            "bad reference at column 1: expected $STEP.PORT or $inputs.NAME",
            1,
        ),
        (
            "1 < $inputs.",
            "bad reference at column 5: expected $STEP.PORT or $inputs.NAME",
            5,
        ),
        ("size($001.x) > 0", "unknown function 'size' at column 1", 1),
        ("1 + len(max([1]), 2)", "wrong number of arguments at column 5: len() takes 1, got 2", 5),
        ("len() == 0", "wrong number of arguments at column 1: len() takes 1, got 0", 1),
        (
            "x > 1",
            "unknown name 'x' at column 1: a reference is $STEP.PORT or $inputs.NAME",
            1,
        ),
        (
            "$inputs.a and TRUE",
            "unknown name 'TRUE' at column 15: a reference is $STEP.PORT or $inputs.NAME",
            15,
        ),
    ],
)
def test_syntax_errors_name_the_column(text: str, message: str, column: int | None) -> None:
    with pytest.raises(ConditionError) as raised:
        parse(text)
    assert str(raised.value) == message
    assert raised.value.column == column


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("__import__('os')", "unknown function '__import__' at column 1", 1),
        ("eval('1')", "unknown function 'eval' at column 1", 1),
        ("open('/etc/passwd') == 1", "unknown function 'open' at column 1", 1),
        ("().__class__", "unexpected ')' at column 2", 2),
        (
            "$inputs.mode.__class__",
            "$inputs.mode is a string, not an object with field '__class__'",
            1,
        ),
        ("$001.image.__class__", "$001.image has no field '__class__'", 1),
    ],
)
def test_no_python_is_reachable(text: str, message: str, column: int) -> None:
    with pytest.raises(ConditionError) as raised:
        evaluate(text)
    assert str(raised.value) == message
    assert raised.value.column == column


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("$001.count", "$001.count is a number, not true or false", 1),
        ("$inputs.nothing", "$inputs.nothing is null, not true or false", 1),
        ("1 + 1", "1 + 1 is a number, not true or false", 1),
        ("true and $inputs.mode", "$inputs.mode is a string, not true or false", 10),
        ("$001.empty or true", "$001.empty is a list, not true or false", 1),
        ("not $001.image", "$001.image is an object, not true or false", 5),
        ("len($001.count) > 0", "$001.count is a number, not a string, list or object", 5),
        ("len(true) > 0", "true is a boolean, not a string, list or object", 5),
        (
            "$001.count < $inputs.mode",
            "$001.count < $inputs.mode compares a number with a string: "
            "only two numbers or two strings can be ordered",
            1,
        ),
        (
            "true >= 1",
            "true >= 1 compares a boolean with a number: "
            "only two numbers or two strings can be ordered",
            1,
        ),
        (
            "[1] < [2]",
            "[1] < [2] compares a list with a list: only two numbers or two strings can be ordered",
            1,
        ),
        ("$001.image.depth > 1", "$001.image has no field 'depth'", 1),
        ('$001.image["depth"] > 1', "$001.image has no field 'depth'", 1),
        ("$001.count.value > 1", "$001.count is a number, not an object with field 'value'", 1),
        ("$001.faces_array[2].confidence > 0", "$001.faces_array has no index 2 (length 2)", 1),
        ("$001.faces_array[-3].confidence > 0", "$001.faces_array has no index -3 (length 2)", 1),
        ("$001.count[0] > 0", "$001.count is a number, not a list or object", 1),
        ("$inputs.tags[0.5] == 1", "0.5 is a number, not a list index (a whole number)", 14),
        ("$inputs.tags[true] == 1", "true is a boolean, not a list index (a whole number)", 14),
        ("$001.image[0] == 1", "0 is a number, not an object key (a string)", 12),
        ("$001.count / 0 > 1", "$001.count / 0 divides by zero", 1),
        ("1 + 4 / (2 - 2) > 1", "4 / (2 - 2) divides by zero", 5),
        ("1" + "0" * 400 + " / 3 > 1", "1" + "0" * 76 + "... is too large a number", 1),
        ("$inputs.mode + 1 > 1", "$inputs.mode is a string, not a number", 1),
        ("-$inputs.dry_run < 1", "$inputs.dry_run is a boolean, not a number", 2),
        ("abs(null) > 1", "null is null, not a number", 5),
        ("min($001.empty) > 1", "$001.empty is an empty list", 5),
        ("max($001.count) > 1", "$001.count is a number, not a list", 5),
        ("max([1, 'a']) > 1", "[1, 'a'] holds a string, not only numbers", 5),
        ('"a" in $001.count', "$001.count is a number, not a list, object or string", 8),
        ("1 in $inputs.name", "1 is a number, not a string to look for in a string", 1),
        ("true and\n  1", "1 is a number, not true or false", 12),
        ("(1 +\n 2)", "1 + 2 is a number, not true or false", 2),
    ],
)
def test_evaluation_errors_name_the_sub_expression(text: str, message: str, column: int) -> None:
    condition = parse(text)
    with pytest.raises(ConditionError) as raised:
        condition.evaluate(resolve)
    assert str(raised.value) == message
    assert raised.value.column == column


def test_a_long_sub_expression_is_shortened_in_the_message() -> None:
    text = "1" + " + 1" * 40
    with pytest.raises(ConditionError) as raised:
        evaluate(text)
    assert str(raised.value) == text[:77] + "... is a number, not true or false"


@pytest.mark.parametrize(
    ("text", "resolved"),
    [
        ("$inputs.a or $inputs.b", ["$inputs.a"]),
        ("$inputs.b or $inputs.a", ["$inputs.b", "$inputs.a"]),
        ("$inputs.b and $inputs.a", ["$inputs.b"]),
        ("$inputs.a and $inputs.b", ["$inputs.a", "$inputs.b"]),
        ("$inputs.b and $001.x or $inputs.a", ["$inputs.b", "$inputs.a"]),
        ("$inputs.b or $inputs.b or $inputs.a or $001.x", ["$inputs.b", "$inputs.b", "$inputs.a"]),
        ("not $inputs.a or $001.x", ["$inputs.a", "$001.x"]),
        ("$inputs.a or $001.x.y[0] > 1", ["$inputs.a"]),
        ("$inputs.n in [$inputs.a, $001.x]", ["$inputs.n", "$inputs.a", "$001.x"]),
    ],
)
def test_and_or_resolve_only_what_they_need(text: str, resolved: list[str]) -> None:
    values = {"$inputs.a": True, "$inputs.b": False, "$inputs.n": 1, "$001.x": True}
    calls: list[str] = []

    def record(reference: Reference) -> Any:
        calls.append(reference.text)
        return values[reference.text]

    parse(text).evaluate(record)
    assert calls == resolved


def test_a_condition_is_evaluated_again_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    condition = parse("$inputs.n > 2")

    def no_parsing() -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(conditions, "_parser", no_parsing)
    assert [condition.evaluate(lambda _reference, n=n: n) for n in (1, 3)] == [False, True]


def test_errors_from_resolve_pass_through() -> None:
    with pytest.raises(KeyError):
        parse("$unknown.port").evaluate(resolve)


def test_the_length_limit() -> None:
    longest = "true" + " " * (MAX_LENGTH - 4)
    assert parse(longest).evaluate(resolve) is True
    with pytest.raises(ConditionError) as raised:
        parse(longest + " ")
    assert str(raised.value) == "condition is longer than 1000 characters"
    assert raised.value.column is None


def test_the_depth_limit() -> None:
    assert parse("not " * (MAX_DEPTH - 1) + "false").evaluate(resolve) is True
    with pytest.raises(ConditionError) as raised:
        parse("not " * MAX_DEPTH + "false")
    assert str(raised.value) == "condition nests deeper than 50 levels at column 201"
    assert raised.value.column == 201


@pytest.mark.parametrize(
    ("text", "column"),
    [
        pytest.param("-" * 999 + "1", 51, id="unary minus"),
        pytest.param("[" * 500 + "]" * 500, 51, id="lists"),
        pytest.param("len(" * 150 + "1" + ")" * 150, 201, id="calls"),
        pytest.param("$a.b" + "[0]" * 300, 1, id="indexing"),
    ],
)
def test_a_hostile_nesting_is_a_condition_error(text: str, column: int) -> None:
    with pytest.raises(ConditionError) as raised:
        parse(text)
    assert str(raised.value) == f"condition nests deeper than 50 levels at column {column}"
    assert raised.value.column == column


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("(" * 497 + "true" + ")" * 497, id="parentheses"),
        pytest.param("1" + " + 1" * 240 + " > 0", id="sum"),
        pytest.param(" or ".join(["false"] * 100) + " or true", id="or"),
        pytest.param(" and ".join(["true"] * 100), id="and"),
    ],
)
def test_long_flat_conditions_and_parentheses_do_not_count_as_depth(text: str) -> None:
    assert len(text) <= MAX_LENGTH
    assert parse(text).evaluate(resolve) is True


def test_condition_error_is_a_value_error() -> None:
    assert issubclass(ConditionError, ValueError)
    assert ConditionError("x").column is None
