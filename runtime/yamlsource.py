"""Load YAML safely into plain Python data, remembering where every node is.

Bounded in time and memory: files are capped in size, aliases of collections
(the stuff of "billion laughs" bombs) are refused before anything expands
them, and nesting is capped in depth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from runtime.problems import ManifestError, Problem

MAX_BYTES = 1 << 20
MAX_DEPTH = 64

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Located:
    """Plain data of a YAML document and the 1-based position of each node."""

    path: str
    data: Any
    values: dict[Key, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Key, tuple[int, int]] = field(default_factory=dict)

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
    elif len(text.encode()) > max_bytes:
        raise _fail(name, f"file is larger than {max_bytes} bytes")
    if not text.strip():
        raise _fail(name, "file is empty")
    try:
        node = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise _marked(name, exc) from None
    except YAMLError as exc:
        raise _fail(name, f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise _fail(name, f"nesting deeper than {MAX_DEPTH} levels") from None
    located = Located(name, None)
    data = _plain(node, (), located, set())
    return Located(name, data, located.values, located.keys)


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


def _plain(node: Any, key: Key, located: Located, seen: set[int]) -> Any:
    """Convert ruamel's round-trip nodes into plain data, recording positions.

    A collection met twice is an alias: refused, since expanding aliases is how
    "billion laughs" bombs blow up memory.
    """
    if isinstance(node, CommentedMap | CommentedSeq):
        if id(node) in seen:
            raise ManifestError(
                [located.problem(key, "YAML aliases of mappings or lists are not allowed")]
            )
        if len(key) >= MAX_DEPTH:
            raise ManifestError([located.problem(key, f"nesting deeper than {MAX_DEPTH} levels")])
        seen.add(id(node))
    if isinstance(node, CommentedMap):
        result = {}
        for k in node:
            plain_key = k if isinstance(k, str) else _key_text(k)
            child = (*key, plain_key)
            kline, kcol = node.lc.key(k)
            vline, vcol = node.lc.value(k)
            located.keys[child] = (kline + 1, kcol + 1)
            located.values[child] = (vline + 1, vcol + 1)
            result[plain_key] = _plain(node[k], child, located, seen)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            line, column = node.lc.item(i)
            located.values[(*key, i)] = (line + 1, column + 1)
            items.append(_plain(item, (*key, i), located, seen))
        return items
    return _scalar(node)


def _key_text(key: Any) -> str:
    """A non-string mapping key as JSON would spell it (JSON keys are strings)."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(_scalar(key))


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return str(value)
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
