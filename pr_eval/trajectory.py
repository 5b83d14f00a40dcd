"""The trajectory: the one record that flows from dataset row to score, and what is written to disk.

    Sample (dataset row) -> Trajectory (prompt, turns, tool calls, images) -> answer -> scores

A Trajectory holds the conversation in a model-neutral form: messages whose content is a list of
text parts and image references (`{"type": "image", "image": k}`, k 1-based over the images of the
conversation, the same numbering the model uses in `target_image`). The pixels themselves live in
`Trajectory.pixels` while the trajectory runs and are never serialized; `images` keeps a small,
JSON-able description of each (where it came from, its size, the crop box).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Callable

from PIL import Image

from .loop.chat import IM_END, message_text, scored_text

# How a trajectory ended.
ANSWERED = "answered"            # the model gave a turn without a tool call
MAX_TOOL_CALLS = "max_tool_calls"
MAX_IMAGES = "max_images"
MAX_TOKENS = "max_tokens"
ENGINE_ERROR = "engine_error"    # the engine failed on this request; not a model mistake
DATA_ERROR = "data_error"        # the sample's own data could not be used
CAPPED = (MAX_TOOL_CALLS, MAX_IMAGES, MAX_TOKENS)
ERRORS = (ENGINE_ERROR, DATA_ERROR)
# A protocol whose released code ends a sample on a failed tool call (DeepEyes' loop breaks on any
# exception); the sample is still scored on its last turn.
TOOL_ERROR = "tool_error"


@dataclass
class Sample:
    """One benchmark question, with its images not yet loaded.

    `load_images` returns the input images as stored (or the frames of a video); it is called
    once, when the sample's trajectory starts, so a dataset never sits in memory whole."""

    task: str
    sample_id: str
    question: str
    answer: Any
    load_images: Callable[[], list[Image.Image]]
    is_video: bool = False
    meta: dict = field(default_factory=dict)
    # A sampled protocol's rollout of this question (0-based) and its seed (`pr_eval.loop.sampling`);
    # None for a greedy run's one trajectory per question.
    rollout: int | None = None
    seed: int | None = None


@dataclass
class ImageInfo:
    """Where one image of the conversation came from and how big it is as the model sees it."""

    kind: str                 # "input", "video", "frame" (selected from the video) or "crop"
    width: int
    height: int
    parent: int | None = None          # for crops and selected frames: the 1-based source index
    frame: int | None = None           # for video frames and their crops: the 1-based frame number
    box: list[int] | None = None       # for crops: [left, top, right, bottom] in the source's pixels
    source_size: list[int] | None = None  # for crops: [width, height] of the image that was cut
    original_size: list[int] | None = None  # for inputs: [width, height] as stored, before the resize


@dataclass
class ToolCall:
    """One tool request of the model and what came of it."""

    turn: int                 # index of the assistant generation that made it (0-based)
    raw: str                  # the text between the last <tool_call> and </tool_call>
    name: str | None = None
    arguments: dict | None = None
    ok: bool = False
    error_kind: str | None = None      # "malformed", "unknown_tool", "bad_arguments", ...
    error: str | None = None           # the message fed back to the model
    new_images: list[int] = field(default_factory=list)  # 1-based indices of images it added
    box_normalized: list[float] | None = None  # crop box after padding and clamping


@dataclass
class Generation:
    """Token accounting of one assistant turn."""

    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    # The token (or stop string) that ended the turn, as the decoded output shows it; None when
    # the token limit cut the turn. Records made before it existed leave it None.
    stop: str | None = None
    # The turn's text when its protocol does not keep it in the conversation (DeepEyes re-sends
    # the same request after a turn with neither a call nor an answer); None otherwise, and then
    # left out of the record.
    dropped: str | None = None

    @property
    def ends_with_eos(self) -> bool:
        """Whether the decoded turn ends with `<|im_end|>` (the reference's scored text keeps it)."""
        return self.stop == IM_END or (self.stop is None and self.finish_reason == "stop")


