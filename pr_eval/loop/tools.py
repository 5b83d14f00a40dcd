"""Tool calls, as the reference evaluation runs them: when a turn is a request, which call it is,
and what executing it gives, as functions of text and images only.

The reference (experience_maker.py: `_generate_vllm`, `parse_last_tool`, `execute_tool`,
`CropImageNormalized.call`, `resize_cropped`) decides with plain Python: `json.loads` of the
text after the conversation's last `<tool_call>`, dictionary and list indexing with whatever
numbers the model wrote, and a few checks whose messages the model was trained on. pr_eval
does the same operations, so a call gets the same outcome and the same message, down to
Python's own exception texts ("list indices must be integers or slices, not float", "'bbox_2d'").
`execute` raises; the loop feeds `str(error)` back, as the reference does. Model output is parsed
with `json`, never evaluated.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field

from PIL import Image

from ..data.imaging import resize_into
from ..protocol import Protocol
from .chat import IM_END

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
    """A call the reference refuses with a message of its own. `str(error)` is that message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def is_tool_request(output: str) -> bool:
    """The reference's test: the decoded turn with `<|im_end|>` removed, and nothing stripped,
    ends with `</tool_call>` (a trailing newline or space makes it a final answer)."""
    return output.replace(IM_END, "").endswith(CLOSE)


def last_call_text(conversation: str) -> str:
    """`parse_last_tool`'s input: the text after the LAST `<tool_call>` of the whole conversation
    so far (system prompt and earlier turns included), up to the next `</tool_call>`. A turn that
    closes a call it never opened therefore re-reads an earlier one (or the system prompt's
    example, which is not JSON)."""
    return conversation.split(OPEN)[-1].split(CLOSE)[0]


def error_kind(exc: BaseException, stage: str) -> str:
    """How the tool statistics count a failed call (ours; the model only sees the message)."""
    if isinstance(exc, ToolError):
        return exc.kind
    if stage in ("parse", "read"):
        return "malformed"
    if stage == "lookup":
        return "unknown_tool"
    return "bad_target" if isinstance(exc, IndexError) else "bad_arguments"


@dataclass
class Call:
    """The conversation's last tool call, read as far as it goes (`read`)."""

    raw: str
    payload: object = None
    name: object = None
    arguments: object = None
    stage: str = "parse"   # how far reading got: parse -> read -> lookup -> run

    def read(self) -> "Call":
        """`json.loads` of the raw text (which, like the reference's, accepts NaN and Infinity),
        then its "name" and "arguments", then the tool of that name. Raises what the reference
        raises at the first step that fails; `stage` then says which step it was."""
        self.payload = json.loads(self.raw)
        self.stage = "read"
        self.name = self.payload["name"]
        self.arguments = self.payload["arguments"]
        self.stage = "lookup"
        _TOOLS[self.name]  # KeyError: 'rotate_image' (quotes included); TypeError for a list name
        self.stage = "run"
        return self


@dataclass
class ToolResult:
    """What a successful call adds to the conversation."""

    text: str
    images: list[Image.Image]
    parents: list[int]          # crop: 1-based index of the image cut; frames: the frame numbers
    frame: int | None = None    # a crop of a video frame (before any image was added): its number
    box: tuple[int, int, int, int] | None = None      # the crop in the source's pixels
    box_normalized: list[float] | None = None         # after padding and clamping
    source_size: tuple[int, int] | None = None        # of the image that was cut
    source: Image.Image | None = field(default=None, repr=False)  # that image (blind ablations)


def execute(call: Call, images: list, n_inputs: int, is_video: bool, protocol: Protocol) -> ToolResult:
    """Run a call that `Call.read` accepted on the conversation's images as the model was shown
    them: `images[0]` is a video's list of frames, or the first of `n_inputs` input images;
    later entries are the images tools added. Raises ToolError or Python's own exception."""
    return _TOOLS[call.name](call.arguments, images, n_inputs, is_video, protocol)


def _select_frames(arguments, images: list, n_inputs: int, is_video: bool, protocol: Protocol) -> ToolResult:
    errors = protocol.errors
    if not is_video:
        raise ToolError("wrong_modality", errors.frames_of_image)
    chosen = arguments["target_frames"]
    if len(chosen) > protocol.max_selected_frames:
        raise ToolError("too_many_frames", errors.too_many_frames.format(k=len(chosen)))
    if max(chosen) > len(images[0]):
        raise ToolError("bad_target", errors.frames_out_of_range.format(n=len(images[0]), frames=chosen))
    frames = images[0] if isinstance(images[0], list) else [images[0]]
    offsets = [number - 1 for number in chosen]  # 0 picks the last frame, as Python indexing does
    picked = [frames[offset] for offset in offsets]
    width, height = picked[0].size
    text = protocol.feedback.frames.format(w=width, h=height, a=len(images), b=len(images) + len(picked) - 1)
    return ToolResult(text=text, images=picked,
                      parents=[_position(offset, len(frames)) for offset in offsets])


