"""A video sample as the reference's stack showed it: frame sizes, time step and M-RoPE positions.

The reference (vLLM 0.7.2, transformers 4.49, qwen-vl-utils 0.0.11) handed a video on as a list of
frames. What its stack computed is re-derived here from those versions' source, written out in
this file (nothing of theirs is imported), and compared with what the locked stack computes for
pr-eval's requests, where each engine decides it: vLLM's multimodal processor and its own M-RoPE
positions (offline engine), and transformers' processor and the model's position ids (hf engine).

1. qwen-vl-utils 0.0.11, `fetch_video` on a list: each frame through `fetch_image` (smart_resize,
   factor 28, between MIN_PIXELS 4*28*28 and the reference's video max_pixels 512*28*28); an odd
   count padded to even by repeating the last frame.
2. transformers 4.49 `Qwen2VLImageProcessor` on the video, with vLLM's mm_processor_kwargs as its
   bounds: smart_resize of the first frame's size between 401,408 and 4,014,080 pixels; grid
   (frames / 2, height / 14, width / 14).
3. `Qwen2_5_VLProcessor`: no fps passed, so `videos_kwargs` fps 2.0 and second_per_grid_ts =
   temporal_patch_size 2 / 2.0 = 1.0.
4. M-RoPE (vLLM 0.7.2 `get_input_positions`, transformers 4.49 `get_rope_index`): text counts on;
   the video's positions are (t * second_per_grid_t * tokens_per_second, h, w) offset by the text
   before it; the text after it continues from the largest position + 1.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from conftest import noise_image

from pr_eval.loop.steps import request, start
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.trajectory import Sample

pytestmark = pytest.mark.engine  # starts an engine: not in make test-fast

# frame sizes (width, height): MVBench's 320x240 and 480x270, tiny and sub-100k-pixel frames
# (below transformers 5's own video minimum, 128*28*28), HD frames above the 512*28*28 cap, a tall one
SIZES = [(64, 48), (176, 144), (300, 200), (320, 240), (480, 270), (640, 360), (1280, 720), (200, 900)]
COUNTS = [16, 15, 4]


# --- the reference's stack, re-derived -------------------------------------------------------------

def _round(x, f):
    return round(x / f) * f


def _ceil(x, f):
    return math.ceil(x / f) * f


def _floor(x, f):
    return math.floor(x / f) * f


def ref_smart_resize(height, width, factor, min_pixels, max_pixels):
    """qwen-vl-utils 0.0.11 / transformers 4.49 `smart_resize` (the two agree)."""
    h, w = max(factor, _round(height, factor)), max(factor, _round(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = _floor(height / beta, factor), _floor(width / beta, factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = _ceil(height * beta, factor), _ceil(width * beta, factor)
    return h, w


def reference_video(width, height, n):
    """(frame size as shown (w, h), frames after padding, grid (t, h, w), second_per_grid_t)."""
    fh, fw = ref_smart_resize(height, width, 28, 4 * 28 * 28, 512 * 28 * 28)       # stage 1
    frames = n + n % 2
    ph, pw = ref_smart_resize(fh, fw, 28, 401_408, 4_014_080)                     # stage 2
    return (fw, fh), frames, (frames // 2, ph // 14, pw // 14), 2 / 2.0            # stage 3


def reference_positions(length, offset, grid, second_per_grid_t, tokens_per_second):
    """Stage 4: the (3, length) M-RoPE positions of a prompt whose one video starts at `offset`."""
    t, h, w = grid[0], grid[1] // 2, grid[2] // 2
    before = np.tile(np.arange(offset), (3, 1))
    tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    times = (tt * second_per_grid_t * tokens_per_second).astype(np.int64)
    video = np.stack([times.ravel(), hh.ravel(), ww.ravel()]) + offset
    after_len = length - offset - t * h * w
    after = np.tile(np.arange(after_len), (3, 1)) + video.max() + 1
    return np.concatenate([before, video, after], axis=1)


def test_the_derivation_gives_the_issue_s_worked_numbers():
    """MVBench's 320x240 frames: shown at 308x252, 546 tokens per step, 4,368 for 16 frames; time
    positions 0, 2, ..., 14 on Qwen2.5-VL (tokens_per_second 2)."""
    shown, frames, grid, step = reference_video(320, 240, 16)
    assert shown == (308, 252) and frames == 16 and grid == (8, 42, 52) and step == 1.0
    assert grid[0] * grid[1] * grid[2] // 4 == 4368
    positions = reference_positions(5 + 4368 + 3, 5, grid, step, 2)
    assert sorted(set(positions[0, 5:5 + 4368].tolist())) == list(range(5, 5 + 16, 2))  # after 5 text tokens
    assert positions[:, 5 + 4368].tolist() == [5 + 25 + 1] * 3  # the text after: max(t, h, w) + 1


# --- what pr-eval's engines compute -------------------------------------------------------------------

def video_request(width, height, n):
    # frames no other test uses: vLLM's processor cache answers a video it has seen with no data
    frames = [noise_image(width, height, seed=9000 + 100 * n + k) for k in range(n)]
    sample = Sample("t", f"v{width}x{height}x{n}", "What happens?", "A", load_images=lambda: frames, is_video=True)
    traj = start(sample, P)
    assert traj.error is None, traj.error
    return request(traj)


def vllm_positions(engine, processed):
    """The positions vLLM's own Qwen2.5-VL model class computes for a processed prompt."""
    from transformers import AutoConfig
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as Model

    config = AutoConfig.from_pretrained(engine.model_path)
    shim = types.SimpleNamespace(config=config)
    shim.iter_mm_grid_thw = types.MethodType(Model.iter_mm_grid_thw, shim)
    [placeholder] = processed["mm_placeholders"]["video"]
    [item] = processed["mm_kwargs"]["video"]
    feature = types.SimpleNamespace(modality="video", mm_position=placeholder, data=item)
    positions, _ = Model.get_mrope_input_positions(shim, processed["prompt_token_ids"], [feature])
    return positions.numpy(), placeholder.offset, config.vision_config.tokens_per_second


