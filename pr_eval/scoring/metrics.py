"""Per-sample metrics of a finished trajectory, and their aggregation.

    trajectory + doc -> sample_metrics(traj, doc, benchmark) -> one flat dict per sample -> means

Every benchmark reports the same shape: the paper-compatible `accuracy` (the reference's rule,
`rules.reference_accuracy`), the benchmark's own metric (`main` of its `pr_eval.benchmarks`
record: option letter for V* and MVBench, exact count for TallyQA, ANLS for InfoVQA), its
breakdowns, and the tool-use figures. Only the benchmark's record differs.

A task's score is the mean over its samples. Samples whose data or engine failed count as wrong
(the denominator stays the benchmark's question count) and are counted in `error_rate`, so a
broken run cannot pass for a weak model. Breakdowns (V* attribute/spatial, accuracy with and
without tools) and per-call figures are weighted values: each sample contributes
`{"value": v, "weight": w}` and the figure is the weighted mean (NaN when the weights are 0).
"""

from __future__ import annotations

import json
import math

from .. import benchmarks
from ..families import family_of_record
from ..trajectory import CAPPED, ERRORS, Trajectory
from . import grounding


def trajectory_from_response(response: str, doc: dict, task: str) -> Trajectory:
    """The trajectory our model adapter returned as its response, or, for any other lmms-eval
    model, a one-turn trajectory holding that model's plain text answer."""
    try:
        record = json.loads(response)
        if isinstance(record, dict) and "messages" in record and "stop_reason" in record:
            return Trajectory.from_record(record)
    except (ValueError, TypeError):
        pass
    return Trajectory(task=task, sample_id=str(doc.get("qid", "")), question=str(doc.get("question", "")),
                      target=doc.get("answer"), protocol="external", fingerprint="",
                      messages=[{"role": "assistant", "content": [{"type": "text", "text": str(response)}]}],
                      stop_reason="answered")


def trajectories_from_response(response: str, doc: dict, task: str) -> list[Trajectory]:
    """A sampled question's rollouts (`{"rollouts": [...]}`, in rollout order), or the one
    trajectory of any other response (`trajectory_from_response`)."""
    try:
        record = json.loads(response)
    except (ValueError, TypeError):
        record = None
    if isinstance(record, dict) and isinstance(record.get("rollouts"), list) and record["rollouts"]:
        return [Trajectory.from_record(r) for r in record["rollouts"]]
    return [trajectory_from_response(response, doc, task)]


def question_metrics(trajs: list[Trajectory], doc: dict, benchmark: str) -> dict:
    """One question's metrics: its trajectory's, or the mean over its rollouts (`combine`)."""
    return question_from([sample_metrics(t, doc, benchmark) for t in trajs])


def question_from(per_rollout: list[dict]) -> dict:
    """A question's metrics from its trajectories' (`sample_metrics`): the one's, or `combine`d."""
    return per_rollout[0] if len(per_rollout) == 1 else combine(per_rollout)


def combine(per_rollout: list[dict]) -> dict:
    """A question's metrics from its rollouts' so that the task's aggregate is the mean over
    rollouts: plain values are averaged (accuracy becomes the question's share of correct
    rollouts, and its mean over questions Avg@K); weighted values pool their rollouts (value =
    the weighted mean, weight = the sum), so a breakdown or per-call figure is pooled over all the
    rollouts it includes; a grouped value keeps its group."""
    out = {}
    for name, first in per_rollout[0].items():
        values = [m[name] for m in per_rollout]
        if isinstance(first, dict):
            weight = sum(v["weight"] for v in values)
            value = sum(v["value"] * v["weight"] for v in values) / weight if weight else 0.0
            out[name] = {**first, "value": value, "weight": weight}
        else:
            out[name] = mean(values)
    return out


# --- One sample ---------------------------------------------------------------------------------

# Why a tool call failed (ToolCall.error_kind), in the order the report lists them.
CALL_ERROR_KINDS = ("malformed", "unknown_tool", "bad_arguments", "bad_target", "crop_too_small",
                    "too_many_frames", "wrong_modality", "max_images")
