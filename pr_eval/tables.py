"""The text tables of a run: the scores and the tool use, as `pr-eval` prints them at the end.

    ... -> score -> results.json -> Run (pr_eval.runs) -> [tables here] -> terminal, HTML report

Each benchmark's own metric, its label and its breakdowns come from the benchmark registry
(pr_eval.benchmarks); everything else is the same for every benchmark. The HTML report draws the
same rows (`score_rows`) and numbers (`cell`), so both tables agree. A run is any object with
`metrics`, `counts`, `members`, `benchmarks` and `layout()` (pr_eval.runs.Run).
"""

from __future__ import annotations

import math

from . import benchmarks

# Columns of the printed table: (metric key in lmms-eval's results, header). MAIN stands for each
# benchmark's own metric (its registry record's `main`), whose name the "metric" column gives.
MAIN = "main"
COLUMNS = [(MAIN, "score"), ("accuracy", "accuracy"), ("rapr", "RaPR"), ("tool_calls", "calls/sample"),
           ("tool_errors", "failed calls"), ("error_rate", "lost samples")]
# The tool figures shown in percent; each benchmark adds its own (`Benchmark.percent`).
TOOL_PERCENT = frozenset({MAIN, "rapr", "error_rate", "accuracy_with_tools", "accuracy_without_tools",
                          "calls_0", "calls_1", "calls_2", "calls_3", "calls_4plus", "call_error_rate", "crop_area",
                          "stopped_max_tool_calls", "stopped_max_images", "stopped_max_tokens",
                          "crop_hit_rate", "crop_iou", "accuracy_crop_hit", "accuracy_crop_miss"})
PERCENT = TOOL_PERCENT.union(*(b.percent for b in benchmarks.BENCHMARKS.values()))
FOOTNOTE = ("(score: the benchmark's own metric, named under metric; accuracy: the paper's answer rule;\n"
            " score, accuracy, RaPR and lost samples in %)")
# The tool-use table: how many calls, how they failed, what stopped trajectories, what zooming bought.
TOOL_COLUMNS = [("calls_0", "0 calls"), ("calls_1", "1"), ("calls_2", "2"), ("calls_3", "3"), ("calls_4plus", "4+"),
                ("call_error_rate", "failed calls"), ("stopped_max_tool_calls", "capped: calls"),
                ("stopped_max_images", "images"), ("stopped_max_tokens", "tokens"),
                ("accuracy_with_tools", "acc w/ tools"), ("accuracy_without_tools", "acc w/o"),
                ("turns", "turns"), ("output_tokens", "tokens/sample"), ("crop_area", "crop area")]
TOOL_FOOTNOTE = ("(shares of samples in %, except failed calls: % of calls; crop area: mean share of the\n"
                 " cropped image's area, in %; acc: the paper's accuracy; failures by kind in results.json)")


# Where the crops went, for benchmarks with target boxes (pr_eval.grounding).
GROUNDING_COLUMNS = [("crop_hit_rate", "crops on target"), ("crop_iou", "best-crop IoU"),
                     ("accuracy_crop_hit", "acc, crops hit"), ("accuracy_crop_miss", "acc, crops missed")]
GROUNDING_FOOTNOTE = ("(crops on target: % of crops covering at least half of a target box; best-crop IoU: per\n"
                      " target, the best IoU of any crop, in %; acc: the paper's accuracy of the samples whose crops\n"
                      " hit a target, and of those that cropped but never did)")


def run_table(run) -> str:
    """One row per task and scored group, a group's members indented below it (MVBench's
    subtasks under pr_mvbench), and V*'s attribute/spatial accuracy below V*; then the tool use,
    and where a benchmark has target boxes, the crop grounding."""
    rows = [["task", "n", "metric"] + [header for _, header in COLUMNS]]
    for name, label, depth in run.layout():
        rows += score_rows(run, name, label, depth)
    grounded = grounding_table(run)
    extra = [table for table in (sampled_table(run), judge_table(run)) if table]
    return (render_table(rows) + "\n" + FOOTNOTE + "".join("\n\n" + t for t in extra) + "\n\n" + tool_table(run)
            + ("\n\n" + grounded if grounded else ""))


def judge_table(run) -> str:
    """The optional judge's figures beside the rules' on the same trajectories ("" without a judge)."""
    judge = getattr(run, "judge", None) or {}
    if not judge.get("tasks"):
        return ""
    settings = judge.get("settings") or {}
    rows = [["judge", "judged", "lost", "judge acc", "rules acc", "agree", "disagree"]]
    for name, label, depth in run.layout():
        s = judge["tasks"].get(name)
        if s and depth == 0:
            rows.append([label, str(s.get("judged", 0)), str(s.get("lost", 0)), percent(s.get("judge_accuracy")),
                         percent(s.get("rule_accuracy_judged")), percent(s.get("agreement")),
                         str(len(s.get("disagreements") or []))])
    return (render_table(rows, text_columns=(0,)) + f"\n(judge {settings.get('model')}, prompt {settings.get('name')} "
            f"v{settings.get('version')}, fingerprint {settings.get('fingerprint')}: judge_accuracy is over the judged\n"
            " trajectories, lost judgements are not counted as wrong; rules acc: the paper's accuracy on those same ones)")


