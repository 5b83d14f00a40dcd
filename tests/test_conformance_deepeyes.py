"""Conformance of the `deepeyes` family with DeepEyes' released V* evaluation.

Reference: Visual-Agent/DeepEyes eval/eval_vstar.py and eval/judge_result.py at a7a337a (the
release) and cc3ff4d (shuffled options, `answer_choice`). Each row names the lines it reproduces;
the expected values were derived by hand from that source (smart_resize: round each side to 28,
then scale into [4*28*28, 16384*28*28]; PIL rounds box coordinates half to even and pads with
black) and then checked against the released functions run outside this repository (never
imported here). Turns are driven through `pr_eval.loop.steps.start`/`step` without an engine.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pr_eval.loop import chat
from pr_eval.engines.base import GenerationResult
from pr_eval.families import deepeyes_judge as dj
from pr_eval.families import family_of, get_protocol
from pr_eval.families.deepeyes import (DEEPEYES, DEEPEYES_CORRECT_FIRST, SYSTEM_PROMPT, USER_PROMPT,
                                       DeepEyesRules, crop, layout, smart_resize)
from pr_eval.loop.steps import start, step
from pr_eval.protocol import with_overrides
from pr_eval.trajectory import ANSWERED, DATA_ERROR, MAX_TOOL_CALLS, TOOL_ERROR, Sample, Trajectory

QUESTION = ("What is the colour of the umbrella?\n(A) red\n(B) green\n(C) blue\n(D) white\n"
            "Answer with the option's letter from the given choices directly.")
COLOUR = (200, 100, 50)
IMAGE = Image.new("RGB", (640, 480), COLOUR)
FAMILY = family_of(DEEPEYES)
RULES = DeepEyesRules()


def call(box, name="image_zoom_in_tool", before="<think>zoom</think>\n", after=""):
    return f'{before}<tool_call>\n{{"name": "{name}", "arguments": {{"bbox_2d": {box}}}}}\n</tool_call>{after}'


def run(turns, protocol=DEEPEYES, question=QUESTION, target="A", image=IMAGE):
    traj = start(Sample("pr_vstar", "s1", question, target, load_images=lambda: [image]), protocol)
    for text in turns:
        assert not traj.finished
        step(traj, GenerationResult(text=text, prompt_tokens=100, output_tokens=20, stop="<|im_end|>"), protocol)
    return traj


# --- prompts (eval_vstar.py:53-76, 128-152) ----------------------------------------------------------

def test_system_prompt_is_byte_exact():  # eval_vstar.py:53-71
    assert hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest() == \
        "1fc5b8b5ebdc9b24d6a9281071222872c8542dd65a4a4be1e70d9760c3a7f99f"
    assert len(SYSTEM_PROMPT) == 1166 and '"required":["bbox"]' in SYSTEM_PROMPT
    assert "**Example**:  \n<tool_call>  \n" in SYSTEM_PROMPT and '"}}  \n</tool_call>' in SYSTEM_PROMPT
    assert DEEPEYES.system_prompt == DEEPEYES_CORRECT_FIRST.system_prompt == SYSTEM_PROMPT


def test_user_prompt_and_layout_are_byte_exact():  # eval_vstar.py:72-76, 131-135
    assert USER_PROMPT == ("\nThink first, call **image_zoom_in_tool** if needed, then answer. Format strictly as:  "
                           "<think>...</think>  <tool_call>...</tool_call> (if tools needed)  <answer>...</answer> ")
    traj = run([])
    system, user = traj.messages
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["content"][0] == {"type": "image", "image": 1}  # image first, then the text
    assert user["content"][1]["text"] == (
        "Question: What is the colour of the umbrella?\nOptions: \nA. red\nB. green\nC. blue\nD. white\n\n\n"
        "Think first, call **image_zoom_in_tool** if needed, then answer. Format strictly as:  <think>...</think>  "
        "<tool_call>...</tool_call> (if tools needed)  <answer>...</answer> ")
    assert traj.pixels[0] is IMAGE and traj.images[0].original_size == [640, 480]  # never resized (l.136-138)


@pytest.mark.parametrize("protocol, target, options, choice", [
    (DEEPEYES, "C", ("red", "green", "blue", "white"), "C"),                 # cc3ff4d: the shown letter
    (DEEPEYES_CORRECT_FIRST, "C", ("blue", "red", "green", "white"), "A"),   # a7a337a: correct first
    (DEEPEYES_CORRECT_FIRST, "A", ("red", "green", "blue", "white"), "A"),
])
def test_option_order(protocol, target, options, choice):
    shown = layout(QUESTION, target, protocol.rules.option_order)
    assert shown.stem == "What is the colour of the umbrella?"
    assert shown.options == tuple(zip("ABCD", options)) and shown.choice == choice
    text = FAMILY.user_text(Sample("t", "s", QUESTION, target, load_images=list), protocol)
    assert "Options: \n" + "".join(f"{l}. {o}\n" for l, o in zip("ABCD", options)) + "\n\nThink" in text


@given(st.lists(st.text("abcxyz ", min_size=1, max_size=6).map(str.strip).filter(bool), min_size=1, max_size=6),
       st.data())
def test_correct_first_moves_only_the_gold(texts, data):
    gold = data.draw(st.integers(0, len(texts) - 1))
    question = "Q?\n" + "\n".join(f"({'ABCDEF'[i]}) {t}" for i, t in enumerate(texts)) + "\nAnswer."
    shown = layout(question, "ABCDEF"[gold], "correct-first")
    assert shown.choice == "A" and [t for _, t in shown.options] == [texts[gold]] + texts[:gold] + texts[gold + 1:]
    same = layout(question, "ABCDEF"[gold], "data")
    assert same.choice == "ABCDEF"[gold] and [t for _, t in same.options] == texts


def test_question_without_options_has_an_empty_option_list():
    shown = layout("How many cats?", "3", "data")
    assert (shown.stem, shown.options, shown.choice, shown.standard_answer("3")) == ("How many cats?", (), None, "3")


# --- smart_resize and the crop (eval_vstar.py:94-119, 195-204) --------------------------------------

@pytest.mark.parametrize("w, h, expected", [
    (400, 360, (392, 364)), (10, 10, (56, 56)), (3, 40, (28, 224)), (400, 300, (392, 308)),
    (320, 251, (308, 252)), (0, 490, (28, 504)),
    # 25 MP > 16384*28*28: beta = 5000/3584 exactly, but 5000/beta is 3583.9999999999995 in floats: 127*28
    (5000, 5000, (3556, 3556)), (7680, 4320, (4760, 2688)), (3840, 2160, (3836, 2156)),
])
def test_smart_resize_examples(w, h, expected):
    assert smart_resize(w, h) == expected


@given(st.floats(1, 20000), st.floats(1, 20000))
def test_smart_resize_is_symmetric_and_in_bounds(a, b):
    w, h = smart_resize(a, b)
    assert w % 28 == 0 and h % 28 == 0 and w >= 28 and h >= 28
    assert 4 * 28 * 28 <= w * h <= 16384 * 28 * 28
    assert smart_resize(b, a) == (h, w)  # why passing width as `height` (l.203) is harmless


@pytest.mark.parametrize("box, size", [
    ([0, 0, 400, 360], (392, 364)), ([0, 0, 10, 10], (56, 56)), ([0, 0, 3, 40], (28, 224)),
    ([100.5, 50.5, 420.5, 301.5], (308, 252)),  # PIL cuts 320x252 (half to even); smart_resize of 320x251
    ([-100, -50, 300, 250], (392, 308)),
])
def test_crop_sizes(box, size):
    assert crop(IMAGE, box, RULES)[0].size == size


def test_crop_outside_the_image_is_black():
    image, _ = crop(IMAGE, [-100, -50, 300, 250], RULES)  # 100 of 400 columns, 50 of 300 rows outside
    assert image.getpixel((10, 10)) == image.getpixel((90, 300)) == image.getpixel((300, 40)) == (0, 0, 0)
    assert image.getpixel((200, 200)) == image.getpixel((391, 307)) == COLOUR


def test_crop_cuts_the_original_pixels():
    grid = Image.new("RGB", (640, 480))
    grid.putdata([(x % 256, y % 256, (x * y) % 256) for y in range(480) for x in range(640)])
    image, _ = crop(grid, [28, 56, 140, 112], RULES)  # 112x56: already a multiple of 28 above 3136 px
    assert image.size == (112, 56) and image.tobytes() == grid.crop((28, 56, 140, 112)).tobytes()
    rounded, _ = crop(grid, [27.5, 56.5, 139.5, 112.5], RULES)  # round(): 28, 56, 140, 112
    assert rounded.tobytes() == image.tobytes()
    resized, _ = crop(grid, [10, 10, 330, 261], RULES)  # 320x251 -> 308x252, BICUBIC (l.204)
    cut = grid.crop((10, 10, 330, 261))
    assert resized.tobytes() == cut.resize((308, 252), resample=Image.BICUBIC).tobytes()
    assert resized.tobytes() != cut.resize((308, 252), resample=Image.BILINEAR).tobytes()


# --- one trajectory (eval_vstar.py:175-262) ---------------------------------------------------------

def test_a_call_crops_and_feeds_back():  # l.192-232
    text = call("[100, 50, 500, 410]")
    traj = run([text])
    assert traj.messages[2] == {"role": "assistant", "content": [{"type": "text", "text": text}]}
    assert traj.messages[3] == {"role": "user", "content": [
        {"type": "text", "text": "<tool_response>"}, {"type": "image", "image": 2},
        {"type": "text", "text": USER_PROMPT}, {"type": "text", "text": "</tool_response>"}]}
    assert chat.render(traj.messages[3:]).endswith(
        "user\n<tool_response><|vision_start|><|image_pad|><|vision_end|>" + USER_PROMPT + "</tool_response><|im_end|>\n")
    info, record = traj.images[1], traj.tool_calls[0]
    assert (info.kind, info.width, info.height, info.box, info.source_size, info.parent) == \
        ("crop", 392, 364, [100, 50, 500, 410], [640, 480], 1)
    assert record.ok and record.new_images == [2] and record.name == "image_zoom_in_tool"
    assert record.arguments == {"bbox_2d": [100, 50, 500, 410]} and record.box_normalized == [100 / 640, 50 / 480,
                                                                                              500 / 640, 410 / 480]
    assert traj.stop_reason is None


@pytest.mark.parametrize("text, ok", [
    ("<tool_call>{'name': 'x', 'arguments': {'bbox_2d': (1, 2, 3, 40)}}</tool_call>", True),  # any name, tuple
    ("<tool_call>{'arguments': {'bbox_2d': [5*4, 20, 300+100, 400]}}</tool_call>", True),     # arithmetic
    ('text <tool_call> {"arguments": {"bbox_2d": [0, 0, 56, 56]}} ', True),   # no closing tag: the rest is read
    (call("[0, 0, 56, 56]") + call("[0, 0, 5, 5]"), True),                   # the first call only
])
def test_call_grammar(text, ok):  # l.192-194
    traj = run([text])
    assert traj.tool_calls[0].ok is ok and traj.stop_reason is None


@pytest.mark.parametrize("body, kind, error", [
    ('{"name": "z", "arguments": {"bbox_2d": [1, 2, 3, 4], "x": true}}', "malformed",
     "NameError: name 'true' is not defined"),
    ('{"arguments": {"bbox_2d": [1, 2, 3, 4]}} more text', "malformed", "SyntaxError: invalid syntax"),
    ('{"name": "z"}', "malformed", "KeyError: 'arguments'"),
    ('[1, 2]', "malformed", "TypeError: list indices must be integers or slices, not str"),
    ('{"arguments": {"bbox": [1, 2, 3, 4]}}', "bad_arguments", "KeyError: 'bbox_2d'"),  # the schema's own key
    ('{"arguments": {"bbox_2d": [1, 2, 3]}}', "bad_arguments",
     "ValueError: not enough values to unpack (expected 4, got 3)"),
    ('{"arguments": {"bbox_2d": [50, 0, 10, 40]}}', "bad_arguments",
     "ValueError: Coordinate 'right' is less than 'left'"),
    ('{"arguments": {"bbox_2d": [10, 40, 50, 0]}}', "bad_arguments",
     "ValueError: Coordinate 'lower' is less than 'upper'"),
    ('{"arguments": {"bbox_2d": [10, 10, 10, 20]}}', "bad_arguments", "ZeroDivisionError: division by zero"),
    ("__import__('os').system('touch /tmp/deepeyes-pwned')", "refused", "Refused: a Call expression"),
    ('{"arguments": {"bbox_2d": [0, 0, 9**9**9, 4]}}', "refused", "Refused: a power of about"),
    ('{"arguments": {"bbox_2d": bbox}}', "refused", "Refused: the name 'bbox'"),  # a local of process()
    ('{"arguments": {"bbox_2d": [0, 0, 20000, 20000]}}', "refused", "Refused: a crop box over 67,108,864 pixels"),
    ('{"arguments": {"bbox_2d": [0, 0, 10**400, 4]}}', "refused", "Refused: a crop box over 67,108,864 pixels"),
    ('{"arguments": {"bbox_2d": [0, 0, 1e400, 4]}}', "bad_arguments",
     "OverflowError: cannot convert float infinity to integer"),  # PIL's round(), as in the peer
])
def test_a_failed_call_ends_the_sample(body, kind, error):  # l.260-262: no error turn, status 'error'
    text = f"<think>x</think><tool_call>{body}</tool_call><answer>B</answer>"
    traj = run([text])
    record = traj.tool_calls[0]
    assert traj.stop_reason == TOOL_ERROR and not record.ok and record.error_kind == kind
    assert record.error.startswith(error), record.error
    assert len(traj.pixels) == 1 and traj.messages[-1]["role"] == "assistant"
    assert FAMILY.verdict(traj, "B").score == 1.0  # still scored on the last response
    assert FAMILY.verdict(traj, "A").score == 0.0


def test_eleven_generations_at_most():  # l.179-180, 259: try_count > 10
    assert FAMILY.max_generations(DEEPEYES) == 11
    traj = run([call("[0, 0, 100, 100]")] * 10)
    assert traj.stop_reason is None and len(traj.pixels) == 11
    step(traj, GenerationResult(text=call("[0, 0, 200, 200]"), stop="<|im_end|>"), DEEPEYES)
    assert traj.stop_reason == MAX_TOOL_CALLS and traj.tool_calls[10].ok  # run, its crop never sent
    capped = with_overrides(DEEPEYES, max_tool_calls=2)
    assert FAMILY.max_generations(capped) == 3
    assert run([call("[0, 0, 100, 100]")] * 3, capped).stop_reason == MAX_TOOL_CALLS


def test_a_turn_without_call_or_answer_is_dropped_and_the_request_resent():  # l.249-256
    traj = run(["<think>hmm</think>"])
    assert len(traj.messages) == 2 and traj.generations[0].dropped == "<think>hmm</think>"
    assert traj.stop_reason is None
    for _ in range(10):
        step(traj, GenerationResult(text="<think>hmm</think> B"), DEEPEYES)
    assert traj.stop_reason == MAX_TOOL_CALLS and len(traj.messages) == 2 and len(traj.generations) == 11
    verdict = FAMILY.verdict(traj, "A")
    assert verdict == dj.rule("<think>hmm</think> B", "A", "A. red")  # the dropped last response is scored
    record = traj.to_record()
    assert record["generations"][0]["dropped"] == "<think>hmm</think>"
    assert Trajectory.from_record(record).generations[-1].dropped == "<think>hmm</think> B"


@pytest.mark.parametrize("text, reason, crops", [
    ("<think>x</think><answer>A</answer>", ANSWERED, 0),
    ("no opening tag but A</answer>", ANSWERED, 0),                               # l.175: '</answer>' alone ends
    (call("[0, 0, 100, 100]", after="<answer>A</answer>"), ANSWERED, 1),          # crop made, never sent
])
def test_answer_ends_the_loop(text, reason, crops):
    traj = run([text])
    assert traj.stop_reason == reason and len(traj.pixels) == 1 + crops
    assert traj.messages[2]["content"][0]["text"] == text


# --- extraction and verdict (eval_vstar.py:265-268, judge_result.py:140-159) -------------------------

@pytest.mark.parametrize("pred, score", [
    ("a", 0.0), ("A.", 1.0), ("(A)", None), ("", None), ("The answer is A. red", 1.0), ("A", 1.0),
    ("B", 0.0), ("B.", 0.0), (".A", 1.0), ("AB", None), ("A. red", 1.0), ("red", None),
    ("\\boxed{A}", 1.0), ("x \\boxed{A. red} y", 1.0), ("\\boxed{B}", 0.0), ("\\boxed A", 0.0),
])
def test_rule(pred, score):
    traj = run([f"<think>x</think><answer> {pred} </answer>"])
    assert FAMILY.verdict(traj, "A").score == score


def test_the_first_answer_of_the_last_response():
    traj = run([call("[0, 0, 100, 100]"), "<answer>B</answer> then <answer>A</answer>"])
    assert FAMILY.verdict(traj, "B") == dj.Verdict(1.0, "B")
    untagged = run(["The answer is C. blue</answer>"])   # no <answer>: the whole response
    assert FAMILY.verdict(untagged, "C") == dj.Verdict(1.0, "The answer is C. blue</answer>")


def test_the_shown_letter_is_scored():  # cc3ff4d answer_choice; a7a337a's hard-coded 'A'
    first = run(["<answer>A</answer>"], DEEPEYES_CORRECT_FIRST, target="C")
    assert FAMILY.verdict(first, "C").score == 1.0
    data = run(["<answer>A</answer>"], DEEPEYES, target="C")
    assert FAMILY.verdict(data, "C").score == 0.0
    assert FAMILY.verdict(run(["<answer>A. blue</answer>"], DEEPEYES_CORRECT_FIRST, target="C"), "C").score == 1.0
    overridden = with_overrides(DEEPEYES_CORRECT_FIRST, max_tool_calls=3)
    assert FAMILY.verdict(run(["<answer>A</answer>"], overridden, target="C"), "C").score == 1.0


# --- judge (judge_result.py:47-121, 160-190) --------------------------------------------------------

def test_judge_prompt_is_byte_exact():
    prompt = dj.judge_prompt("PRED", "A. GT", "QUESTION")
    assert hashlib.sha256(prompt.encode()).hexdigest() == \
        "0de7a9cdde78593ddadf2159fc6f262a79b59fdab3d4fd2046ab303083cd9599"
    assert prompt.startswith("\nBelow are two answers") and "Judement is 1" in prompt
    assert "don't output anything else.\n\n\n\n[Question]: Is the countertop tan or blue?\n" in prompt
    assert prompt.endswith("Judgement: 0\n\n\n\n[Question]: QUESTION\n[Standard Answer]: A. GT\n"
                           "[Model_answer] : PRED\nJudgement:")
    assert len(dj.JUDGE_EXAMPLES) == 7 and FAMILY.judge.prompt_texts[0] == "You are a helpful assistant."


def test_judge_messages_of_an_undecided_trajectory():
    traj = run(["<answer>\\boxed{(A) blue}</answer>"], DEEPEYES, target="C")
    verdict = FAMILY.verdict(traj, "C")
    assert verdict == dj.Verdict(None, "(A) blue")
    messages = FAMILY.judge_messages(traj, "C", verdict)
    assert messages == [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": dj.judge_prompt("(A) blue", "C. blue",
                                                                    "What is the colour of the umbrella?")}]


@pytest.mark.parametrize("reply, score", [
    ("Judgement: 1", 1.0), ("Judgement: 10", 1.0), ("Judgement: 0", 0.0), ("1", 1.0), (" 1 \n", 1.0),
    ("0", 0.0), ("The answer is 1", 0.0), ("Judgement: yes", 0.0), ("judgement: 1", 0.0),
    ("Judgement: 1\nJudgement: 0", 0.0), ("", 0.0),
])
def test_judge_reply(reply, score):
    assert FAMILY.judge_score(reply) == score


# --- the protocols ------------------------------------------------------------------------------------

def test_protocol_settings():
    assert get_protocol("deepeyes") is DEEPEYES and get_protocol("deepeyes-correct-first") is DEEPEYES_CORRECT_FIRST
    assert DEEPEYES.fingerprint != DEEPEYES_CORRECT_FIRST.fingerprint
    settings = DEEPEYES.settings()
    assert settings["family"] == "deepeyes" and settings["rules"]["option_order"] == "data"
    assert settings["decoding"]["max_new_tokens"] == 10240 and settings["decoding"]["stop_tokens"] == ("<|im_end|>",)
    assert settings["engine_pixels"] == {"min_pixels": 3136, "max_pixels": 12845056}
    assert all("Effect:" in d for d in DEEPEYES.differences)


def test_a_sample_with_two_images_is_a_data_error():
    traj = start(Sample("t", "s", QUESTION, "A", load_images=lambda: [IMAGE, IMAGE]), DEEPEYES)
    assert traj.stop_reason == DATA_ERROR and "one image" in traj.error
