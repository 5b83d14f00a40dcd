"""Conformance of the `mini-o3` protocols with Mini-o3's released evaluation (Mini-o3/Mini-o3@8654dbf).

The reference is the verl val-only run of its README: verl/utils/dataset/multimodal_dataset.py (the
first user turn and image), verl/workers/rollout/vllm_rollout/vllm_async_engine.py (the loop, the
call's regex and `eval`, `process_image`), function_tools.py (source, box, crop), constants.py (the
prompts) and verl/utils/reward_score/general_qa_tool.py / general_qa_tool_mc.py (the two scoring
paths). Each row names the function and line it reproduces. Expectations were derived by hand from
that source (the arithmetic is written out) and then checked, row by row, against the reference's
own functions run outside this repository; the reference is not imported here. Turns are driven
through `pr_eval.loop.steps.start`/`step`, as an engine would drive them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.loop import chat
from pr_eval.engines.base import GenerationResult, media_in_order
from pr_eval.families import get_protocol
from pr_eval.families import mini_o3 as mo
from pr_eval.families import mini_o3_images as moi
from pr_eval.families.base import Verdict
from pr_eval.loop.steps import max_generations, request, start, step
from pr_eval.protocol import PixelBounds, with_overrides
from pr_eval.trajectory import ANSWERED, DATA_ERROR, MAX_IMAGES, MAX_TOKENS, MAX_TOOL_CALLS, Sample

MINI_O3, MC, SAMPLED = get_protocol("mini-o3"), get_protocol("mini-o3-mc"), get_protocol("mini-o3-sampled")
FAMILY = mo.FAMILY
QUESTION = "What is the color of the cup?\n(A) red\n(B) blue\nAnswer with the option's letter from the given choices directly."
G, END = "<grounding>", "</grounding>"

# constants.py:1 and :7, copied by hand from the reference (typos "outputing", "the the" included)
SYSTEM = ("You are a helpful assistant. Answer the user's question based on the image provided. Output your thinking "
          "process within the <think> and </think> tags. Whenever you find anything unclear, you can zoom in a specific "
          "region in the given image to see more clearly by outputing <grounding>{\"bbox_2d\": [x0, y0, x1, y1], "
          "\"source\": \"original_image\"}</grounding>, where (x0, y0) and (x1, y1) are the top-left and bottom-right "
          "coordinates of the region that you want to zoom in, respectively (suppose the width and height of the image "
          "are 1.0), and 'source' refers to the image that you zoom in and could be either 'original_image' or "
          "'observation_i'. Once the final answer is confirmed, put it within <answer> and </answer>.")
TOOL_AFTER = (".\nContinue your reasoning process inside <think> and </think>. If needed, you can continue to zoom in on "
              "the original image or any of the observations, by outputting <grounding> and </grounding> as before. If "
              "the final answer is confirmed, put your final answer inside <answer> and </answer>.")
ERROR_TAIL = ("Please analyze the error information obtained from the function tool and adjust your response. Countinue "
              "your reasoning process inside <think> and </think>.")


def error_text(message: str) -> str:
    """vllm_async_engine.py:535 + :567: f"... Error Information: {error_info}.\\n" + constants.py:9."""
    return f"ERROR occurs during grounding. Error Information: {message}.\n" + ERROR_TAIL


def pattern(w: int, h: int) -> Image.Image:
    """An image whose every pixel says where it is (R = x mod 256, G = y mod 256, B = the 256-block)."""
    y, x = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([x % 256, y % 256, (x // 256) * 16 + y // 256], -1).astype(np.uint8))


def call(bbox: str, source: str = '"original_image"', think: str = "<think>zoom</think> ") -> str:
    return f'{think}{G}{{"bbox_2d": {bbox}, "source": {source}}}{END}'


def gen(text: str, prompt: int = 1000, output: int = 50) -> GenerationResult:
    """The engine's result: a call turn stops at `</grounding>`, an answer at `<|im_end|>`."""
    stop = END if text.endswith(END) else "<|im_end|>"
    return GenerationResult(text=text[: -len(stop)] if stop == END else text, prompt_tokens=prompt,
                            output_tokens=output, stop=stop)


def run(turns, image=None, protocol=MINI_O3, prompts=None):
    traj = start(Sample("vstar", "1", QUESTION, "B", load_images=lambda: [image or pattern(1024, 768)]), protocol)
    for k, text in enumerate(turns):
        step(traj, gen(text, prompt=(prompts or {}).get(k, 1000)), protocol)
    return traj


