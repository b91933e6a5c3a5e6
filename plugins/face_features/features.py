"""Face descriptors and landmarks, as plain functions.

Two descriptors, each labelled with its model and metric so that values of different
models are never compared by mistake:

- ``sface`` (default, :mod:`.sface`): SFace, 128-D, unit length, cosine similarity at
  or above 0.363 means the same person; aligned (:mod:`.align`) from dlib's 5 landmarks
  by default, or from the detector's keypoints (``align="keypoints"``). About 25 ms a
  face. Landmarks are the default because BlazeFace's keypoints are coarse on small
  faces: on the collage's 88 px faces an embedding aligned from them scored 0.16-0.29
  against the same face aligned from landmarks (0.83-0.97 on larger faces), and the 5
  landmarks are computed for the output anyway.
- ``dlib``: ``dlib_face_recognition_resnet_model_v1.dat``, 128-D, released into the
  public domain by dlib's author; Euclidean distance under 0.6 usually means the same
  person. About 75-100 ms a face (dlib-bin is built without BLAS).

dlib's files come from the ``face-recognition-models`` package, located without
importing it (its ``__init__`` needs ``pkg_resources``):

- ``shape_predictor_5_face_landmarks.dat`` (dlib, CC0): the default landmarks; dlib's
  descriptor and the SFace fallback alignment always use these, so the descriptor does
  not depend on ``landmarks``.
- ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose terms
  exclude commercial use; only loaded when 68 landmarks are asked for.

Models load once per process: the defaults (SFace, 5 landmarks) in :func:`load_models`,
which the plugin's setup hook calls; the others on first use. dlib calls run under a
lock (a dlib network instance is not thread-safe); an onnxruntime session is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from numpy.typing import NDArray

from runtime.imaging import clip_box, load_image
from runtime.packages import package_folder

from . import align, sface

LANDMARK_MODELS = {
    "5": "shape_predictor_5_face_landmarks.dat",
    "68": "shape_predictor_68_face_landmarks.dat",
}
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTORS: dict[str, dict[str, Any]] = {
    "sface": {
        "descriptor_model": sface.MODEL_ID,
        "descriptor_metric": "cosine",
        "descriptor_threshold": sface.THRESHOLD,
    },
    "dlib": {
        "descriptor_model": "dlib-resnet-v1",
        "descriptor_metric": "euclidean",
        "descriptor_threshold": 0.6,
    },
}
"""What each descriptor's values are: model, metric, and the same-person threshold
(cosine: similarity at or above it; euclidean: distance below it)."""
_lock = threading.Lock()


def models_dir() -> Path:
    """The ``models`` folder of face-recognition-models, found without importing it."""
    return package_folder("face_recognition_models") / "models"


@cache
def _shape_predictor(landmarks: str) -> Any:
    return dlib.shape_predictor(str(models_dir() / LANDMARK_MODELS[landmarks]))


@cache
def _descriptor_model() -> Any:
    return dlib.face_recognition_model_v1(str(models_dir() / DESCRIPTOR_MODEL))


def load_models(landmarks: str = "5", descriptor: str = "sface") -> None:
    """Load a descriptor's model and the landmark models now (they otherwise load on
    first use)."""
    with _lock:
        if descriptor == "dlib":
            _descriptor_model()
        else:
            sface.session()
        _shape_predictor("5")
        _shape_predictor(landmarks)


def _check(name: str, value: str, allowed: Mapping[str, Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


ALIGN_FROM = ("landmarks", "keypoints")


def _sface_descriptor(
    rgb: NDArray[np.uint8],
    face: Mapping[str, Any],
    five: Sequence[Sequence[int]],
    align_from: str,
) -> list[float]:
    keypoints = face.get("keypoints") if align_from == "keypoints" else None
    points = align.from_keypoints(keypoints) if keypoints else align.from_dlib_five(five)
    return [float(v) for v in sface.embed(align.align(rgb, *points))]


def describe(
    rgb: NDArray[np.uint8],
    faces: Sequence[Mapping[str, Any]],
    landmarks: str = "5",
    between_faces: Callable[[], None] | None = None,
    descriptor: str = "sface",
    align_from: str = "landmarks",
) -> list[dict[str, Any]]:
    """Descriptor and landmarks for each face (``face_id``, ``bbox``, optional
    ``keypoints``) of an RGB image, in order; SFace aligns from ``align_from`` (the
    landmarks also when a face has no keypoints)."""
    _check("landmarks", landmarks, LANDMARK_MODELS)
    _check("descriptor", descriptor, DESCRIPTORS)
    _check("align", align_from, dict.fromkeys(ALIGN_FROM))
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
            if descriptor == "dlib":
                values = [float(v) for v in _descriptor_model().compute_face_descriptor(rgb, five)]
        if descriptor == "sface":
            values = _sface_descriptor(rgb, face, [[p.x, p.y] for p in five.parts()], align_from)
        results.append(
            {
                "face_id": face["face_id"],
                "descriptor": values,
                **DESCRIPTORS[descriptor],
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
    descriptor: str = "sface",
    align_from: str = "landmarks",
) -> list[dict[str, Any]]:
    """:func:`describe` for the faces of an image file."""
    return describe(load_image(path), faces, landmarks, between_faces, descriptor, align_from)
