"""Load YAML safely into plain Python data, remembering where every node is.

Bounded in time and memory, and anything refused is one positioned problem
(issue 13): a file holds at most :data:`MAX_BYTES`; collections nest at most
:data:`MAX_DEPTH` deep, checked as each one opens (flow brackets as the scanner
meets them, before ruamel's look-ahead for simple keys turns thousands of ``[``
into seconds); aliases of collections (the stuff of "billion laughs" bombs) are
refused, and aliases of scalars count in full towards :data:`MAX_EXPANDED`.
What a manifest has no use for is refused rather than guessed at: tags
(``!!binary``, ``!!python/...``, ``!foo``), merge keys (``<<``), integers beyond
64 bits, lone surrogates, YAML versions other than 1.2. A plain scalar is null,
a boolean, an integer, a float, or else text as written (dates stay strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.scanner import RoundTripScanner
from ruamel.yaml.tokens import DirectiveToken

from runtime.problems import ManifestError, Problem

MAX_BYTES = 1 << 20
"""Largest file read (1 MiB). ruamel's pure-Python reader takes 4-10 s for a MiB of
ordinary YAML here, and over 30 s for a MiB of dense flow brackets."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists; real manifests stay under 15 levels."""
MAX_EXPANDED = 4 * MAX_BYTES
"""Largest document once aliases are expanded: characters of every string (keys
included) plus one per node. A file without aliases cannot reach it, while 1,500
aliases of a 100 KB string (150 MB stored at install before this bound) are
refused at the alias that crosses it."""
INT_BITS = 64
"""Integers are signed 64-bit, as SQLite stores them; MongoDB (BSON) refuses larger ones."""
_INT_TEXT = 100
"""Longest integer literal read: a 64-bit integer takes at most 66 characters (0b...);
longer text is refused before Python converts it (over 4,300 digits it raises)."""
_INT_LIMIT = 1 << (INT_BITS - 1)
_CORE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str")}
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Located:
    """Plain data of a YAML document and the 1-based position of each node."""

    path: str
    data: Any
    values: dict[Key, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Key, tuple[int, int]] = field(default_factory=dict)
    lines: tuple[str, ...] = field(default=(), repr=False)
    """The document's text, by line (to place problems inside a one-line scalar)."""

    def where(self, key: Key, *, at_key: bool = False) -> tuple[int, int]:
        """Position of the node at ``key`` (or of its mapping key), else its nearest parent."""
        table = self.keys if at_key else self.values
        while key:
            if key in table:
                return table[key]
            if key in self.values:
                return self.values[key]
            key = key[:-1]
        return (1, 1)

    def inside(self, key: Key, offset: int) -> tuple[int, int]:
        """Position of character ``offset`` (1-based) of the string at ``key``, when the
        string is written on one line as it is (plain or quoted, without escapes); else the
        string's own position."""
        line, column = self.where(key)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        value = self._value(key)
        quoted = text[column - 1 : column] in ("'", '"')
        written = text[column - 1 + quoted : column - 1 + quoted + len(value)]
        if isinstance(value, str) and written == value:
            return line, column + quoted + offset - 1
        return line, column

    def _value(self, key: Key) -> Any:
        node = self.data
        for part in key:
            node = node[part]
        return node

    def problem_inside(self, key: Key, offset: int | None, message: str) -> Problem:
        """An error at character ``offset`` of the string at ``key`` (see :meth:`inside`)."""
        line, column = self.inside(key, offset) if offset is not None else self.where(key)
        return Problem(self.path, line, column, "error", message)

    def problem(
        self, key: Key, message: str, *, at_key: bool = False, warning: bool = False
    ) -> Problem:
        """A problem positioned at the node ``key``."""
        line, column = self.where(key, at_key=at_key)
        return Problem(self.path, line, column, "warning" if warning else "error", message)


def load_yaml(path: str | Path, text: str | None = None, *, max_bytes: int = MAX_BYTES) -> Located:
    """Load one YAML document from ``path`` (or from ``text``), raising :class:`ManifestError`."""
    name = str(path)
    if text is None:
        text = _read_text(name, max_bytes)
    elif len(text.encode(errors="surrogatepass")) > max_bytes:
        raise _fail(name, f"file is larger than {max_bytes} bytes")
    if not text.strip():
        raise _fail(name, "file is empty")
    yaml = YAML(typ="rt")
    yaml.Scanner, yaml.Composer = _Scanner, _Composer
    try:
        node = yaml.load(text)
    except _Refused as exc:
        raise ManifestError([Problem(name, exc.line, exc.column, "error", exc.message)]) from None
    except MarkedYAMLError as exc:
        raise _marked(name, exc) from None
    except YAMLError as exc:
        raise _fail(name, f"invalid YAML: {_one_line(str(exc))}") from None
    located = Located(name, None)
    data = _Plain(located).convert(node, ())
    return Located(name, data, located.values, located.keys, tuple(text.splitlines()))


class _Refused(Exception):
    """YAML that wtm does not read, at a 0-based ruamel mark."""

    def __init__(self, message: str, mark: StreamMark) -> None:
        super().__init__(message)
        self.message = message
        self.line, self.column = mark.line + 1, mark.column + 1


def _nesting(mark: StreamMark) -> _Refused:
    return _Refused(f"nesting deeper than {MAX_DEPTH} levels", mark)


