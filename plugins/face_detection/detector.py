"""Face detection with BlazeFace full-range (default), dlib HOG or OpenCV Haar.

Models load once per process (BlazeFace in the plugin's setup hook, the others on
first use), under a lock that also guards every detection (no detector object here
is safe to share between threads).

``confidence`` is a logistic function of the detector's raw score, monotone, in (0, 1):

- BlazeFace: the model's own score, the sigmoid of its logit. Measured: true faces on
  the samples (also shrunk to 14 px wide, or tilted up to 90 degrees) 0.66 and up;
  the best false candidate on scikit-image's no-face images 0.27.
- HOG: ``1 / (1 + exp(-margin))``, ``margin`` the SVM score of ``run(img, upsample, t)``
  (0.5 is dlib's own decision boundary, margin 0).
- Haar: ``1 / (1 + exp(-(weight - 4)))``, ``weight`` the last-stage level weight of
  ``detectMultiScale3(..., outputRejectLevels=True)``; 4 is a measured midpoint
  (true faces on the samples 4.9 to 8.0, false hits on textures 1.9 to 3.5).

Faces below ``min_confidence`` (default 0.6: HOG margin 0.41, Haar weight 4.41) are
dropped; dlib's default (margin 0) lets through a helmet on the astronaut at 0.53.
BlazeFace drops anchors under it before merging overlapping ones.
"""

from __future__ import annotations

import math
import threading
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np
from numpy.typing import NDArray

from runtime.imaging import clip_box, load_image, max_pixels

from . import blazeface

DETECTORS = ("blazeface", "hog", "haar")
DEFAULT = "blazeface"
MAX_UPSAMPLE = 2
HAAR_MIDPOINT = 4.0
MIN_CONFIDENCE = 0.6  # measured: true faces 0.69 and up, false hits 0.54 and below
_lock = threading.Lock()

# x, y, w, h (may reach outside the image), confidence, keypoints (BlazeFace only)
Box = tuple[int, int, int, int, float, dict[str, list[float]] | None]


@cache
def _hog() -> Any:
    return dlib.get_frontal_face_detector()


@cache
def _haar() -> Any:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")
    return cascade


def load_default() -> None:
    """Load the default detector's model now (the others stay lazy)."""
    with _lock:
        blazeface.interpreter()


def load_models() -> None:
    """Load every detector now (they otherwise load on first use)."""
    with _lock:
        blazeface.interpreter()
        _hog()
        _haar()


def _logistic(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _hog_boxes(rgb: NDArray[np.uint8], upsample: int, min_confidence: float) -> list[Box]:
    margin = math.log(min_confidence / (1.0 - min_confidence))  # the logistic's inverse
    rects, scores, _ = _hog().run(rgb, upsample, margin)
    return [
        (r.left(), r.top(), r.width(), r.height(), _logistic(score), None)
        for r, score in zip(rects, scores, strict=True)
    ]


def _haar_boxes(rgb: NDArray[np.uint8], upsample: int, min_confidence: float) -> list[Box]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    factor = 2**upsample
    if factor > 1:
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    boxes, _levels, weights = _haar().detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30), outputRejectLevels=True
    )
    found: list[Box] = []
    for box, weight in zip(boxes, np.ravel(weights), strict=True):
        x, y, w, h = (round(int(v) / factor) for v in box)
        confidence = _logistic(float(weight) - HAAR_MIDPOINT)
        if confidence >= min_confidence:
            found.append((x, y, w, h, confidence, None))
    return found


def _blazeface_boxes(rgb: NDArray[np.uint8], upsample: int, min_confidence: float) -> list[Box]:
    return list(blazeface.detect(rgb, min_confidence))


_FINDERS = {"blazeface": _blazeface_boxes, "hog": _hog_boxes, "haar": _haar_boxes}


def detect(
    rgb: NDArray[np.uint8],
    detector: str = DEFAULT,
    upsample: int = 0,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[dict[str, Any]]:
    """Faces in an RGB image as ``{face_id, bbox: [x, y, w, h], confidence}``, left to right,
    plus ``keypoints`` (name -> [x, y] in pixels, unclipped) from BlazeFace.

    Boxes are clipped to the image; ``face_id`` numbers faces in order of ``(x, y)``.
    ``upsample`` (hog and haar) doubles the image that many times first, to find smaller
    faces. Faces below ``min_confidence`` (strictly between 0 and 1) are dropped.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; use one of {', '.join(DETECTORS)}")
    height, width = rgb.shape[:2]
    if not 0 <= upsample <= MAX_UPSAMPLE:
        raise ValueError(f"upsample must be 0..{MAX_UPSAMPLE}, got {upsample}")
    if upsample and detector == "blazeface":
        # Doubling changes nothing: BlazeFace sees the whole image at 192x192. Tiling the
        # image instead found 17/18 faces 50 px wide in a 2160x1440 image at 50 model
        # calls, but also a false box on rocket: not offered.
        raise ValueError("upsample applies to hog and haar; blazeface takes upsample 0")
    if width * height * 4**upsample > max_pixels():
        raise ValueError(f"upsample {upsample} of a {width}x{height} image exceeds the pixel limit")
    if not 0 < min_confidence < 1:
        raise ValueError(f"min_confidence must lie strictly between 0 and 1, got {min_confidence}")
    with _lock:
        boxes = _FINDERS[detector](rgb, upsample, min_confidence)
    faces = []
    for x, y, w, h, confidence, keypoints in boxes:
        with suppress(ValueError):  # a box wholly outside the image
            faces.append((clip_box((x, y, w, h), width, height), round(confidence, 4), keypoints))
    faces.sort(key=lambda face: face[:2])
    items = []
    for index, ((x, y, w, h), confidence, keypoints) in enumerate(faces):
        item: dict[str, Any] = {"face_id": index, "bbox": [x, y, w, h], "confidence": confidence}
        if keypoints is not None:
            item["keypoints"] = keypoints
        items.append(item)
    return items


def detect_faces(
    path: str | Path,
    detector: str = DEFAULT,
    upsample: int = 0,
    min_confidence: float = MIN_CONFIDENCE,
) -> dict[str, Any]:
    """The task's outputs for an image file: ``faces_array`` and ``image`` (width, height)."""
    rgb = load_image(path)
    return {
        "faces_array": detect(rgb, detector, upsample, min_confidence),
        "image": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
    }