def _crop(arguments, images: list, n_inputs: int, is_video: bool, protocol: Protocol) -> ToolResult:
    errors = protocol.errors
    target = arguments["target_image"]
    index = target - 1
    frame = None
    if is_video and len(images) == 1:  # only the video so far: target_image numbers its frames
        frames = images[0]
        if not index < len(frames):
            raise ToolError("bad_target", errors.video_frame_target.format(n=len(frames), target=target))
        source, parent, frame = frames[index], 1, _position(index, len(frames))
    elif is_video:  # once any image was added, image 1 is the whole video and cannot be cut
        if not index >= 1:
            raise ToolError("bad_target", errors.video_image_target.format(n=len(images), target=target))
        source, parent = images[index], _position(index, len(images))
    else:
        if not index < len(images):
            raise ToolError("bad_target", errors.image_target.format(n=len(images)))
        inputs = images[:n_inputs]
        if index < len(inputs):  # so target 0 is the last INPUT image, not the last image
            source, parent = inputs[index], _position(index, len(inputs))
        else:
            source, parent = images[index], _position(index, len(images))
    cut, box, normalized = crop_region(source, arguments["bbox_2d"], protocol)
    # resize_cropped: its ValueError for an aspect ratio above 200 is fed back like any other
    shown = resize_into(cut, protocol.crop_pixels)
    return ToolResult(text=protocol.feedback.crop.format(w=shown.width, h=shown.height), images=[shown],
                      parents=[parent], frame=frame, box=box, box_normalized=normalized,
                      source_size=source.size, source=source)


_TOOLS = {CROP: _crop, SELECT_FRAMES: _select_frames}


def _position(index, length: int) -> int:
    """The 1-based place in a list of `length` that Python's `list[index]` read."""
    index = operator.index(index)
    return (index % length if index < 0 else index) + 1


def crop_region(image: Image.Image, bbox, protocol: Protocol):
    """`CropImageNormalized.call`: the region of `image` that `bbox` names, padded and clamped.

    All four numbers below 1: normalized [x1, y1, x2, y2]; otherwise pixels of THIS image,
    divided by its size. Padded by `crop_padding` (normalized) on every side, clamped to [0, 1],
    cut with PIL's float box (which rounds). The cut must be more than `min_crop_side` pixels
    wide and high. Returns (cut, its integer box, the normalized box)."""
    width, height = image.size
    pad = protocol.crop_padding
    if bbox[0] < 1 and bbox[1] < 1 and bbox[2] < 1 and bbox[3] < 1:
        x1, y1 = float(bbox[0]) - pad, float(bbox[1]) - pad
        x2, y2 = float(bbox[2]) + pad, float(bbox[3]) + pad
    else:
        x1, y1 = float(bbox[0]) / width - pad, float(bbox[1]) / height - pad
        x2, y2 = float(bbox[2]) / width + pad, float(bbox[3]) / height + pad
    x1, y1, x2, y2 = (min(max(0, v), 1) for v in (x1, y1, x2, y2))
    cut = image.crop((x1 * width, y1 * height, x2 * width, y2 * height))
    w, h = cut.size
    if not (w > protocol.min_crop_side and h > protocol.min_crop_side):
        raise ToolError("crop_too_small", protocol.errors.crop_too_small.format(w=w, h=h))
    box = tuple(int(round(v)) for v in (x1 * width, y1 * height, x2 * width, y2 * height))
    return cut, box, [float(v) for v in (x1, y1, x2, y2)]


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


# --- Model output is data: whatever a turn holds, its record can be written and read back --------

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ARGUMENT_DEPTH = 32  # no tool's arguments nest deeper; anything deeper is kept as a note


def clean_text(text: str) -> str:
    """`text` with lone surrogates (a JSON escape such as "\\ud800" decodes to one; UTF-8 cannot
    encode it) replaced by U+FFFD, so every record of it can be written as UTF-8."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def journal_safe(value, depth: int = 0):
    """A copy of a parsed JSON value that any record can hold: strings cleaned (`clean_text`),
    NaN and infinities as the strings "NaN", "Infinity", "-Infinity" (strict JSON has no such
    numbers), nesting cut at MAX_ARGUMENT_DEPTH (deeper values become a short note, since copying,
    printing or comparing them would recurse past Python's limit). Other numbers are kept."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (list, dict)) and depth >= MAX_ARGUMENT_DEPTH:
        return f"<{type(value).__name__} nested deeper than {MAX_ARGUMENT_DEPTH} levels, not kept>"
    if isinstance(value, list):
        return [journal_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): journal_safe(v, depth + 1) for k, v in value.items()}
    return value
