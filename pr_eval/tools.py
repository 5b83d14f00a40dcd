"""Tool calls: parsing the model's request and executing it, as pure functions.

`parse_tool_call` and `crop_box` never raise on any input text or numbers: every way a call can be
wrong becomes a `ToolError` whose message is fed back to the model (as the reference does), and
whose `kind` is counted in the tool statistics. Model output is parsed with `json`, never evaluated.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from PIL import Image

from .imaging import DataError, fit_image
from .protocol import Protocol

OPEN, CLOSE = "<tool_call>", "</tool_call>"
CROP, SELECT_FRAMES = "crop_image_normalized", "select_frames"
TOOL_NAMES = (CROP, SELECT_FRAMES)


def crop_call(bbox, target: int = 1, digits: int | None = None) -> str:
    """A crop_image_normalized call as the protocol's model writes it, for scripted turns (tests,
    benchmarks, the demo model's training text): coordinates with `digits` decimals, or as Python
    prints them."""
    numbers = ", ".join(repr(v) if digits is None else f"{v:.{digits}f}" for v in bbox)
    return f'{OPEN}\n{{"name": "{CROP}", "arguments": {{"bbox_2d": [{numbers}], "target_image": {target}}}}}\n{CLOSE}'


class ToolError(Exception):
    """A tool call that cannot be carried out. `str(error)` is the message the model sees."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ParsedCall:
    raw: str
    name: str
    arguments: dict


def is_tool_request(text: str) -> bool:
    """The reference's rule: a turn asks for a tool when it ends with `</tool_call>`."""
    return text.replace("<|im_end|>", "").rstrip().endswith(CLOSE)


