"""Conformance of `deepeyes-hrbench` with DeepEyes' HR-Bench evaluation.

Reference: Visual-Agent/DeepEyes@cc3ff4d eval/eval_hrbench.py (line numbers of that index copy) and
eval/judge_result_hrbench.py (`get_prompt`, `process`, the `__main__` block). The expected values
were derived by hand (smart_resize: each side rounded to 28, then scaled under 16384*28*28; PIL
pads a crop with black) and checked against the released functions run outside this repository
(never imported here). Turns are driven through `pr_eval.loop.steps.start`/`step` without an engine.
"""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image, ImageDraw

from pr_eval.loop import steps as loop
from pr_eval.engines.base import GenerationResult
from pr_eval.families import deepeyes_hrbench as hr
from pr_eval.families import deepeyes_judge as dj
from pr_eval.families import family_of, get_protocol
from pr_eval.families.deepeyes import DEEPEYES, SYSTEM_PROMPT, USER_PROMPT
from pr_eval.loop.steps import start, step
from pr_eval.protocol import Caps, PixelBounds, with_overrides
from pr_eval.trajectory import ANSWERED, MAX_TOOL_CALLS, TOOL_ERROR, Sample, Trajectory

PROTOCOL = get_protocol("deepeyes-hrbench")
FAMILY = family_of(PROTOCOL)
STEM = "What color is the car?"
# pr-eval's HR-Bench row (perf/hrbench.py render_options): stem, "(A) .." lines, suffix
QUESTION = (f"{STEM}\n(A) red\n(B) blue\n(C) green\n(D) white\n"
            "Answer with the option's letter from the given choices directly.")
GRAY, RED = (120, 120, 120), (210, 40, 40)


def hd(size):
    """A gray image with a red square at (4000, 2000)-(4399, 2399) on 8K (scaled on other sizes)."""
    image = Image.new("RGB", size, GRAY)
    scale = size[0] / 7680
    ImageDraw.Draw(image).rectangle([int(4000 * scale), int(2000 * scale), int(4400 * scale) - 1,
                                     int(2400 * scale) - 1], fill=RED)
    return image


@pytest.fixture(scope="module")
def image_8k():
    return hd((7680, 4320))


def call(box, before="<think>zoom</think>\n"):
    """A call turn as the engine reports it: the text up to the stop string, which is `stop`."""
    return f'{before}<tool_call>\n{{"name": "image_zoom_in_tool", "arguments": {{"bbox_2d": {box}}}}}\n'


def turn(text, stop="</tool_call>"):
    return GenerationResult(text=text, prompt_tokens=100, output_tokens=20, stop=stop)


def run(turns, image, protocol=PROTOCOL, task="pr_hrbench8k"):
    traj = start(Sample(task, "s1", QUESTION, "B", load_images=lambda: [image]), protocol)
    for item in turns:
        assert not traj.finished
        step(traj, turn(*item) if isinstance(item, tuple) else turn(item), protocol)
    return traj


ANSWER = ("<think>It is blue.</think> <answer>The car is blue.</answer>", "<|im_end|>")


# --- The protocol (eval_hrbench.py:51-79, 216-222) ------------------------------------------------

def test_protocol_settings():
    assert PROTOCOL.family == "deepeyes" and PROTOCOL.version == "1" and PROTOCOL.rules.layout == "hrbench"
    assert PROTOCOL.system_prompt == SYSTEM_PROMPT   # SYSTEM_PROMPT_V2 (l.51-69): V*'s, byte for byte
    assert hashlib.sha256(PROTOCOL.system_prompt.encode()).hexdigest() == \
        "1fc5b8b5ebdc9b24d6a9281071222872c8542dd65a4a4be1e70d9760c3a7f99f"
    d = PROTOCOL.decoding   # l.216-222
    assert (d.temperature, d.max_new_tokens, d.stop_tokens) == (0.0, 8192, ("<|im_end|>", "</tool_call>"))
    assert PROTOCOL.caps == Caps(max_tool_calls=10, max_images=12, max_total_tokens=32768)
    assert PROTOCOL.engine_pixels == PixelBounds(3136, 12845056) and PROTOCOL.max_model_len == 32768
    assert "cc3ff4d" in PROTOCOL.notes and "eval_hrbench.py" in PROTOCOL.notes
    assert all("Effect:" in line for line in PROTOCOL.differences)
    assert PROTOCOL.fingerprint != DEEPEYES.fingerprint
    assert "deepeyes-hrbench" in DEEPEYES.differences[0]


# --- The first prompt and the input (l.146-198) ----------------------------------------------------

