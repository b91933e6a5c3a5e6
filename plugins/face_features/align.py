"""Align a face to SFace's 112x112 input: a similarity transform from a few points.

The target is the ArcFace 5-point template that OpenCV's ``FaceRecognizerSF.alignCrop``
warps to (``modules/objdetect/src/face_recognize.cpp``), in image order: the eye on
the image's left, the other eye, the nose tip, the mouth corner on the image's left,
the other mouth corner. The points mapped onto it:

- detector keypoints (``right_eye``, ``left_eye``, ``nose``, ``mouth``): the two eyes
  onto the template's eyes, ``nose`` onto the nose tip, ``mouth`` (its centre) onto the
  midpoint of the template's mouth corners; ears are not used. ``nose`` and ``mouth``
  are optional.
- dlib's 5-point landmarks (two corners of each eye, the base of the nose): the two
  eye centres onto the template's eyes. The base of the nose is not the template's
  nose tip, so it is left out; two points fix a similarity exactly, and eye centres
  alone gave cosine 0.97 between the astronaut and her mirrored, rescaled copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

SIZE = 112
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # eye on the image's left
        [73.5318, 51.5014],  # eye on the image's right
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth corner on the image's left
        [70.7299, 92.2041],  # mouth corner on the image's right
    ],
    dtype=np.float32,
)
_MOUTH_CENTRE = TEMPLATE[3:].mean(axis=0)

Points = NDArray[np.float32]


def _eyes_in_image_order(a: Points, b: Points, below: Points | None) -> tuple[Points, Points]:
    """The eye that belongs on the template's left first.

    Names do not settle it (MediaPipe's "right eye" is the subject's, other ports name
    them as seen), so with a point below the eyes (mouth or nose) the pair is ordered
    so that eye, eye, mouth turn the same way as in the template, whatever the face's
    tilt; without one, by x (upright faces).
    """
    if below is None:
        return (a, b) if a[0] <= b[0] else (b, a)
    cross = (b[0] - a[0]) * (below[1] - a[1]) - (b[1] - a[1]) * (below[0] - a[0])
    return (a, b) if cross > 0 else (b, a)


def from_keypoints(keypoints: Mapping[str, Sequence[float]]) -> tuple[Points, Points]:
    """(image points, template points) from a detector's named keypoints."""

    def point(name: str) -> Points | None:
        value = keypoints.get(name)
        return None if value is None else np.asarray(value[:2], dtype=np.float32)

    nose, mouth = point("nose"), point("mouth")
    first, second = _eyes_in_image_order(
        np.asarray(keypoints["right_eye"][:2], dtype=np.float32),
        np.asarray(keypoints["left_eye"][:2], dtype=np.float32),
        mouth if mouth is not None else nose,
    )
    source, target = [first, second], [TEMPLATE[0], TEMPLATE[1]]
    if nose is not None:
        source.append(nose)
        target.append(TEMPLATE[2])
    if mouth is not None:
        source.append(mouth)
        target.append(_MOUTH_CENTRE)
    return np.array(source, np.float32), np.array(target, np.float32)


def from_dlib_five(points: Sequence[Sequence[float]]) -> tuple[Points, Points]:
    """(image points, template points) from dlib's 5 landmarks: corners 0-1 are one
    eye, 2-3 the other, 4 the base of the nose (used only to order the eyes)."""
    corners = np.asarray(points, dtype=np.float32)
    first, second = _eyes_in_image_order(
        corners[0:2].mean(axis=0), corners[2:4].mean(axis=0), corners[4]
    )
    return np.array([first, second], np.float32), TEMPLATE[:2].copy()


def align(rgb: NDArray[np.uint8], source: Points, target: Points) -> NDArray[np.uint8]:
    """The 112x112 face: the least-squares similarity from ``source`` to ``target``.

    The RANSAC threshold is larger than any face, so every point is an inlier and the
    Levenberg-Marquardt refinement gives the least-squares fit over all of them (with
    two points, the exact one). Outside the image is black, as in OpenCV's alignCrop.
    """
    matrix, _ = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=1e6
    )
    if matrix is None:
        raise ValueError("face points do not define an alignment (coincident points?)")
    aligned = cv2.warpAffine(
        rgb, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(aligned, dtype=np.uint8)
