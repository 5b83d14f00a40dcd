"""Image loading and Qwen-style resizing. Pure functions of their inputs, except `load_image`."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import DataError, is_our_bug
from ..protocol import PixelBounds

FACTOR = 28  # Qwen2.5-VL: 14 px patches merged 2x2


def reference_size(width: int, height: int, bounds: PixelBounds) -> tuple[int, int]:
    """(width, height) after Qwen's `smart_resize`: multiples of 28, pixel count within bounds.
    Raises smart_resize's own ValueError (e.g. for an aspect ratio above 200).

    qwen_vl_utils' implementation is used, as the reference resizes inputs and crops with it (the
    engine's processor then applies transformers' copy of the same rule to the engine bounds).
    Imported on first use: qwen_vl_utils imports torch, which a command that shows no image
    (`--help`, a bad command line) should not wait for."""
    from qwen_vl_utils import smart_resize as _qwen_smart_resize

    h, w = _qwen_smart_resize(height, width, factor=FACTOR, min_pixels=bounds.min_pixels,
                              max_pixels=bounds.max_pixels)
    return int(w), int(h)


def fit_size(width: int, height: int, bounds: PixelBounds) -> tuple[int, int]:
    """`reference_size`, with a size it refuses as a DataError saying which."""
    try:
        return reference_size(width, height, bounds)
    except ValueError as exc:
        raise DataError(f"cannot resize a {width}x{height} image: {exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """qwen_vl_utils' `to_rgb` (RGBA laid on white, as the reference's inputs), imported on first
    use as `reference_size` says."""
    from qwen_vl_utils.vision_process import to_rgb as qwen_to_rgb

    return qwen_to_rgb(image)


def resize_into(image: Image.Image, bounds: PixelBounds) -> Image.Image:
    """What the reference does to every image it shows (qwen_vl_utils' `fetch_image`, its own
    `resize_cropped`): RGB by `to_rgb`, then resized (bicubic, PIL's default) to `reference_size`;
    returned unchanged when it already is both. Raises smart_resize's ValueError."""
    if image.mode != "RGB":
        image = to_rgb(image)
    size = reference_size(*image.size, bounds)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


def fit_image(image: Image.Image, bounds: PixelBounds) -> Image.Image:
    """`resize_into`, with a size it refuses as a DataError (an input the sample cannot use)."""
    try:
        return resize_into(image, bounds)
    except ValueError as exc:
        raise DataError(f"cannot resize a {image.width}x{image.height} image: {exc}") from None


def resolve_inside(root: str | os.PathLike, relative: str) -> Path:
    """`root/relative`, refusing paths that leave `root` (absolute paths, `..`, symlinks out)."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise DataError(f"image path {relative!r} points outside the dataset folder {str(base)!r}")
    return target


# lmms-eval sets PIL's ImageFile.LOAD_TRUNCATED_IMAGES = True for the whole process, which makes a
# cut-off file decode without a word (the missing rows come out black). Ours are decoded strictly
# whatever it sets: the flag is off while one of our images decodes (a lock, since it is global).
_STRICT = threading.Lock()


def load_image(path, name: str | None = None) -> Image.Image:
    """Open an image (a path, or a file object named `name`) fully into memory as RGB, or raise
    DataError saying why it cannot be used (a truncated file is one: it is never scored with
    made-up pixels)."""
    if isinstance(path, (str, os.PathLike)) and os.path.exists(path) and not os.path.isfile(path):
        raise DataError(f"not a regular file: {path} (a folder, pipe or device cannot be an image)")
    try:
        with Image.open(path) as img, _STRICT:
            lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
            try:
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = lenient
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"unreadable image {name or path}: {exc}") from None
    except MemoryError:
        raise DataError(f"unreadable image {name or path}: too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - a decoder's own failure (SyntaxError, NotImplementedError,
        # struct.error, ...) is this file's problem: one line, never the run's end; ours is a bug
        if is_our_bug(exc):
            raise
        raise DataError(f"unreadable image {name or path}: {type(exc).__name__}: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "no message"