def test_user_prompt_is_byte_exact():  # l.75-77, 162-169: '\n' + 'A. ' + anno['A'] + '\n' ... D
    traj = run([], hd((3840, 2160)), task="pr_hrbench4k")
    system, user = traj.messages
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    expected = ("Question: What color is the car?\nOptions: \nA. red\nB. blue\nC. green\nD. white\n\n"
                + USER_PROMPT)
    assert user["content"] == [{"type": "image", "image": 1}, {"type": "text", "text": expected}]
    # the released `instruction_prompt_before.format(...)` on these cells, run outside the repository
    assert hashlib.sha256(expected.encode()).hexdigest() == \
        "9bd2865ead8d45bc34f3bf12fbc33962f37d5f9315b4821c487a2e205e2f59aa"


@pytest.mark.parametrize("size, shown", [((3840, 2160), (3836, 2156)),    # 137*28 x 77*28: rounded, kept
                                         ((2160, 3840), (2156, 3836))])   # portrait: the swapped call is symmetric
def test_the_input_is_resized_by_deepeyes_smart_resize(size, shown):  # l.153-155
    traj = run([], hd(size), task="pr_hrbench4k")
    assert traj.pixels[0].size == shown
    info = traj.images[0]
    assert (info.width, info.height) == shown and info.original_size == list(size)


def test_8k_is_shown_at_4760x2688(image_8k):  # sqrt(33177600/12845056) = 1.607: floor to 28 -> 170x96
    traj = run([], image_8k)
    assert traj.pixels[0].size == (4760, 2688)
    # BICUBIC from the original: the square, 0.62x of its place, is red where the model is shown it
    assert traj.pixels[0].getpixel((2600, 1370)) == RED
    assert 4760 * 2688 <= 16384 * 28 * 28


# --- The crop: the model's box, shown frame, cut from the original (l.170, 235-239; map_box unused) --

def test_a_box_in_the_shown_frame_is_cut_from_the_original(image_8k):
    shown_box = [2480, 1245, 2727, 1493]   # the red square as the model sees it (4760x2688)
    traj = run([call(shown_box)], image_8k)
    [c] = traj.tool_calls
    assert c.ok and traj.images[1].box == shown_box and traj.images[1].source_size == [7680, 4320]
    crop = traj.pixels[1]
    assert crop.size == (252, 252)            # smart_resize(247, 248): 9*28 each
    assert crop.getpixel((126, 126)) == GRAY  # the original's pixels there: the square is not in it
    assert c.box_normalized == pytest.approx([2480 / 7680, 1245 / 4320, 2727 / 7680, 1493 / 4320])


def test_a_box_in_original_pixels_finds_the_square_and_padding_is_black(image_8k):
    traj = run([call([4000, 2000, 4400, 2400]), call([7000, 4000, 7800, 4400])], image_8k)
    assert [c.ok for c in traj.tool_calls] == [True, True]
    first, second = traj.pixels[1], traj.pixels[2]
    assert first.size == (392, 392) and first.getpixel((196, 196)) == RED == first.getpixel((391, 391))
    assert second.size == (812, 392)          # smart_resize(800, 400): 29*28 x 14*28
    assert second.getpixel((406, 196)) == GRAY and second.getpixel((811, 391)) == (0, 0, 0)


def test_the_4k_frame_error_is_small():
    traj = run([call([1000, 500, 1400, 900])], hd((3840, 2160)), task="pr_hrbench4k")
    assert traj.pixels[0].size == (3836, 2156) and traj.images[1].source_size == [3840, 2160]
    assert traj.pixels[1].size == (392, 392)


# --- The stop at </tool_call> (l.221-225, 255-267) ----------------------------------------------------

def test_the_call_is_kept_without_its_stop_string(image_8k):
    text = call([4000, 2000, 4400, 2400])
    traj = run([text, ANSWER], image_8k)
    assistant, feedback = traj.messages[2], traj.messages[3]
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": text}]}
    assert not assistant["content"][0]["text"].endswith("</tool_call>")
    assert feedback["content"] == [{"type": "text", "text": "<tool_response>"}, {"type": "image", "image": 2},
                                   {"type": "text", "text": USER_PROMPT}, {"type": "text", "text": "</tool_response>"}]
    assert traj.generations[0].stop == "</tool_call>"
    assert traj.stop_reason == ANSWERED and traj.messages[-1]["content"][0]["text"] == ANSWER[0]


def test_under_deepeyes_the_same_turn_keeps_the_tag(image_8k):
    traj = run([call([10, 10, 100, 100])], image_8k, protocol=DEEPEYES)
    assert traj.messages[2]["content"][0]["text"].endswith("\n</tool_call>")   # V*: stop <|im_end|> only


def test_a_stray_close_tag_without_a_call_is_stripped_and_the_turn_resent(image_8k):
    traj = run(["<think>hmm, I should</think> maybe"], image_8k)
    assert traj.generations[0].dropped == "<think>hmm, I should</think> maybe"
    assert len(traj.messages) == 2 and not traj.finished   # not appended: the same request again (l.281-288)


# --- The loop, caps and exceptions: eval_vstar.py's (l.204-303) ----------------------------------------

def test_eleven_generations_at_most(image_8k):
    traj = run([("thinking", "<|im_end|>")] * 11, image_8k)
    assert traj.stop_reason == MAX_TOOL_CALLS and len(traj.generations) == 11 == loop.max_generations(PROTOCOL)