def tool_call_body(text: str) -> str:
    """The text inside the LAST `<tool_call>...</tool_call>` pair of a tool-request turn."""
    text = text.replace("<|im_end|>", "").rstrip()
    end = text.rfind(CLOSE)
    start = text.rfind(OPEN, 0, end)
    if start < 0:
        return text[:end]
    return text[start + len(OPEN):end]


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_tool_call(body: str) -> ParsedCall:
    """`{"name": ..., "arguments": {...}}` from the body of a tool call, or ToolError."""
    try:
        payload = json.loads(body.strip(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ToolError("malformed", f"Execution Error: the tool call is not valid JSON ({exc}).") from None
    if not isinstance(payload, dict) or "name" not in payload or "arguments" not in payload:
        raise ToolError("malformed", 'Execution Error: a tool call must be a JSON object '
                        'with "name" and "arguments".')
    name, arguments = payload["name"], payload["arguments"]
    if not isinstance(name, str) or name not in TOOL_NAMES:
        raise ToolError("unknown_tool", f"Execution Error: unknown function {str(name)[:80]!r}; "
                        f"available functions: {', '.join(TOOL_NAMES)}.")
    if not isinstance(arguments, dict):
        raise ToolError("bad_arguments", 'Execution Error: "arguments" must be a JSON object.')
    return ParsedCall(raw=body, name=name, arguments=journal_safe(arguments))


def _is_number(value) -> bool:
    """A finite JSON number (an int of any size is finite: math.isfinite would overflow on 10**400)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _as_float(value) -> float:
    """float(value), with an int too large for a float (10**400) as the infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# --- Model output is data: whatever a turn holds, its record can be written and read back --------

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ARGUMENT_DEPTH = 32  # no tool's arguments nest deeper; anything deeper is kept as a note


def clean_text(text: str) -> str:
    """`text` with lone surrogates (a JSON escape such as "\\ud800" decodes to one; UTF-8 cannot
    encode it) replaced by U+FFFD, so every record of it can be written as UTF-8."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def journal_safe(value, depth: int = 0):
    """A copy of a parsed JSON value that any record can hold: strings cleaned (`clean_text`),
    nesting cut at MAX_ARGUMENT_DEPTH (deeper values become a short note, since copying, printing
    or comparing them would recurse past Python's limit). Numbers are kept whatever their size."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (list, dict)) and depth >= MAX_ARGUMENT_DEPTH:
        return f"<{type(value).__name__} nested deeper than {MAX_ARGUMENT_DEPTH} levels, not kept>"
    if isinstance(value, list):
        return [journal_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): journal_safe(v, depth + 1) for k, v in value.items()}
    return value


def _index(value, what: str) -> int:
    """A 1-based index given as a JSON number; integral floats (2.0) are accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not _is_number(value) or float(value) != int(value):
        raise ToolError("bad_arguments", f"Execution Error: {what} must be an integer, got {str(value)[:40]}.")
    return int(value)


def crop_box(bbox, width: int, height: int, padding: float = 0.1, min_side: int = 28):
    """The pixel box `(left, top, right, bottom)` that `crop_image_normalized(bbox)` cuts.

    The reference rule: if all four numbers are below 1 they are normalized [x1, y1, x2, y2];
    otherwise they are pixels of the target image and are divided by its width and height.
    The box is padded by `padding` (normalized) on every side and clamped to the image. The
    result must be MORE than `min_side` pixels wide and high. Coordinates round as PIL's
    `Image.crop` rounds a float box. Returns (box, normalized box after padding)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ToolError("bad_arguments", "Execution Error: bbox_2d must be a list of four numbers "
                        f"[x1, y1, x2, y2], got {str(bbox)[:80]}.")
    x1, y1, x2, y2 = (_as_float(v) for v in bbox)
    if not all(v < 1 for v in (x1, y1, x2, y2)):
        x1, x2, y1, y2 = x1 / width, x2 / width, y1 / height, y2 / height
    clamp = lambda v: min(1.0, max(0.0, v))  # noqa: E731
    nx1, ny1 = clamp(x1 - padding), clamp(y1 - padding)
    nx2, ny2 = clamp(x2 + padding), clamp(y2 + padding)
    box = (round(nx1 * width), round(ny1 * height), round(nx2 * width), round(ny2 * height))
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= min_side or h <= min_side:
        raise ToolError("crop_too_small", f"Execution Error: the cropped region is too small "
                        f"({max(w, 0)}x{max(h, 0)} pixels); it must be larger than "
                        f"{min_side}x{min_side} pixels.")
    return box, [nx1, ny1, nx2, ny2]


@dataclass
class ToolResult:
    """What a successful call adds to the conversation."""

    text: str
    images: list[Image.Image]
    parents: list[int]                  # 1-based source index of each new image
    box: tuple[int, int, int, int] | None = None
    box_normalized: list[float] | None = None
    source_size: tuple[int, int] | None = None
    # Full-resolution originals of the new images (None for a crop: it is its own original).
    originals: list = field(default_factory=list)


def crop(call: ParsedCall, pixels: list[Image.Image], originals: dict[int, Image.Image],
         protocol: Protocol, first_target: int = 1) -> ToolResult:
    """Execute `crop_image_normalized` on the conversation's images.

    Crops of input images are cut from the full-resolution original (`originals`); crops of
    earlier crops from that crop as the model saw it. The crop is then resized into the
    protocol's crop pixel bounds. `first_target` is 2 once a video's frames were selected: image 1
    then stands for the whole video, which cannot be cropped."""
    args = call.arguments
    if "bbox_2d" not in args or "target_image" not in args:
        raise ToolError("bad_arguments", "Execution Error: crop_image_normalized needs "
                        "bbox_2d and target_image.")
    target = _index(args["target_image"], "target_image")
    if not first_target <= target <= len(pixels):
        raise ToolError("bad_target", f"Execution Error: target_image {target} is out of range; "
                        f"valid values are {first_target} to {len(pixels)}.")
    source = originals.get(target, pixels[target - 1])
    box, normalized = crop_box(args["bbox_2d"], *source.size, padding=protocol.crop_padding,
                               min_side=protocol.min_crop_side)
    try:
        cropped = fit_image(source.crop(box), protocol.crop_pixels)
    except DataError as exc:
        raise ToolError("crop_too_small", f"Execution Error: {exc}.") from None
    text = protocol.feedback.crop.format(w=cropped.width, h=cropped.height)
    return ToolResult(text=text, images=[cropped], parents=[target], box=box,
                      box_normalized=normalized, source_size=source.size, originals=[None])


def select_frames(call: ParsedCall, frames: list[Image.Image], n_images: int,
                  protocol: Protocol) -> ToolResult:
    """Execute `select_frames`: append the chosen frames (1-based) of the video as new images."""
    chosen = call.arguments.get("target_frames")
    if not isinstance(chosen, list) or not chosen:
        raise ToolError("bad_arguments", "Execution Error: target_frames must be a non-empty "
                        "list of frame indices.")
    if len(chosen) > protocol.max_selected_frames:
        raise ToolError("too_many_frames", f"Execution Error: at most {protocol.max_selected_frames} "
                        f"frames can be selected, got {len(chosen)}.")
    indices = [_index(v, "each frame index") for v in chosen]
    bad = [i for i in indices if not 1 <= i <= len(frames)]
    if bad:
        raise ToolError("bad_target", f"Execution Error: frame index {bad[0]} is out of range; "
                        f"valid values are 1 to {len(frames)}.")
    images = [frames[i - 1] for i in indices]
    w, h = images[0].size
    text = protocol.feedback.frames.format(w=w, h=h, a=n_images, b=n_images + len(images) - 1)
    return ToolResult(text=text, images=images, parents=indices, originals=[None] * len(images))


def blind(result: ToolResult, source: Image.Image, mode: str, protocol: Protocol) -> ToolResult:
    """The blind-tool ablation's version of a successful crop: the same call, but the image
    returned is the uncropped `source` as the model saw it ("input") or a mid-gray image of the
    crop's size ("blank"); the feedback text gives the returned image's size."""
    if mode == "input":
        image = source
    elif mode == "blank":
        image = Image.new("RGB", result.images[0].size, (128, 128, 128))
    else:
        raise ValueError(f"unknown blind mode {mode!r}; use 'input' or 'blank'")
    result.images = [image]
    result.text = protocol.feedback.crop.format(w=image.width, h=image.height)
    return result