def last_user(traj) -> str:
    return chat.message_text(traj.messages[-1]) if traj.messages[-1]["role"] == "user" else ""


# --- Prompts ----------------------------------------------------------------------------------------

def test_the_prompts_are_the_references_byte_for_byte():
    assert mo.MO_SYSTEM == SYSTEM and MINI_O3.system_prompt == SYSTEM                                 # constants.py:1
    assert mo.MO_TOOL_PROMPT.format(action_turn=3, observation_turn=4) == (                            # constants.py:7
        "After the above Action 3, here is the the zoom-in image (Observation 4):\n"
        "<|vision_start|><|image_pad|><|vision_end|>" + TOOL_AFTER)
    assert mo.MO_ERROR.format(message="boom") == error_text("boom")                                   # engine :535, constants.py:9
    # general_qa_tool.py:7 and :9 (digests of the reference's strings; lengths 500 and 1491)
    assert hashlib.sha256(mo.MO_JUDGE_SYSTEM.encode()).hexdigest() == \
        "35e135a53f6a53477dbf9bfa62839e147fd3d38921aa4cf2a0aa4928be5dc12e"
    assert hashlib.sha256(mo.MO_JUDGE_QUERY.encode()).hexdigest() == \
        "da9816361208f6beb937089cb9f67da44b739a8652cf3b60052fbecb029e31a9"
    assert FAMILY.judge.prompt_texts == (mo.MO_JUDGE_SYSTEM, mo.MO_JUDGE_QUERY)


def test_the_first_prompt_is_the_problem_with_the_image_for_its_placeholder():
    """multimodal_dataset.py:34-52, 225-229: [system, user `problem`], `<image>` -> the vision markers."""
    traj = run([])
    assert chat.render(traj.messages, add_generation_prompt=True) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\n"
        f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert traj.messages[1]["content"] == [{"type": "image", "image": 1}, {"type": "text", "text": "\n" + QUESTION}]
    assert FAMILY.user_text(Sample("v", "1", QUESTION, "B", load_images=list), MINI_O3) == "<image>\n" + QUESTION


# --- The first image (multimodal_dataset.py:79-113; engine :393-395, :427-430) ------------------------

@pytest.mark.parametrize("stored, shown", [
    ((2246, 1582), (1685, 1186)),   # f = sqrt(2e6 / 3,553,172) = 0.75025: int(1685.07), int(1186.9)
    ((4000, 3000), (1632, 1224)),   # f = sqrt(2e6 / 12e6) = 0.40825: int(1632.99), int(1224.7)
    ((150, 100), (244, 163)),       # f = sqrt(40,000 / 15,000) = 1.63299: int(244.9), int(163.3)
    ((1024, 768), (1024, 768)),     # 786,432 px: inside the bounds, untouched
])
def test_the_first_image_is_resized_with_lanczos_into_the_bounds(stored, shown):
    image = pattern(*stored)
    traj = run([], image=image)
    info = traj.images[0]
    assert (info.width, info.height, info.original_size) == (*shown, list(stored))
    expected = image if stored == shown else image.resize(shown, Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(traj.pixels[0]), np.asarray(expected))


def test_a_side_under_28_after_the_resize_is_a_data_error():
    """l.108's assertion (the reference's dataset then serves the next question: a deliberate difference)."""
    traj = run([], image=pattern(3000, 14))   # 42,000 px: no resize, a 14 px side
    assert traj.stop_reason == DATA_ERROR and "larger than 28 * 28" in traj.error
    assert traj.messages[0]["content"] == SYSTEM and chat.message_text(traj.messages[1]) == "<image>\n" + QUESTION


# --- Calls: detection, parsing, source, box (engine :520-533, :657, :698-703; function_tools.py:29-74) -

@dataclass(frozen=True)
class CallRow:
    id: str
    turn: str
    box: list | None = None     # the crop box in the source's pixels when the call succeeds
    error: str | None = None    # str(e) fed back otherwise
    kind: str | None = None
    cites: str = ""
    resized: tuple = ()         # the NEAREST resizes of a crop outside the bounds, in order