def test_an_answer_with_a_call_makes_the_crop_and_ends(image_8k):
    traj = run([call([10, 10, 100, 100], before="<answer>B</answer>\n")], image_8k)
    assert traj.stop_reason == ANSWERED and len(traj.pixels) == 2


@pytest.mark.parametrize("body, kind", [
    ('{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, ori_width, 10]}}', "refused"),  # resolves there
    ('{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 10, 10], "x": true}}', "malformed"),  # NameError
    ('{"name": "image_zoom_in_tool", "arguments": {"bbox": [0, 0, 10, 10]}}', "bad_arguments"),  # KeyError
])
def test_any_exception_ends_the_sample_scored_on_its_last_turn(image_8k, body, kind):  # l.296-303
    text = f"<think>z</think>\n<tool_call>\n{body}\n"
    traj = run([text], image_8k)
    [c] = traj.tool_calls
    assert traj.stop_reason == TOOL_ERROR and c.error_kind == kind
    assert FAMILY.verdict(traj, "B").answer == text   # output_text = the whole response (l.303)


def test_the_hrbench_scope_names_are_only_refused_under_this_protocol(image_8k):
    body = '{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, ori_width, 10]}}'
    traj = run([f"<tool_call>\n{body}\n</tool_call>"], image_8k, protocol=DEEPEYES)
    assert traj.tool_calls[0].error_kind == "malformed"   # eval_vstar.py has no ori_width: NameError


def test_the_original_is_released_when_handed_on(image_8k):
    traj = run([ANSWER], image_8k)
    assert hr.original(traj) is not None
    loop.finished(traj, None)
    with pytest.raises(ValueError):
        hr.original(traj)


# --- The verdict (judge_result_hrbench.py `process`) ----------------------------------------------------

@pytest.mark.parametrize("pred, score", [
    ("B", 1.0), ("C", 0.0), ("B.", 1.0), ("A.", 0.0), ("\\boxed{B}", 1.0),
    ("blue", 1.0), ("B. blue", 1.0), ("The car is blue.", 1.0), ("bluegreen", 1.0),   # answer_str in pred_ans
    ("navy", None), ("Bb", None),
])
def test_rule_verdicts(image_8k, pred, score):  # each checked against the released checks
    traj = run([(f"<think>t</think> <answer>{pred}</answer>", "<|im_end|>")], image_8k)
    assert FAMILY.verdict(traj, "B") == dj.Verdict(score, pred if "boxed" not in pred else "B")


def test_the_option_text_alone_is_not_enough_under_deepeyes(image_8k):
    traj = run([ANSWER], image_8k, protocol=DEEPEYES)
    assert FAMILY.verdict(traj, "B").score is None   # V* needs "B. blue"


def test_the_judge_gets_the_letter_alone_and_the_stem(image_8k):
    traj = run([("<answer>the red one</answer>", "<|im_end|>")], image_8k)
    verdict = FAMILY.verdict(traj, "B")
    assert verdict.score is None
    messages = FAMILY.judge_messages(traj, "B", verdict)
    assert messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    prompt = messages[1]["content"]
    assert prompt.endswith("\n[Question]: What color is the car?\n[Standard Answer]: B\n"
                           "[Model_answer] : the red one\nJudgement:")
    # get_prompt('the red one', 'B', 'What color is the car?') of the released file
    assert hashlib.sha256(prompt.encode()).hexdigest() == \
        "207ea5fec7d3d3b53c44104ce2f80399fee97c49ead443a459b36e1db79f3426"


def test_an_error_prediction_is_judged_like_any_other(image_8k):  # the error_nums_type NameError: a difference
    traj = run([("<answer>ERROR: cannot tell</answer>", "<|im_end|>")], image_8k)
    verdict = FAMILY.verdict(traj, "B")
    assert verdict.score is None and "[Model_answer] : ERROR: cannot tell\n" in \
        FAMILY.judge_messages(traj, "B", verdict)[1]["content"]


@pytest.mark.parametrize("reply, score", [("Judgement: 1", 1.0), ("1", 1.0), (" 0 ", 0.0), ("Judgement: 10", 1.0),
                                          ("yes", 0.0), ("Judgement: maybe", 0.0), ("Judgement: 0 or 1", 1.0)])
def test_judge_reply_parsing(reply, score):
    assert FAMILY.judge_score(reply) == score


def test_a_saved_or_overridden_trajectory_keeps_the_hrbench_rule(image_8k):
    traj = run([ANSWER], image_8k)
    record = Trajectory.from_record(traj.to_record())
    assert FAMILY.verdict(record, "B").score == 1.0
    capped = with_overrides(PROTOCOL, max_tool_calls=2)
    traj = run([ANSWER], image_8k, protocol=capped)
    assert traj.protocol.startswith("deepeyes-hrbench+") and FAMILY.verdict(traj, "B").score == 1.0
