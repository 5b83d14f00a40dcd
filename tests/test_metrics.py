"""Per-sample metrics of each benchmark, on hand-built trajectories, and their aggregation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from lmms_eval.api.metrics import aggregate_subtask_metrics

from pr_eval.benchmarks import BENCHMARKS
from pr_eval.scoring.metrics import (mean_of_subset, pool, sample_metrics, subset_value,
                                     trajectory_from_response)
from pr_eval.trajectory import DATA_ERROR, ENGINE_ERROR, MAX_TOOL_CALLS, ToolCall, Trajectory

TASKS = Path(__file__).resolve().parents[1] / "tasks"
TOOL_FIGURES = {"rapr", "tool_calls", "tool_errors", "error_rate", "accuracy_with_tools", "accuracy_without_tools",
                "calls_0", "calls_1", "calls_2", "calls_3", "calls_4plus", "stopped_max_tool_calls",
                "stopped_max_images", "stopped_max_tokens", "turns", "output_tokens", "call_error_rate", "crop_area",
                *(f"call_error_{k}" for k in ("malformed", "unknown_tool", "bad_arguments", "bad_target",
                                               "crop_too_small", "too_many_frames", "wrong_modality", "max_images"))}

VSTAR = {"qid": "vstar-direct_attributes-0", "answer": "B", "category": "attribute",
         "question": "What is the color of the cup?\n(A) red\n(B) green\n(C) blue\n(D) white"}
TALLY = {"qid": "tallyqa-0", "answer": "3", "question": "How many dogs are sitting?"}
INFO = {"qid": "infovqa-0", "answer": ["42%", "42 percent"], "question": "What share voted?"}


def mvbench_doc(subtask: str, n: int) -> dict:
    return {"qid": f"mvbench-{subtask}-{n}", "answer": "A", "subtask": subtask, "is_video": True,
            "question": "What happened first?\n(A) he sat down\n(B) he stood up\n(C) he left"}


def crop(ok: bool = True) -> ToolCall:
    return ToolCall(turn=0, raw='{"name": "crop_image_normalized"}', name="crop_image_normalized",
                    arguments={"bbox_2d": [0.1, 0.1, 0.4, 0.4], "target_image": 1}, ok=ok,
                    error_kind=None if ok else "bad_arguments",
                    error=None if ok else "Execution Error: crop too small")


def trajectory(*turns: str, calls=(), stop=None) -> Trajectory:
    """A finished trajectory whose assistant turns are `turns`, as written to disk and read back."""
    messages = []
    for k, text in enumerate(turns):
        if k:
            feedback = {"type": "text", "text": "\nHere is the cropped image:"}
            messages.append({"role": "user", "content": [feedback]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    traj = Trajectory(task="t", sample_id="s", question="q", target=None, protocol="pixel-reasoner-v3",
                      fingerprint="0" * 16, messages=messages, tool_calls=list(calls),
                      stop_reason=stop or ("answered" if turns else DATA_ERROR))
    return trajectory_from_response(traj.to_json(), {}, "t")  # the JSON our adapter hands lmms-eval


# --- each benchmark -------------------------------------------------------------------------------

def test_every_benchmark_reports_accuracy_its_own_metric_and_the_tool_figures():
    docs = {"vstar": VSTAR, "mvbench": mvbench_doc("action_count", 0), "tallyqa": TALLY, "infovqa": INFO,
            "zoom": VSTAR, "visualprobe": {"qid": "visualprobe-0", "answer": "red", "question": "Which color?"}}
    for benchmark, scorer in BENCHMARKS.items():
        doc = docs.get(benchmark) or docs.get(benchmark.split("_")[0]) or VSTAR  # the field's: lettered too
        metrics = sample_metrics(trajectory("\\boxed{A}"), doc, benchmark)
        grounding = {"crop_hit_rate", "crop_iou", "accuracy_crop_hit", "accuracy_crop_miss"} if scorer.grounding else set()
        assert {"accuracy", scorer.main} | TOOL_FIGURES | set(scorer.breakdown) | grounding == set(metrics), benchmark
    assert {b: s.main for b, s in BENCHMARKS.items()} == {
        "vstar": "letter_accuracy", "mvbench": "letter_accuracy", "tallyqa": "count_accuracy", "infovqa": "anls",
        "zoom": "letter_accuracy", "hrbench4k": "cycle_accuracy", "hrbench8k": "cycle_accuracy",
        "mmerw": "letter_accuracy", "mmerw_lite": "letter_accuracy", "treebench": "letter_accuracy",
        "visualprobe_easy": "exact_match", "visualprobe_medium": "exact_match", "visualprobe_hard": "exact_match"}


def test_vstar_letter_and_category_breakdown():
    metrics = sample_metrics(trajectory("It is green. \\boxed{B. green}"), VSTAR, "vstar")
    # The reference rule does not read "B. green" as B; the letter metric does.
    assert metrics["accuracy"] == 0.0 and metrics["letter_accuracy"] == 1.0
    assert metrics["attribute_accuracy"] == subset_value(0.0, True)
    assert metrics["spatial_accuracy"] == subset_value(0.0, False)
    right = sample_metrics(trajectory("\\boxed{(B)}"), {**VSTAR, "category": "spatial"}, "vstar")
    assert right["accuracy"] == right["letter_accuracy"] == 1.0
    assert right["spatial_accuracy"] == subset_value(1.0, True)


def test_tallyqa_counts_number_words_the_reference_rule_does_not():
    words = sample_metrics(trajectory("\\boxed{three}"), TALLY, "tallyqa")
    assert words["count_accuracy"] == 1.0 and words["accuracy"] == 0.0
    # The reference verifies the whole text when nothing is boxed; the count metric wants one number.
    loose = sample_metrics(trajectory("I see 3 dogs sitting."), TALLY, "tallyqa")
    assert loose["accuracy"] == 1.0 and loose["count_accuracy"] == 0.0
    wrong = sample_metrics(trajectory("\\boxed{4}"), TALLY, "tallyqa")
    assert wrong["accuracy"] == wrong["count_accuracy"] == 0.0


def test_infovqa_anls_is_best_over_references_and_accuracy_is_secondary():
    close = sample_metrics(trajectory("\\boxed{42}"), INFO, "infovqa")
    assert close["anls"] == pytest.approx(1 - 1 / 3)  # "42" vs "42%"
    assert close["accuracy"] == 1.0  # the reference drops the %
    plural = sample_metrics(trajectory("\\boxed{blue whales}"), {**INFO, "answer": ["blue whale"]}, "infovqa")
    assert plural["anls"] == pytest.approx(1 - 1 / 11) and plural["accuracy"] == 0.0
    far = sample_metrics(trajectory("\\boxed{Tokyo}"), {**INFO, "answer": ["London"]}, "infovqa")
    assert far["anls"] == 0.0  # below the 0.5 threshold


def test_mvbench_letter_accuracy_reads_the_last_turn():
    metrics = sample_metrics(trajectory("Let me look closer. <tool_call>{}</tool_call>", "\\boxed{A}",
                                        calls=[crop()]), mvbench_doc("action_count", 0), "mvbench")
    assert metrics["letter_accuracy"] == metrics["accuracy"] == 1.0
    assert metrics["rapr"] == 1.0 and metrics["accuracy_with_tools"] == subset_value(1.0, True)


def test_unknown_benchmark_names_the_known_ones():
    with pytest.raises(ValueError, match="known: vstar, tallyqa, infovqa, mvbench"):
        sample_metrics(trajectory("\\boxed{A}"), VSTAR, "vqa")


# --- tool figures and lost samples -----------------------------------------------------------------

def test_tool_figures_count_calls_and_failed_calls():
    metrics = sample_metrics(trajectory("<tool_call>{}</tool_call>", "<tool_call>{}</tool_call>", "\\boxed{B}",
                                        calls=[crop(ok=False), crop()]), VSTAR, "vstar")
    assert metrics["rapr"] == 1.0 and metrics["tool_calls"] == 2.0 and metrics["tool_errors"] == 1.0
    assert metrics["accuracy_with_tools"] == subset_value(1.0, True)
    assert metrics["accuracy_without_tools"] == subset_value(1.0, False)
    plain = sample_metrics(trajectory("\\boxed{B}"), VSTAR, "vstar")
    assert plain["rapr"] == plain["tool_calls"] == plain["tool_errors"] == 0.0
    assert plain["accuracy_without_tools"] == subset_value(1.0, True)


@pytest.mark.parametrize("stop", [DATA_ERROR, ENGINE_ERROR])
@pytest.mark.parametrize("benchmark,doc,text", [
    ("vstar", VSTAR, "\\boxed{B}"), ("tallyqa", TALLY, "\\boxed{3}"), ("infovqa", INFO, "\\boxed{42%}"),
    ("mvbench", mvbench_doc("state_change", 0), "\\boxed{A}")])
def test_lost_samples_count_as_wrong_and_in_error_rate(stop, benchmark, doc, text):
    # Even a right answer written before the engine failed does not count.
    metrics = sample_metrics(trajectory(text, stop=stop), doc, benchmark)
    assert metrics["error_rate"] == 1.0
    assert metrics["accuracy"] == metrics[BENCHMARKS[benchmark].main] == 0.0


def test_a_capped_trajectory_is_scored_on_what_it_has():
    metrics = sample_metrics(trajectory("\\boxed{B}", stop=MAX_TOOL_CALLS), VSTAR, "vstar")
    assert metrics["accuracy"] == 1.0 and metrics["error_rate"] == 0.0


# --- responses of other models -------------------------------------------------------------------

@pytest.mark.parametrize("response", ["The cup is green, so \\boxed{B}", '{"answer": "A"}', "[1, 2]", ""])
def test_a_plain_text_response_is_scored_as_text(response):
    traj = trajectory_from_response(response, VSTAR, "pr_vstar")
    assert traj.protocol == "external" and traj.answer_text == response and traj.sample_id == VSTAR["qid"]
    metrics = sample_metrics(traj, VSTAR, "vstar")
    assert metrics["letter_accuracy"] == float(response.endswith("\\boxed{B}"))
    assert metrics["rapr"] == metrics["error_rate"] == 0.0


def test_our_trajectory_json_comes_back_whole():
    traj = trajectory("<tool_call>{}</tool_call>", "\\boxed{B}", calls=[crop()])
    assert traj.protocol == "pixel-reasoner-v3" and traj.tool_calls[0].ok and len(traj.messages) == 3


# --- aggregation ---------------------------------------------------------------------------------

def test_subset_means_skip_samples_outside_the_subset():
    items = [subset_value(1.0, True), subset_value(0.0, False), subset_value(0.0, True)]
    assert mean_of_subset(items) == 0.5
    assert math.isnan(mean_of_subset([subset_value(1.0, False)]))
    assert pool(items) == 0.5 and pool([1.0, 0.0, 0.0, 1.0]) == 0.5


def test_mvbench_overall_is_the_mean_over_questions_not_of_subtask_means():
    # action_count: 3 questions, all right; state_change: 1 question, wrong.
    def scored(text, subtask, n):
        return sample_metrics(trajectory(text), mvbench_doc(subtask, n), "mvbench")

    samples = {"action_count": [scored("\\boxed{A}", "action_count", n) for n in range(3)],
               "state_change": [scored("\\boxed{C}", "state_change", 0)]}
    means = [pool(s["letter_accuracy"] for s in group) for group in samples.values()]
    sizes = [len(group) for group in samples.values()]
    assert means == [1.0, 0.0]
    question_mean = pool(s["letter_accuracy"] for group in samples.values() for s in group)
    assert question_mean == 0.75 != sum(means) / len(means)
    # The group pools subtask means the way lmms-eval does with weight_by_size: the question mean.
    assert aggregate_subtask_metrics(means, sizes, weight_by_size=True) == question_mean
    group = yaml.safe_load((TASKS / "pr_mvbench" / "pr_mvbench.yaml").read_text())
    assert group["aggregate_metric_list"] and all(m["weight_by_size"] for m in group["aggregate_metric_list"])
    # Subset metrics are pooled from the samples: 2 tool users right of 3, not weighted subtask means.
    tools = [subset_value(1.0, True), subset_value(1.0, True), subset_value(0.0, False), subset_value(0.0, True)]
    assert pool(tools) == pytest.approx(2 / 3)
