"""The protocol's pixel bounds reach the engine: image tokens of real prompts, counted by vLLM."""

from __future__ import annotations

from conftest import load_script
from pr_eval.protocol import PIXEL_REASONER

image_tokens = load_script("image_tokens")


def test_qwen_resize_by_hand():
    # 2246x1582 (V*-sized): both sides rounded to multiples of 28, inside every bound
    assert image_tokens.qwen_resize(1582, 2246, 401_408, 4_014_080) == (1568, 2240)
    # 1988x2996 is 5.96 MP, above the engine's 4,014,080: scaled down, then floored to 28
    assert image_tokens.qwen_resize(1988, 2996, 401_408, 4_014_080) == (1624, 2436)
    # 100x100 is below 401,408: scaled up, then ceiled to 28
    assert image_tokens.qwen_resize(100, 100, 401_408, 4_014_080) == (644, 644)
    assert image_tokens.expected_tokens(2246, 1582, PIXEL_REASONER) == 56 * 80
    assert image_tokens.expected_tokens(3000, 2000, PIXEL_REASONER) == 58 * 87


def test_the_engine_applies_the_protocols_pixel_bounds(engine):
    rows = image_tokens.measure(engine, PIXEL_REASONER)
    assert [r["image_tokens"] for r in rows] == [1296, 4480, 5046], rows
    assert all(r["ok"] for r in rows)
