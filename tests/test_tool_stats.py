"""Tool-use statistics: per-sample figures and how they pool (per sample or per call)."""

from __future__ import annotations

import math

import pytest

from pr_eval.scoring.metrics import mean_of_subset, sample_metrics, tool_figures
from pr_eval.trajectory import Generation, ToolCall, Trajectory


def traj(calls, stop="answered", tokens=(10, 20)):
    t = Trajectory(task="t", sample_id="s", question="q", target="A", protocol="p", fingerprint="f",
                   tool_calls=calls, stop_reason=stop,
                   generations=[Generation(100, n) for n in tokens],
                   messages=[{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{A}"}]}])
    return t


def ok(box):
    return ToolCall(turn=0, raw="", name="crop_image_normalized", ok=True, box_normalized=box)


def bad(kind):
    return ToolCall(turn=0, raw="", ok=False, error_kind=kind, error="Execution Error: x")


def test_figures_of_one_sample():
    f = tool_figures(traj([ok([0, 0, 0.5, 0.5]), ok([0.5, 0.5, 1, 1]), bad("malformed")], stop="max_tool_calls",
                          tokens=(10, 20, 30)))
    assert (f["rapr"], f["tool_calls"], f["tool_errors"]) == (1.0, 3.0, 1.0)
    assert [f[f"calls_{k}"] for k in ("0", "1", "2", "3", "4plus")] == [0, 0, 0, 1, 0]
    assert f["stopped_max_tool_calls"] == 1 and f["stopped_max_images"] == 0 and f["stopped_max_tokens"] == 0
    assert (f["turns"], f["output_tokens"]) == (3.0, 60.0)
    assert f["call_error_rate"] == {"value": pytest.approx(1 / 3), "weight": 3.0}
    assert f["call_error_malformed"]["value"] == pytest.approx(1 / 3) and f["call_error_bad_target"]["value"] == 0
    assert f["crop_area"] == {"value": 0.25, "weight": 2.0}  # two crops of a quarter each


def test_per_call_figures_pool_over_calls_not_samples():
    one_bad_of_four = tool_figures(traj([bad("bad_target"), ok([0, 0, 1, 1]), ok([0, 0, 1, 1]), ok([0, 0, 1, 1])]))
    one_bad_of_one = tool_figures(traj([bad("bad_target")]))
    no_call = tool_figures(traj([]))
    pooled = mean_of_subset([one_bad_of_four["call_error_rate"], one_bad_of_one["call_error_rate"],
                             no_call["call_error_rate"]])
    assert pooled == pytest.approx(2 / 5)  # 2 failed of 5 calls (a mean of sample rates would say 5/8)
    assert math.isnan(mean_of_subset([no_call["crop_area"]]))  # no crop: no area


def test_accuracy_with_and_without_tools_split_the_samples():
    used = sample_metrics(traj([ok([0, 0, 1, 1])]), {"answer": "A", "question": "(A) x\n(B) y"}, "vstar")
    unused = sample_metrics(traj([]), {"answer": "B", "question": "(A) x\n(B) y"}, "vstar")
    with_tools = mean_of_subset([used["accuracy_with_tools"], unused["accuracy_with_tools"]])
    without = mean_of_subset([used["accuracy_without_tools"], unused["accuracy_without_tools"]])
    assert (with_tools, without) == (1.0, 0.0)
