"""Safe image decoding for task plugins: any common image file -> uint8 RGB array.

Only a few raster formats are accepted (no EPS, which would run Ghostscript), the
pixel count is checked from the header before any pixel is decoded, truncated
files are refused, and EXIF orientation is applied. Used by the plugins that
need the ``faces`` extra, so numpy and Pillow are imported at the top.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image accepted, in pixels; ``WTM_MAX_IMAGE_PIXELS`` overrides it."""
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_BACKGROUND = (255, 255, 255)
RECENT_IMAGES = 4
"""How many decoded images each process keeps (least recently used out first)."""


class ImageError(ValueError):
    """An image file that cannot or must not be decoded; the message is one line."""


def max_pixels() -> int:
    """The pixel limit: ``WTM_MAX_IMAGE_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    return int(os.environ.get("WTM_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))


def load_image(path: str | os.PathLike[str], limit: int | None = None) -> NDArray[np.uint8]:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 RGB array, upright per its EXIF orientation.

    Alpha is composited onto white, 16-bit samples are scaled to 8 bits, palette
    and grayscale images are expanded. Raises :class:`ImageError` for anything
    that is not a readable image of at most ``limit`` pixels.

    The array is read-only: the last few decoded files are kept per process, keyed
    by path, size, inode and modification time, because a per-face fan-out reads
    the same image once per face (decoding a 1080x720 PNG takes about 18 ms).
    """
    limit = max_pixels() if limit is None else limit
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if stat is None:
        return _decode(path, limit)
    return _decode_recent(
        os.path.realpath(path), stat.st_size, stat.st_ino, stat.st_mtime_ns, limit
    )


@functools.lru_cache(maxsize=RECENT_IMAGES)
def _decode_recent(
    path: str, size: int, inode: int, mtime_ns: int, limit: int
) -> NDArray[np.uint8]:
    """:func:`_decode`, read-only, for a file as it is now (the key names its version)."""
    image = _decode(path, limit)
    image.flags.writeable = False
    return image


def _decode(path: str | os.PathLike[str], limit: int) -> NDArray[np.uint8]:
    name = _one_line(os.fspath(path))
    try:
        with Image.open(path, formats=FORMATS) as image:
            width, height = image.size
            if width < 1 or height < 1 or width * height > limit:
                raise ImageError(
                    f"{name}: refused: {width}x{height} pixels (accepted: 1 to {limit})"
                )
            image.load()
            return _rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused: {_one_line(str(exc))}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode image: {_one_line(str(exc))}") from None


def clip_box(bbox: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """``[x, y, w, h]`` clipped to a ``width`` x ``height`` image; ValueError if nothing is left."""
    x, y, w, h = (int(v) for v in bbox)
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    if right <= left or bottom <= top:
        raise ValueError(f"box {list(bbox)} lies outside the {width}x{height} image")
    return left, top, right - left, bottom - top


def _rgb(image: Image.Image) -> NDArray[np.uint8]:
    if image.mode in _HIGH_DEPTH:
        samples = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(samples / 257.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(flat, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
