"""The pixel-reasoning loop through the real vLLM engine (CPU, tiny model).

Structured outputs force the engine to write chosen tool calls, valid and broken; each case must
end in the protocol's behaviour, in one batch, with one engine call per turn."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import crop_call, noise_image, scripted
from PIL import Image

from pr_eval.errors import DataError
from pr_eval.loop.steps import run_samples
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.trajectory import ANSWERED, DATA_ERROR, ENGINE_ERROR, MAX_TOOL_CALLS, Sample, message_text

ENGINE_FIXTURES = ("run",)  # gets the session engine with request.getfixturevalue (conftest's tiers)
ANSWER = "I can see it now. \\boxed{B}"


BIG = noise_image(1000, 800, seed=1)
SMALL = noise_image(2000, 100, seed=2)  # shown at 1988x112: 0.1 of its height is 11 px


def sample(sample_id, image=BIG, question="What color is the cup?\n(A) red\n(B) blue", loader=None):
    return Sample(task="t", sample_id=sample_id, question=question, answer="B",
                  load_images=loader or (lambda: [image]))


SCRIPTS = {
    "valid": [crop_call([0.2, 0.3, 0.6, 0.7]), ANSWER],
    "pixels": [crop_call([100, 160, 700, 640]), ANSWER],
    "too_small": [crop_call([0, 0, 0, 0]), ANSWER],
    "bad_target": [crop_call([0.2, 0.3, 0.6, 0.7], target=3), ANSWER],
    "broken_json": ['<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2\n</tool_call>',
                    ANSWER],
    "unknown_tool": ['<tool_call>\n{"name": "zoom_in", "arguments": {"factor": 2}}\n</tool_call>', ANSWER],
    "cap": [crop_call([0.1, 0.1, 0.5, 0.5], target=k) for k in range(1, 7)],
    "plain": [ANSWER],
}


@pytest.fixture(scope="module")
def run(request):
    engine = request.getfixturevalue("recording")
    samples = [sample(name, image=SMALL if name == "too_small" else BIG) for name in SCRIPTS]
    samples.append(sample("unreadable", loader=lambda: (_ for _ in ()).throw(DataError("unreadable image x.jpg"))))
    samples.append(sample("too_long", question="many words " * 2000))  # > max_model_len tokens
    scripts = dict(SCRIPTS, unreadable=[ANSWER], too_long=[ANSWER])
    trajectories = run_samples(engine, samples, P, guide=scripted(scripts))
    return engine, {t.sample_id: t for t in trajectories}


@pytest.fixture(scope="module")
def recording(engine):
    from conftest import RecordingEngine

    return RecordingEngine(engine)


def feedback(traj, k):
    """Text of the k-th user turn after the prompt (k=1: feedback to the first tool call)."""
    users = [m for m in traj.messages if m["role"] == "user"]
    return message_text(users[k])


def test_batch_advances_together_one_engine_call_per_turn(run):
    engine, trajs = run
    # 5 generations at most (cap); every unfinished trajectory of the turn is in the same call.
    assert len(engine.calls) == 5
    assert len(engine.calls[0]) == len(trajs) - 1  # all but the data error
    assert [len(c) for c in engine.calls][1:] == [7, 1, 1, 1]  # the cap sample goes on alone


def test_valid_crop_sends_exact_pixels_to_next_turn(run):
    engine, trajs = run
    traj = trajs["valid"]
    assert traj.stop_reason == ANSWERED and traj.answer_text == ANSWER
    call = traj.tool_calls[0]
    assert call.ok and call.name == "crop_image_normalized" and call.new_images == [2]
    # [0.2,0.3,0.6,0.7] padded by 0.1 -> [0.1,0.2,0.7,0.8] of the input AS SHOWN (1000x800 -> 1008x812):
    # (100.8,162.4,705.6,649.6), rounded (101,162,706,650): 605x488 -> smart_resize 616x476.
    assert traj.images[1].box == [101, 162, 706, 650]
    assert (traj.images[1].width, traj.images[1].height) == (616, 476)
    assert feedback(traj, 1) == "\nHere is the cropped image (Image Size: 616x476):"
    second_turn = next(r for r in engine.calls[1] if r.messages[1]["content"][-1]["text"].startswith("What color"))
    assert second_turn.images[0].size == (1008, 812)
    shown = BIG.resize((1008, 812), Image.Resampling.BICUBIC)
    expected = shown.crop((101, 162, 706, 650)).resize((616, 476), Image.Resampling.BICUBIC)
    sent = second_turn.images[1]
    assert sent.size == (616, 476)
    assert np.array_equal(np.asarray(sent), np.asarray(expected))


def test_crop_in_pixels_is_divided_by_image_size(run):
    _, trajs = run
    traj = trajs["pixels"]
    # [100,160,700,640] px of the shown 1008x812 -> padded and clamped -> (0,78.8,800.8,721.2):
    # 801x642 -> smart_resize 812x644.
    assert traj.tool_calls[0].ok
    assert traj.images[1].box == [0, 79, 801, 721]  # pixels of the shown 1008x812 input
    assert feedback(traj, 1) == "\nHere is the cropped image (Image Size: 812x644):"


@pytest.mark.parametrize("name,kind,text", [
    ("too_small", "crop_too_small", "Cropped image is too small: 199x11"),
    ("bad_target", "bad_target", "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` "
                                 "operation. You can only pick an image within [1,1]"),
    ("broken_json", "malformed", "Expecting ',' delimiter: line 3 column 1 (char 70)"),
    ("unknown_tool", "unknown_tool", "'zoom_in'"),
])
def test_bad_calls_are_fed_back_as_execution_errors(run, name, kind, text):
    _, trajs = run
    traj = trajs[name]
    call = traj.tool_calls[0]
    assert not call.ok and call.error_kind == kind and call.error == text  # the reference's own text
    assert feedback(traj, 1) == f"\nExecution error:\n{call.error}\n"
    assert traj.stop_reason == ANSWERED and traj.answer_text == ANSWER  # the model went on and answered
    assert len(traj.images) == 1


def test_fifth_call_hits_the_cap(run):
    _, trajs = run
    traj = trajs["cap"]
    assert traj.stop_reason == MAX_TOOL_CALLS
    assert len(traj.generations) == 5 and len(traj.tool_calls) == 4  # the 5th request is not executed
    assert all(c.ok for c in traj.tool_calls) and len(traj.images) == 5
    # crops of crops: call k targets image k, cut from that crop as the model saw it
    assert [i.parent for i in traj.images[1:]] == [1, 2, 3, 4]


def test_plain_answer_and_errors_are_recorded_not_raised(run):
    _, trajs = run
    assert trajs["plain"].stop_reason == ANSWERED and not trajs["plain"].tool_calls
    assert trajs["unreadable"].stop_reason == DATA_ERROR and "unreadable image" in trajs["unreadable"].error
    assert trajs["too_long"].stop_reason == ENGINE_ERROR and trajs["too_long"].error
    assert all(t.finished and not t.pixels for t in trajs.values())


def test_prompt_is_protocol_exact(run):
    engine, trajs = run
    first = engine.calls[0][0].messages
    assert first[0] == {"role": "system", "content": P.system_prompt}
    user = first[1]["content"]
    assert user[0] == {"type": "image", "image": 1}
    assert user[1]["text"] == "What color is the cup?\n(A) red\n(B) blue\n\n\n\nGuidelines: Understand the given " \
        "visual information and the user query. Determine if it is beneficial to employ the given visual " \
        "operations (tools). For a video, we can look closer by `select_frames`. For an image, we can look " \
        "closer by `crop_image`. Reason with the visual information step by step, and put your final " \
        "answer within \\boxed{}."
    rendered = engine.inner.render(engine.calls[1][0])
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n")
    assert rendered.endswith("<|vision_end|><|im_end|>\n<|im_start|>assistant\n")  # feedback turn, then the model


def test_same_inputs_same_trajectories(engine):
    """Greedy decoding: a second run of the same samples gives identical trajectories."""
    guide = scripted({"valid": SCRIPTS["valid"], "plain": [ANSWER]})
    runs = [run_samples(engine, [sample("valid"), sample("plain")], P, guide=guide) for _ in range(2)]
    assert [t.to_record() for t in runs[0]] == [t.to_record() for t in runs[1]]
