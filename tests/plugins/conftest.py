"""Fixtures for the face plugin tests: plugins imported by path, sample and bad images."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
_serial = itertools.count()

# The astronaut's face as detected by dlib HOG (upsample 0); the pipeline feeds such boxes on.
ASTRONAUT_HOG_BOX = [179, 83, 88, 88]


def import_plugin(folder: Path, entrypoint: str = "plugin") -> ModuleType:
    """Import a plugin folder as a package under a unique name, so relative imports work.

    The entrypoint module becomes the package itself (its ``__path__`` is the folder).
    """
    name = f"wtm_test_{folder.name}_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(
        name, folder / f"{entrypoint}.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def plugin() -> Callable[..., ModuleType]:
    """``plugin(NAME)`` -> its hook module; ``plugin(NAME, "detector")`` -> a sibling module.

    Each plugin is imported once per session, so its models load once per session.
    """
    loaded: dict[str, ModuleType] = {}

    def get(name: str, module: str | None = None) -> ModuleType:
        if name not in loaded:
            loaded[name] = import_plugin(PLUGINS / name)
        package = loaded[name]
        return importlib.import_module(f"{package.__name__}.{module}") if module else package

    return get


class _Files:
    """Artifact access for tests: references are plain paths."""

    def local_path(self, ref: str) -> Path:
        return Path(ref)

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        raise NotImplementedError


@pytest.fixture
def context() -> Any:
    """A task context whose artifact references are plain paths."""
    from runtime.context import TaskContext

    return TaskContext(run_id="run-test", step_id="001", artifacts=_Files())


@pytest.fixture(scope="session")
def run_task(plugin: Callable[..., ModuleType]) -> Callable[..., dict[str, Any]]:
    """``run_task(NAME, inputs, context)``: the hook through pluggy, outputs checked by schema."""
    import jsonschema

    from runtime.hooks import task_plugin_manager
    from runtime.manifest import load_task

    def run(name: str, inputs: dict[str, Any], context: Any) -> dict[str, Any]:
        manifest = load_task(PLUGINS / name / "manifest.yaml")
        for port in manifest.inputs.values():
            if port.has_default:
                inputs.setdefault(port.name, port.default)
            if port.name in inputs:
                jsonschema.Draft202012Validator(port.schema).validate(inputs[port.name])
        manager = task_plugin_manager(plugin(name), name)
        outputs: dict[str, Any] = manager.hook.wtm_task_run(inputs=inputs, context=context)
        assert set(outputs) == set(manifest.outputs)
        for port in manifest.outputs.values():
            jsonschema.Draft202012Validator(port.schema).validate(outputs[port.name])
        return outputs

    return run


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample images of :mod:`runtime.samples`, exported once per session."""
    pytest.importorskip("skimage")
    from runtime.samples import export_samples

    return export_samples(tmp_path_factory.mktemp("samples"))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, Path]) -> list[Path]:
    """Files every plugin must refuse: not an image, a truncated PNG, a decompression bomb."""
    folder = tmp_path_factory.mktemp("bad")
    junk = folder / "junk.png"
    junk.write_bytes(b"this is not an image\n" * 50)
    truncated = folder / "truncated.png"
    data = samples["astronaut"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bomb = folder / "bomb.png"  # a header claiming 100000 x 100000 RGB pixels, 100 bytes in all
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    return [junk, truncated, bomb]


@pytest.fixture(scope="session")
def astronaut_variants(
    tmp_path_factory: pytest.TempPathFactory, samples: dict[str, Path]
) -> dict[str, Path]:
    """The astronaut as 8-bit grayscale, RGBA, 16-bit grayscale and an EXIF-rotated JPEG."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("variants")
    with Image.open(samples["astronaut"]) as image:
        rgb = image.convert("RGB")
    gray = rgb.convert("L")
    paths = {name: folder / f"{name}.png" for name in ("gray", "rgba", "gray16")}
    gray.save(paths["gray"])
    alpha = Image.new("L", rgb.size, 0)  # a transparent 40 px frame around an opaque middle
    alpha.paste(255, (40, 40, rgb.width - 40, rgb.height - 40))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    rgba.save(paths["rgba"])
    Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257).save(paths["gray16"])
    # Stored turned 90 degrees counter-clockwise; Orientation 6 tells viewers to turn it back.
    exif = Image.Exif()
    exif[0x0112] = 6
    paths["exif"] = folder / "exif.jpg"
    rgb.transpose(Image.Transpose.ROTATE_90).save(paths["exif"], exif=exif, quality=95)
    return paths