NO_MATCH = "'NoneType' object has no attribute 'group'"
CALL_ROWS = [
    CallRow("relative box on the 1024x768 original", call("[0.25, 0.5, 0.75, 1.0]"), [256, 384, 768, 767],
            cites="function_tools.py:52-63: 0.25*1024, 0.5*768, 0.75*1024, min(768, 767)"),
    CallRow("arithmetic in the box is eval'd", call("[0.5-0.25, 0.5, 3/4, 1]"), [256, 384, 768, 767], cites="engine :526"),
    CallRow("single-quoted source", call("[0, 0, 0.5, 0.5]", "'original_image'"), [0, 0, 512, 384], cites="engine :523"),
    CallRow("mixed quotes pass the character class", call("[0, 0, 0.5, 0.5]", "\"original_image'"), [0, 0, 512, 384]),
    CallRow("observation_0 is the original", call("[0, 0, 0.5, 0.5]", '"observation_0"'), [0, 0, 512, 384],
            cites="function_tools.py:42-45"),
    CallRow("the whole image loses its last row and column", call("[0, 0, 1, 1]"), [0, 0, 1023, 767],
            cites="function_tools.py:63"),
    CallRow("no-space JSON", f'{G}{{"bbox_2d":[0.1,0.1,0.5,0.5],"source":"original_image"}}{END}', error=NO_MATCH,
            kind="malformed", cites="engine :523-525"),
    CallRow("newline inside the tag", f'{G}\n{{"bbox_2d": [0.1, 0.1, 0.5, 0.5], "source": "original_image"}}\n{END}',
            error=NO_MATCH, kind="malformed"),
    CallRow("missing source", f'{G}{{"bbox_2d": [0.1, 0.1, 0.5, 0.5]}}{END}', error=NO_MATCH, kind="malformed"),
    CallRow("a space before the closing tag", f'{G}{{"bbox_2d": [0, 0, 1, 1], "source": "original_image"}} {END}',
            error=NO_MATCH, kind="malformed"),
    CallRow("an extra key joins the source", f'{G}{{"bbox_2d": [0, 0, 1, 1], "source": "original_image", "label": "cup"}}{END}',
            error="The 'source' argument \"original_image\", \"label\": \"cup\" does not match the pattern "
                  "'observation_([0-9]*)'.", kind="bad_target", cites="engine :523 (greedy source group)"),
    CallRow("JSON null", call("null"), error="name 'null' is not defined", kind="malformed", cites="engine :526"),
    CallRow("a syntax error", call("[0.1, 0.1 0.5, 0.5]"),
            error="invalid syntax. Perhaps you forgot a comma? (<string>, line 1)", kind="malformed"),
    CallRow("a tuple fails the empty assertion", call("(0.1, 0.1, 0.5, 0.5)"), error="", kind="bad_arguments",
            cites="function_tools.py:34"),
    CallRow("three values fail the empty assertion", call("[0.1, 0.1, 0.5]"), error="", kind="bad_arguments"),
    CallRow("pixel coordinates by mistake", call("[100, 100, 400, 400]"),
            error="The bounding box is not valid in width: [102400, 76800, 1023, 767]", kind="crop_too_small",
            cites="function_tools.py:62-65: 100*1024, 100*768, min(409600, 1023), min(307200, 767)"),
    CallRow("an empty height", call("[0.1, 0.5, 0.5, 0.5]"),
            error="The bounding box is not valid in height: [102, 384, 512, 384]", kind="crop_too_small",
            cites="function_tools.py:66: int(102.4), 384, 512, 384"),
    CallRow("a 1023:1 box", call("[0, 0, 1, 0.002]"),
            error="The absolute aspect ratio of the bounding box exceeds 200, which is too large.", kind="crop_too_small",
            cites="function_tools.py:68-71: int(0.002*768) = 1"),
    CallRow("exactly 200:1", call("[0, 0, 0.5859375, 0.00390625]"),
            error="The absolute aspect ratio of the bounding box exceeds 200, which is too large.", kind="crop_too_small",
            cites="function_tools.py:70: 600 / 3 >= 200 (75/128*1024, 768/256)"),
    CallRow("just under 200:1", call("[0, 0, 0.5830078125, 0.00390625]"), [0, 0, 597, 3], resized=((2821, 14), (5643, 29)),
            cites="597 / 3 = 199; 1,791 px: f = sqrt(40,000/1,791) = 4.7259 -> 2821x14; 14 < 28: x2 +1 (engine :202-210)"),
    CallRow("observation_x", call("[0, 0, 1, 1]", '"observation_x"'),
            error="The 'source' argument \"observation_x\" does not match the pattern 'observation_([0-9]*)'.",
            kind="bad_target", cites="function_tools.py:41-47"),
    CallRow("Original_image is no source", call("[0, 0, 1, 1]", '"Original_image"'),
            error="The 'source' argument \"Original_image\" does not match the pattern 'observation_([0-9]*)'.",
            kind="bad_target"),
    CallRow("a crop that does not exist", call("[0, 0, 1, 1]", '"observation_1"'),
            error='Error in predicting the source observation: "observation_1".', kind="bad_target",
            cites="function_tools.py:49"),
    CallRow("None times the width", call("[None, 0, 1, 1]"),
            error="unsupported operand type(s) for *: 'NoneType' and 'int'", kind="bad_arguments", cites="function_tools.py:54"),
    CallRow("infinity", call("[1e400, 0, 1, 1]"), error="cannot convert float infinity to integer", kind="bad_arguments"),
    CallRow("a string repeated by the width", call('["7", 0, 1, 1]'),
            error="The bounding box is not valid in width: [" + "7" * 1024 + ", 0, 1023, 767]", kind="crop_too_small",
            cites="function_tools.py:54, 62: '7'*1024, int() of it"),
    CallRow("an int past 4300 digits cannot be printed in the message", call("[10**5000, 0, 1, 1]"),
            error="Exceeds the limit (4300 digits) for integer string conversion; use sys.set_int_max_str_digits() "
                  "to increase the limit", kind="crop_too_small", cites="function_tools.py:65's f-string"),
    CallRow("refused: a call eval would run", call("__import__('os').getcwd()"),
            error="a Call expression, which eval would run", kind="malformed", cites="deliberate difference"),
    CallRow("refused: a name of the engine's module", call("[time, 0, 1, 1]"),
            error="the name 'time', which eval would resolve", kind="malformed", cites="deliberate difference"),
    CallRow("refused: a repetition past a million items", call('["x" * 1000, 0, 1, 1]'),
            error="a repetition to 1,024,000 items", kind="bad_arguments", cites="deliberate difference"),
]


