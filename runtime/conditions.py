r"""``when:`` conditions: the expression that decides whether a pipeline step runs.

A step with ``when: "<expression>"`` runs only if the expression is true, for example
``len($001.faces_array) > 0 and not $inputs.dry_run``.

- References: ``$inputs.NAME`` is a pipeline input, ``$STEP.PORT`` an output port of step
  ``STEP`` (step IDs hold letters, digits, ``_`` and ``-``).
- Values: numbers, strings in ``"double"`` or ``'single'`` quotes (``\n``, ``\t`` and ``\r``
  escapes; any other escaped character stands for itself), ``true``, ``false``, ``null`` (or
  ``True``, ``False``, ``None``) and lists ``[1, 2]``. Any value takes ``.field`` and
  ``[index]`` (``[-1]`` is the last item, ``["key"]`` a field).
- Operators, loosest first: ``or``, ``and``, ``not``; ``== != < <= > >= in``, ``not in``
  (not chained: ``a < b < c`` is a syntax error); ``+ -``; ``* /``; unary ``-``.
  Parentheses group.
- Functions: ``len(x)`` of a string, list or object; ``abs(x)``; ``min(list)``, ``max(list)``.
- Types are strict: ``and``, ``or``, ``not`` and the whole condition need true or false,
  arithmetic needs numbers (a boolean is not one), ordering needs two numbers or two strings.
  ``==`` between different kinds is simply false; an integer equals the same float.
- ``and`` and ``or`` stop early: a reference on the side not needed is never looked up.

Problems are :class:`ConditionError`, one line naming the column (syntax; counted in
characters from the start of the text) or the sub-expression (evaluation). No Python is
evaluated: the text goes through a Lark grammar.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

MAX_LENGTH = 1000
"""The longest condition text accepted, in characters."""

MAX_DEPTH = 50
"""The deepest nesting of operations accepted (parentheses alone do not count)."""

_DISPLAY_WIDTH = 80

_GRAMMAR = r"""
?start: or_test

?or_test: and_test ("or" and_test)*
?and_test: not_test ("and" not_test)*
?not_test: "not" not_test -> negation
         | comparison
?comparison: sum
           | sum COMPARE sum -> compare
           | sum "in" sum -> contains
           | sum "not" "in" sum -> not_contains
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH) unary)*
?unary: MINUS unary -> negative
      | postfix
?postfix: atom
        | postfix "." NAME -> field_access
        | postfix "[" or_test "]" -> item_access
?atom: REFERENCE -> reference
     | NUMBER -> number
     | STRING -> string
     | ("true" | "True") -> true
     | ("false" | "False") -> false
     | ("null" | "None") -> null
     | "[" _arguments? "]" -> list_value
     | NAME "(" _arguments? ")" -> call
     | NAME -> name
     | "(" or_test ")"
_arguments: or_test ("," or_test)*

REFERENCE: /\$[A-Za-z0-9_-]+\.[A-Za-z_][A-Za-z0-9_]*/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /\d+(\.\d+)?([eE][+-]?\d+)?/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"

%ignore /\s+/
"""


class ConditionError(ValueError):
    """An expression that cannot be parsed or evaluated; one line. ``column`` (1-based, in
    the expression text) when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Reference:
    """``$inputs.NAME`` or ``$STEP.PORT`` at ``column`` (of the ``$``) in the condition."""

    source: str
    port: str
    column: int

    @property
    def text(self) -> str:
        """The reference as written, ``$001.faces_array``."""
        return f"${self.source}.{self.port}"


Resolve = Callable[[Reference], Any]
"""Gives the value of a reference: a pipeline input or a step's output."""


@dataclass(frozen=True)
class _Where:
    """A sub-expression as shown in messages, and its column."""

    text: str
    column: int

    def error(self, problem: str) -> ConditionError:
        return ConditionError(f"{self.text} {problem}", self.column)


@dataclass(frozen=True)
class _Node:
    """A sub-expression, built once at parse time."""

    evaluate: Callable[[Resolve], Any]
    where: _Where

    def boolean(self, resolve: Resolve) -> bool:
        value = self.evaluate(resolve)
        if isinstance(value, bool):
            return value
        raise self.where.error(f"is {_kind(value)}, not true or false")

    def number(self, resolve: Resolve) -> int | float:
        return _number(self.evaluate(resolve), self.where)


@dataclass(frozen=True)
class Condition:
    """A parsed ``when:`` expression; ``references`` lists every reference in order of
    appearance, a repeated one each time it appears."""

    text: str
    references: tuple[Reference, ...]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, resolve: Resolve) -> bool:
        """True or false; ``resolve`` is called only for the references needed (``and`` and
        ``or`` stop early). Raises :class:`ConditionError`; errors from ``resolve`` pass
        through."""
        return self._root.boolean(resolve)


