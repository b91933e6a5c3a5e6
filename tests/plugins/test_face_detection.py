"""face_detection: dlib HOG and OpenCV Haar on the package sample images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dlib")
pytest.importorskip("cv2")
pytest.importorskip("PIL")

from runtime.imaging import ImageError

pytestmark = pytest.mark.faces

# The astronaut's true face box [x, y, w, h], from dlib's 68-point landmarks (jaw line
# x 179..272, brow top y 87, chin y 178), determined once and checked by eye on the image.
ASTRONAUT_FACE = (179, 87, 94, 92)
NO_FACES = ("chelsea", "coffee", "rocket")


def iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def detector(plugin: Any) -> Any:
    module = plugin("face_detection", "detector")
    module.load_models()
    return module


@pytest.mark.parametrize("name", ["hog", "haar"])
def test_astronaut_has_one_face(detector: Any, samples: dict[str, Path], name: str) -> None:
    result = detector.detect_faces(samples["astronaut"], name)
    assert result["image"] == {"width": 512, "height": 512}
    (face,) = result["faces_array"]
    assert face["face_id"] == 0
    assert iou(face["bbox"], ASTRONAUT_FACE) > 0.5
    assert 0.5 < face["confidence"] <= 1


@pytest.mark.parametrize("name", ["hog", "haar"])
@pytest.mark.parametrize("sample", NO_FACES)
def test_no_faces(detector: Any, samples: dict[str, Path], name: str, sample: str) -> None:
    assert detector.detect_faces(samples[sample], name)["faces_array"] == []


@pytest.mark.parametrize("name", ["hog", "haar"])  # Haar also finds all six on this collage
def test_group6_has_six_faces_in_order(detector: Any, samples: dict[str, Path], name: str) -> None:
    faces = detector.detect_faces(samples["group6"], name)["faces_array"]
    assert [f["face_id"] for f in faces] == list(range(6))
    corners = [tuple(f["bbox"][:2]) for f in faces]
    assert corners == sorted(corners)
    assert all(0 < f["confidence"] <= 1 for f in faces)


def test_hog_confidence_is_the_logistic_of_the_svm_margin(
    detector: Any, samples: dict[str, Path]
) -> None:
    import dlib

    from runtime.imaging import load_image

    _, scores, _ = dlib.get_frontal_face_detector().run(load_image(samples["astronaut"]), 0, 0.0)
    (face,) = detector.detect_faces(samples["astronaut"], "hog")["faces_array"]
    assert face["confidence"] == pytest.approx(1 / (1 + math.exp(-scores[0])), abs=1e-4)


@pytest.mark.parametrize("name", ["hog", "haar"])
def test_min_confidence_is_a_cut_off(detector: Any, samples: dict[str, Path], name: str) -> None:
    everything = detector.detect_faces(samples["astronaut"], name, min_confidence=0.01)
    some = detector.detect_faces(samples["astronaut"], name, min_confidence=0.8)["faces_array"]
    assert all(face["confidence"] >= 0.8 for face in some)
    boxes = [face["bbox"] for face in everything["faces_array"]]
    assert all(face["bbox"] in boxes for face in some)
    with pytest.raises(ValueError, match="min_confidence"):
        detector.detect_faces(samples["astronaut"], name, min_confidence=1.0)


@pytest.mark.parametrize("variant", ["gray", "rgba", "gray16", "exif"])
def test_astronaut_variants_still_have_one_face(
    detector: Any, astronaut_variants: dict[str, Path], variant: str
) -> None:
    (face,) = detector.detect_faces(astronaut_variants[variant])["faces_array"]
    assert iou(face["bbox"], ASTRONAUT_FACE) > 0.5


def test_boxes_are_clipped_to_the_image(detector: Any, samples: dict[str, Path]) -> None:
    from runtime.imaging import load_image

    corner = load_image(samples["astronaut"])[60:200, 150:260]  # the face touches two edges
    for face in detector.detect(corner):
        x, y, w, h = face["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 110 and y + h <= 140


def test_bad_images_are_refused(detector: Any, bad_images: list[Path]) -> None:
    for path in bad_images:
        with pytest.raises(ImageError) as caught:
            detector.detect_faces(path)
        assert path.name in str(caught.value) and "\n" not in str(caught.value)


def test_bad_arguments(detector: Any, samples: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        detector.detect_faces(samples["astronaut"], "mmod")
    with pytest.raises(ValueError, match="upsample"):
        detector.detect_faces(samples["astronaut"], "hog", 3)


def test_hook_outputs_match_the_manifest(
    run_task: Any, samples: dict[str, Path], context: Any
) -> None:
    outputs = run_task("face_detection", {"image_path": str(samples["group6"])}, context)
    assert len(outputs["faces_array"]) == 6
    haar = run_task(
        "face_detection", {"image_path": str(samples["astronaut"]), "detector": "haar"}, context
    )
    assert len(haar["faces_array"]) == 1
