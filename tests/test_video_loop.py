"""Video in the loop through the real engine: select_frames, and crops before and after selection."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import RecordingEngine, crop_call, noise_image, scripted
from conftest import select_call as select
from PIL import Image

from pr_eval.loop.steps import run_samples
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.trajectory import ANSWERED, Sample, message_text

ANSWER = "\\boxed{A}"
FRAMES = [noise_image(320, 240, seed=k) for k in range(16)]


SCRIPTS = {
    "select_then_crop": [select(3, 7), crop_call([0.2, 0.2, 0.6, 0.6], target=2), ANSWER],
    "crop_frame_first": [crop_call([0.2, 0.2, 0.6, 0.6], target=5), ANSWER],
    "too_many_frames": [select(*range(1, 10)), ANSWER],
    "frame_out_of_range": [select(0, 17), ANSWER],
    "crop_the_video": [select(1), crop_call([0.2, 0.2, 0.6, 0.6], target=1), ANSWER],
    "image_select": [select(1), ANSWER],
    "fifteen_frames": [select(16), ANSWER],
    "nine_frames": [select(11), ANSWER],
}


def video(sample_id, frames=FRAMES):
    return Sample(task="t", sample_id=sample_id, question="What happens?\n(A) x\n(B) y", answer="A",
                  load_images=lambda: list(frames), is_video=True)


@pytest.fixture(scope="module")
def run(engine):
    recording = RecordingEngine(engine)
    samples = [video(name) for name in SCRIPTS if name not in ("image_select", "fifteen_frames", "nine_frames")]
    samples.append(Sample("t", "image_select", "q?", "A", load_images=lambda: [FRAMES[0]]))
    samples.append(video("fifteen_frames", FRAMES[:15]))
    samples.append(video("nine_frames", FRAMES[:9]))
    trajs = run_samples(recording, samples, P, guide=scripted(SCRIPTS))
    return recording, {t.sample_id: t for t in trajs}


def feedback(traj, k):
    return message_text([m for m in traj.messages if m["role"] == "user"][k])


def test_video_is_one_placeholder_of_sixteen_frames(run):
    recording, trajs = run
    first = recording.calls[0][0]
    assert first.messages[1]["content"][0] == {"type": "video", "video": 1}
    assert len(first.images[0]) == 16 and first.images[0][0].size == (308, 252)  # 320x240 -> multiples of 28
    assert "<|vision_start|><|video_pad|><|vision_end|>" in recording.inner.render(first)


def test_select_frames_then_crop_a_selected_frame(run):
    recording, trajs = run
    traj = trajs["select_then_crop"]
    assert traj.stop_reason == ANSWERED and [c.ok for c in traj.tool_calls] == [True, True]
    # a = images before the call (the video), b = a + k - 1, as the reference words it
    assert feedback(traj, 1) == "\nHere are the selected frames (Frame Size: 308x252, Numbered 1 to 2):"
    assert [(i.kind, i.frame) for i in traj.images] == [("video", None), ("frame", 3), ("frame", 7), ("crop", 3)]
    crop = traj.images[3]
    assert crop.parent == 2 and crop.source_size == [308, 252]  # cut from frame 3 as shown
    second_turn = next(r for r in recording.calls[1] if len(r.images) == 3)
    assert [p.get("image") for p in second_turn.messages[-1]["content"]] == [None, 2, 3]
    assert np.array_equal(np.asarray(second_turn.images[1]),
                          np.asarray(FRAMES[2].resize((308, 252), Image.Resampling.BICUBIC)))


def test_crop_before_selection_targets_a_frame(run):
    _, trajs = run
    traj = trajs["crop_frame_first"]
    assert traj.tool_calls[0].ok and traj.images[1].kind == "crop" and traj.images[1].frame == 5
    # [0.2,0.2,0.6,0.6] padded -> [0.1,0.1,0.7,0.7] of the frame as shown, 308x252:
    # (30.8,25.2,215.6,176.4) -> (31,25,216,176)
    assert traj.images[1].box == [31, 25, 216, 176]


@pytest.mark.parametrize("name,kind,text", [
    ("too_many_frames", "too_many_frames", "Execution Error: You have selected 9 frames in total. Think again "
                                           "which frames you need to check in details (no more than 8 frames)"),
    ("frame_out_of_range", "bad_target", "Execution Error: There are 16 frames numbered in range [1,16]. Your "
                                         "selection `target_frames=[0, 17]` is out of range."),
    ("image_select", "wrong_modality", "Execution Error: You attempted to `select_frames` from **image** not "
                                       "**video**. You should use `crop_image_normalized` instead for inspecting "
                                       "**image**."),
])
def test_bad_frame_calls_are_execution_errors(run, name, kind, text):
    _, trajs = run
    call = trajs[name].tool_calls[0]
    assert not call.ok and call.error_kind == kind and call.error == text  # the reference's own text
    assert trajs[name].stop_reason == ANSWERED


def test_the_video_itself_cannot_be_cropped_after_selection(run):
    _, trajs = run
    call = trajs["crop_the_video"].tool_calls[1]
    assert call.error_kind == "bad_target" and call.error == (
        "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. You can only "
        "pick an image within range [2,2], but the current argument `target_image=1`.")


def test_an_odd_frame_count_is_padded_with_its_last_frame_as_the_reference_pads_it(run):
    """qwen_vl_utils 0.0.11 pads a list of frames to an even count by repeating the last one; the
    tools number the padded list (15 frames are shown, and selectable, as 16)."""
    recording, trajs = run
    fifteen = trajs["fifteen_frames"]
    assert fifteen.stop_reason == ANSWERED and fifteen.tool_calls[0].ok
    first = next(r for call in recording.calls for r in call if r.constraint == re.escape(select(16)))
    assert len(first.images[0]) == 16 and first.images[0][15] is first.images[0][14]
    assert fifteen.images[1].frame == 16
    second = next(r for call in recording.calls for r in call if len(r.images) == 2 and r.images[0] is first.images[0])
    assert np.array_equal(np.asarray(second.images[1]), np.asarray(FRAMES[14].resize((308, 252), Image.Resampling.BICUBIC)))
    nine = trajs["nine_frames"].tool_calls[0]
    assert nine.error == ("Execution Error: There are 10 frames numbered in range [1,10]. Your selection "
                          "`target_frames=[11]` is out of range.")