def parse(text: str) -> Condition:
    """Parse a condition once, to evaluate as often as needed; raises :class:`ConditionError`."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ConditionError("empty condition")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    _check(tree)
    builder = _Builder(text)
    root = builder.transform(tree)
    return Condition(text, tuple(builder.references), root)


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True)


def _display(text: str) -> str:
    """``text`` on one line, shortened for a message."""
    line = " ".join(text.split())
    return line if len(line) <= _DISPLAY_WIDTH else line[: _DISPLAY_WIDTH - 3] + "..."


def _syntax_error(text: str, error: UnexpectedInput) -> ConditionError:
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        column = position + 1
        character = text[position]
        if character == "$":
            return ConditionError(
                f"bad reference at column {column}: expected $STEP.PORT or $inputs.NAME", column
            )
        if character in "\"'":
            return ConditionError(f"unterminated string at column {column}", column)
        return ConditionError(f"unexpected character {character!r} at column {column}", column)
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        column = error.token.start_pos + 1
        token = _display(error.token.value)
        return ConditionError(f"unexpected {token!r} at column {column}", column)
    column = len(text.rstrip()) + 1
    return ConditionError(f"unexpected end of condition at column {column}", column)


def _check(tree: Tree[Token]) -> None:
    """Raise :class:`ConditionError` for what the grammar lets through: too deep a nesting,
    a bare name, an unknown function or a wrong number of arguments."""
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        column = node.meta.start_pos + 1
        if depth > MAX_DEPTH:
            raise ConditionError(
                f"condition nests deeper than {MAX_DEPTH} levels at column {column}", column
            )
        if node.data == "name":
            raise ConditionError(
                f"unknown name {str(node.children[0])[:40]!r} at column {column}: "
                "a reference is $STEP.PORT or $inputs.NAME",
                column,
            )
        if node.data == "call":
            _check_call(node, column)
        children = [child for child in node.children if isinstance(child, Tree)]
        pending.extend((child, depth + 1) for child in reversed(children))


def _check_call(call: Tree[Token], column: int) -> None:
    name = str(call.children[0])
    if name not in _FUNCTIONS:
        raise ConditionError(f"unknown function {name[:40]!r} at column {column}", column)
    arguments = len(call.children) - 1
    if arguments != 1:
        raise ConditionError(
            f"wrong number of arguments at column {column}: {name}() takes 1, got {arguments}",
            column,
        )


def _kind(value: Any) -> str:
    """What a value is, for messages and type checks."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return f"a Python {type(value).__name__}"


