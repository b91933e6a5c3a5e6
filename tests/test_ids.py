"""Chunk names: built and parsed in one place."""

from __future__ import annotations

import pytest

from runtime import ids


@pytest.mark.parametrize(
    ("name", "item", "built"),
    [
        ("002", -1, "002"),
        ("002", 0, "002[0]"),
        ("002", 13, "002[13]"),
        ("output_002_faces", 3, "output_002_faces[3]"),
    ],
)
def test_a_chunk_name_splits_back_into_what_built_it(name: str, item: int, built: str) -> None:
    assert ids.chunk(name, item) == built
    assert ids.split_chunk(built) == (name, item)


@pytest.mark.parametrize("name", ["002", "a]", "[3]", "002[x]", "002[]", "002[-1]"])
def test_names_that_are_not_chunks_split_into_themselves(name: str) -> None:
    assert ids.split_chunk(name) == (name, -1)