@pytest.mark.parametrize("row", CALL_ROWS, ids=lambda r: r.id)
def test_call_rows(row):
    traj = run([row.turn])
    (record,) = traj.tool_calls
    assert record.name == "grounding" and record.turn == 0 and traj.stop_reason is None
    assert traj.to_json()   # whatever eval returned, the record can be written
    if row.box is not None:
        assert record.ok and record.error is None
        info = traj.images[1]
        assert (info.box, info.source_size, info.parent) == (row.box, [1024, 768], 1)
        assert record.box_normalized == [row.box[0] / 1024, row.box[1] / 768, row.box[2] / 1024, row.box[3] / 768]
        expected = pattern(1024, 768).crop(tuple(row.box))   # inside the bounds: shown as cut
        for size in row.resized:
            expected = expected.resize(size, Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(traj.pixels[1]), np.asarray(expected))
        assert last_user(traj) == "After the above Action 0, here is the the zoom-in image (Observation 1):\n" + TOOL_AFTER
    else:
        assert not record.ok and record.error_kind == row.kind and record.error == row.error
        assert last_user(traj) == error_text(row.error) and len(traj.pixels) == 1


def test_a_refused_call_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    traj = run([call("[open('pwned', 'w'), 0, 1, 1]")])
    assert not (tmp_path / "pwned").exists()
    assert last_user(traj) == error_text("a Call expression, which eval would run")


def test_error_texts_keep_the_double_full_stop_and_the_empty_message():
    """engine :535: f"{error_info}.\\n": a message ending in "." gives "..", an empty one ": ."."""
    assert last_user(run([call("[0, 0, 1, 0.002]")])).startswith(
        "ERROR occurs during grounding. Error Information: The absolute aspect ratio of the bounding box exceeds "
        "200, which is too large..\nPlease analyze")
    assert last_user(run([call("(0, 0, 1, 1)")])).startswith("ERROR occurs during grounding. Error Information: .\n")


def test_the_call_read_is_the_last_one_and_detection_needs_both_tags():
    """engine :657 finds pairs; :523's leading `.*` reads the LAST `<grounding>{"bbox_2d": `."""
    two = call("[0, 0, 0.5, 0.5]") + " " + call("[0.5, 0.5, 1, 1]", think="")
    assert run([two]).images[1].box == [512, 384, 1023, 767]
    unclosed = run(['<think>t</think> <grounding>{"bbox_2d": [0, 0, 1, 1], "source": "original_image"}'])
    assert unclosed.stop_reason == ANSWERED and not unclosed.tool_calls