class _Scanner(RoundTripScanner):
    """ruamel's scanner, refusing deep flow nesting and YAML versions other than 1.2."""

    def fetch_flow_collection_start(self, token_class: Any, to_push: str) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _nesting(self.reader.get_mark())
        super().fetch_flow_collection_start(token_class, to_push)

    def scan_directive(self) -> Any:
        token = super().scan_directive()
        if isinstance(token, DirectiveToken) and token.name == "YAML" and token.value != (1, 2):
            version = ".".join(map(str, token.value))
            raise _Refused(f"YAML {version} is not read; wtm reads YAML 1.2", token.start_mark)
        return token


class _Composer(Composer):
    """ruamel's composer, checking each event before a node is built from it.

    Refuses tags, merge keys, nesting deeper than :data:`MAX_DEPTH`, long integers,
    lone surrogates and documents that expand past :data:`MAX_EXPANDED`. A plain scalar that
    resolves to anything but null, a boolean, a number or text (a date, ``=``)
    stays text.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # legal YAML; the warning is many lines on stderr
        self.expanded = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            anchored = self.anchors.get(event.anchor)  # None: ruamel's error follows
            text = anchored.value if isinstance(anchored, ScalarNode) else ""
        else:
            self._check(event, parent, index)
            text = event.value if isinstance(event, ScalarEvent) else ""
        self.expanded += 1 + len(text)  # one per node and per character, however repeated
        if self.expanded > MAX_EXPANDED:
            message = f"document larger than {MAX_EXPANDED} characters once aliases are expanded"
            raise _Refused(message, event.start_mark)
        return super().compose_node(parent, index)

    def _check(self, event: Any, parent: Any, index: Any) -> None:
        tag = event.ctag
        if tag is not None:
            written = f"{tag.handle or ''}{tag.suffix}"
            raise _Refused(f"YAML tags are not allowed (found {written})", event.start_mark)
        if isinstance(event, CollectionStartEvent) and self.depth >= MAX_DEPTH:
            raise _nesting(event.start_mark)
        plain = isinstance(event, ScalarEvent) and event.style is None
        if plain and event.value == "<<" and index is None and isinstance(parent, MappingNode):
            raise _Refused("YAML merge keys (<<) are not allowed", event.start_mark)

    def compose_scalar_node(self, anchor: Any) -> ScalarNode:
        node: ScalarNode = super().compose_scalar_node(anchor)
        text, tag = node.value, node.tag
        if not text.isascii() and not _encodable(text):
            message = "text with a lone surrogate (an escape like \\ud800) cannot be printed"
            raise _Refused(message, node.start_mark)
        if tag not in _CORE_TAGS:
            node.tag = _STR_TAG
        elif tag == _INT_TAG and len(text) > _INT_TEXT:
            message = f"integer written with more than {_INT_TEXT} characters"
            raise _Refused(message, node.start_mark)
        return node


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _read_text(name: str, max_bytes: int) -> str:
    try:
        with open(name, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except IsADirectoryError:
        raise _fail(name, "is a directory, not a manifest file") from None
    except OSError as exc:
        raise _fail(name, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise _fail(name, f"file is larger than {max_bytes} bytes")
    if b"\0" in raw:
        raise _fail(name, "binary file, not YAML text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(name, f"not UTF-8 text (byte {exc.start})") from None


class _Plain:
    """Converts ruamel's round-trip nodes into plain data, recording positions.

    A collection met twice is an alias: refused, since expanding aliases is how
    "billion laughs" bombs blow up memory (aliases of scalars are bounded as they
    are composed).
    """

    def __init__(self, located: Located) -> None:
        self.located = located
        self.seen: set[int] = set()

    def convert(self, node: Any, key: Key) -> Any:
        if isinstance(node, CommentedMap | CommentedSeq):
            if id(node) in self.seen:
                raise self._refuse(key, "YAML aliases of mappings or lists are not allowed")
            self.seen.add(id(node))
        if isinstance(node, CommentedMap):
            return self._mapping(node, key)
        if isinstance(node, CommentedSeq):
            items = []
            for i, item in enumerate(node):
                line, column = node.lc.item(i)
                self.located.values[(*key, i)] = (line + 1, column + 1)
                items.append(self.convert(item, (*key, i)))
            return items
        value = _scalar(node)
        if type(value) is int and not -_INT_LIMIT <= value < _INT_LIMIT:
            raise self._refuse(key, f"integer does not fit in {INT_BITS} bits")
        return value

    def _mapping(self, node: CommentedMap, key: Key) -> dict[str, Any]:
        result = {}
        for k in node:
            plain_key = k if isinstance(k, str) else _key_text(k)
            child = (*key, plain_key)
            kline, kcol = node.lc.key(k)
            vline, vcol = node.lc.value(k)
            self.located.keys[child] = (kline + 1, kcol + 1)
            self.located.values[child] = (vline + 1, vcol + 1)
            result[plain_key] = self.convert(node[k], child)
        return result

    def _refuse(self, key: Key, message: str) -> ManifestError:
        return ManifestError([self.located.problem(key, message)])


def _key_text(key: Any) -> str:
    """A non-string mapping key as JSON would spell it (JSON keys are strings)."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(_scalar(key))


def _scalar(value: Any) -> Any:
    """ruamel's scalar (an int or str subclass keeping its style) as the plain type."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _marked(name: str, exc: MarkedYAMLError) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    text = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
    return ManifestError([Problem(name, line, column, "error", f"invalid YAML: {_one_line(text)}")])


def _fail(name: str, message: str) -> ManifestError:
    return ManifestError([Problem(name, 1, 1, "error", message)])


def _one_line(text: str) -> str:
    return " ".join(text.split())
