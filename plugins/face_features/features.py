"""Face descriptors and landmarks, as plain functions, with dlib's models.

Model files come from the ``face-recognition-models`` package, located without
importing it (its ``__init__`` needs ``pkg_resources``):

- ``dlib_face_recognition_resnet_model_v1.dat``: the 128-D descriptor, released into
  the public domain by dlib's author; one person's faces usually lie closer than
  0.6 (Euclidean distance), different people's farther.
- ``shape_predictor_5_face_landmarks.dat`` (dlib, CC0): the default landmarks; the
  descriptor is always computed from these, so it does not depend on ``landmarks``.
- ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose terms
  exclude commercial use; only loaded when 68 landmarks are asked for.

Models load once per process, on first use, under a lock that also serializes
inference (a dlib network instance is not thread-safe).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from numpy.typing import NDArray

from runtime.imaging import clip_box, load_image

LANDMARK_MODELS = {
    "5": "shape_predictor_5_face_landmarks.dat",
    "68": "shape_predictor_68_face_landmarks.dat",
}
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
_lock = threading.Lock()


def models_dir() -> Path:
    """The ``models`` folder of face-recognition-models, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package 'face_recognition_models' is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@cache
def _shape_predictor(landmarks: str) -> Any:
    return dlib.shape_predictor(str(models_dir() / LANDMARK_MODELS[landmarks]))


@cache
def _descriptor_model() -> Any:
    return dlib.face_recognition_model_v1(str(models_dir() / DESCRIPTOR_MODEL))


def load_models(landmarks: str = "5") -> None:
    """Load the descriptor model and a landmark model now (they otherwise load on first use)."""
    with _lock:
        _descriptor_model()
        _shape_predictor("5")
        _shape_predictor(landmarks)


def describe(
    rgb: NDArray[np.uint8],
    faces: Sequence[Mapping[str, Any]],
    landmarks: str = "5",
    between_faces: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Descriptor and landmarks for each face (``face_id``, ``bbox``) of an RGB image, in order."""
    if landmarks not in LANDMARK_MODELS:
        raise ValueError(
            f"landmarks must be one of {', '.join(LANDMARK_MODELS)}, got {landmarks!r}"
        )
    height, width = rgb.shape[:2]
    results = []
    for face in faces:
        if between_faces is not None:
            between_faces()
        x, y, w, h = clip_box(face["bbox"], width, height)
        rect = dlib.rectangle(x, y, x + w - 1, y + h - 1)
        with _lock:
            five = _shape_predictor("5")(rgb, rect)
            shape = five if landmarks == "5" else _shape_predictor(landmarks)(rgb, rect)
            descriptor = _descriptor_model().compute_face_descriptor(rgb, five)
        results.append(
            {
                "face_id": face["face_id"],
                "descriptor": [float(v) for v in descriptor],
                "landmarks": [[int(p.x), int(p.y)] for p in shape.parts()],
                "landmark_model": landmarks,
            }
        )
    return results


def face_features(
    path: str | Path,
    faces: Sequence[Mapping[str, Any]],
    landmarks: str = "5",
    between_faces: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`describe` for the faces of an image file."""
    return describe(load_image(path), faces, landmarks, between_faces)
