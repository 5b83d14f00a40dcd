from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol as _Interface
from typing import Sequence

from PIL import Image

from ..protocol import Decoding

# openai: a request may take this long before it counts as lost to a stalled server, and is tried
# this many more times after a transient failure (pr-eval --request-timeout / --retries). A
# 2,048-token turn of a served 7B model takes well under a minute, even in a full batch.
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_RETRIES = 3


class EngineError(Exception):
    """The engine could not be built or used at all (bad checkpoint, out of memory, ...)."""


@dataclass
class GenerationRequest:
    """One conversation to continue by one assistant turn.

    `messages` use the trajectory's neutral format: content parts `{"type": "text", "text": ...}`,
    `{"type": "image", "image": k}` and `{"type": "video", "video": k}`, where k is a 1-based index
    into `images` (a video's entry is the list of its frames).
    `constraint`, when set, is a regular expression the output must match (structured outputs);
    tests and benchmarks use it to make a real engine emit chosen tool calls."""

    messages: list[dict]
    images: list[Image.Image]
    constraint: str | None = None
    # This request's sampling seed (a sampled rollout's turn, `pr_eval.loop.sampling.turn_seed`);
    # None: the protocol's `Decoding.seed`, as every greedy run uses.
    seed: int | None = None
    # The trajectory this turn belongs to (pr_eval.loop.steps.request sets it): an engine spread over several
    # servers keeps a trajectory's turns on one, where its conversation is in the prefix cache.
    session: str | None = None

    def seed_or(self, decoding: Decoding) -> int:
        return decoding.seed if self.seed is None else self.seed


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None   # set when this request failed; the others of the batch stand
    # The token or stop string that ended the turn, as decoding the output's token ids with
    # special tokens shows it ("<|im_end|>"), when `text` leaves it out; None for a turn the
    # token limit cut off. The loop appends it: the reference reads the decoded token ids.
    stop: str | None = None


class Engine(_Interface):
    name: str

    def generate(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[GenerationResult]:
        """One result per request, in order. A request that fails gets `error` set; it never
        takes the batch down with it."""
        ...


class ContinuousEngine(Engine, _Interface):
    """An engine that also takes requests one at a time while others run (vLLM, OpenAI servers).

    The continuous loop uses it to let every trajectory go on the moment its own turn is done,
    instead of waiting for the slowest trajectory of the turn. Engines without `submit` run the
    continuous schedule turn by turn (see `pr_eval.loop.steps.effective_schedule`)."""

    def submit(self, request: GenerationRequest, decoding: Decoding) -> "Future[GenerationResult]":
        """Start one request and return at once. The future's result is the GenerationResult,
        with `error` set when this request failed; it raises only when the engine itself can no
        longer serve anyone (an EngineError: engine died, wrong API key, ...). Safe to call from
        any thread."""
        ...


def can_submit(engine) -> bool:
    """Whether `engine` is a ContinuousEngine."""
    return callable(getattr(engine, "submit", None))


def to_chat_messages(messages: list[dict]) -> list[dict]:
    """The neutral messages as a Hugging Face chat-template conversation (images as placeholders)."""
    chat = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            chat.append({"role": message["role"], "content": content})
            continue
        parts = [{"type": p["type"]} if p["type"] in ("image", "video") else {"type": "text", "text": p["text"]}
                 for p in content]
        chat.append({"role": message["role"], "content": parts})
    return chat


def media_in_order(request: GenerationRequest) -> tuple[list, list]:
    """(images, videos) in the order their placeholders appear in the conversation."""
    images, videos = [], []
    for message in request.messages:
        if isinstance(message["content"], str):
            continue
        for part in message["content"]:
            if part["type"] == "image":
                images.append(request.images[part["image"] - 1])
            elif part["type"] == "video":
                videos.append(request.images[part["video"] - 1])
    return images, videos


def video_input(frames, fps: float) -> tuple:
    """Frames already chosen by the protocol, as the engines take a decoded video: the array and the
    metadata that tells its processor not to sample frames again. `fps` (the protocol's
    `video_fps`) is the frame rate the processor is told, which sets the time step of the video's
    M-RoPE positions: seconds per temporal grid step = temporal_patch_size / fps."""
    import numpy as np

    n = len(frames)
    metadata = {"total_num_frames": n, "fps": float(fps), "duration": n / float(fps), "video_backend": "pr_eval",
                "frames_indices": list(range(n)), "do_sample_frames": False}
    return np.stack([np.asarray(f.convert("RGB")) for f in frames]), metadata