CALL_BINS = 4  # calls_0 .. calls_3, then calls_4plus


def tool_figures(traj: Trajectory) -> dict:
    """Tool-use figures of one sample.

    Per-sample means (`rapr`, `tool_calls`, the `calls_k` histogram, the `stopped_*` shares,
    `turns`, `output_tokens`) average over samples; per-call figures (`call_error_rate`, its
    split by kind, `crop_area`) are weighted values that average over calls, so a sample with
    four calls weighs four times one with a single call."""
    calls = traj.tool_calls
    n = len(calls)
    failed = [c for c in calls if not c.ok]
    crops = [c.box_normalized for c in calls if c.ok and c.box_normalized]
    figures = {
        "rapr": float(traj.used_tools),
        "tool_calls": float(n),
        "tool_errors": float(len(failed)),
        "error_rate": float(traj.stop_reason in ERRORS),
        **{f"calls_{k}": float(n == k) for k in range(CALL_BINS)},
        f"calls_{CALL_BINS}plus": float(n >= CALL_BINS),
        **{f"stopped_{cap}": float(traj.stop_reason == cap) for cap in CAPPED},
        "turns": float(len(traj.generations)),
        "output_tokens": float(sum(g.output_tokens for g in traj.generations)),
        "call_error_rate": weighted(len(failed) / n if n else 0.0, n),
        "crop_area": weighted(mean((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in crops) if crops else 0.0,
                              len(crops)),
    }
    for kind in CALL_ERROR_KINDS:
        count = sum(1 for c in failed if c.error_kind == kind)
        figures[f"call_error_{kind}"] = weighted(count / n if n else 0.0, n)
    return figures


def weighted(value: float, weight: float) -> dict:
    """A value that aggregates as a weighted mean (see `mean_of_subset`)."""
    return {"value": float(value), "weight": float(weight)}


def subset_value(value: float, included: bool) -> dict:
    """A sample's value for a breakdown: it counts only where `included` (see `mean_of_subset`)."""
    return weighted(value, 1.0 if included else 0.0)


TOOL_FIGURES = tuple(tool_figures(Trajectory("", "", "", None, "", "")).keys())
# Every tool statistic a task reports: the figures above, plus accuracy split by tool use.
TOOL_STATS = TOOL_FIGURES + ("accuracy_with_tools", "accuracy_without_tools")


def task_metric_list() -> list[dict]:
    """The lmms-eval `metric_list` entries of the tool figures, shared by every task (see
    `pr_eval.lmms.task.PixelReasonerTask`), so no task YAML has to repeat them."""
    lower = {"tool_errors", "error_rate", "call_error_rate", "turns", "output_tokens",
             *(f"call_error_{k}" for k in CALL_ERROR_KINDS), *(f"stopped_{c}" for c in CAPPED)}
    entries = []
    for name in TOOL_STATS:
        is_weighted = name in ("accuracy_with_tools", "accuracy_without_tools", "call_error_rate", "crop_area") \
            or name.startswith("call_error_")
        entries.append({"metric": name, "aggregation": mean_of_subset if is_weighted else "mean",
                        "higher_is_better": name not in lower})
    return entries


def sample_metrics(traj: Trajectory, doc: dict, benchmark: str) -> dict:
    """All metrics of one sample of `benchmark` (a name in `pr_eval.benchmarks`).

    `accuracy` is the verdict of the trajectory's protocol family (`Family.verdict`): for Pixel
    Reasoner the reference's rule on the text it scores (the conversation after the first
    assistant header). A family whose rule can leave a question to its judge (DeepEyes, Mini-o3,
    Chain-of-Focus) scores an undecided question 0 here, the value lmms-eval's own mean sees (a
    lower bound); a pr-eval run marks it undecided in its records, reports `accuracy` over the
    decided questions and counts the rest (pr_eval.judge.family), and breakdowns leave it out.
    The benchmark's own metric reads the final turn. A sample lost to a data or engine error
    scores 0 everywhere and 1 in `error_rate`. Sets `traj.scores` as a side record. Under a
    probe's counterfactual edit (pr_eval.probe) the gold is the edited option's letter.
    """
    own = benchmarks.get(benchmark)
    family = family_of_record(traj)
    edited = (traj.meta.get("intervention") or {}).get("edited_answer")
    if edited is not None:  # a probe's counterfactual picture: its answer is the edited option
        doc = {**doc, "answer": edited}
    failed = traj.stop_reason in ERRORS
    verdict = None if failed else family.verdict(traj, doc["answer"])
    undecided = verdict is not None and verdict.score is None
    value = 0.0 if verdict is None or undecided else float(verdict.score)
    main = 0.0 if failed else own.score(traj.answer_text, doc)
    traj.scores = {"accuracy": value, own.main: main, **({"undecided": True} if undecided else {})}
    category = doc.get("category") or traj.meta.get("category") or "unknown"
    figures = tool_figures(traj)
    used = bool(figures["rapr"])
    return {
        "accuracy": value,
        own.main: {**weighted(main, 1.0), "group": str(doc.get("group") or "")} if own.main_by_group else main,
        **{name: subset_value(value, not undecided and own.in_category(category, wanted))
           for name, wanted in own.breakdown.items()},
        **figures,
        "accuracy_with_tools": subset_value(value, not undecided and used),
        "accuracy_without_tools": subset_value(value, not undecided and not used),
        **(grounding_metrics(traj, doc, value, undecided) if own.grounding else {}),
    }


GROUNDING = ("crop_hit_rate", "crop_iou", "accuracy_crop_hit", "accuracy_crop_miss")


def grounding_metrics(traj: Trajectory, doc: dict, accuracy: float, undecided: bool = False) -> dict:
    """Where the crops went (pr_eval.scoring.grounding), for a benchmark whose rows have target boxes."""
    size = traj.images[0].original_size if traj.images and traj.images[0].kind == "input" else None
    found = grounding.figures(traj, grounding.normalized_targets(doc.get("targets"), size))
    has_targets = bool(found["crop_iou"][1]) and not undecided
    return {
        "crop_hit_rate": weighted(*found["crop_hit_rate"]),
        "crop_iou": weighted(*found["crop_iou"]),
        "accuracy_crop_hit": subset_value(accuracy, has_targets and found["hit"]),
        "accuracy_crop_miss": subset_value(accuracy, has_targets and found["cropped"] and not found["hit"]),
    }



# --- Aggregation --------------------------------------------------------------------------------

def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def mean_of_subset(items: list[dict]) -> float:
    """Weighted mean of weighted values: for a breakdown, the mean over the samples included in
    it; for a per-call figure, the mean over calls. NaN when the weights add up to nothing."""
    total = sum(i["weight"] for i in items)
    return sum(i["value"] * i["weight"] for i in items) / total if total else math.nan


def mean_over_groups(items: list[dict]) -> float:
    """The mean over groups of each group's mean (HR-Bench's cycle rule: a question's rotations
    form a group); NaN over no sample."""
    return grouped_mean((float(item["value"]), str(item.get("group", ""))) for item in items)


def grouped_mean(pairs) -> float:
    """The mean over groups of each group's mean of (value, group) pairs; NaN over none. The one
    grouped rule: lmms-eval's aggregation, the run reader, compare and submissions all use it."""
    groups: dict[str, list[float]] = {}
    for value, group in pairs:
        groups.setdefault(group, []).append(value)
    return mean(mean(values) for values in groups.values())


def pool(values: list) -> float:
    """One metric over any set of samples, as the task YAMLs aggregate it: the mean, or for
    subset values the mean over the included samples. Used to pool a group's samples where
    lmms-eval cannot (see tasks/pr_mvbench/pr_mvbench.yaml)."""
    values = list(values)
    if any(isinstance(v, dict) for v in values):
        return mean_of_subset([v for v in values if isinstance(v, dict)])
    return mean(values)
