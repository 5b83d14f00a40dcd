"""Interventions of the faithfulness probe: edits of what the model sees, as pure functions (PIL
images in, new PIL images out; the input image is never modified; no I/O, no randomness).

Each edit asks whether the answer comes from the pixels, and each has limits:

- `mask_targets` fills the benchmark's target boxes with the image's mean colour. An answer that
  survives the mask did not need those pixels: it came from the context, the question or a prior
  ("the bus is probably red"). An answer that changes shows only that the box mattered, not that
  the model read it correctly; and a box that misses part of the object leaves that part visible.
- `blank_like` is a mid-gray image of the same size (the blind-tool ablation's blank): what the
  model answers from the question alone. It cannot separate "guessed" from "knew the dataset".
- `recolour` shifts the hue of the source colour's pixels inside the target boxes to another
  option's colour, keeping saturation and value; `counterfactual` picks that option. A model that
  reads the pixels should follow the edit to the new letter. It only shows this for colour
  questions, only for clear hues (white, black, grey, brown have none to shift), and a model that
  also sees a shading or a reflection outside the box may rightly keep its answer.

All boxes are (x1, y1, x2, y2) in pixels of the image as stored (the benchmark's `targets`), and the
edits are made before the protocol's resize (`pr_eval.data.imaging.fit_image`), as the model would
be shown an edited photograph.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from ..data.imaging import to_rgb
from ..scoring.answers import parse_options  # noqa: F401 - the scorer's reading of options

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2) in pixels of the image as stored

BLANK = (128, 128, 128)  # the blind-tool ablation's blank (pr_eval.loop.tools.blind)

MASK_METHOD = ("each target box (pixels as stored, rounded outward: floor of x1/y1, ceil of x2/y2, clipped "
               "to the image) filled with the whole image's mean colour per channel (rounded to the nearest "
               "integer), before the protocol's resize")

# Colours that have a hue, in degrees; brown (a dark orange), white, black and grey are left out.
HUES: dict[str, float] = {"red": 0.0, "orange": 30.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0,
                          "blue": 240.0, "purple": 280.0, "violet": 280.0, "pink": 330.0}

METHOD_RECOLOUR = ("inside the target boxes (pixels as stored, rounded outward), every pixel whose HSV hue "
                   "is within the tolerance of the source colour's hue (circular distance, inclusive) and "
                   "whose saturation and value reach the minimums gets the target colour's hue, its "
                   "saturation and value (its max and min channel) kept, before the protocol's resize")


# --- Boxes ---------------------------------------------------------------------------------------

def box_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The pixel rectangle (left, top, right, bottom; right and bottom exclusive) that `box` covers:
    floor of x1/y1, ceil of x2/y2, clipped to a `width` x `height` image. None when it is empty
    after clipping, reversed (x2 < x1 or y2 < y1) or not finite."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        return None
    left, top = max(math.floor(x1), 0), max(math.floor(y1), 0)
    right, bottom = min(math.ceil(x2), width), min(math.ceil(y2), height)
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _region(boxes: Iterable[Sequence[float]], width: int, height: int) -> np.ndarray | None:
    """A (height, width) boolean array, True inside the union of the boxes' pixel rectangles; None
    when no box covers a pixel."""
    inside = np.zeros((height, width), dtype=bool)
    used = False
    for box in boxes:
        rect = box_pixels(box, width, height)
        if rect is not None:
            left, top, right, bottom = rect
            inside[top:bottom, left:right] = True
            used = True
    return inside if used else None


def _rgb_array(image: Image.Image) -> np.ndarray:
    """The image's pixels as a fresh (height, width, 3) uint8 array, RGB as the loop makes it."""
    rgb = image if image.mode == "RGB" else to_rgb(image)
    return np.array(rgb, dtype=np.uint8)


# --- Masking and blanks -----------------------------------------------------------------------------

def mean_colour(image: Image.Image) -> tuple[int, int, int]:
    """The whole image's mean colour, per channel, rounded to the nearest integer (halves up)."""
    return _mean(_rgb_array(image))


def _mean(pixels: np.ndarray) -> tuple[int, int, int]:
    means = pixels.reshape(-1, 3).astype(np.float64).mean(axis=0)
    return tuple(math.floor(v + 0.5) for v in means)


def mask_targets(image: Image.Image, boxes: Iterable[Sequence[float]]) -> Image.Image:
    """An RGB copy of `image` with every box's pixel rectangle (`box_pixels`) filled with the
    original's mean colour (`mean_colour`). Boxes empty after clipping are ignored; ValueError when
    none is left."""
    pixels = _rgb_array(image)
    inside = _region(boxes, image.width, image.height)
    if inside is None:
        raise ValueError("no target box inside the image")
    pixels[inside] = _mean(pixels)
    return Image.fromarray(pixels, "RGB")


def blank_like(image: Image.Image) -> Image.Image:
    """A mid-gray RGB image of `image`'s size (the blind-tool ablation's blank)."""
    return Image.new("RGB", image.size, BLANK)


# --- Recolouring ----------------------------------------------------------------------------------

def hue_of(name: str) -> float:
    """The hue in degrees of a colour name (case-insensitive, surrounding spaces ignored); ValueError
    naming the known colours for any other."""
    key = str(name).strip().lower()
    if key not in HUES:
        raise ValueError(f"no hue for colour {name!r}; known: {', '.join(HUES)}")
    return HUES[key]


