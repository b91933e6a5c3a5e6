"""Sample images for the face plugins, built at run time from images inside installed packages.

Nothing here is committed: every image comes from scikit-image's bundled data.

- ``astronaut``: Eileen Collins, NASA, public domain; one frontal face.
- ``camera``: the cameraman, CC0 (Lav Varshney); one face in three-quarter profile
  that the frontal detectors miss: a second real person for descriptor tests.
- ``chelsea`` (a cat), ``coffee``, ``rocket``: no faces.
- ``group6``: six crops of the astronaut's head, each scaled, mirrored and
  brightened differently, on a gray gradient; six faces for dlib HOG (upsample 0).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Array = NDArray[np.uint8]

# (scale, mirrored, brightness) of each head in group6, laid out in 2 rows of 3 cells.
_GROUP6 = (
    (1.0, False, 1.0),
    (1.15, True, 1.25),
    (1.3, False, 0.75),
    (1.0, True, 0.9),
    (1.2, False, 1.1),
    (1.4, True, 1.0),
)
_CELL = 360
_HEAD = (103, 17, 343, 257)  # left, top, right, bottom of the astronaut's head and shoulders


def _skimage(name: str) -> Array:
    import skimage.data

    image: Array = getattr(skimage.data, name)()
    return image


def _group6() -> Array:
    head = Image.fromarray(_skimage("astronaut")).crop(_HEAD)
    ramp = np.linspace(90, 170, 2 * _CELL).astype(np.uint8)
    canvas = np.repeat(np.repeat(ramp[:, None, None], 3 * _CELL, axis=1), 3, axis=2)
    for index, (scale, mirrored, brightness) in enumerate(_GROUP6):
        size = round(head.width * scale), round(head.height * scale)
        tile = np.asarray(head.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        if mirrored:
            tile = tile[:, ::-1]
        row, column = divmod(index, 3)
        top, left = row * _CELL + (_CELL - size[1]) // 2, column * _CELL + (_CELL - size[0]) // 2
        canvas[top : top + size[1], left : left + size[0]] = np.clip(
            tile * brightness, 0, 255
        ).astype(np.uint8)
    return canvas


def _camera() -> Array:
    return np.repeat(_skimage("camera")[:, :, None], 3, axis=2)


SAMPLES: dict[str, Callable[[], Array]] = {
    "astronaut": lambda: _skimage("astronaut"),
    "camera": _camera,
    "chelsea": lambda: _skimage("chelsea"),
    "coffee": lambda: _skimage("coffee"),
    "rocket": lambda: _skimage("rocket"),
    "group6": _group6,
}


def sample_path(name: str, dest_dir: str | os.PathLike[str]) -> Path:
    """Write sample ``name`` as ``dest_dir/NAME.png`` unless already there, and return its path."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    buffer = io.BytesIO()
    Image.fromarray(SAMPLES[name]()).save(buffer, format="PNG")
    path = Path(dest_dir) / f"{name}.png"
    if not (path.is_file() and path.read_bytes() == buffer.getvalue()):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_bytes(buffer.getvalue())
        os.replace(partial, path)
    return path


def export_samples(dest_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every sample as a PNG into ``dest_dir`` (skipping identical files); name -> path."""
    return {name: sample_path(name, dest_dir) for name in SAMPLES}