def test_a_turn_is_kept_as_decoded_without_special_tokens():
    """engine :697 decodes with skip_special_tokens=True: an <|endoftext|> stop is not part of the turn."""
    traj = start(Sample("vstar", "1", QUESTION, "B", load_images=lambda: [pattern(1024, 768)]), MC)
    step(traj, GenerationResult(text="<answer>B</answer>", prompt_tokens=10, output_tokens=5, stop="<|endoftext|>"), MC)
    assert chat.message_text(traj.messages[-1]) == "<answer>B</answer>" and traj.stop_reason == ANSWERED


# --- Crops and their sources (function_tools.py:8-27, 52-74; engine :189-223, :538-558) --------------

def test_crops_are_cut_from_the_full_resolution_original_and_resized_with_nearest():
    image = pattern(2246, 1582)
    traj = run([call("[0, 0, 1, 1]"), call("[0.5, 0.5, 0.51, 0.51]")], image=image)
    whole, small = traj.images[1], traj.images[2]
    assert (traj.images[0].width, traj.images[0].height) == (1685, 1186)
    # crop 2245x1581 (3,549,345 px): f = sqrt(2e6 / 3,549,345) = 0.75066 -> int(1685.2), int(1186.8)
    assert (whole.width, whole.height, whole.box, whole.source_size) == (1685, 1186, [0, 0, 2245, 1581], [2246, 1582])
    # int(1123.0), int(791.0), int(1145.46), int(806.82): 22x15 = 330 px; f = sqrt(40,000/330) = 11.0096
    assert (small.width, small.height, small.box, small.parent) == (242, 165, [1123, 791, 1145, 806], 1)
    expected = image.crop((1123, 791, 1145, 806)).resize((242, 165), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(traj.pixels[2]), np.asarray(expected))


def test_observations_are_the_unresized_crops_and_the_numbering_counts_error_turns():
    """constants.py:7 with action_turn = current_iteration (all generations, error turns included) while
    observation_i indexes successful crops (function_tools.py:49-50): after an error turn the first crop is
    announced as Observation 2 but is observation_1."""
    image = pattern(1000, 1000)
    traj = run([call("null"), call("[0.1, 0.1, 0.12, 0.123]"), call("[0, 0, 1, 1]", '"observation_2"'),
                call("[0.5, 0, 1, 1]", '"observation_1"')], image=image)
    first, second = traj.images[1], traj.images[2]
    # int(100.0), int(100.0), int(120.0), int(123.0): 20x23 = 460 px; f = sqrt(40,000/460) = 9.325 -> 186x214
    assert (first.width, first.height, first.box) == (186, 214, [100, 100, 120, 123])
    texts = [chat.message_text(m) for m in traj.messages if m["role"] == "user"][1:]
    assert texts[1] == "After the above Action 1, here is the the zoom-in image (Observation 2):\n" + TOOL_AFTER
    assert texts[2] == error_text('Error in predicting the source observation: "observation_2".')
    assert texts[3] == "After the above Action 3, here is the the zoom-in image (Observation 4):\n" + TOOL_AFTER
    # observation_1 is the 20x23 crop as cut: int(0.5*20), 0, min(20, 19), min(23, 22): 9x22 = 198 px;
    # f = sqrt(40,000/198) = 14.2134 -> int(127.9), int(312.7); its parent is image 2
    assert (second.width, second.height, second.box, second.source_size, second.parent) == (127, 312, [10, 0, 19, 22], [20, 23], 2)
    expected = image.crop((110, 100, 119, 122)).resize((127, 312), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(traj.pixels[2]), np.asarray(expected))
    assert [c.ok for c in traj.tool_calls] == [False, True, False, True] and traj.tool_calls[3].new_images == [3]


def test_the_engine_is_sent_only_the_shown_images():
    traj = run([call("[0, 0, 1, 1]")], image=pattern(2246, 1582))
    images, _ = media_in_order(request(traj))
    assert [i.size for i in images] == [(1685, 1186), (1685, 1186)] and images == traj.pixels