def _hsv(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of (..., 3) RGB pixels (0..255), as
    colorsys computes them; a pixel without chroma has hue 0 and saturation 0."""
    rgb = pixels.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    sector = np.select([high == r, high == g], [((g - b) / safe) % 6.0, (b - r) / safe + 2.0],
                       (r - g) / safe + 4.0)
    hue = np.where(chroma > 0, sector * 60.0, 0.0)
    saturation = np.where(high > 0, chroma / np.where(high > 0, high, 1.0), 0.0)
    return hue, saturation, high / 255.0


def _with_hue(pixels: np.ndarray, hue: float) -> np.ndarray:
    """(n, 3) RGB pixels given `hue` (degrees), each keeping its max and min channel (its value and
    saturation); rounded to integers, so a pure primary becomes exactly the other primary."""
    rgb = pixels.astype(np.float64)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    position = (hue % 360.0) / 60.0
    sector = int(position) % 6
    middle = low + (high - low) * (1.0 - abs(position % 2.0 - 1.0))
    order = [(high, middle, low), (middle, high, low), (low, high, middle),
             (low, middle, high), (middle, low, high), (high, low, middle)][sector]
    return np.clip(np.rint(np.stack(order, axis=-1)), 0, 255).astype(np.uint8)


def hue_distance(a, b):
    """Circular distance between hues in degrees, in [0, 180] (works on numpy arrays)."""
    d = np.abs(np.asarray(a, dtype=np.float64) - b) % 360.0
    return np.minimum(d, 360.0 - d)


def recolour(image: Image.Image, boxes: Iterable[Sequence[float]], source: str, target: str,
             hue_tolerance: float = 30.0, min_saturation: float = 0.3,
             min_value: float = 0.2) -> tuple[Image.Image, int]:
    """An RGB copy of `image` in which, inside the boxes' pixel rectangles, every pixel of the
    `source` colour gets the `target` colour's hue, and the number of pixels whose RGB changed.

    A pixel is of the source colour when its HSV hue is within `hue_tolerance` degrees (circular,
    inclusive) of HUES[source], its saturation >= `min_saturation` and its value >= `min_value`; a
    pixel without chroma (white, grey, black) has no hue and never is. Its saturation and value are
    kept. ValueError for an unknown colour name, source and target of the same hue, a tolerance
    outside [0, 180], or no box inside the image."""
    source_hue, target_hue = hue_of(source), hue_of(target)
    if source_hue == target_hue:
        raise ValueError(f"{source!r} and {target!r} have the same hue ({source_hue:g} degrees)")
    if not 0.0 <= hue_tolerance <= 180.0:
        raise ValueError(f"hue_tolerance must be within [0, 180] degrees, not {hue_tolerance!r}")
    pixels = _rgb_array(image)
    inside = _region(boxes, image.width, image.height)
    if inside is None:
        raise ValueError("no target box inside the image")
    hue, saturation, value = _hsv(pixels)
    chosen = (inside & (saturation > 0) & (saturation >= min_saturation) & (value >= min_value)
              & (hue_distance(hue, source_hue) <= hue_tolerance))
    before = pixels[chosen]
    after = _with_hue(before, target_hue)
    pixels[chosen] = after
    changed = int(np.any(before != after, axis=-1).sum())
    return Image.fromarray(pixels, "RGB"), changed


# --- Which edit a question allows -----------------------------------------------------------------

def counterfactual(options: dict[str, str], answer: str) -> tuple[str, str, str] | None:
    """The recolouring edit a multiple-choice colour question allows: (new letter, source colour,
    target colour), colours lower-case. The target is the first option after the answer in letter
    order (cyclic) whose text is a known hue colour (HUES) of another hue than the answer's. None
    when the answer's text is not a known hue colour or no other option is; ValueError when the
    answer is not one of the options' letters."""
    if answer not in options:
        raise ValueError(f"answer {answer!r} is not one of the options ({', '.join(sorted(options))})")
    source = str(options[answer]).strip().lower()
    if source not in HUES:
        return None
    letters = sorted(options)
    start = letters.index(answer)
    for letter in letters[start + 1:] + letters[:start]:
        text = str(options[letter]).strip().lower()
        if text in HUES and HUES[text] != HUES[source]:
            return letter, source, text
    return None


METHOD_REPAINT = ("inside the target boxes (pixels as stored, rounded outward), every pixel of exactly the "
                  "source option's colour as the benchmark draws it is painted in the target option's colour "
                  "as the benchmark draws it, before the protocol's resize")


def repaint(image: Image.Image, boxes: Iterable[Sequence[float]], source: tuple[int, int, int],
            target: tuple[int, int, int]) -> tuple[Image.Image, int]:
    """A copy of `image` in which, inside the boxes' pixel rectangles, every pixel of exactly the
    RGB colour `source` becomes `target` (a synthetic benchmark knows the colours it draws, so its
    counterfactual is the picture it would have drawn); and the number of pixels changed."""
    pixels = _rgb_array(image)
    inside = _region(boxes, image.width, image.height)
    if inside is None:
        raise ValueError("no target box inside the image")
    chosen = inside & np.all(pixels == np.asarray(source, dtype=pixels.dtype), axis=-1)
    pixels[chosen] = np.asarray(target, dtype=pixels.dtype)
    return Image.fromarray(pixels, "RGB"), int(chosen.sum()) if tuple(source) != tuple(target) else 0
