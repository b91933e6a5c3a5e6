"""runtime.imaging: safe decoding to uint8 RGB; runtime.samples: package-built sample images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from runtime.imaging import ImageError, clip_box, load_image  # noqa: E402


def _gradient() -> Any:
    """A 40 x 60 RGB image with no symmetry, so any wrong rotation or flip shows."""
    y, x = np.mgrid[0:40, 0:60]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)


def _save(tmp_path: Path, name: str, image: Any, **options: object) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_rgb_png_round_trips(tmp_path: Path) -> None:
    rgb = _gradient()
    loaded = load_image(_save(tmp_path, "a.png", Image.fromarray(rgb)))
    assert loaded.dtype == np.uint8 and loaded.shape == (40, 60, 3)
    assert np.array_equal(loaded, rgb)


def test_grayscale_palette_and_bilevel_expand_to_rgb(tmp_path: Path) -> None:
    gray = Image.fromarray(_gradient()).convert("L")
    for mode in ("L", "P", "1"):
        loaded = load_image(_save(tmp_path, f"{mode}.png", gray.convert(mode)))
        assert loaded.shape == (40, 60, 3)
        assert np.array_equal(loaded[..., 0], loaded[..., 2])
    assert np.array_equal(load_image(tmp_path / "L.png")[..., 1], np.asarray(gray))


def test_alpha_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 5:, 3] = 255  # left half transparent, right half opaque red
    loaded = load_image(_save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    assert loaded[0, 0].tolist() == [255, 255, 255]
    assert loaded[0, 9].tolist() == [200, 0, 0]


def test_palette_transparency_is_composited(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    path = _save(tmp_path, "p.png", image, transparency=1)
    assert load_image(path)[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_is_scaled_to_eight(tmp_path: Path) -> None:
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    path = _save(tmp_path, "g16.png", Image.fromarray(values))
    assert load_image(path)[0, :, 0].tolist() == [0, 1, 255, 128]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = _gradient()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
    loaded = load_image(_save(tmp_path, "r.jpg", stored, exif=exif, quality=98))
    assert loaded.shape == rgb.shape
    assert np.abs(loaded.astype(int) - rgb).mean() < 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("junk.png", b"not an image at all\n" * 10, "not an image"),
        ("empty.jpg", b"", "not an image"),
        ("doc.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
    ],
)
def test_non_images_are_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as caught:
        load_image(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path, f"t.{fmt.lower()}", Image.fromarray(noise), format=fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated") as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path, "a.png", Image.fromarray(_gradient()))
    with pytest.raises(ImageError, match=r"refused: 60x40 pixels"):
        load_image(path, limit=2399)
    assert load_image(path, limit=2400).shape == (40, 60, 3)
    monkeypatch.setenv("WTM_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ImageError, match="refused"):
        load_image(path)


def test_decompression_bomb_is_refused(bad_images: list[Path]) -> None:
    bomb = bad_images[2]
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageError, match="refused") as caught:
        load_image(bomb)
    assert str(caught.value).startswith(str(bomb)) and "\n" not in str(caught.value)


def test_missing_file_and_unprintable_names(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes(b"junk")
    with pytest.raises(ImageError, match=r"two\\nlines.png") as caught:
        load_image(odd)
    assert "\n" not in str(caught.value)


def test_clip_box() -> None:
    assert clip_box([-5, 10, 20, 100], 50, 60) == (0, 10, 15, 50)
    with pytest.raises(ValueError, match="outside"):
        clip_box([60, 0, 10, 10], 50, 60)


def test_samples_are_rgb_and_exported_once(tmp_path: Path, samples: dict[str, Path]) -> None:
    from runtime.samples import SAMPLES, export_samples, sample_path

    assert set(samples) == set(SAMPLES) >= {"astronaut", "chelsea", "coffee", "rocket", "group6"}
    for path in samples.values():
        image = load_image(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    first = sample_path("rocket", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert export_samples(tmp_path)["rocket"] == first
    assert first.stat().st_mtime_ns == stamp
    assert first.read_bytes() == samples["rocket"].read_bytes()
    with pytest.raises(KeyError, match="unknown sample"):
        sample_path("nobody", tmp_path)


def test_a_file_read_again_is_decoded_once_and_read_only(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.png", Image.fromarray(_gradient()))
    first, again = load_image(path), load_image(path)
    assert again is first
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0, 0] = 1


def test_a_rewritten_file_is_decoded_anew(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.png", Image.fromarray(_gradient()))
    before = load_image(path)
    Image.fromarray(255 - _gradient()).save(path)
    after = load_image(path)
    assert np.array_equal(after, 255 - _gradient())
    assert np.array_equal(before, _gradient())


def test_a_refused_image_is_refused_every_time(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.png", Image.fromarray(_gradient()))
    for _ in range(2):
        with pytest.raises(ImageError, match="refused"):
            load_image(path, limit=100)
    assert load_image(path).shape == (40, 60, 3)