def _equal(left: Any, right: Any) -> bool:
    """``==``: values of different kinds are unequal; ``1 == 1.0`` but ``true != 1``."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_equal, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(left[key], right[key]) for key in left)
    return bool(left == right)


def _field(value: Any, name: str, where: _Where) -> Any:
    if not isinstance(value, dict):
        raise where.error(f"is {_kind(value)}, not an object with field {name!r}")
    if name not in value:
        raise where.error(f"has no field {name!r}")
    return value[name]


def _item(value: Any, key: Any, where: _Where, key_where: _Where) -> Any:
    if isinstance(value, dict):
        if isinstance(key, str):
            return _field(value, key, where)
        raise key_where.error(f"is {_kind(key)}, not an object key (a string)")
    if isinstance(value, list):
        if isinstance(key, bool) or not isinstance(key, int):
            raise key_where.error(f"is {_kind(key)}, not a list index (a whole number)")
        if -len(value) <= key < len(value):
            return value[key]
        raise where.error(f"has no index {key} (length {len(value)})")
    raise where.error(f"is {_kind(value)}, not a list or object")


def _contains(container: Any, item: Any, where: _Where, item_where: _Where) -> bool:
    if isinstance(container, list):
        return any(_equal(element, item) for element in container)
    if isinstance(container, dict):
        return isinstance(item, str) and item in container
    if isinstance(container, str):
        if isinstance(item, str):
            return item in container
        raise item_where.error(f"is {_kind(item)}, not a string to look for in a string")
    raise where.error(f"is {_kind(container)}, not a list, object or string")


def _length(value: Any, where: _Where) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise where.error(f"is {_kind(value)}, not a string, list or object")


def _number(value: Any, where: _Where) -> int | float:
    if _kind(value) == "a number":
        return value
    raise where.error(f"is {_kind(value)}, not a number")


def _numbers(value: Any, where: _Where) -> list[int | float]:
    """The items of a non-empty list of numbers, for ``min`` and ``max``."""
    if not isinstance(value, list):
        raise where.error(f"is {_kind(value)}, not a list")
    if not value:
        raise where.error("is an empty list")
    for item in value:
        if _kind(item) != "a number":
            raise where.error(f"holds {_kind(item)}, not only numbers")
    return value


_FUNCTIONS: dict[str, Callable[[Any, _Where], Any]] = {
    "len": _length,
    "abs": lambda value, where: abs(_number(value, where)),
    "min": lambda value, where: min(_numbers(value, where)),
    "max": lambda value, where: max(_numbers(value, where)),
}

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _constant(value: Any) -> Callable[[Resolve], Any]:
    return lambda _resolve: value


@v_args(meta=True)
class _Builder(Transformer[Token, _Node]):
    """Turns the parse tree into :class:`_Node` closures and collects the references."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self.references: list[Reference] = []

    def _where(self, meta: Meta) -> _Where:
        return _Where(_display(self._text[meta.start_pos : meta.end_pos]), meta.start_pos + 1)

    def reference(self, meta: Meta, children: list[Token]) -> _Node:
        source, port = children[0][1:].split(".")
        found = Reference(source, port, meta.start_pos + 1)
        self.references.append(found)
        return _Node(lambda resolve: resolve(found), self._where(meta))

    def number(self, meta: Meta, children: list[Token]) -> _Node:
        text = children[0]
        value = float(text) if any(mark in text for mark in ".eE") else int(text)
        return _Node(_constant(value), self._where(meta))

    def string(self, meta: Meta, children: list[Token]) -> _Node:
        body = children[0][1:-1]
        value = re.sub(r"\\(.)", lambda escape: _ESCAPES.get(escape[1], escape[1]), body)
        return _Node(_constant(value), self._where(meta))

    def true(self, meta: Meta, children: list[Token]) -> _Node:
        return _Node(_constant(True), self._where(meta))

    def false(self, meta: Meta, children: list[Token]) -> _Node:
        return _Node(_constant(False), self._where(meta))

    def null(self, meta: Meta, children: list[Token]) -> _Node:
        return _Node(_constant(None), self._where(meta))

    def list_value(self, meta: Meta, items: list[_Node]) -> _Node:
        return _Node(lambda resolve: [item.evaluate(resolve) for item in items], self._where(meta))

    def call(self, meta: Meta, children: list[Any]) -> _Node:
        name, argument = children
        function = _FUNCTIONS[name]
        return _Node(
            lambda resolve: function(argument.evaluate(resolve), argument.where),
            self._where(meta),
        )

    def field_access(self, meta: Meta, children: list[Any]) -> _Node:
        base, name = children
        return _Node(
            lambda resolve: _field(base.evaluate(resolve), str(name), base.where),
            self._where(meta),
        )

    def item_access(self, meta: Meta, children: list[_Node]) -> _Node:
        base, key = children
        return _Node(
            lambda resolve: _item(
                base.evaluate(resolve), key.evaluate(resolve), base.where, key.where
            ),
            self._where(meta),
        )

    def negative(self, meta: Meta, children: list[Any]) -> _Node:
        operand: _Node = children[1]
        return _Node(lambda resolve: -operand.number(resolve), self._where(meta))

    def sum(self, meta: Meta, children: list[Any]) -> _Node:
        """A run of ``+`` and ``-`` (as ``product``: ``*`` and ``/``), left to right."""
        first: _Node = children[0]
        steps: list[tuple[str, _Node]] = list(zip(children[1::2], children[2::2], strict=True))
        where = self._where(meta)

        def evaluate(resolve: Resolve) -> int | float:
            total = first.number(resolve)
            for symbol, operand in steps:
                value = operand.number(resolve)
                if symbol == "/" and value == 0:
                    raise where.error("divides by zero")
                try:
                    total = _ARITHMETIC[symbol](total, value)
                except OverflowError:
                    raise where.error("is too large a number") from None
            return total

        return _Node(evaluate, where)

    product = sum

    def compare(self, meta: Meta, children: list[Any]) -> _Node:
        left, symbol, right = children
        where = self._where(meta)
        if symbol in ("==", "!="):
            expected = symbol == "=="
            return _Node(
                lambda resolve: _equal(left.evaluate(resolve), right.evaluate(resolve)) == expected,
                where,
            )
        order = _ORDERINGS[symbol]

        def evaluate(resolve: Resolve) -> bool:
            first, second = left.evaluate(resolve), right.evaluate(resolve)
            kinds = _kind(first), _kind(second)
            if kinds in (("a number", "a number"), ("a string", "a string")):
                return order(first, second)
            raise where.error(
                f"compares {kinds[0]} with {kinds[1]}: only two numbers or two strings "
                "can be ordered"
            )

        return _Node(evaluate, where)

    def contains(self, meta: Meta, children: list[_Node]) -> _Node:
        return self._membership(meta, children, expected=True)

    def not_contains(self, meta: Meta, children: list[_Node]) -> _Node:
        return self._membership(meta, children, expected=False)

    def _membership(self, meta: Meta, children: list[_Node], expected: bool) -> _Node:
        item, container = children

        def evaluate(resolve: Resolve) -> bool:
            value = item.evaluate(resolve)
            found = _contains(container.evaluate(resolve), value, container.where, item.where)
            return found == expected

        return _Node(evaluate, self._where(meta))

    def negation(self, meta: Meta, children: list[_Node]) -> _Node:
        operand = children[0]
        return _Node(lambda resolve: not operand.boolean(resolve), self._where(meta))

    def and_test(self, meta: Meta, operands: list[_Node]) -> _Node:
        return _Node(
            lambda resolve: all(operand.boolean(resolve) for operand in operands),
            self._where(meta),
        )

    def or_test(self, meta: Meta, operands: list[_Node]) -> _Node:
        return _Node(
            lambda resolve: any(operand.boolean(resolve) for operand in operands),
            self._where(meta),
        )