@pytest.mark.parametrize("n", COUNTS)
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_offline_engine_shows_a_video_as_the_reference_did(engine, size, n):
    req = video_request(*size, n)
    shown, frames, grid, step = reference_video(*size, n)
    assert len(req.images[0]) == frames and {f.size for f in req.images[0]} == {shown}
    processed = engine.llm._preprocess_cmpl_one(engine._prompt(req))
    [item] = processed["mm_kwargs"]["video"]
    assert tuple(item["video_grid_thw"].data.tolist()) == grid
    assert float(item["second_per_grid_ts"].data) == step
    positions, offset, per_second = vllm_positions(engine, processed)
    want = reference_positions(len(processed["prompt_token_ids"]), offset, grid, step, per_second)
    assert np.array_equal(positions, want)


@pytest.fixture(scope="module")
def hf_engine(tiny_model):
    from pr_eval.engines.hf import HFEngine

    return HFEngine(tiny_model, P)


@pytest.mark.parametrize("size", [(64, 48), (320, 240), (1280, 720)], ids=["64x48", "320x240", "1280x720"])
def test_the_hf_engine_shows_a_video_as_the_reference_did(hf_engine, size):
    req = video_request(*size, 15)
    _, _, grid, step = reference_video(*size, 15)
    inputs = hf_engine.inputs(req)
    assert tuple(inputs["video_grid_thw"][0].tolist()) == grid
    assert [float(s) for s in inputs["second_per_grid_ts"]] == [step]
    model = hf_engine.model.model
    positions, _ = model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        video_grid_thw=inputs["video_grid_thw"],
                                        second_per_grid_ts=inputs["second_per_grid_ts"],
                                        attention_mask=inputs["attention_mask"])
    ids = inputs["input_ids"][0]
    video_token = hf_engine.model.config.video_token_id
    offset = int(torch.nonzero(ids == video_token)[0])
    want = reference_positions(len(ids), offset, grid, step, hf_engine.model.config.vision_config.tokens_per_second)
    assert np.array_equal(positions[:, 0].numpy(), want)
