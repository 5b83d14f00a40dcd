"""Do the protocol's pixel bounds reach the engine? Count the image tokens of real prompts.

The reference hands Qwen2.5-VL's processor min/max pixels ([401,408, 4,014,080]) through vLLM's
`mm_processor_kwargs`; whether vLLM 0.32 with transformers 5.x still applies them is what decides
how many tokens a V* image costs (protocol.md, "Resolution"). This builds the first prompt of a
sample exactly as a run does (the protocol's input resize included), sends it to the engine for one
token, and compares the prompt's length across image sizes with what the bounds imply: the text is
the same, so the difference in prompt tokens is the difference in image tokens.

    python scripts/image_tokens.py [--model tiny]      (scripts/gpu_check.sh runs it on CUDA vLLM)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

# (width, height) of the prompts compared: a small photo, a V*-sized one (2246x1582) and one whose
# input resize lands above the engine's upper clamp (so the engine must shrink it again).
SIZES = ((1000, 1000), (2246, 1582), (3000, 2000))
FACTOR = 28  # 14-pixel patches, merged 2x2: one token per 28x28 pixels


def qwen_resize(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's smart_resize, written out here so the expectation does not come from the code
    under test: round each side to a multiple of 28, then scale into [min_pixels, max_pixels]."""
    h = max(FACTOR, round(height / FACTOR) * FACTOR)
    w = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
        w = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / FACTOR) * FACTOR
        w = math.ceil(width * beta / FACTOR) * FACTOR
    return h, w


def expected_tokens(width: int, height: int, protocol) -> int:
    """Image tokens under the protocol: input resize (what pr-eval shows), then the engine's clamp."""
    h, w = qwen_resize(height, width, protocol.input_pixels.min_pixels, protocol.input_pixels.max_pixels)
    h, w = qwen_resize(h, w, protocol.engine_pixels.min_pixels, protocol.engine_pixels.max_pixels)
    return (h // FACTOR) * (w // FACTOR)


def prompt_tokens(engine, protocol, width: int, height: int) -> int:
    from PIL import Image

    from pr_eval.loop import steps as loop
    from pr_eval.trajectory import Sample

    image = Image.new("RGB", (width, height), (120, 130, 140))
    sample = Sample(task="probe", sample_id="probe-0", question="What is in the image?", answer="",
                    load_images=lambda: [image])
    traj = loop.start(sample, protocol)
    decoding = dataclasses.replace(protocol.decoding, max_new_tokens=1)
    [result] = engine.generate([loop.request(traj)], decoding)
    if result.error:
        raise RuntimeError(f"the engine refused a {width}x{height} prompt: {result.error}")
    return result.prompt_tokens


def measure(engine, protocol) -> list[dict]:
    """One row per size: expected and measured image tokens (measured relative to the first size)."""
    counts = [prompt_tokens(engine, protocol, w, h) for w, h in SIZES]
    expected = [expected_tokens(w, h, protocol) for w, h in SIZES]
    text = counts[0] - expected[0]  # the prompt's text tokens, if the first image costs what it should
    return [{"size": f"{w}x{h}", "prompt_tokens": n, "expected_image_tokens": e, "image_tokens": n - text,
             "ok": n - counts[0] == e - expected[0]}
            for (w, h), n, e in zip(SIZES, counts, expected)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args(argv)
    from pr_eval.engines.vllm import VLLMEngine
    from pr_eval.models import resolve_model
    from pr_eval.families import get_protocol
    from pr_eval.protocol import DEFAULT_PROTOCOL

    protocol = get_protocol(DEFAULT_PROTOCOL)
    engine = VLLMEngine(resolve_model(args.model), protocol)
    try:
        rows = measure(engine, protocol)
    finally:
        engine.close()
    print(f"image tokens under {protocol.name} (engine clamp {protocol.engine_pixels.min_pixels:,}-"
          f"{protocol.engine_pixels.max_pixels:,} px), {args.model}:")
    for r in rows:
        print(f"  {r['size']:>10}  prompt {r['prompt_tokens']:>6}  image tokens {r['image_tokens']:>5}  "
              f"expected {r['expected_image_tokens']:>5}  {'ok' if r['ok'] else 'DIFFERENT'}")
    ok = all(r["ok"] for r in rows)
    print("image-tokens: the protocol's pixel bounds reach the engine" if ok else
          "image-tokens: the engine does NOT apply the protocol's pixel bounds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
