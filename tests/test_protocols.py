"""Protocol variants: each is named data with its own fingerprint, and the loop obeys it."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from pr_eval.engines.base import GenerationResult
from pr_eval.loop.steps import start, step
from pr_eval.families import get_protocol
from pr_eval.protocol import BLIND_TOOL, BLIND_TOOL_BLANK, NO_TOOL, PIXEL_REASONER, PROTOCOLS, with_overrides
from pr_eval.trajectory import ANSWERED, MAX_TOOL_CALLS, Sample

CROP = ('Zoom.\n<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.2, 0.3, 0.6, 0.7], '
        '"target_image": 1}}\n</tool_call>')
IMAGE = Image.new("RGB", (1000, 800), (10, 200, 30))


def turn(text):
    return GenerationResult(text=text, prompt_tokens=100, output_tokens=20)


def first_turn(protocol):
    traj = start(Sample("t", "s", "How many?", "3", load_images=lambda: [IMAGE]), protocol)
    return step(traj, turn(CROP), protocol)


def test_every_protocol_has_its_own_fingerprint():
    prints = {p.fingerprint for p in PROTOCOLS.values()}
    assert len(prints) == len(PROTOCOLS) == 5
    assert get_protocol("pixel-reasoner-v3") is PIXEL_REASONER
    # the fingerprint covers every setting, and only settings (not the free-text notes)
    assert dataclasses.replace(PIXEL_REASONER, notes="x").fingerprint == PIXEL_REASONER.fingerprint
    assert dataclasses.replace(PIXEL_REASONER, crop_padding=0.05).fingerprint != PIXEL_REASONER.fingerprint


def test_unknown_protocol_names_the_choices():
    with pytest.raises(ValueError, match="unknown protocol 'v2'; choose one of: blind-tool, blind-tool-blank"):
        get_protocol("v2")


def test_the_retired_protocols_say_what_replaced_them():
    with pytest.raises(ValueError, match="'pixel-reasoner-v1' was retired on 2026-12-01: .*run under "
                                         "'pixel-reasoner-v3' instead"):  # its successor v2 is retired too
        get_protocol("pixel-reasoner-v1")
    with pytest.raises(ValueError, match="'pixel-reasoner-v2' was retired on 2026-12-07: video frames were handed "
                                         "to the processor at 1 fps .*run under 'pixel-reasoner-v3' instead"):
        get_protocol("pixel-reasoner-v2")


def test_the_record_names_the_video_time_step_and_how_served_models_get_the_bounds():
    settings = PIXEL_REASONER.settings()
    assert settings["video_fps"] == 2.0 and settings["reference"]["video_frames"] == "as-given-odd-padded-by-last"
    assert settings["reference"]["served_media"] == "per-request-kwargs+token-count-check"
    assert any(d.startswith("--data official: an MVBench video file is shown as 16 frames") for d in settings["differences"])
    # a retired protocol's record can still be checked: its fingerprint is its settings' hash
    from pr_eval.protocol import RETIRED

    assert RETIRED["pixel-reasoner-v2"]["fingerprint"] != PIXEL_REASONER.fingerprint


def test_the_record_lists_the_deliberate_differences():
    record = PIXEL_REASONER.record()
    assert record["version"] == "3" and list(record["settings"]["differences"]) == list(PIXEL_REASONER.differences)
    assert record["settings"]["reference"]["implementation"].startswith("TIGER-AI-Lab/Pixel-Reasoner@")
    assert record["settings"]["decoding"]["min_tokens"] == 1
    assert record["settings"]["decoding"]["skip_special_tokens"] is False


def test_overridden_caps_rename_and_refingerprint():
    p = with_overrides(PIXEL_REASONER, max_tool_calls=2, max_new_tokens=512)
    assert p.name == "pixel-reasoner-v3+max_tool_calls=2,max_new_tokens=512"
    assert p.caps.max_tool_calls == 2 and p.decoding.max_new_tokens == 512
    assert p.fingerprint != PIXEL_REASONER.fingerprint
    assert with_overrides(PIXEL_REASONER) is PIXEL_REASONER
    traj = start(Sample("t", "s", "q", "A", load_images=lambda: [IMAGE]), with_overrides(PIXEL_REASONER, max_tool_calls=0))
    step(traj, turn(CROP), with_overrides(PIXEL_REASONER, max_tool_calls=0))
    assert traj.stop_reason == MAX_TOOL_CALLS and not traj.tool_calls


def test_no_tool_prompt_still_runs_a_call_as_the_reference_does():
    traj = first_turn(NO_TOOL)
    assert traj.messages[0]["role"] == "user"  # no tool block: the chat template's default system
    assert traj.messages[0]["content"][-1]["text"] == ("How many?\n\nPlease think step by step, and put your "
                                                     "final answer within \\boxed{}.")
    # the reference's loop executes any turn that ends with </tool_call>, tools in the prompt or not
    assert traj.stop_reason is None and traj.tool_calls[0].ok
    step(traj, turn("\\boxed{3}"), NO_TOOL)
    assert traj.stop_reason == ANSWERED


def test_blind_tool_returns_the_uncropped_input():
    seeing, blind = first_turn(PIXEL_REASONER), first_turn(BLIND_TOOL)
    # crops are cut from the input as shown (1008x812), not from the 1000x800 file
    assert blind.tool_calls[0].ok and blind.images[1].box == seeing.images[1].box == [101, 162, 706, 650]
    shown = blind.pixels[0]
    assert blind.pixels[1] is shown and blind.images[1].width == shown.width == 1008
    assert blind.messages[-1]["content"][0]["text"] == "\nHere is the cropped image (Image Size: 1008x812):"
    assert blind.fingerprint != seeing.fingerprint


def test_blind_tool_blank_returns_a_gray_image_of_the_crop_size():
    seeing, blank = first_turn(PIXEL_REASONER), first_turn(BLIND_TOOL_BLANK)
    assert blank.pixels[1].size == seeing.pixels[1].size == (616, 476)
    assert blank.pixels[1].getcolors() == [(616 * 476, (128, 128, 128))]


def test_blind_tool_still_reports_bad_calls():
    traj = start(Sample("t", "s", "q", "A", load_images=lambda: [IMAGE]), BLIND_TOOL)
    step(traj, turn(CROP.replace('"target_image": 1', '"target_image": 4')), BLIND_TOOL)
    assert traj.tool_calls[0].error_kind == "bad_target"


def test_a_name_with_overrides_is_the_protocol_with_them():
    from pr_eval.families import get_protocol
    from pr_eval.protocol import SAMPLED, parse_overrides, with_overrides

    capped = with_overrides(get_protocol("mini-o3"), max_tool_calls=3)
    assert get_protocol(capped.name) == capped and capped.name == "mini-o3+max_tool_calls=3"
    eight = with_overrides(SAMPLED, samples_per_question=8, max_images=9)
    assert get_protocol(eight.name).fingerprint == eight.fingerprint
    for name in ("mini-o3+max_tool_calls=03", "mini-o3+samples=\u00b2", "mini-o3+turns=3", "mini-o3"):
        assert parse_overrides(name) is None
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("mini-o3+turns=3")
