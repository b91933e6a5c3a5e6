"""The face pipeline without wtm: one plain process, and the ceiling of plain processes.

:class:`Sequential` is the plain script: the plugin functions (``detect_faces``,
``face_attributes``, ``face_features``, each reading the image file as the hooks do)
called one after another in one process with the models loaded, faces merged by
``face_id``.

:class:`Ceiling` is the most a batch can get out of the machine with no framework at
all: ``processes`` independent plain processes (``python -m bench.plainfaces``), each
running :class:`Sequential` over its share of the images (contiguous slices). Each
loads its models and runs one image before the clock starts; the batch time is the
wall time until the slowest one is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.face_models import model_module

ROOT = Path(__file__).resolve().parents[1]


class Sequential:
    """The plain script: the plugin functions in one process, models loaded up front.

    ``detector`` and ``descriptor`` choose the models (the defaults, or the previous
    ones: ``hog`` and ``dlib``); :attr:`seconds` adds up the time of each stage.
    """

    def __init__(self, detector: str = "blazeface", descriptor: str = "sface") -> None:
        self.detector = model_module("face_detection", "detector")
        self.attributes = model_module("face_attributes", "attributes")
        self.features = model_module("face_features", "features")
        self.detector_name, self.descriptor_name = detector, descriptor
        self.detector.load_models()
        self.attributes.load_models()
        self.features.load_models()
        self.seconds = {"detection": 0.0, "attributes": 0.0, "features": 0.0}
        self.images = 0

    def per_image_ms(self) -> dict[str, float]:
        """Milliseconds per image of each stage since :meth:`reset`."""
        return {k: v * 1000 / max(self.images, 1) for k, v in self.seconds.items()}

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.images = 0

    def __call__(self, path: str | Path) -> list[dict[str, Any]]:
        started = time.perf_counter()
        faces = self.detector.detect_faces(path, self.detector_name)["faces_array"]
        detected = time.perf_counter()
        # as the pipeline's when: an image without faces skips attributes and features
        attributes = self.attributes.face_attributes(path, faces) if faces else []
        attributed = time.perf_counter()
        features = (
            self.features.face_features(path, faces, descriptor=self.descriptor_name)
            if faces
            else []
        )
        done = time.perf_counter()
        for stage, seconds in (
            ("detection", detected - started),
            ("attributes", attributed - detected),
            ("features", done - attributed),
        ):
            self.seconds[stage] += seconds
        self.images += 1
        merged: dict[int, dict[str, Any]] = {f["face_id"]: dict(f) for f in faces}
        for extra in (*attributes, *features):
            merged[extra["face_id"]].update(extra)
        return [merged[k] for k in sorted(merged)]


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous slices whose lengths differ by at most one."""
    size, extra = divmod(len(items), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        slices.append(list(items[start:end]))
        start = end
    return slices


class Ceiling:
    """``processes`` plain processes with the models loaded, waiting for image lists."""

    def __init__(self, warm_image: Path, processes: int = 2) -> None:
        self.children = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.plainfaces", str(warm_image)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(processes)
        ]
        for child in self.children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                self.close()
                raise RuntimeError("a plain face process did not start")
        self.pids = [c.pid for c in self.children]

    def __call__(self, paths: Sequence[Path]) -> dict[str, Any]:
        """Run ``paths`` split between the processes; the wall time and each one's time."""
        start = time.perf_counter()
        shares = split([str(p) for p in paths], len(self.children))
        for child, share in zip(self.children, shares, strict=True):
            assert child.stdin is not None
            child.stdin.write(json.dumps(share) + "\n")
            child.stdin.flush()
        own = []
        faces = 0
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("a plain face process died")
            report = json.loads(line)
            own.append(report["seconds"])
            faces += report["faces"]
        return {"seconds": time.perf_counter() - start, "each": own, "faces": faces}

    def close(self) -> None:
        for child in self.children:
            if child.stdin is not None and not child.stdin.closed:
                child.stdin.close()
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)

    def __enter__(self) -> Ceiling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    """Child of :class:`Ceiling`: load, warm on ``argv[1]``, say ``ready``, then for each
    JSON list of paths on stdin run them all and answer ``{"seconds", "faces"}``."""
    sequential = Sequential()
    sequential(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        paths = json.loads(line)
        start = time.perf_counter()
        faces = sum(len(sequential(p)) for p in paths)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "faces": faces}), flush=True)


if __name__ == "__main__":
    main()
