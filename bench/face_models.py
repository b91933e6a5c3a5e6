"""Time the face plugins' model loads and per-face costs on the package sample images.

Run from the project folder: ``python bench/face_models.py [REPEATS]``. Prints medians.
Each measurement runs in this one process, so load times are first-use times.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.imaging import load_image  # noqa: E402
from runtime.samples import export_samples  # noqa: E402


def model_module(plugin: str, module: str) -> ModuleType:
    """Import ``plugins/PLUGIN`` as a package and return its sibling module ``MODULE``."""
    folder = ROOT / "plugins" / plugin
    spec = importlib.util.spec_from_file_location(
        f"bench_{plugin}", folder / "plugin.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{spec.name}.{module}")


def seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``call`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int = 10) -> None:
    """Print a table of load times and per-image or per-face inference times."""
    rows: list[tuple[str, str, float]] = []
    samples = export_samples(Path(tempfile.mkdtemp(prefix="wtm-bench-")))
    detector = model_module("face_detection", "detector")
    attributes = model_module("face_attributes", "attributes")
    features = model_module("face_features", "features")
    rows.append(("load", "hog + haar detectors", seconds(detector.load_models, 1)))
    rows.append(("load", "age, gender, emotion", seconds(attributes.load_models, 1)))
    rows.append(("load", "resnet + 5-point", seconds(features.load_models, 1)))
    rows.append(("load", "68-point", seconds(lambda: features.load_models("68"), 1)))
    for name in ("astronaut", "group6"):
        rgb = load_image(samples[name])
        rows.append(("decode", name, seconds(partial(load_image, samples[name]), repeats)))
        for kind in detector.DETECTORS:
            found = len(detector.detect(rgb, kind))
            cost = seconds(partial(detector.detect, rgb, kind), repeats)
            rows.append((f"detect {kind}", f"{name}, {found} faces found", cost))
    rgb = load_image(samples["group6"])
    faces = detector.detect(rgb)
    per_face = [
        ("attributes", lambda: attributes.estimate(rgb, faces)),
        ("features 5", lambda: features.describe(rgb, faces)),
        ("features 68", lambda: features.describe(rgb, faces, "68")),
    ]
    for label, call in per_face:
        rows.append((label, "per face (group6)", seconds(call, repeats) / len(faces)))
    print(f"{'step':<16}{'case':<28}{'ms':>10}")
    for step, case, cost in rows:
        print(f"{step:<16}{case:<28}{cost * 1000:>10.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
