"""Conformance of tool calls with the reference, one row per behaviour.

Each row names the reference function whose behaviour it reproduces (TIGER-AI-Lab/Pixel-Reasoner,
curiosity_driven_rl/openrlhf/trainer/ppo_utils/experience_maker.py) and its expected outcome,
derived by hand from that function: the exact text fed back to the model, or the crop that
reaches it. Then properties: no text of any shape raises out of a turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.engines.base import GenerationResult
from pr_eval.loop.steps import start, step
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.loop.tools import Call, crop_region, is_tool_request, last_call_text
from pr_eval.trajectory import ANSWERED, MAX_IMAGES, MAX_TOKENS, Sample

RANGE_1 = ("Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. "
           "You can only pick an image within [1,1]")
FRAMES_OF_IMAGE = ("Execution Error: You attempted to `select_frames` from **image** not **video**. You "
                   "should use `crop_image_normalized` instead for inspecting **image**.")


def crop(bbox="[0.2, 0.3, 0.6, 0.7]", target="1") -> str:
    return f'{{"name": "crop_image_normalized", "arguments": {{"bbox_2d": {bbox}, "target_image": {target}}}}}'


def frames(selection: str) -> str:
    return f'{{"name": "select_frames", "arguments": {{"target_frames": {selection}}}}}'


def turn(body: str, text: str = "Let me look.\n") -> GenerationResult:
    return GenerationResult(text=f"{text}<tool_call>\n{body}\n</tool_call>", prompt_tokens=900, output_tokens=40,
                            finish_reason="stop", stop="<|im_end|>")


def image_traj(size=(1000, 800), n=1):
    images = [Image.new("RGB", size, (10 + i, 200, 30)) for i in range(n)]
    return start(Sample("vstar", "s", "q?", "A", load_images=lambda: images), P)


def video_traj(size=(640, 360)):
    frames_ = [Image.new("RGB", size, (i * 10, 0, 0)) for i in range(16)]
    return start(Sample("mvbench", "v", "q?", "A", load_images=lambda: frames_, is_video=True), P)


def feedback(traj) -> str:
    return traj.messages[-1]["content"][0]["text"]


def error_of(traj) -> str:
    text = feedback(traj)
    assert text.startswith("\nExecution error:\n") and text.endswith("\n"), text
    return text[len("\nExecution error:\n"):-1]


# --- every message the model can be fed back -------------------------------------------------------

@dataclass(frozen=True)
class Row:
    id: str
    reference: str   # the reference function whose behaviour the row reproduces
    body: str
    expected: str    # the error text fed back, byte for byte
    kind: str        # how pr_eval's statistics count it
    video: bool = False
    before: tuple[str, ...] = ()  # calls made first (on the same trajectory)


ROWS = [
    # parse_last_tool: json.loads of the text between the last <tool_call> and </tool_call>
    Row("broken JSON", "parse_last_tool",
        '{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.5, 0.5] "target_image": 1}}',
        "Expecting ',' delimiter: line 2 column 81 (char 81)", "malformed"),
    Row("empty call", "parse_last_tool", "", "Expecting value: line 3 column 1 (char 2)", "malformed"),  # "\n\n"
    Row("digits past Python's limit", "parse_last_tool", "1" * 4301,
        "Exceeds the limit (4300 digits) for integer string conversion: value has 4301 digits; use "
        "sys.set_int_max_str_digits() to increase the limit", "malformed"),
    # _generate_vllm: tool_params['name'], tool_params['arguments'], self.operations[tool_name]
    Row("no name", "_generate_vllm", '{"arguments": {}}', "'name'", "malformed"),
    Row("no arguments", "_generate_vllm", '{"name": "crop_image_normalized"}', "'arguments'", "malformed"),
    Row("a list, not an object", "_generate_vllm", "[1, 2]", "list indices must be integers or slices, not str",
        "malformed"),
    Row("a string, not an object", "_generate_vllm", '"crop"', "string indices must be integers, not 'str'",
        "malformed"),
    Row("null", "_generate_vllm", "null", "'NoneType' object is not subscriptable", "malformed"),
    Row("a number", "_generate_vllm", "3", "'int' object is not subscriptable", "malformed"),
    Row("unknown tool", "_generate_vllm", '{"name": "rotate_image", "arguments": {}}', "'rotate_image'",
        "unknown_tool"),
    Row("the other house's tool", "_generate_vllm", '{"name": "zoom_in", "arguments": {}}', "'zoom_in'",
        "unknown_tool"),
    Row("a list as the name", "_generate_vllm", '{"name": ["crop"], "arguments": {}}',
        "unhashable type: 'list'", "unknown_tool"),
    # execute_tool, image branch
    Row("no target_image", "execute_tool", '{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0, 0, 1, 1]}}',
        "'target_image'", "bad_arguments"),
    Row("arguments a list", "execute_tool", '{"name": "crop_image_normalized", "arguments": [1]}',
        "list indices must be integers or slices, not str", "bad_arguments"),
    Row("target past the last image", "execute_tool", crop(target="2"), RANGE_1, "bad_target"),
    Row("target 2.0 with one image", "execute_tool", crop(target="2.0"), RANGE_1, "bad_target"),
    Row("target 1.0 indexes with a float", "execute_tool", crop(target="1.0"),
        "list indices must be integers or slices, not float", "bad_arguments"),
    Row("target 1.5", "execute_tool", crop(target="1.5"), "list indices must be integers or slices, not float",
        "bad_arguments"),
    Row("target -1 is the input before the last", "execute_tool", crop(target="-1"), "list index out of range",
        "bad_target"),
    Row("target far below", "execute_tool", crop(target="-" + "1" * 30),
        "cannot fit 'int' into an index-sized integer", "bad_target"),
    Row("target far above", "execute_tool", crop(target="1" * 30), RANGE_1, "bad_target"),
    Row("target NaN", "execute_tool", crop(target="NaN"), RANGE_1, "bad_target"),
    Row("target Infinity", "execute_tool", crop(target="Infinity"), RANGE_1, "bad_target"),
    Row("target -Infinity", "execute_tool", crop(target="-Infinity"),
        "list indices must be integers or slices, not float", "bad_arguments"),
    Row("target a string", "execute_tool", crop(target='"1"'), "unsupported operand type(s) for -: 'str' and 'int'",
        "bad_arguments"),
    Row("target null", "execute_tool", crop(target="null"),
        "unsupported operand type(s) for -: 'NoneType' and 'int'", "bad_arguments"),
    Row("target a list", "execute_tool", crop(target="[1]"), "unsupported operand type(s) for -: 'list' and 'int'",
        "bad_arguments"),
    Row("select_frames on an image", "execute_tool", frames("[1, 2]"), FRAMES_OF_IMAGE, "wrong_modality"),
    Row("select_frames on an image, no frames given", "execute_tool", '{"name": "select_frames", "arguments": {}}',
        FRAMES_OF_IMAGE, "wrong_modality"),
    # CropImageNormalized.call
    Row("no bbox_2d", "CropImageNormalized.call", '{"name": "crop_image_normalized", "arguments": {"target_image": 1}}',
        "'bbox_2d'", "bad_arguments"),
    Row("three numbers", "CropImageNormalized.call", crop(bbox="[0.1, 0.2, 0.3]"), "list index out of range",
        "bad_target"),
    Row("three pixel numbers", "CropImageNormalized.call", crop(bbox="[10, 20, 30]"), "list index out of range",
        "bad_target"),
    Row("a string box", "CropImageNormalized.call", crop(bbox='"0,0,1,1"'),
        "'<' not supported between instances of 'str' and 'int'", "bad_arguments"),
    Row("null box", "CropImageNormalized.call", crop(bbox="null"), "'NoneType' object is not subscriptable",
        "bad_arguments"),
    Row("a number box", "CropImageNormalized.call", crop(bbox="5"), "'int' object is not subscriptable",
        "bad_arguments"),
    Row("an object box", "CropImageNormalized.call", crop(bbox='{"x1": 0}'), "0", "bad_arguments"),
    Row("a null coordinate", "CropImageNormalized.call", crop(bbox="[0.1, null, 0.2, 0.3]"),
        "'<' not supported between instances of 'NoneType' and 'int'", "bad_arguments"),
    Row("a word among pixels", "CropImageNormalized.call", crop(bbox='[2, 0.1, "a", 0.3]'),
        "could not convert string to float: 'a'", "bad_arguments"),
    Row("too big for a float", "CropImageNormalized.call", crop(bbox="[1" + "0" * 400 + ", 0, 1, 1]"),
        "int too large to convert to float", "bad_arguments"),
    Row("left past right", "CropImageNormalized.call", crop(bbox="[0.8, 0.1, 0.2, 0.5]"),
        "Coordinate 'right' is less than 'left'", "bad_arguments"),
    Row("top below bottom", "CropImageNormalized.call", crop(bbox="[0.1, 0.8, 0.5, 0.2]"),
        "Coordinate 'lower' is less than 'upper'", "bad_arguments"),
    # 0.5-0.1 = 0.3+0.1: zero width; y 0.1..0.7 of 812 px = 81.2..568.4, rounded 81..568
    Row("zero width after padding", "CropImageNormalized.call", crop(bbox="[0.5, 0.2, 0.3, 0.6]"),
        "Cropped image is too small: 0x487", "crop_too_small"),
    Row("NaN everywhere is the empty corner", "CropImageNormalized.call", crop(bbox="[NaN, NaN, NaN, NaN]"),
        "Cropped image is too small: 0x0", "crop_too_small"),
    # execute_tool, video branch (16 frames of 640x360, shown at 644x364)
    Row("only the video: frame past 16", "execute_tool", crop(target="17"),
        "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. You can only "
        "pick an image **from** the video within [1,16], but the current argument `target_image=17`.",
        "bad_target", video=True),
    Row("only the video: frame 16.5", "execute_tool", crop(target="17.5"),
        "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. You can only "
        "pick an image **from** the video within [1,16], but the current argument `target_image=17.5`.",
        "bad_target", video=True),
    Row("after a crop, image 1 is the video", "execute_tool", crop(target="1"),
        "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. You can only "
        "pick an image within range [2,2], but the current argument `target_image=1`.",
        "bad_target", video=True, before=(crop(target="3"),)),
    Row("after frames, target 0", "execute_tool", crop(target="0"),
        "Execution Error: Incorrect `target_image` argument in `crop_image_normalized` operation. You can only "
        "pick an image within range [2,3], but the current argument `target_image=0`.",
        "bad_target", video=True, before=(frames("[2, 5]"),)),
    Row("after frames, past the last image", "execute_tool", crop(target="4"), "list index out of range",
        "bad_target", video=True, before=(frames("[2, 5]"),)),
    Row("nine frames", "execute_tool", frames("[1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        "Execution Error: You have selected 9 frames in total. Think again which frames you need to check in "
        "details (no more than 8 frames)", "too_many_frames", video=True),
    Row("a frame past 16", "execute_tool", frames("[3, 17]"),
        "Execution Error: There are 16 frames numbered in range [1,16]. Your selection `target_frames=[3, 17]` "
        "is out of range.", "bad_target", video=True),
    Row("no frames", "execute_tool", frames("[]"), "max() arg is an empty sequence", "bad_arguments", video=True),
    Row("no target_frames", "execute_tool", '{"name": "select_frames", "arguments": {}}', "'target_frames'",
        "bad_arguments", video=True),
    Row("a frame as a float", "SelectFrames.call", frames("[2.0]"),
        "list indices must be integers or slices, not float", "bad_arguments", video=True),
    Row("a frame far below", "SelectFrames.call", frames("[-20]"), "list index out of range", "bad_target",
        video=True),
    Row("frames as a string", "execute_tool", frames('"12"'),
        "'>' not supported between instances of 'str' and 'int'", "bad_arguments", video=True),
    Row("frames as a number", "execute_tool", frames("5"), "object of type 'int' has no len()", "bad_arguments",
        video=True),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_error_text_is_the_references(row):
    traj = video_traj() if row.video else image_traj()
    for body in row.before:
        step(traj, turn(body), P)
        assert traj.tool_calls[-1].ok, traj.tool_calls[-1].error
    step(traj, turn(row.body), P)
    call = traj.tool_calls[-1]
    assert not call.ok and not traj.finished
    assert error_of(traj) == row.expected == call.error
    assert call.error_kind == row.kind


def test_a_tiny_crop_is_refused_with_its_size():
    # CropImageNormalized.call: 2000x100 is shown at 71*28 x 4*28; [0,0,0,0] padded and clamped is
    # 0..0.1 of it: 198.8 x 11.2, rounded
    traj = image_traj(size=(2000, 100))
    assert traj.pixels[0].size == (1988, 112)
    step(traj, turn(crop(bbox="[0, 0, 0, 0]")), P)
    assert error_of(traj) == "Cropped image is too small: 199x11"


def test_an_aspect_ratio_over_200_is_qwen_vl_utils_own_message():
    # resize_cropped -> smart_resize raises; _generate_vllm feeds str(e) back
    traj = image_traj(size=(7000, 300))  # shown at 7000x308 (a ratio of 23: fine)
    assert traj.pixels[0].size == (7000, 308)
    step(traj, turn(crop(bbox="[0.0, 0.0, 0.999, 0.0]")), P)  # the whole width, 0..0.1 of the height
    assert error_of(traj) == f"absolute aspect ratio must be smaller than 200, got {7000 / 31}"


# --- crops: which image is cut, and the size that reaches the model --------------------------------

@dataclass(frozen=True)
class CropRow:
    id: str
    reference: str
    size: tuple[int, int]      # the input file
    shown: tuple[int, int]     # after smart_resize into [256*28*28, 8000*28*28]
    body: str
    box: tuple[int, int, int, int]  # the cut, in the shown image's pixels
    result: tuple[int, int]    # after smart_resize into [256*28*28, 5120*28*28]: the "Image Size"


CROP_ROWS = [
    # 1008 = 36*28, 812 = 29*28; box 0.1..0.7 x 0.2..0.8 of 1008x812 = 100.8..705.6 x 162.4..649.6
    CropRow("below 6.27 MP", "CropImageNormalized.call", (1000, 800), (1008, 812), crop(),
            (101, 162, 706, 650), (616, 476)),
    # 4000x3000 is 12 MP: beta = sqrt(12e6 / 6272000); 3000/beta -> 77*28, 4000/beta -> 103*28.
    # 0.15..0.6 of 2884x2156 = 432.6..1730.4 x 323.4..1293.6; 1297x971 -> 46*28 x 35*28
    CropRow("above 6.27 MP", "CropImageNormalized.call", (4000, 3000), (2884, 2156),
            crop(bbox="[0.25, 0.25, 0.5, 0.5]"), (433, 323, 1730, 1294), (1288, 980)),
    # numbers >= 1 are pixels of the SHOWN image: 100/1008-0.1 < 0; 160/812-0.1 = 0.0970 -> 78.8;
    # 700/1008+0.1 = 0.7944 -> 800.8; 640/812+0.1 = 0.8882 -> 721.2
    CropRow("pixel coordinates", "CropImageNormalized.call", (1000, 800), (1008, 812),
            crop(bbox="[100, 160, 700, 640]"), (0, 79, 801, 721), (812, 644)),
    # one number >= 1 sends all four through the pixel rule: x2 = 600/1008+0.1 -> 700.8,
    # y2 = 400/812+0.1 -> 481.2
    CropRow("one pixel number among fractions", "CropImageNormalized.call", (1000, 800), (1008, 812),
            crop(bbox="[0.5, 0.5, 600, 400]"), (0, 0, 701, 481), (700, 476)),
    # target 0: rawimages[-1], the last INPUT image
    CropRow("target 0 is the input", "execute_tool", (1000, 800), (1008, 812), crop(target="0"),
            (101, 162, 706, 650), (616, 476)),
    # true - 1 == 0
    CropRow("target true is 1", "execute_tool", (1000, 800), (1008, 812), crop(target="true"),
            (101, 162, 706, 650), (616, 476)),
    # a box past the image is clamped to it
    CropRow("clamped", "CropImageNormalized.call", (1000, 800), (1008, 812), crop(bbox="[-3, -3, 0.95, 0.99]"),
            (0, 0, 1008, 812), (1008, 812)),
    # a small input is shown at 448x448 (the 256*28*28 floor); 0.4..0.6 of it = 179.2..268.8
    CropRow("small input is upscaled first", "CropImageNormalized.call", (300, 300), (448, 448),
            crop(bbox="[0.5, 0.5, 0.5, 0.5]"), (179, 179, 269, 269), (448, 448)),
]


@pytest.mark.parametrize("row", CROP_ROWS, ids=[r.id for r in CROP_ROWS])
def test_crop_is_cut_from_the_shown_input(row):
    traj = image_traj(size=row.size)
    assert traj.pixels[0].size == row.shown
    step(traj, turn(row.body), P)
    call = traj.tool_calls[0]
    assert call.ok, call.error
    info = traj.images[-1]
    assert (info.parent, tuple(info.box), tuple(info.source_size)) == (1, row.box, row.shown)
    assert traj.pixels[-1].size == row.result == (info.width, info.height)
    assert feedback(traj) == f"\nHere is the cropped image (Image Size: {row.result[0]}x{row.result[1]}):"


def test_crop_of_a_crop_is_cut_from_the_crop_as_shown():
    traj = image_traj()
    step(traj, turn(crop()), P)  # image 2: 616x476
    step(traj, turn(crop(bbox="[0.3, 0.3, 0.7, 0.7]", target="2")), P)
    info = traj.images[-1]
    # 0.2..0.8 of 616x476 = 123.2..492.8 x 95.2..380.8 -> 370x286 = 105820 px < 256*28*28, so
    # it is scaled up: beta = sqrt(200704 / 105820) = 1.377; 370*beta = 509.6 -> 19*28, 286*beta =
    # 393.9 -> 15*28 (rounded up)
    assert (info.parent, tuple(info.box), tuple(info.source_size)) == (2, (123, 95, 493, 381), (616, 476))
    assert (info.width, info.height) == (532, 420)


def test_rgba_inputs_are_laid_on_white():
    # qwen_vl_utils.to_rgb (fetch_image): a transparent pixel becomes white, not black
    image = Image.new("RGBA", (448, 448), (0, 0, 0, 0))
    traj = start(Sample("vstar", "s", "q?", "A", load_images=lambda: [image]), P)
    assert traj.pixels[0].mode == "RGB" and traj.pixels[0].getpixel((0, 0)) == (255, 255, 255)


# --- video: the target_image rule and selected frames ----------------------------------------------

def test_video_crop_targets_frames_until_any_image_is_added():
    traj = video_traj()
    assert traj.pixels[0][0].size == (644, 364)  # each frame within 512*28*28
    step(traj, turn(crop(target="3")), P)
    assert traj.tool_calls[-1].ok and (traj.images[-1].parent, traj.images[-1].frame) == (1, 3)
    step(traj, turn(crop(target="2")), P)  # now 2 is the crop just added
    assert traj.tool_calls[-1].ok and (traj.images[-1].parent, traj.images[-1].frame) == (2, 3)


def test_video_crop_target_0_is_the_last_frame():
    traj = video_traj()
    step(traj, turn(crop(target="0")), P)
    assert traj.images[-1].frame == 16


def test_selected_frames_are_appended_as_shown_and_numbered():
    traj = video_traj()
    step(traj, turn(frames("[2, 5]")), P)
    assert feedback(traj) == "\nHere are the selected frames (Frame Size: 644x364, Numbered 1 to 2):"
    assert [traj.images[i].frame for i in (1, 2)] == [2, 5]
    assert traj.pixels[1] is traj.pixels[0][1]  # not resized at evaluation
    step(traj, turn(frames("[0]")), P)  # 0 - 1 == -1: the last frame
    assert traj.images[-1].frame == 16
    assert feedback(traj) == "\nHere are the selected frames (Frame Size: 644x364, Numbered 3 to 3):"
    step(traj, turn(crop(target="2")), P)  # a selected frame is cut as shown
    assert traj.tool_calls[-1].ok and traj.images[-1].frame == 2 and traj.images[-1].source_size == [644, 364]


# --- when a turn is a request, and which call it is ------------------------------------------------

@pytest.mark.parametrize("output,request_", [
    ("a <tool_call>{}</tool_call>", True),
    ("a <tool_call>{}</tool_call><|im_end|>", True),      # <|im_end|> is removed first
    ("a <tool_call>{}</tool_call>\n", False),             # nothing is stripped: an answer
    ("a <tool_call>{}</tool_call> ", False),
    ("a <tool_call>{}</tool_call><|endoftext|>", False),  # only <|im_end|> is removed
    ("</tool_call>", True),
    ("a <tool_call>{}</tool_call> then \\boxed{A}", False),
])
def test_tool_request_rule(output, request_):
    # _generate_vllm: rsp.replace("<|im_end|>", "") ... endswith("</tool_call>")
    assert is_tool_request(output) is request_


def test_the_last_open_tag_of_the_conversation_is_read():
    # parse_last_tool: split on <tool_call>, last piece, up to the first </tool_call>
    assert last_call_text('x <tool_call>{"a": 1}</tool_call> y <tool_call>\n{"b": 2}\n</tool_call>') == '\n{"b": 2}\n'
    assert last_call_text("no tags at all") == "no tags at all"


def test_a_close_tag_without_an_open_one_rereads_the_system_prompts_example():
    traj = image_traj()
    step(traj, GenerationResult(text="I will zoom.</tool_call>", prompt_tokens=10, output_tokens=5), P)
    assert error_of(traj) == "Expecting value: line 2 column 10 (char 10)"  # '{"name": <function-name>'


def test_a_close_tag_without_an_open_one_reruns_the_previous_call():
    traj = image_traj()
    step(traj, turn(crop()), P)
    step(traj, GenerationResult(text="Again.</tool_call>", prompt_tokens=10, output_tokens=5), P)
    assert [c.ok for c in traj.tool_calls] == [True, True]
    assert traj.images[1].box == traj.images[2].box and traj.tool_calls[1].arguments == traj.tool_calls[0].arguments


def test_two_calls_in_one_turn_run_the_last():
    traj = image_traj()
    text = f"<tool_call>\n{crop(target='5')}\n</tool_call> or rather\n"
    step(traj, turn(crop(), text=text), P)
    assert traj.tool_calls[0].ok and len(traj.tool_calls) == 1


def test_nan_coordinates_are_accepted_as_python_json_accepts_them():
    call = Call(raw=crop(bbox="[NaN, 0.1, 0.5, Infinity]")).read()
    assert call.stage == "run" and call.arguments["bbox_2d"][3] == float("inf")
    cut, box, normalized = crop_region(Image.new("RGB", (1000, 1000)), call.arguments["bbox_2d"], P)
    # NaN fails "< 1", so all four go through the pixel rule: max(0, nan) is 0, 0.1/1000-0.1 < 0,
    # 0.5/1000+0.1 = 0.1005 -> 100.5, which rounds to even; inf clamps to 1
    assert box == (0, 0, 100, 1000) and normalized == pytest.approx([0.0, 0.0, 0.1005, 1.0])


# --- caps (the reference's force_terminate) --------------------------------------------------------

def test_image_cap_stops_before_the_seventeenth_image():
    traj = image_traj(size=(280, 280), n=16)
    step(traj, turn(crop(bbox="[0, 0, 1, 1]")), P)
    assert traj.stop_reason == MAX_IMAGES and len(traj.images) == 16


def test_token_budget_stops_a_tool_turn_but_not_an_answer():
    over = P.caps.max_total_tokens - 99
    traj = image_traj(size=(280, 280))
    step(traj, GenerationResult(text=turn(frames("[1]")).text, prompt_tokens=over, output_tokens=100), P)
    assert traj.stop_reason == MAX_TOKENS and not traj.tool_calls
    traj = image_traj(size=(280, 280))
    step(traj, GenerationResult(text="\\boxed{A}", prompt_tokens=over, output_tokens=100), P)
    assert traj.stop_reason == ANSWERED


# --- properties: no text of any shape raises out of a turn -----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
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


@settings(max_examples=300, deadline=None)
@given(body=bodies, video=st.booleans())
def test_any_tool_call_text_is_handled_without_raising(body, video):
    traj = video_traj((64, 48)) if video else image_traj((640, 480))
    step(traj, turn(body), P)
    call = traj.tool_calls[0]
    if call.ok:
        assert feedback(traj).startswith(("\nHere is the cropped image", "\nHere are the selected frames"))
    else:
        assert call.error_kind and error_of(traj) == call.error
    assert not traj.finished
    json.dumps(traj.to_record(), allow_nan=False)  # the record is strict JSON


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_assistant_text_is_handled_without_raising(text):
    traj = image_traj((64, 64))
    step(traj, GenerationResult(text=text, prompt_tokens=10, output_tokens=10), P)
    assert traj.finished == (not is_tool_request(text))
