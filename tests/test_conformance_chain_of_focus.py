"""Conformance of the `chain-of-focus` family with Chain-of-Focus' released V* evaluation.

Reference: xtong-zhang/Chain-of-Focus at 431ff0d (eval code unchanged since 638b9ba):
eval/vstar/vllm_inference.py (the loop, find_absolute_bboxes, do_crop), eval/vstar/judge_result.py
(extract_answer, extract_options, process, get_prompt) and slurm_jobs/eval/inference_vstar.sh
(scaleup 2, min_resolution 112, enlarge 1.5). Each row names the lines it reproduces; the
expected values were derived by hand from that source (smart_resize: round each side to a
multiple of 28, then scale into [112², 3840²]; a box is enlarged 1.5x about its centre, clipped,
truncated by int(); the crop is scaled 2x and smart-resized) and then checked against the
released functions run outside this repository (never imported here). Turns are driven through
`pr_eval.loop.steps.start`/`step` without an engine.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pr_eval.loop import chat
from pr_eval.engines.base import GenerationResult
from pr_eval.families import FAMILIES, family_of, get_protocol
from pr_eval.families.base import Verdict
from pr_eval.families.chain_of_focus import (CHAIN_OF_FOCUS, COF_SYSTEM, COF_USER_PROMPT, ChainOfFocusRules,
                                             enlarge, extract_answer, judge_prompt, options_of, read_call,
                                             rule)
from pr_eval.loop.steps import max_generations, start, step
from pr_eval.protocol import with_overrides
from pr_eval.trajectory import ANSWERED, DATA_ERROR, MAX_IMAGES, MAX_TOOL_CALLS, Sample

QUESTION = ("What is the color of the cup?\n(A) red\n(B) blue\n(C) green\n(D) white\n"
            "Answer with the option's letter from the given choices directly.")
SOURCE = Image.fromarray(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8))  # shown 644x476
FAMILY = family_of(CHAIN_OF_FOCUS)
RULES = ChainOfFocusRules()
PH = "<|vision_start|><|image_pad|><|vision_end|>"


def call(box, name="image_zoom_in_tool", before="<think>look</think> ", after=""):
    return f'{before}<tool_call>\n{{"name": "{name}", "arguments": {{"bbox_2d": {box}}}}}\n</tool_call>{after}'


def run(turns, image=SOURCE, protocol=CHAIN_OF_FOCUS, question=QUESTION, target="B"):
    traj = start(Sample("pr_vstar", "s1", question, target, load_images=lambda: [image]), protocol)
    for text in turns:
        assert not traj.finished
        step(traj, GenerationResult(text=text, prompt_tokens=100, output_tokens=20, stop="<|im_end|>"), protocol)
    return traj


def noise(width, height, seed=1):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


# --- prompts (vllm_inference.py:17-31, 286-304) ------------------------------------------------------

def test_system_and_user_prompts_are_byte_exact():  # l.17-29, l.31
    assert hashlib.sha256(COF_SYSTEM.encode()).hexdigest() == \
        "7741881df5c8718aa767b57ab9ac7db3bbeb584c949adf90658f7a1adae61aae"
    assert COF_SYSTEM.startswith("You are a helpful assistant.\n\n# Tools\nYou may call one or more functions")
    assert '"required":["bbox_2d"], "type":"object"},"args_format": "Format the arguments as a JSON object."}}' in COF_SYSTEM
    assert COF_SYSTEM.endswith('<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    assert COF_USER_PROMPT == (
        "\nThink in the mind first, and then decide whether to call tools one or more times OR provide final "
        "answer. Format strictly as: <think>...</think> <tool_call>...</tool_call> <tool_call>...</tool_call> "
        "(if any tools needed) OR <answer>...</answer> (if no tools needed).")


def test_first_turn_is_system_then_image_and_question():  # l.286, 292-304
    traj = run([])
    system, user = traj.messages
    assert system == {"role": "system", "content": COF_SYSTEM}
    assert user == {"role": "user", "content": [{"type": "image", "image": 1},
                                                {"type": "text", "text": "Question: " + QUESTION + COF_USER_PROMPT}]}
    assert FAMILY.user_text(Sample("t", "s", "Q?", "A", load_images=list), CHAIN_OF_FOCUS) == "Question: Q?" + COF_USER_PROMPT
    assert chat.render(traj.messages, add_generation_prompt=True).endswith(
        f"<|im_start|>user\n{PH}Question: {QUESTION}{COF_USER_PROMPT}<|im_end|>\n<|im_start|>assistant\n")


# --- the input image (l.35-72, 288-289: convert('RGB'), smart_resize 112²..3840², LANCZOS) -----------

@pytest.mark.parametrize("size, shown", [
    ((640, 480), (644, 476)),     # 480/28 = 17.1 -> 476, 640/28 = 22.9 -> 644
    ((100, 80), (140, 112)),      # 112x84 < 112²: scaled up by sqrt(12544/8000), ceil to 28
    ((4500, 3500), (4340, 3360)), # 4508x3500 > 3840²: scaled down, floor to 28
    ((3000, 2500), (2996, 2492)),
    ((1008, 700), (1008, 700)),   # already multiples of 28
])
def test_input_is_smart_resized_with_lanczos(size, shown):
    image = noise(*size)
    traj = run([], image=image)
    assert traj.pixels[0].size == shown
    info = traj.images[0]
    assert (info.kind, info.width, info.height, info.original_size) == ("input", *shown, list(size))
    assert traj.pixels[0].tobytes() == image.resize(shown, Image.Resampling.LANCZOS).tobytes()


def test_alpha_is_dropped_by_convert_rgb():  # l.288: convert('RGB'), not laid on white
    image = Image.new("RGBA", (280, 280), (10, 20, 30, 0))
    assert run([], image=image).pixels[0].getpixel((5, 5)) == (10, 20, 30)


@pytest.mark.parametrize("images, message", [
    ([Image.new("RGB", (2100, 10))], "absolute aspect ratio must be smaller than 200"),  # smart_resize raises
    ([], "one image per question; this sample has 0"),
    ([SOURCE, SOURCE], "one image per question; this sample has 2"),
])
def test_unusable_inputs_are_data_errors(images, message):
    traj = start(Sample("pr_vstar", "s1", QUESTION, "B", load_images=lambda: images), CHAIN_OF_FOCUS)
    assert traj.stop_reason == DATA_ERROR and message in traj.error
    assert traj.messages[-1]["content"] == [{"type": "text", "text": "Question: " + QUESTION + COF_USER_PROMPT}]


# --- calls: detection, parsing, crop (l.130-238, 321-335) --------------------------------------------
# (text, ok, error_kind, box in the 644x476 input or None, size shown, which image is shown)
WHOLE, AS_IS, CROP = "whole input x2", "input as is", "crop"
NAN_BOX = '{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [NaN, 0, 10, 10]}}'
CALL_ROWS = [
    # l.178-194: [300,200,500,400] -> centre (400,300), 300x300 -> [250,150,550,450]; x2 600 -> 588
    (call([300, 200, 500, 400]), True, None, [250, 150, 550, 450], (588, 588), CROP),
    # a 10x10 box -> 15x15 -> [97,97,112,112]; x2 30x30 < 112² -> 112x112
    (call([100, 100, 110, 110]), True, None, [97, 97, 112, 112], (112, 112), CROP),
    # clipped at the border: [0,0,100,50] -> [-25,-12.5,125,62.5] -> [0,0,125,62]; 250x124 -> 252x112
    (call([0, 0, 100, 50]), True, None, [0, 0, 125, 62], (252, 112), CROP),
    # JSON true is the number 1 (l.114 isinstance int): [1,1,300,300] -> [0,0,374,374]; 748 -> 756
    (call("[true, true, 300, 300]"), True, None, [0, 0, 374, 374], (756, 756), CROP),
    # the tool name is never checked (l.165)
    (call([300, 200, 500, 400], name="anything"), True, None, [250, 150, 550, 450], (588, 588), CROP),
    # only the FIRST call is read (l.154 re.search), and a turn with a call and an answer is a tool turn
    (call([300, 200, 500, 400]) + call([0, 0, 10, 10]) + " <answer>B</answer>", True, None,
     [250, 150, 550, 450], (588, 588), CROP),
    # l.160 .strip() takes the no-break spaces json.loads would refuse
    ('<tool_call>\u00a0{"name": "x", "arguments": {"bbox_2d": [300, 200, 500, 400]}}\u3000</tool_call>', True,
     None, [250, 150, 550, 450], (588, 588), CROP),
    # fallback (a), find returns None -> crop(None): the whole 644x476 input x2 -> 1288x952 (l.156-176, 222)
    ("<tool_call>{\"name\": \"x\", \"arguments\": {\"bbox_2d\": [1, 2, 3, 4]}}", False, "malformed", None,
     (1288, 952), WHOLE),                                                             # no </tool_call>
    ("<tool_call>{'name': 'x', 'arguments': {'bbox_2d': [1, 2, 30, 40]}}</tool_call>", False, "malformed", None,
     (1288, 952), WHOLE),                                                             # JSONDecodeError
    (call([500, 400, 300, 200]), False, "bad_arguments", None, (1288, 952), WHOLE),   # reversed (l.122)
    (call([0, 0, 645, 100]), False, "bad_arguments", None, (1288, 952), WHOLE),       # x1 > W (l.119)
    (call([-1, 0, 100, 100]), False, "bad_arguments", None, (1288, 952), WHOLE),      # x0 < 0
    (call('"abcd"'), False, "bad_arguments", None, (1288, 952), WHOLE),               # unpacks to 4 letters
    (f"<tool_call>{NAN_BOX}</tool_call>", False, "bad_arguments", None, (1288, 952), WHOLE),  # NaN compares False
    # fallback (b), an exception escapes find (called outside do_crop's try, l.219) -> the input as is (l.331-334)
    (call([300, 200, 500]), False, "bad_arguments", None, (644, 476), AS_IS),         # 3 values: ValueError
    (call(7), False, "bad_arguments", None, (644, 476), AS_IS),                       # TypeError
    ('<tool_call>{"name": "image_zoom_in_tool", "bbox_2d": [1, 2, 3, 4]}</tool_call>', False, "bad_arguments",
     None, (644, 476), AS_IS),                                                        # KeyError 'arguments'
    ('<tool_call>[{"bbox_2d": [1, 2, 3, 4]}]</tool_call>', False, "malformed", None, (644, 476), AS_IS),
    ("<tool_call>" + "[" * 100_000 + "</tool_call>", False, "malformed", None, (644, 476), AS_IS),  # RecursionError
    ("<tool_call>" + "1" * 5000 + "</tool_call>", False, "malformed", None, (644, 476), AS_IS),     # int digits limit
    # ... or smart_resize refuses the crop inside do_crop's try (l.227, 232-236): normalized coordinates
    # [0.1,0.2,0.3,0.4] -> [0.05,0.15,0.35,0.45] -> int [0,0,0,0]: 0 wide -> ZeroDivisionError
    (call([0.1, 0.2, 0.3, 0.4]), False, "crop_too_small", None, (644, 476), AS_IS),
    # [0,0,1,300] -> [0,0,1,375]: 2x750 has an aspect ratio of 375 > 200 -> ValueError
    (call([0, 0, 1, 300]), False, "crop_too_small", None, (644, 476), AS_IS),
]


@pytest.mark.parametrize("text, ok, kind, box, size, shown", CALL_ROWS)
def test_calls_are_read_run_and_fed_back_as_the_reference_does(text, ok, kind, box, size, shown):
    traj = run([text])
    assert traj.stop_reason is None and len(traj.pixels) == 2
    [record] = traj.tool_calls
    assert (record.ok, record.error_kind, record.turn, record.new_images) == (ok, kind, 0, [2])
    source, image, info = traj.pixels[0], traj.pixels[1], traj.images[1]
    assert image.size == size and image.mode == "RGB"
    assert (info.kind, info.parent, info.source_size, info.width, info.height) == ("crop", 1, [644, 476], *size)
    assert info.box == box
    if shown == CROP:
        expected = source.crop(box).resize(size, Image.Resampling.LANCZOS)
        assert record.box_normalized == [box[0] / 644, box[1] / 476, box[2] / 644, box[3] / 476]
    elif shown == WHOLE:
        expected = source.resize(size, Image.Resampling.LANCZOS)
        assert record.box_normalized is None and "crop(None)" in record.error
    else:
        expected = source
        assert image is source and "showed the resized input as is" in record.error
    assert image.tobytes() == expected.tobytes()


def test_a_call_records_its_name_raw_text_and_safe_arguments():
    traj = run([f"<think>x</think> <tool_call>{NAN_BOX[:-1]}, \"label\": \"cup\"}}</tool_call>"])
    [record] = traj.tool_calls
    assert record.name == "image_zoom_in_tool" and record.raw.startswith('{"name": "image_zoom_in_tool"')
    assert record.arguments == {"bbox_2d": ["NaN", 0, 10, 10]}  # journal-safe: strict JSON has no NaN
    assert "bbox_2d values" not in record.error and "outside the 644x476 image" in record.error
    unclosed = run(["<tool_call>{\"name\": \"x\""]).tool_calls[0]
    assert unclosed.raw == '{"name": "x"' and unclosed.name is None and "no </tool_call>" in unclosed.error


def test_feedback_is_the_full_turn_then_image_and_user_prompt():  # l.336-351
    text = call([300, 200, 500, 400], after=" <answer>A</answer>")
    traj = run([text])
    assistant, user = traj.messages[-2:]
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": text}]}
    assert user == {"role": "user", "content": [{"type": "image", "image": 2}, {"type": "text", "text": COF_USER_PROMPT}]}
    assert chat.render(traj.messages).endswith(f"<|im_start|>user\n{PH}{COF_USER_PROMPT}<|im_end|>\n")


def test_crops_are_always_cut_from_the_input():  # do_crop(resized_image, ...) at l.323-324
    traj = run([call([300, 200, 500, 400]), call([10, 10, 110, 110])])
    assert traj.images[2].box == [0, 0, 135, 135] and traj.images[2].parent == 1
    assert traj.pixels[2].tobytes() == traj.pixels[0].crop((0, 0, 135, 135)).resize((280, 280), Image.LANCZOS).tobytes()


def test_large_inputs_and_the_whole_image_fallback():  # l.178-194, 222-230 at the 3840² cap
    big = run([call([100, 100, 2900, 2400])], image=noise(3000, 2500))   # enlarged past the borders: whole image
    assert big.images[1].box == [0, 0, 2996, 2492] and big.pixels[1].size == (4200, 3500)  # 5992x4984 > 3840²
    small = run(["<tool_call>oops</tool_call>"], image=noise(1008, 700))
    assert small.pixels[1].size == (2016, 1400) and small.tool_calls[0].error_kind == "malformed"


# --- caps (l.275, 312-362; load_7b_model l.83-93) --------------------------------------------------

def test_six_tool_turns_end_with_an_empty_answer():
    turns = [call([300, 200, 500, 400])] * 5 + [call([300, 200, 500, 400], after=" <answer>B</answer>")]
    traj = run(turns)
    assert traj.stop_reason == MAX_TOOL_CALLS and len(traj.generations) == 6 and len(traj.tool_calls) == 6
    assert len(traj.pixels) == 7  # the sixth crop is made and appended, but never sent (the loop ends)
    assert FAMILY.verdict(traj, "B") == Verdict(None, "")   # pred_ans "" -> the judge
    assert max_generations(CHAIN_OF_FOCUS) == 6 and CHAIN_OF_FOCUS.caps.max_images == 6
    five = run(turns[:5] + ["<answer>B</answer>"])
    assert five.stop_reason == ANSWERED and FAMILY.verdict(five, "B") == Verdict(1.0, "B")


def test_overridden_caps():
    two = with_overrides(CHAIN_OF_FOCUS, max_tool_calls=2)
    assert max_generations(two) == 2 and two.fingerprint != CHAIN_OF_FOCUS.fingerprint
    assert run([call([1, 1, 50, 50])] * 2, protocol=two).stop_reason == MAX_TOOL_CALLS
    # more calls than vLLM's limit_mm_per_prompt allows images: the next request would be refused
    ten = with_overrides(CHAIN_OF_FOCUS, max_tool_calls=10)
    traj = run([call([1, 1, 50, 50])] * 6, protocol=ten)
    assert traj.stop_reason == MAX_IMAGES and len(traj.pixels) == 7
    assert FAMILY.verdict(traj, "B").answer == ""


# --- the answer and the rule (judge_result.py:135-192) -----------------------------------------------

@pytest.mark.parametrize("pred, extracted", [
    ("<think>x</think> <answer>B</answer>", "B"),
    ("<answer> (B) blue </answer>", "(B) blue"),        # \s* trims around the group
    ("<answer>\nB\n</answer>", "B"),                    # \s* crosses lines, the group does not
    ("<answer>A\nB</answer>", ""),                      # no DOTALL: an inner newline finds nothing
    ("<answer>A</answer> <answer>B</answer>", "A"),     # the first match
    ("<answer>\\boxed{B}</answer>", ""),                # l.164-165: the box split leaves "B", no tags
    ("\\boxed{C} <answer>B</answer>", ""),
    ("<answer>B<|im_end|></answer>", "B"),              # l.168
    ("The answer is B.", ""),                           # no tags
    ("\\boxed B <answer>B</answer>", ""),               # the reference raises IndexError (a difference)
])
def test_answer_extraction(pred, extracted):
    assert extract_answer(pred) == extracted


OPTIONS = {"A": "red", "B": "blue", "C": "green", "D": "white"}


@pytest.mark.parametrize("pred, label, score", [
    ("B", "B", 1.0), ("b", "B", 0.0), ("C", "B", 0.0),            # l.173: len 1, exact
    ("B.", "B", 1.0), (".B", "B", 1.0), ("A.", "B", 0.0),         # l.178: len 2 with "."
    ("(B)", "B", 1.0), ("(C)", "B", 0.0), ("B()", "B", 1.0),      # l.184: len 3 with "(" and ")"
    ("(B) blue", "B", 1.0), ("I think (B) blue.", "B", 1.0),      # l.190: "(X) text" anywhere
    ("B. blue", "B", None), ("blue", "B", None), ("(B", "B", None), ("B)", "B", None),  # l.193: the judge
    ("", "B", None), ("(A) red", "B", None),
])
def test_rule(pred, label, score):
    assert rule(pred, label, OPTIONS) == score


def test_options_are_read_as_extract_options_reads_them():  # l.135-140: (A)-(D), whitespace, rest of line
    assert options_of(QUESTION) == OPTIONS
    assert options_of("Pick (A) one\n(A)x\n(E) e\n(B)\nno\n(A) two") == {"A": "two", "B": "no"}
    assert rule("(E) e", "E", options_of("(E) e")) is None  # E is no option for the reference
    assert rule("(B) no", "B", options_of("(B)\nno")) == 1.0


def test_verdicts_through_the_loop():
    answered = run([call([300, 200, 500, 400]), "<think>blue</think> <answer>(B) blue</answer>"])
    assert answered.stop_reason == ANSWERED and FAMILY.verdict(answered, "B") == Verdict(1.0, "(B) blue")
    assert FAMILY.verdict(run(["<answer>B. blue</answer>"]), "B") == Verdict(None, "B. blue")
    assert FAMILY.verdict(run(["B"]), "B") == Verdict(None, "")
    assert FAMILY.verdict(run(["<answer>C</answer>"]), "B") == Verdict(0.0, "C")


# --- the judge (judge_result.py:57-131, 193-225) -----------------------------------------------------

def test_judge_prompt_and_messages():
    template = judge_prompt("{pred}", "{label}", "{q}")
    assert hashlib.sha256(template.encode()).hexdigest() == \
        "267ec724f2119b537fa38f343bc92b41f8e5c32e5fd26e434d316a390246c5f1"
    assert template.startswith("\nBelow are two answers to a question. Question is [Question], [Standard Answer]")
    assert "this question.  Determine" in template and template.count("Judement") == 3
    assert "don't output anything else.\n\n\n\n[Question]: Is the countertop tan or blue?\n" in template
    assert template.count("\nJudgement: 1\n\n\n") == 4 and template.count("\nJudgement: 0\n\n\n") == 3
    assert "[Standard Answer]: (A) Yes, the kite is brown and large.\n[Model_answer] : Yes\n" in template
    traj = run(["<answer>B. blue</answer>"])
    messages = FAMILY.judge_messages(traj, "B", FAMILY.verdict(traj, "B"))
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert messages[1]["role"] == "user" and messages[1]["content"].endswith(
        f"is pink.\nJudgement: 0\n\n\n\n[Question]: {QUESTION}\n[Standard Answer]: B\n[Model_answer] : B. blue\nJudgement:")
    judge = FAMILY.judge
    assert (judge.name, judge.model, judge.temperatures, judge.max_tokens) == \
        ("chain-of-focus-judge", "Qwen2.5-VL-72B-Instruct", (0.0,), None)
    assert judge.implementation.startswith("xtong-zhang/Chain-of-Focus@431ff0d")
    assert template == judge.prompt_texts[1] + "".join(e + "\n\n" for e in judge.prompt_texts[2:-1]) + \
        "\n[Question]: {q}\n[Standard Answer]: {label}\n[Model_answer] : {pred}\nJudgement:"


@pytest.mark.parametrize("reply, score", [
    ("Judgement: 1", 1.0), ("Judgement: 0", 0.0), ("Judgement:1", 1.0), ("  1\n", 1.0), ("0", 0.0),
    ("Judgement: 10", 1.0),          # '1' in it
    ("0 Judgement: 1", 1.0),         # the last split
    ("Judgement: yes", None), ("1.", None), ("The answer is 1", None), ("", None),  # format warnings
])
def test_judge_reply_is_read_as_the_reference_reads_it(reply, score):
    assert FAMILY.judge_score(reply) == score
    assert FAMILY.judge.unreadable == 0.0   # a format warning scores 0.0 (l.216-217, 224-225), never retried


# --- the protocol ------------------------------------------------------------------------------------

def test_protocol_settings():
    assert get_protocol("chain-of-focus") is CHAIN_OF_FOCUS and FAMILIES["chain-of-focus"] is FAMILY
    settings = CHAIN_OF_FOCUS.settings()
    assert settings["family"] == "chain-of-focus" and settings["rules"]["enlarge"] == 1.5
    assert settings["rules"]["input_pixels"] == {"min_pixels": 12544, "max_pixels": 14745600}
    assert settings["decoding"]["max_new_tokens"] == 512 and settings["decoding"]["stop_tokens"] == ()
    assert settings["decoding"]["temperature"] == 0.0 and settings["decoding"]["skip_special_tokens"] is True
    assert settings["engine_pixels"] == {"min_pixels": 3136, "max_pixels": 12845056}
    assert settings["max_model_len"] == 32768 and settings["caps"]["max_tool_calls"] == 6
    assert "431ff0d" in CHAIN_OF_FOCUS.notes and len(CHAIN_OF_FOCUS.differences) >= 4
    import dataclasses
    changed = dataclasses.replace(CHAIN_OF_FOCUS, rules=dataclasses.replace(RULES, enlarge=2.0))
    assert changed.fingerprint != CHAIN_OF_FOCUS.fingerprint


# --- properties of the pure pieces ----------------------------------------------------------------

coordinate = st.one_of(st.integers(-5, 700), st.floats(-5, 700, allow_nan=False))


@given(st.integers(1, 900), st.integers(1, 900), coordinate, coordinate, coordinate, coordinate)
def test_a_valid_box_enlarged_stays_inside_the_image(width, height, x0, y0, x1, y1):
    text = f'<tool_call>{{"name": "z", "arguments": {{"bbox_2d": [{x0}, {y0}, {x1}, {y1}]}}}}</tool_call>'
    reading = read_call(text, width, height, 1.5)
    valid = 0 <= x0 < width and 0 <= y0 < height and 0 < x1 <= width and 0 < y1 <= height and x1 > x0 and y1 > y0
    assert (reading.box is not None) == valid and not reading.escaped
    if valid:
        bx0, by0, bx1, by1 = reading.box
        assert all(isinstance(v, int) for v in reading.box)
        assert 0 <= bx0 <= int(x0) and 0 <= by0 <= int(y0) and int(x1) <= bx1 <= width and int(y1) <= by1 <= height
        assert enlarge([x0, y0, x1, y1], width, height, 1) == [int(x0), int(y0), int(x1), int(y1)]


@given(st.text(alphabet=st.sampled_from(list('<tool_call>/{}[]"abx:,0123456789 .\n')), max_size=80))
def test_reading_any_turn_never_raises(text):
    reading = read_call("<tool_call>" + text, 644, 476, 1.5)
    assert reading.box is None or reading.kind is None