def test_the_crop_sources_are_dropped_when_the_trajectory_is_handed_on():
    """However it ended: an engine error never reaches the family's own step (pr_eval.loop.steps.finished)."""
    from pr_eval.engines.base import GenerationResult
    from pr_eval.loop.steps import finished, step

    traj = run([call("[0, 0, 1, 1]"), "<answer>B</answer>"])
    lost = run([call("[0, 0, 1, 1]")])
    step(lost, GenerationResult(text="", error="the engine refused the request"), MINI_O3)
    assert traj.stop_reason == ANSWERED and lost.stop_reason == "engine_error"
    assert id(traj) in mo._SOURCES and id(lost) in mo._SOURCES
    for t in (traj, lost):
        finished(t, None)
        assert id(t) not in mo._SOURCES and t.pixels == []


@pytest.mark.parametrize("size, shown", [
    ((20, 23), (186, 214)),       # the note's example: up to 40,000 px
    ((999, 5), (5655, 29)),       # f = sqrt(40,000/4,995) = 2.82984 -> 2827x14; 14 < 28: int(2827*2+1), int(14*2+1)
    ((2245, 1581), (1685, 1186)),
    ((300, 200), (300, 200)),     # 60,000 px: as cut
])
def test_process_image(size, shown):
    """vllm_async_engine.py:189-223 with max_pixels 2,000,000 and min_pixels 40,000 (main_ppo.py:127-128)."""
    assert moi.shown_crop(Image.new("RGB", size), MINI_O3.rules.crop_pixels, 190).size == shown


# --- Caps (engine :648-653, :661-734) -----------------------------------------------------------------

def test_a_call_in_the_twelfth_generation_is_not_run():
    traj = run([call("null")] * 12)
    assert max_generations(MINI_O3) == 12 and len(traj.generations) == 12
    assert traj.stop_reason == MAX_TOOL_CALLS and len(traj.tool_calls) == 11
    assert traj.messages[-1]["role"] == "assistant"


def test_twelve_images_in_the_prompt_stop_a_call():
    traj = run([call("[0, 0, 0.5, 0.5]")] * 12)
    assert traj.stop_reason == MAX_IMAGES and len(traj.pixels) == 12 and len(traj.tool_calls) == 11
    capped = run([call("[0, 0, 0.5, 0.5]")] * 3, protocol=with_overrides(MINI_O3, max_images=3))
    assert capped.stop_reason == MAX_IMAGES and len(capped.tool_calls) == 2 and len(capped.generations) == 3


@pytest.mark.parametrize("output, stopped", [(768, True), (767, False)])
def test_a_call_at_30768_tokens_exceeds(output, stopped):
    """engine :708: context_length (prompt + this turn) >= max_total_response_length 32,768 - 2,000."""
    traj = start(Sample("vstar", "1", QUESTION, "B", load_images=lambda: [pattern(1024, 768)]), MINI_O3)
    step(traj, GenerationResult(text=call("[0, 0, 1, 1]")[:-len(END)], prompt_tokens=30_000, output_tokens=output,
                                stop=END), MINI_O3)
    assert (traj.stop_reason == MAX_TOKENS) is stopped and len(traj.tool_calls) == (0 if stopped else 1)


@pytest.mark.parametrize("first", [call("[0, 0, 1, 1]"), call("null")], ids=["crop", "error"])
def test_feedback_that_reaches_the_limit_is_taken_back(first):
    """engine :715-725: the context with the feedback >= 30,768 tokens: the feedback (and its image) is
    taken back and the trajectory exceeds; pr-eval sees it in the next prompt's length (a difference)."""
    traj = run([first, "<answer>B</answer>"], prompts={1: 30_768})
    assert traj.stop_reason == MAX_TOKENS and traj.generations[1].dropped == "<answer>B</answer>"
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant"]
    assert len(traj.pixels) == len(traj.images) == 1 and not traj.tool_calls
    assert FAMILY.verdict(traj, "B") == Verdict(0.0, "")
    kept = run([first, "<answer>B</answer>"], prompts={1: 30_767})
    assert kept.stop_reason == ANSWERED and FAMILY.verdict(kept, "B") == Verdict(None, "B")


def test_the_first_prompt_is_never_taken_back():
    """engine :661-725: the checks follow a generation; the first prompt is sent whatever its length."""
    traj = run(["<answer>B</answer>"], prompts={0: 40_000})
    assert traj.stop_reason == ANSWERED and traj.generations[0].dropped is None


