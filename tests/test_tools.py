"""The crop rule against hand-computed boxes, and properties of parsing and executing tool calls."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.engines.base import GenerationResult
from pr_eval.loop import start, step
from pr_eval.protocol import PIXEL_REASONER_V1 as P
from pr_eval.tools import (
    ParsedCall,
    ToolError,
    crop,
    crop_box,
    is_tool_request,
    parse_tool_call,
    tool_call_body,
)
from pr_eval.trajectory import ANSWERED, MAX_IMAGES, MAX_TOKENS, Sample


@pytest.mark.parametrize("bbox,size,box", [
    # normalized: pad 0.1 each side, clamp, scale, round like PIL
    ([0.2, 0.3, 0.6, 0.7], (1000, 800), (100, 160, 700, 640)),
    ([0.0, 0.0, 0.5, 0.5], (1000, 800), (0, 0, 600, 480)),          # clamped at 0
    ([0.5, 0.5, 0.95, 0.99], (1000, 800), (400, 320, 1000, 800)),   # clamped at 1
    # any number >= 1: pixels of the target, divided by its width/height
    ([100, 160, 700, 640], (1000, 800), (0, 80, 800, 720)),
    ([0.5, 0.5, 600, 400], (1000, 800), (0, 0, 700, 480)),         # mixed -> all pixels: y2 400/800+0.1
    ([0.25, 0.25, 0.75, 0.75], (333, 333), (50, 50, 283, 283)),    # 49.95 -> 50, 283.05 -> 283
])
def test_crop_box_by_hand(bbox, size, box):
    assert crop_box(bbox, *size)[0] == box


def test_crop_box_normalized_result_is_padded_and_clamped():
    _, normalized = crop_box([0.05, 0.2, 0.5, 0.95], 1000, 1000)
    assert normalized == pytest.approx([0.0, 0.1, 0.6, 1.0])


@pytest.mark.parametrize("bbox,size", [
    ([0, 0, 0, 0], (250, 200)),                # padding gives 25x20
    ([0.9, 0.9, 0.1, 0.1], (1000, 800)),       # inverted box: empty after padding
    ([0.5, 0.5, 0.5, 0.5], (140, 140)),        # 28x28 is not MORE than 28
])
def test_crop_box_too_small(bbox, size):
    with pytest.raises(ToolError) as err:
        crop_box(bbox, *size)
    assert err.value.kind == "crop_too_small"


@pytest.mark.parametrize("bbox", [[0.1, 0.2, 0.3], "0,0,1,1", [0.1, None, 0.2, 0.3], [True, 0, 1, 1],
                                  [0.1, 0.2, float("nan"), 0.4]])
def test_crop_box_bad_arguments(bbox):
    with pytest.raises(ToolError) as err:
        crop_box(bbox, 100, 100)
    assert err.value.kind == "bad_arguments"


def test_tool_request_rule_and_last_call_wins():
    text = 'think <tool_call>{"a": 1}</tool_call> more <tool_call>\n{"b": 2}\n</tool_call>\n<|im_end|>'
    assert is_tool_request(text)
    assert json.loads(tool_call_body(text)) == {"b": 2}
    assert not is_tool_request("<tool_call>{}</tool_call> and then an answer \\boxed{A}")


def test_json_constants_and_non_objects_are_malformed():
    for body in ['{"name": "crop_image_normalized", "arguments": {"bbox_2d": [NaN, 0, 1, 1]}}', "[1, 2]", "",
                 '{"name": "crop_image_normalized"}']:
        with pytest.raises(ToolError) as err:
            parse_tool_call(body)
        assert err.value.kind == "malformed"


def test_crop_of_a_crop_is_cut_from_the_crop():
    original = Image.new("RGB", (2000, 1000), "red")
    shown_crop = Image.new("RGB", (560, 560), "blue")
    call = ParsedCall("", "crop_image_normalized", {"bbox_2d": [0.3, 0.3, 0.7, 0.7], "target_image": 2.0})
    result = crop(call, [original.resize((1008, 504)), shown_crop], {1: original}, P)
    assert result.source_size == (560, 560) and result.box == (112, 112, 448, 448)
    assert result.images[0].getpixel((0, 0)) == (0, 0, 255)


# --- properties: no text of any shape raises out of the parser or the executor --------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
arguments = st.fixed_dictionaries({}, optional={
    "bbox_2d": st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5000, 5000), max_size=5)
    | json_values,
    "target_image": json_values | st.integers(-3, 5) | st.floats(-3, 5),
    "target_frames": st.lists(st.integers(-3, 20), max_size=10) | json_values,
})
calls = st.fixed_dictionaries({"name": st.sampled_from(["crop_image_normalized", "select_frames", "zoom"])
                               | json_values, "arguments": arguments | json_values})
bodies = st.one_of(st.text(max_size=200), calls.map(json.dumps),
                   calls.map(json.dumps).map(lambda s: s[: len(s) // 2]))


def _turn(body: str) -> GenerationResult:
    return GenerationResult(text=f"Let me look.\n<tool_call>\n{body}\n</tool_call>", prompt_tokens=900,
                            output_tokens=40)


@settings(max_examples=300, deadline=None)
@given(body=bodies)
def test_any_tool_call_text_is_handled_without_raising(body):
    traj = start(Sample("t", "s", "q?", "A", load_images=lambda: [Image.new("RGB", (640, 480))]), P)
    step(traj, _turn(body), P)
    call = traj.tool_calls[0]
    if call.ok:
        assert traj.messages[-1]["content"][0]["text"].startswith("\nHere is the cropped image")
    else:
        assert call.error_kind and call.error.startswith("Execution Error: ")
        assert traj.messages[-1]["content"][0]["text"] == f"\nExecution error:\n{call.error}\n"
    assert not traj.finished


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_assistant_text_is_handled_without_raising(text):
    traj = start(Sample("t", "s", "q?", "A", load_images=lambda: [Image.new("RGB", (64, 64))]), P)
    step(traj, GenerationResult(text=text, prompt_tokens=10, output_tokens=10), P)
    assert traj.finished == (not is_tool_request(text))


# --- caps on images and tokens (pure, no engine) -------------------------------------------------

def test_image_cap_stops_before_the_seventeenth_image():
    images = [Image.new("RGB", (280, 280)) for _ in range(16)]
    traj = start(Sample("t", "s", "q?", "A", load_images=lambda: images), P)
    step(traj, _turn('{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0, 0, 1, 1], "target_image": 1}}'), P)
    assert traj.stop_reason == MAX_IMAGES and len(traj.images) == 16


def test_token_budget_stops_a_tool_turn_but_not_an_answer():
    traj = start(Sample("t", "s", "q?", "A", load_images=lambda: [Image.new("RGB", (280, 280))]), P)
    over = P.caps.max_total_tokens - 99
    step(traj, GenerationResult(text=_turn('{"name": "select_frames", "arguments": {}}').text,
                                prompt_tokens=over, output_tokens=100), P)
    assert traj.stop_reason == MAX_TOKENS and not traj.tool_calls
    traj = start(Sample("t", "s", "q?", "A", load_images=lambda: [Image.new("RGB", (280, 280))]), P)
    step(traj, GenerationResult(text="\\boxed{A}", prompt_tokens=over, output_tokens=100), P)
    assert traj.stop_reason == ANSWERED