@dataclass
class Trajectory:
    task: str
    sample_id: str
    question: str
    target: Any
    protocol: str                      # protocol name
    fingerprint: str                   # protocol fingerprint
    meta: dict = field(default_factory=dict)
    is_video: bool = False
    messages: list[dict] = field(default_factory=list)
    images: list[ImageInfo] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    stop_reason: str | None = None     # None while running
    error: str | None = None
    scores: dict = field(default_factory=dict)
    frames_selected: bool = False
    rollout: int | None = None         # see Sample.rollout; left out of the record when None
    seed: int | None = None
    # The protocol's model family (pr_eval.families) where it is not Pixel Reasoner's; left out of
    # the record when None, so Pixel-Reasoner records stay as they were before families existed.
    family: str | None = None
    # Runtime only (never serialized): the pixels of `images` as shown to the model (a video is
    # the list of its frames); tools cut from these, as the reference's do.
    pixels: list = field(default_factory=list, repr=False, metadata={"runtime": True})
    started_at: float | None = field(default=None, repr=False, metadata={"runtime": True})  # time.time()

    # --- derived views -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    @property
    def answer_text(self) -> str:
        """The last assistant turn as the benchmarks' own metrics read it: without the stop token
        that ended it (`<|endoftext|>`, `<|eot_id|>`; the scored text keeps it)."""
        last = self.generations[-1] if self.generations else None
        text = last.dropped if last is not None and last.dropped is not None else last_assistant_text(self.messages)
        stop = last.stop if last is not None else None
        return text[: -len(stop)] if stop and text.endswith(stop) else text

    @property
    def scored_text(self) -> str:
        """What the paper-compatible accuracy reads: the conversation after the first assistant
        header, feedback turns and special tokens included (`chat.scored_text`)."""
        last = self.generations[-1] if self.generations else None
        return scored_text(self.messages, ends_with_eos=last is None or last.ends_with_eos)

    @property
    def used_tools(self) -> bool:
        return bool(self.tool_calls)

    # --- persistence ------------------------------------------------------------------------
    def to_record(self) -> dict:
        """Everything but the pixels, as plain JSON-able data (pixels are never copied)."""
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.metadata.get("runtime")}
        for name in ("rollout", "seed", "family"):  # records stay as they were before these existed
            if record[name] is None:
                del record[name]
        for generation in record["generations"]:
            if generation.get("dropped") is None:
                generation.pop("dropped", None)
        return record

    def to_json(self) -> str:
        return record_json(self.to_record())

    @classmethod
    def from_record(cls, record: dict) -> "Trajectory":
        """The one decoder of a saved trajectory (journal line, per-sample record, the adapter's
        response), ignoring keys it does not know (a per-sample record also has doc_id and
        metrics; a newer writer may add fields). Raises TypeError/ValueError when broken."""
        known = {f.name for f in fields(cls) if not f.metadata.get("runtime")}
        data = {k: v for k, v in record.items() if k in known}
        data["images"] = [_only(ImageInfo, i) for i in data.get("images") or []]
        data["tool_calls"] = [_only(ToolCall, c) for c in data.get("tool_calls") or []]
        data["generations"] = [_only(Generation, g) for g in data.get("generations") or []]
        data["messages"] = [m for m in data.get("messages") or [] if isinstance(m, dict) and "role" in m]
        for name in ("task", "sample_id", "question", "protocol", "fingerprint"):
            data[name] = "" if data.get(name) is None else str(data[name])
        data["meta"] = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        for name in ("stop_reason", "error"):
            data[name] = None if data.get(name) is None else str(data[name])
        for name in ("rollout", "seed"):
            data[name] = data[name] if isinstance(data.get(name), int) and not isinstance(data[name], bool) else None
        data["family"] = data["family"] if isinstance(data.get("family"), str) else None
        return cls(**data)

    def release_pixels(self) -> None:
        """Drop the images once the trajectory is finished, so finished work holds no pixels."""
        self.pixels = []


def _only(cls, value):
    """One record of `cls` from a dict, keys it does not know left out."""
    if not isinstance(value, dict):
        raise TypeError(f"{cls.__name__} is not an object: {str(value)[:60]}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in value.items() if k in names})


def _plain(value):
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def last_assistant_text(messages: list[dict]) -> str:
    """The last assistant turn's text: where the final answer is looked for ("" if none)."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return message_text(message)
    return ""


def record_json(record: dict) -> str:
    """A trajectory record as the text the model adapter answers lmms-eval with (and scoring reads
    back); a resumed run answers with the same text for a journaled record, so scores agree."""
    return json.dumps(record, ensure_ascii=False, default=str)
