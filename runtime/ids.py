"""The seed report's names for every step, value and edge of a pipeline.

For step ``001`` running ``face_detection``: ``face_detection_input_001``,
``face_detection_output_001``, ``output_001_faces_array``; the value fed to
port ``faces_array`` of step ``002`` is ``input_002_faces_array`` and the
edge between them ``output_001_faces_array -> input_002_faces_array``.
Pipeline inputs are ``pipeline_input_NAME``. Step IDs hold no underscore, so
each name splits back unambiguously.
"""

from __future__ import annotations


def input_id(task: str, step_id: str) -> str:
    """ID of the whole input record of a step execution."""
    return f"{task}_input_{step_id}"


def output_id(task: str, step_id: str) -> str:
    """ID of the whole output record of a step execution."""
    return f"{task}_output_{step_id}"


def output_value(step_id: str, port: str) -> str:
    """ID of the value a step produced on ``port``."""
    return f"output_{step_id}_{port}"


def input_value(step_id: str, port: str) -> str:
    """ID of the value a step consumed on ``port``."""
    return f"input_{step_id}_{port}"


def pipeline_input(name: str) -> str:
    """ID of a value given to the run."""
    return f"pipeline_input_{name}"


def edge(source: str, target: str) -> str:
    """The printed form of a data-flow edge."""
    return f"{source} -> {target}"


def chunk(name: str, item: int) -> str:
    """``name`` for one foreach chunk (``002[3]``, ``output_002_x[3]``); ``name`` itself
    for a whole step (``item`` < 0)."""
    return name if item < 0 else f"{name}[{item}]"


def split_chunk(name: str) -> tuple[str, int]:
    """The inverse of :func:`chunk`: ``("002", 3)`` for ``002[3]``, ``(name, -1)`` for a
    name that is not a chunk's."""
    if name.endswith("]"):
        base, _, index = name[:-1].rpartition("[")
        if base and index.isdigit():
            return base, int(index)
    return name, -1
