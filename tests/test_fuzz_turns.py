"""Everything a model writes is data: generated turns of every shape through the whole path a turn
takes (parse, execute, record, journal line, resume read-back). No turn may raise out of the loop,
and every record must come back from the journal as it went in."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.loop import steps as loop
from pr_eval.engines.base import GenerationResult
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.run.store import journal_line, parse_journal, stored_answer
from pr_eval.loop.tools import CROP, SELECT_FRAMES
from pr_eval.trajectory import Sample, Trajectory

IMAGE = Image.new("RGB", (320, 240), (90, 140, 200))
FRAMES = [Image.new("RGB", (112, 84), (10 * i, 80, 160)) for i in range(P.num_video_frames)]

# The three turns that once made a run impossible to finish (each crashed the journal, the
# executor or the record, and --resume crashed again on the same sample).
SURROGATE = '<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": "\\ud800"}}\n</tool_call>'
HUGE_INT = ('<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [' + "9" * 400
            + ', 0.1, 0.5, 0.5], "target_image": 1}}\n</tool_call>')
DEEP = ('<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.5, 0.5], '
        '"target_image": 1, "x": ' + "[" * 600 + "]" * 600 + "}}\n</tool_call>")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10 ** 450, max_value=10 ** 450)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
numbers = st.integers(min_value=-10 ** 420, max_value=10 ** 420) | st.floats(allow_nan=False, allow_infinity=False, width=32)
arguments = st.one_of(
    st.fixed_dictionaries({"bbox_2d": st.lists(numbers, min_size=0, max_size=6), "target_image": json_values | numbers}),
    st.fixed_dictionaries({"target_frames": st.lists(numbers | json_values, max_size=10)}),
    json_values)
names = st.sampled_from([CROP, SELECT_FRAMES]) | st.text(max_size=10)
# JSON escapes that decode to lone surrogates or control characters, spliced into the call text
poison = st.sampled_from(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', "1e999", "NaN", "-Infinity",
                          "[" * 700 + "]" * 700, "9" * 5000, '{"a":' * 400 + "1" + "}" * 400])


@st.composite
def tool_turns(draw) -> str:
    body = json.dumps({"name": draw(names), "arguments": draw(arguments)}, ensure_ascii=draw(st.booleans()))
    shape = draw(st.sampled_from(["whole", "cut", "poison", "noise", "no_open", "prose"]))
    if shape == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif shape == "poison":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(poison) + body[at:]
    elif shape == "noise":
        body = draw(st.text(max_size=200))
    text = f"<tool_call>\n{body}\n</tool_call>"
    if shape == "no_open":
        text = f"{body}</tool_call>"
    if shape == "prose":
        text = draw(st.text(max_size=100)) + text
    return text + draw(st.sampled_from(["", "<|im_end|>"]))


def a_trajectory(video: bool) -> Trajectory:
    if video:
        sample = Sample(task="pr_mvbench_fuzz", sample_id="mvbench-fuzz", question="What happens?",
                        answer="A", load_images=lambda: list(FRAMES), is_video=True)
    else:
        sample = Sample(task="pr_vstar", sample_id="vstar-fuzz", question="What color?", answer="B",
                        load_images=lambda: [IMAGE])
    return loop.start(sample, P)


def run_turns(turns: list[str], video: bool) -> Trajectory:
    traj = a_trajectory(video)
    for n, text in enumerate(turns):
        if traj.stop_reason is not None:
            break
        loop.step(traj, GenerationResult(text=text, prompt_tokens=1000 + n, output_tokens=len(text)), P)
    return traj


def assert_round_trips(traj: Trajectory) -> None:
    record = traj.to_record()
    key = f"{traj.task}/{traj.sample_id}"
    line = journal_line({"key": key, "sample_id": traj.sample_id, "trajectory": record})
    journal = parse_journal(line + line)  # the same sample twice: the first line wins, as on resume
    assert list(journal.records) == [key] and journal.duplicates == [key]
    back = journal.records[key]["trajectory"]
    assert json.dumps(back, sort_keys=True) == json.dumps(json.loads(json.dumps(record, default=str)), sort_keys=True)
    again = Trajectory.from_record(back).to_record()  # what a resumed run rebuilds from the journal
    assert json.dumps(again, sort_keys=True) == json.dumps(back, sort_keys=True)
    assert json.loads(stored_answer(journal.records[key])) == json.loads(traj.to_json())  # the answer lmms-eval scores


# 3,500 conversations of 3 to 5 tool turns: more than 10^4 turns (a trajectory runs at most 4
# calls, so a fifth turn meets the cap), at a third of the cost of 10^4 short conversations.
# 1,000 generated conversations per CI run (about 50 s); PR_EVAL_FUZZ_EXAMPLES=5000 for a deeper search
@settings(max_examples=int(os.environ.get("PR_EVAL_FUZZ_EXAMPLES", 1000)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(tool_turns(), min_size=3, max_size=5), st.booleans())
@example([SURROGATE], False)
@example([HUGE_INT], False)
@example([DEEP], False)
@example([SURROGATE, HUGE_INT, DEEP], True)
def test_no_turn_can_stop_a_run_and_every_record_survives_the_journal(turns, video):
    traj = run_turns(turns, video)  # raises nothing, whatever the turns hold
    assert traj.tool_calls  # every turn above ends with </tool_call>: each was a tool request
    for call in traj.tool_calls:
        assert call.ok or call.error, call
    assert_round_trips(traj)


def test_the_three_poison_turns_end_in_error_turns_the_model_sees():
    # "\ud800" - 1 and float(9...9) raise, as in the reference; the deep list is an ignored key
    for text, kind in ((SURROGATE, "bad_arguments"), (HUGE_INT, "bad_arguments"), (DEEP, None)):
        traj = run_turns([text], video=False)
        [call] = traj.tool_calls
        assert traj.stop_reason is None  # the trajectory goes on: the model gets the feedback turn
        if kind:
            assert call.error_kind == kind, call
            assert traj.messages[-1]["role"] == "user" and "Execution" in json.dumps(traj.messages[-1])
        assert_round_trips(traj)
    deep = json.dumps(run_turns([DEEP], video=False).tool_calls[0].arguments)
    assert "<list nested deeper than 32 levels, not kept>" in deep and deep.count("[") < 40