SAMPLED_FOOTNOTE = ("(Avg@K: the paper's accuracy averaged over K rollouts per question, its 95% interval over\n"
                    " questions (rollouts of one question are not independent); pass@k: unbiased estimator;\n"
                    " vote: accuracy of each question's majority answer; agree: share of rollouts giving it; all in %)")


def sampled_table(run) -> str:
    """A sampled run's Avg@K, interval, pass@1 .. pass@K, majority vote and agreement ("" for a
    greedy run)."""
    rows = sampled_rows(run)
    return render_table(rows, text_columns=(0,)) + "\n" + SAMPLED_FOOTNOTE if rows else ""


def sampled_rows(run) -> list[list[str]]:
    """The sampled table's header and rows ([] for a greedy run); pass@k columns: 1, 2, 4, ... and K."""
    sampled = getattr(run, "sampled", None) or {}
    if not sampled:
        return []
    k = max(int(s.get("k") or 0) for s in sampled.values())
    shown = sorted({1, k} | {2 ** i for i in range(1, 8) if 2 ** i < k})
    rows = [["sampled", "n", "K", f"Avg@{k}", "95% interval"] + [f"pass@{j}" for j in shown] + ["vote", "agree"]]
    for name, label, _depth in run.layout():
        s = sampled.get(name)
        if not s or not s.get("questions"):
            continue
        low, high = s.get("avg_ci") or (None, None)
        interval = "-" if low is None or high is None else f"{100 * low:.1f}-{100 * high:.1f}"
        rows.append([label, str(s["questions"]), str(s.get("k", "")), percent(s.get("avg")), interval]
                    + [percent((s.get("pass_at") or {}).get(str(j))) for j in shown]
                    + [percent(s.get("majority_accuracy")), percent(s.get("agreement"))])
    return rows if len(rows) > 1 else []


def grounding_table(run) -> str:
    """The crop-grounding figures of the benchmarks that have them ("" when none has)."""
    rows = [["crop grounding", "n"] + [header for _, header in GROUNDING_COLUMNS]]
    for name, label, depth in run.layout():
        values = run.metrics[name]
        cells = [cell(key, values.get(key)) for key, _ in GROUNDING_COLUMNS]
        if depth == 0 and any(c != "-" for c in cells):
            rows.append([label, str(run.counts.get(name, ""))] + cells)
    return render_table(rows, text_columns=(0,)) + "\n" + GROUNDING_FOOTNOTE if len(rows) > 1 else ""


def tool_table(run) -> str:
    """Tool use per task (one row per benchmark and group; MVBench's subtasks are left out)."""
    rows = [["tool use", "n"] + [header for _, header in TOOL_COLUMNS]]
    for name, label, depth in run.layout():
        if depth == 0:
            values = run.metrics[name]
            rows.append([label, str(run.counts.get(name, ""))]
                        + [cell(key, values.get(key)) for key, _ in TOOL_COLUMNS])
    return render_table(rows, text_columns=(0,)) + "\n" + TOOL_FOOTNOTE


def score_rows(run, name: str, label: str, depth: int) -> list[list[str]]:
    """A table row's cells, then one row per breakdown of its accuracy (that column only)."""
    values = run.metrics[name]
    own = benchmarks.find(run.benchmarks.get(name, ""))
    main = own.main if own else None
    rows = [["  " * depth + label, str(run.counts.get(name, "")), own.main_label if own else "-"]
            + [cell(key, values.get(main if key == MAIN else key)) for key, _ in COLUMNS]]
    for key in own.breakdown if own else ():
        rows.append(["  " * (depth + 1) + key.removesuffix("_accuracy"), "", ""]
                    + [cell(key, values.get(key)) if column == "accuracy" else "" for column, _ in COLUMNS])
    return rows


def cell(key: str, value) -> str:
    """A figure as the tables show it: percent with one decimal, others with two, "-" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return percent(value) if key in PERCENT else f"{value:.2f}"


def percent(value) -> str:
    """A fraction in percent with one decimal ("-" for none)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def render_table(rows: list[list[str]], text_columns=(0, 2)) -> str:
    """Aligned columns: names left, numbers right, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(text.ljust(w) if i in text_columns else text.rjust(w)
                       for i, (text, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
