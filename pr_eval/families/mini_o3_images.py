"""Mini-o3's image arithmetic (Mini-o3/Mini-o3@8654dbf), as pure functions of their inputs.

    stored image -> `first_image` (RGB, LANCZOS into the pixel bounds: what the model sees first)
    model's box  -> `check_shape` -> `source_index` -> `pixel_box` -> `check_box` -> PIL crop, no resize
    crop         -> `shown_crop` (NEAREST into the bounds, the <28 side rule, the 200:1 pad, RGB)

Each step raises what the reference raises at the same point, message included: the family feeds
`str(exc)` back to the model as the reference does. The values come from `safe_eval`, so a box
may hold anything a literal can be; the arithmetic below is done on them exactly as the reference
does it (`value * width`, `int()`, `max`/`min`, an f-string), so its errors are Python's own.
"""

from __future__ import annotations

import math
import re

from PIL import Image

from ..errors import DataError
from ..loop.safe_eval import MAX_SEQUENCE_ITEMS, Refused
from ..protocol import PixelBounds

MIN_SIDE = 28  # multimodal_dataset.py:108, vllm_async_engine.py:207


def _scaled(image: Image.Image, bounds: PixelBounds, resample: Image.Resampling) -> Image.Image:
    """Down into `max_pixels`, then up to `min_pixels`: `(int(w*f), int(h*f))`, f = sqrt(bound / w*h)
    (multimodal_dataset.py:98-106; vllm_async_engine.py:197-205 with NEAREST)."""
    if image.width * image.height > bounds.max_pixels:
        factor = math.sqrt(bounds.max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)), resample=resample)
    if image.width * image.height < bounds.min_pixels:
        factor = math.sqrt(bounds.min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)), resample=resample)
    return image


def first_image(original: Image.Image, bounds: PixelBounds) -> Image.Image:
    """The first image as the model sees it (multimodal_dataset.py:79-113): `original` is the stored
    image converted to RGB; LANCZOS into the bounds; both sides at least 28, else the reference's
    assertion (its dataset then silently serves the next question instead: a DataError here)."""
    shown = _scaled(original, bounds, Image.Resampling.LANCZOS)
    if shown.width < MIN_SIDE or shown.height < MIN_SIDE:
        raise DataError(f"a {original.width}x{original.height} image is {shown.width}x{shown.height} after "
                        "Mini-o3's resize: Qwen image size should be larger than 28 * 28.")
    return shown if shown.mode == "RGB" else shown.convert("RGB")


def shown_crop(crop: Image.Image, bounds: PixelBounds, pad_aspect: int) -> Image.Image:
    """A crop as the model sees it: the engine's `process_image` (vllm_async_engine.py:189-223)."""
    image = _scaled(crop, bounds, Image.Resampling.NEAREST)
    if image.width < MIN_SIDE or image.height < MIN_SIDE:
        factor = MIN_SIDE / min(image.width, image.height)
        image = image.resize((int(image.width * factor + 1), int(image.height * factor + 1)),
                             resample=Image.Resampling.NEAREST)
    if image.width / image.height >= 200:
        image = image.resize((image.width, int(image.width / pad_aspect + 1)), resample=Image.Resampling.NEAREST)
    if image.height / image.width >= 200:
        image = image.resize((int(image.height / pad_aspect + 1), image.height), resample=Image.Resampling.NEAREST)
    return image if image.mode == "RGB" else image.convert("RGB")


def check_shape(value) -> None:
    """function_tools.py:34: a list of four values, else an assertion with no message."""
    if not (isinstance(value, list) and len(value) == 4):
        raise AssertionError()


def source_index(source: str, n_sources: int, pattern: str) -> int:
    """Which observation a call cuts (function_tools.py:39-49): "original_image" is 0; otherwise
    the number `re.match(pattern)` reads at the START of `source` (a prefix is enough)."""
    if source == "original_image":
        index = 0
    else:
        match = re.match(pattern, source, re.DOTALL)
        try:  # no match, no digits, or past int()'s 4300 digits: the reference's own message
            if match is None:
                raise ValueError(source)
            index = int(match.group(1))
        except ValueError:
            raise ValueError(f"The 'source' argument \"{source}\" does not match the pattern '{pattern}'.") from None
    if not index < n_sources:
        raise AssertionError(f"Error in predicting the source observation: \"{source}\".")
    return index


def pixel_box(value: list, size: tuple[int, int]) -> list:
    """Relative coordinates to the source's pixels (function_tools.py:52-63): each value times the
    side, `int()`, then clamped to [0, w-1] x [0, h-1] (the last row and column can never be cut).
    A string or list value is repeated by the side as Python repeats it; Refused where that would
    build more than MAX_SEQUENCE_ITEMS items (the reference would try)."""
    w, h = size
    scaled = []
    for item, side in zip(value, (w, h, w, h)):  # left to right, as the reference's tuple
        if isinstance(item, (str, bytes, list, tuple)) and len(item) * side > MAX_SEQUENCE_ITEMS:
            raise Refused(f"a repetition to {len(item) * side:,} items")
        scaled.append(item * side)
    box = [int(scaled[0]), int(scaled[1]), int(scaled[2]), int(scaled[3])]
    return [max(box[0], 0), max(box[1], 0), min(box[2], w - 1), min(box[3], h - 1)]


def check_box(box: list, max_aspect: int) -> None:
    """function_tools.py:65-71: at least one pixel each way, an aspect ratio below `max_aspect`."""
    if not box[0] <= box[2] - 1:
        raise AssertionError(f"The bounding box is not valid in width: {box}")
    if not box[1] <= box[3] - 1:
        raise AssertionError(f"The bounding box is not valid in height: {box}")
    width, height = box[2] - box[0], box[3] - box[1]
    if width / height >= max_aspect or height / width >= max_aspect:
        raise ValueError(f"The absolute aspect ratio of the bounding box exceeds {max_aspect}, which is too large.")