# --- Scoring: the README command's path (general_qa_tool.py:283-316) and the rule (general_qa_tool_mc.py) -

@pytest.mark.parametrize("turns, verdict", [
    (["<think>t</think> <answer>B</answer>"], Verdict(None, "B")),
    ([call("[0, 0, 1, 1]"), "<answer> (B) red </answer>"], Verdict(None, " (B) red ")),
    (["<answer>A</answer> " + call("[0, 0, 1, 1]", think=""), "<answer>B</answer>"], Verdict(None, "A")),  # the first
    (["<think>t</think> <answer>X" + call("[0, 0, 1, 1]", think=""), "Y</answer>"], Verdict(None, f"X{call('[0, 0, 1, 1]', think='')} Y")),
    (["<think>no tags</think> B"], Verdict(0.0, "")),        # no answer: 0, the judge is not asked
    (["<answer></answer>"], Verdict(None, "")),             # an empty answer still goes to the judge
    (["<ANSWER>B</ANSWER>"], Verdict(0.0, "")),
])
def test_the_judge_path_reads_the_first_answer_of_all_turns_joined(turns, verdict):
    traj = run(turns)
    assert FAMILY.verdict(traj, "B") == verdict


@pytest.mark.parametrize("answer, gold, score", [
    (" B ", "B", 1.0),                  # ans.strip() == gold.strip()
    (" (B) red", "B", 0.0),             # the patterns see the leading space
    ("(B) red", "B", 1.0), ("B. red", "B", 1.0), ("B.", "B", 1.0),
    ("b", "B", 0.0), ("The answer is B", "B", 0.0), ("(b) red", "B", 0.0),
    ("B", " B\n", 1.0),                 # the gold is stripped
    ("A", "B", 0.0),
])
def test_the_multiple_choice_rule(answer, gold, score):
    """general_qa_tool_mc.py:194-234 (the note's examples first)."""
    traj = run([f"<think>t</think> <answer>{answer}</answer>"], protocol=MC)
    assert FAMILY.verdict(traj, gold) == Verdict(score, answer)


def test_the_rule_reads_the_last_answer_of_the_last_turn():
    assert FAMILY.verdict(run(["<answer>A</answer><answer>B</answer>"], protocol=MC), "B") == Verdict(1.0, "B")
    assert FAMILY.verdict(run([call("[0, 0, 1, 1]") + "<answer>B</answer>", "<answer>A</answer>"], protocol=MC),
                          "B") == Verdict(0.0, "A")
    assert FAMILY.verdict(run(["no answer"], protocol=MC), "B") == Verdict(0.0, "")
    assert FAMILY.verdict(run(["<answer>B</answer>"], protocol=MC), ["B"]) == Verdict(0.0, "")  # filtered: 0


