"""What a served model must be shown: the protocol's pixel bounds and video time step over HTTP.

The offline engine gives vLLM the protocol's `engine_pixels` as its `mm_processor_kwargs` and a
video's frame rate in the video's metadata. A `vllm serve` knows neither unless told: started
plainly, it shows images and video frames at the checkpoint's own bounds (on the demo model a
320x240-source MVBench video costs 1,144 tokens instead of 4,368, a selected frame 99 instead of
546) and reads a frame list at 1 fps. So the OpenAI engine sends both with every request
(`request_kwargs`: vLLM's per-request `mm_processor_kwargs` and `media_io_kwargs`, which vLLM
0.32 takes from a server started with `--trust-request-mm-kwargs`), and before the first
question asks each server to count the prompt tokens of known images and a video (`PROBES`),
which tells whether the server applied the bounds, whatever flags it was started with and
whatever server it is:

- `small`: a 56x56 image, which the protocol's lower bound enlarges (529 tokens; 4 at a Qwen
  checkpoint's default bounds);
- `large`: a 2576x1932 image, which the upper bound shrinks (5,002 tokens; 6,348 unbounded);
- `video`: two 56x56 frames, one temporal step, enlarged like `small` (529 tokens).

Only differences between the three replies are compared (`verdict`), so the chat template's own
tokens cancel out. The time step cannot be seen in a token count; it travels in
`media_io_kwargs`, which vLLM refuses unless trusted (HTTP 400: the server is refused here too).
`check_pixels` sends the probes through the caller's transport; the rest is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image

from ..data.imaging import FACTOR, reference_size
from ..protocol import PixelBounds, Protocol
from .base import EngineError, GenerationRequest
from .media import EncodedImages, SharedFolder, to_openai_messages

TEMPORAL_PATCH = 2  # frames per temporal step of a video


@dataclass(frozen=True)
class Probe:
    name: str
    size: tuple[int, int]  # width, height
    frames: int = 0        # 0: an image; else a video of this many frames


PROBES = (Probe("small", (56, 56)), Probe("large", (2576, 1932)), Probe("video", (56, 56), frames=2))


def request_kwargs(protocol: Protocol) -> dict:
    """The per-request fields of a vLLM chat completion that show the protocol's pixels and time
    step: `mm_processor_kwargs` (the processor's bounds, images and video frames alike) and
    `media_io_kwargs` (the frame rate of a frame-list video)."""
    bounds = protocol.engine_pixels
    return {"mm_processor_kwargs": {"min_pixels": bounds.min_pixels, "max_pixels": bounds.max_pixels},
            "media_io_kwargs": {"video": {"fps": protocol.video_fps}}}


def tokens(probe: Probe, bounds: PixelBounds) -> int:
    """The prompt tokens the probe's image or video costs at `bounds` (one per FACTOR x FACTOR
    pixels of the size the processor resizes it to: the same smart_resize as the inputs')."""
    w, h = reference_size(*probe.size, bounds)
    steps = -(-probe.frames // TEMPORAL_PATCH) if probe.frames else 1
    return steps * (w // FACTOR) * (h // FACTOR)


def expected(bounds: PixelBounds) -> dict[str, int]:
    return {p.name: tokens(p, bounds) for p in PROBES}


def probe_images(probe: Probe) -> list:
    """The probe's content: one image, or a video's list of frames (plain grey: the count, not the
    pixels, is what is checked, and a flat picture travels in a few bytes)."""
    image = Image.new("RGB", probe.size, (128, 128, 128))
    return [image] * probe.frames if probe.frames else image


def verdict(counts: dict[str, int], bounds: PixelBounds) -> str | None:
    """None when the prompt token counts of the probes (name -> the server's `prompt_tokens`) are
    those of a server that applied `bounds`; else what differs, in words."""
    want = expected(bounds)
    if any(not isinstance(counts.get(p.name), int) or counts[p.name] <= 0 for p in PROBES):
        return "it reports no prompt token counts"
    wrong = []
    for name in ("large", "video"):
        got, should = counts[name] - counts["small"], want[name] - want["small"]
        if got != should:
            what = "a 2576x1932 image" if name == "large" else "a 2-frame 56x56 video"
            wrong.append(f"{what} cost {got:+d} prompt tokens against a 56x56 image, {should:+d} at the bounds")
    return "; ".join(wrong) or None


def start_flags(protocol: Protocol) -> str:
    """The `vllm serve` flags that set the protocol's bounds and frame rate for every request."""
    b = protocol.engine_pixels
    return (f"--mm-processor-kwargs '{{\"min_pixels\": {b.min_pixels}, \"max_pixels\": {b.max_pixels}}}' "
            f"--media-io-kwargs '{{\"video\": {{\"fps\": {protocol.video_fps}}}}}'")


class ProbeFailed(Exception):
    """A probe request that failed; its text is the reason in one line."""


def fix_text(protocol: Protocol, per_request: bool) -> str:
    """How to start a server so that it passes the check."""
    flags = start_flags(protocol)
    first = ("start vllm serve with --trust-request-mm-kwargs (pr-eval sends the bounds with each request), "
             f"or with {flags}" if per_request else f"start the server with {flags}")
    return first + "; --no-pixel-check runs anyway, unchecked (for a model that is not Qwen2.5-VL)"


def check_pixels(url: str, send: Callable[[dict], object], protocol: Protocol, *, model: str,
                 transport, per_request: dict) -> dict:
    """Send the probes to `url` (`send(body)` returns the chat completion or raises ProbeFailed)
    with the `per_request` fields, and raise EngineError, in one line that names the fix, unless
    the server counts them as the protocol's engine bounds; else {prompt_tokens, at_bounds}."""
    bounds = protocol.engine_pixels
    # the run's own transport for files; flat probe pictures travel inline as tiny PNGs
    media = transport if isinstance(transport, SharedFolder) else EncodedImages("png")
    counts = {}
    for probe in PROBES:
        kind = "video" if probe.frames else "image"
        request = GenerationRequest([{"role": "user", "content": [{"type": kind, kind: 1},
                                                                  {"type": "text", "text": "."}]}],
                                    [probe_images(probe)])
        body = dict(model=model, messages=to_openai_messages(request, media), max_tokens=1, temperature=0.0,
                    n=1, stream=False, **({"extra_body": dict(per_request)} if per_request else {}))
        try:
            response = send(body)
        except ProbeFailed as exc:
            if "trust-request-mm-kwargs" in str(exc):  # vLLM's refusal of per-request settings
                raise EngineError(f"{url} refuses the protocol's per-request pixel bounds and video frame "
                                  f"rate: start vllm serve with --trust-request-mm-kwargs") from None
            raise EngineError(f"{url} failed the pixel check (a {probe.size[0]}x{probe.size[1]} {kind}): "
                              f"{exc}; {fix_text(protocol, bool(per_request))}") from None
        counts[probe.name] = getattr(getattr(response, "usage", None), "prompt_tokens", None)
    problem = verdict(counts, bounds)
    if problem is not None:
        raise EngineError(f"{url} does not show images at the protocol's pixel bounds "
                          f"[{bounds.min_pixels}, {bounds.max_pixels}]: {problem}; "
                          f"{fix_text(protocol, bool(per_request))}")
    return {"prompt_tokens": counts, "at_bounds": expected(bounds)}