def test_judge_messages_are_the_references():
    """general_qa_tool.py:35-59, 307-309: text parts, question = the `problem` (return_raw_chat=True)."""
    traj = run(["<answer> B </answer>"])
    messages = FAMILY.judge_messages(traj, "B", FAMILY.verdict(traj, "B"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": mo.MO_JUDGE_SYSTEM}]
    (part,) = messages[1]["content"]
    assert part["type"] == "text" and part["text"].startswith(
        "I will give you a question related to an image and the following text as inputs:\n\n1. **Question Related "
        f"to the Image**: <image>\n{QUESTION}\n2. **Ground Truth Answer**: B\n3. **Model Predicted Answer**:  B \n\n"
        "Your task is to evaluate")
    assert part["text"].endswith('The format should be "Score: 0 or 1"')


def test_the_judge_settings():
    judge = FAMILY.judge
    assert judge.model == "gpt-4o-2024-11-20" and judge.max_tokens == 16384 and judge.unreadable == 0.0
    assert judge.temperatures == (0.0, 0.2, 0.4, 0.6000000000000001, 0.8)   # min(0.2*attempt, 1.0), 5 attempts


@pytest.mark.parametrize("reply, score", [
    ("Score: 1", 1.0), ("Score: 0", 0.0), ("score: 0", 0.0), ("SCORE:1", 1.0),
    ("Score: 10", 1.0),                      # '1' in the word wins
    ("Score: 01", 1.0),
    ("The answer matches.\nScore: 0\n", 0.0),
    ("Score: 0 ... final Score: 1", 1.0),    # the last "score:"
    ("Score:\n1", 1.0),                      # strip() before the line is taken
    ("Score: 1.", 1.0), ("Score: yes", None), ("Score: 2", None), ("Score:", None), ("It matches: 1", None), ("", None),
])
def test_judge_replies(reply, score):
    """general_qa_tool.py:75-80 (None: asked again) and :315."""
    assert FAMILY.judge_score(reply) == score


# --- The protocols --------------------------------------------------------------------------------------

def test_the_protocols():
    assert {p.name for p in mo.PROTOCOLS} == {"mini-o3", "mini-o3-mc", "mini-o3-sampled"}
    assert len({p.fingerprint for p in mo.PROTOCOLS}) == 3
    d = MINI_O3.decoding
    assert (d.temperature, d.top_p, d.top_k, d.max_new_tokens, d.stop_tokens, d.skip_special_tokens) == \
        (0.0, 1.0, -1, 8192, ("</grounding>",), True)
    assert (MINI_O3.caps.max_tool_calls, MINI_O3.caps.max_images, MINI_O3.caps.max_total_tokens) == (11, 12, 30_768)
    assert MINI_O3.max_model_len == 32_768 and MINI_O3.family == "mini-o3" and "rules" in MINI_O3.settings()
    assert MINI_O3.rules.input_pixels == MINI_O3.rules.crop_pixels == PixelBounds(40_000, 2_000_000)
    assert SAMPLED.decoding.temperature == 1.0 and SAMPLED.sampling is not None and SAMPLED.rules == MINI_O3.rules
    assert MC.rules.scoring != MINI_O3.rules.scoring and MC.decoding == MINI_O3.decoding
    overridden = with_overrides(MC, max_tool_calls=3)
    assert FAMILY.verdict(run(["<answer>B</answer>"], protocol=overridden), "B") == Verdict(1.0, "B")


# --- Properties of the pure pieces ------------------------------------------------------------------------

coordinate = st.floats(-0.5, 1.5, allow_nan=False)


@given(st.lists(coordinate, min_size=4, max_size=4), st.integers(1, 5000), st.integers(1, 5000))
def test_a_box_that_passes_lies_inside_the_source_without_its_last_row_and_column(value, w, h):
    box = moi.pixel_box(value, (w, h))
    try:
        moi.check_box(box, 200)
    except (AssertionError, ValueError):
        return
    assert 0 <= box[0] < box[2] <= w - 1 and 0 <= box[1] < box[3] <= h - 1
    assert box == [max(int(value[0] * w), 0), max(int(value[1] * h), 0), min(int(value[2] * w), w - 1),
                   min(int(value[3] * h), h - 1)]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3000))
def test_a_shown_crop_is_rgb_with_sides_of_at_least_28(w, h):
    if max(w / h, h / w) >= 200:
        return
    shown = moi.shown_crop(Image.new("L", (w, h)), PixelBounds(40_000, 2_000_000), 190)
    assert shown.mode == "RGB" and min(shown.size) >= 28
    if 40_000 <= w * h <= 2_000_000 and min(w, h) >= 28:
        assert shown.size == (w, h)


@given(st.integers(0, 10**6), st.text(alphabet="abc_x. ", max_size=5), st.integers(1, 20))
def test_an_observation_is_read_from_the_digits_at_the_start(k, tail, n):
    source = f"observation_{k}{tail}"
    if k < n:
        assert moi.source_index(source, n, "observation_([0-9]*)") == k
    else:
        with pytest.raises(AssertionError, match="Error in predicting the source observation"):
            moi.source_index(source, n, "observation_([0-9]*)")


@given(st.text(max_size=40))
def test_a_reply_is_read_as_one_zero_or_asked_again(text):
    assert FAMILY.judge_score(text) in (None, 0.0, 1.0)
    assert FAMILY.judge_score(text + "\nScore: 1") == 1.0 and FAMILY.judge_score(text + "\nScore: 0") == 0.0


@given(st.sampled_from("ABCD"), st.text(alphabet=" \n\t", max_size=3), st.text(alphabet=" \n\t", max_size=3))
def test_the_gold_letter_in_the_last_answer_scores_one(letter, left, right):
    assert mo.mc_rule([f"<answer>{left}{letter}{right}</answer>"], letter).score == 1.0
    assert mo.judge_path([f"<answer>{left}{letter}{right}</answer>"]) == Verdict(None, f"{left}{letter}{right}")
