"""The text tables of a run: the scores and the tool use, as `pr-eval` prints them at the end.

    ... -> score -> results.json -> Run (pr_eval.run.folder) -> [tables here] -> terminal, HTML report

Each benchmark's own metric, its label and its breakdowns come from the benchmark registry
(pr_eval.benchmarks); everything else is the same for every benchmark. The HTML report draws the
same rows (`score_rows`) and numbers (`cell`), so both tables agree. The printed tables fit 100
columns (WIDTH) where the task names allow: short headers, and a tool-use table of the most
useful columns (the report and results.json hold the rest). A run is any object with
`metrics`, `counts`, `members`, `benchmarks` and `layout()` (pr_eval.run.folder.Run).
"""

from __future__ import annotations

import math
import textwrap

from .. import benchmarks

# Columns of the printed table: (metric key in lmms-eval's results, header). MAIN stands for each
# benchmark's own metric (its registry record's `main`), whose name the "metric" column gives.
# Headers are short so that the table fits 100 columns with MVBench's subtasks; the HTML report
# spells them out (HTML_HEADERS).
MAIN = "main"
COLUMNS = [(MAIN, "score"), ("accuracy", "accuracy"), ("rapr", "RaPR"), ("tool_calls", "calls/sample"),
           ("tool_errors", "failed"), ("error_rate", "lost")]
HTML_HEADERS = {"tool_errors": "failed calls", "error_rate": "lost samples"}
WIDTH = 100  # the printed tables fit a terminal this wide
# The tool figures shown in percent; each benchmark adds its own (`Benchmark.percent`).
TOOL_PERCENT = frozenset({MAIN, "rapr", "error_rate", "accuracy_with_tools", "accuracy_without_tools",
                          "calls_0", "calls_1", "calls_2", "calls_3", "calls_4plus", "call_error_rate", "crop_area",
                          "stopped_max_tool_calls", "stopped_max_images", "stopped_max_tokens",
                          "crop_hit_rate", "crop_iou", "accuracy_crop_hit", "accuracy_crop_miss"})
PERCENT = TOOL_PERCENT.union(*(b.percent for b in benchmarks.BENCHMARKS.values()))
FOOTNOTE = ("(score: the benchmark's own metric, named under metric; accuracy: the paper's answer rule; failed:\n"
            " failed tool calls per sample; lost: samples lost to errors; score, accuracy, RaPR, lost in %)")
DEMO_FOOTNOTE = "(the demo model was trained on zoom only: 0.0 on the paper's benchmarks is expected)"
DEMO_MODEL = "demo"
# The tool-use table of the report (pr_eval.report.charts): how many calls, how they failed, what stopped
# trajectories, what zooming bought.
TOOL_COLUMNS = [("calls_0", "0 calls"), ("calls_1", "1"), ("calls_2", "2"), ("calls_3", "3"), ("calls_4plus", "4+"),
                ("call_error_rate", "failed calls"), ("stopped_max_tool_calls", "capped: calls"),
                ("stopped_max_images", "images"), ("stopped_max_tokens", "tokens"),
                ("accuracy_with_tools", "acc w/ tools"), ("accuracy_without_tools", "acc w/o"),
                ("turns", "turns"), ("output_tokens", "tokens/sample"), ("crop_area", "crop area")]
TOOL_FOOTNOTE = ("(shares of samples in %, except failed calls: % of calls; crop area: mean share of the\n"
                 " cropped image's area, in %; acc: the paper's accuracy; failures by kind in results.json)")
# The printed tool-use table, narrowed to 100 columns: (metric keys, summed; header). The report
# and results.json keep the rest (calls 2, 3 and 4+ apart, each cap, turns, tokens per sample).
PRINTED_TOOL_COLUMNS = [(("calls_0",), "0 calls"), (("calls_1",), "1"),
                        (("calls_2", "calls_3", "calls_4plus"), "2+"), (("call_error_rate",), "failed"),
                        (("stopped_max_tool_calls", "stopped_max_images", "stopped_max_tokens"), "capped"),
                        (("accuracy_with_tools",), "acc w/ tools"), (("accuracy_without_tools",), "acc w/o"),
                        (("crop_area",), "crop area")]
PRINTED_TOOL_FOOTNOTE = (
    "(shares of samples in %: 0 calls, 1, 2+ calls; capped: stopped by the cap on calls, images or\n"
    " tokens; failed: % of calls; crop area: mean share of the cropped image's area, in %; acc: the\n"
    " paper's accuracy of samples with / without a tool call; calls 2, 3, 4+ apart, each cap, turns,\n"
    " tokens per sample and failures by kind are in results.json and report.html)")


# Where the crops went, for benchmarks with target boxes (pr_eval.scoring.grounding).
GROUNDING_COLUMNS = [("crop_hit_rate", "crops on target"), ("crop_iou", "best-crop IoU"),
                     ("accuracy_crop_hit", "acc, crops hit"), ("accuracy_crop_miss", "acc, crops missed")]
GROUNDING_FOOTNOTE = ("(crops on target: % of crops covering at least half of a target box; best-crop IoU: per\n"
                      " target, the best IoU of any crop, in %; acc: the paper's accuracy of the samples whose crops\n"
                      " hit a target, and of those that cropped but never did)")


def run_table(run, model: str | None = None) -> str:
    """One row per task and scored group, a group's members indented below it (MVBench's
    subtasks under pr_mvbench), and V*'s attribute/spatial accuracy below V*; then the tool use,
    and where a benchmark has target boxes, the crop grounding. Every line fits WIDTH columns
    where the task names do. `model`: run.json's model; the demo model's run of the paper's
    benchmarks says that its zeros are expected."""
    rows = [["task", "n", "metric"] + [header for _, header in COLUMNS]]
    for name, label, depth in run.layout():
        rows += score_rows(run, name, label, depth)
    grounded = grounding_table(run)
    extra = [table for table in (sampled_table(run), rule_table(run), judge_table(run)) if table]
    demo = model == DEMO_MODEL and any(b != "zoom" for b in run.benchmarks.values())
    footnote = FOOTNOTE
    if any(m.get("rule_only") for m in run.metrics.values()):  # a peer's rule (rule_table)
        footnote = footnote.replace("accuracy: the paper's answer rule", "accuracy: the protocol's own rule")
    return (render_table(rows) + "\n" + footnote + ("\n" + DEMO_FOOTNOTE if demo else "")
            + "".join("\n\n" + t for t in extra) + "\n\n" + tool_table(run) + ("\n\n" + grounded if grounded else ""))


def judge_table(run) -> str:
    """The optional judge's figures beside the rules' on the same trajectories ("" without a judge)."""
    judge = getattr(run, "judge", None) or {}
    settings = judge.get("settings") or {}
    if not judge.get("tasks") or settings.get("family"):  # a family's own judge: rule_table
        return ""
    rows = [["judge", "judged", "lost", "judge acc", "rules acc", "agree", "disagree"]]
    for name, label, depth in run.layout():
        s = judge["tasks"].get(name)
        if s and depth == 0:
            rows.append([label, str(s.get("judged", 0)), str(s.get("lost", 0)), percent(s.get("judge_accuracy")),
                         percent(s.get("rule_accuracy_judged")), percent(s.get("agreement")),
                         str(len(s.get("disagreements") or []))])
    note = (f"(judge {settings.get('model')}, prompt {settings.get('name')} v{settings.get('version')}, fingerprint "
            f"{settings.get('fingerprint')}: judge_accuracy is over the judged trajectories, lost judgements are not "
            "counted as wrong; rules acc: the paper's accuracy on those same ones)")
    return render_table(rows, text_columns=(0,)) + "\n" + wrap(note)


def rule_table(run) -> str:
    """A peer protocol's rule and judge (DeepEyes, Mini-o3, Chain-of-Focus: pr_eval.judge.family):
    how many questions the rule decided, its accuracy over them, and with the family's judge the
    accuracy over every question that has a verdict ("" for a protocol whose rule decides all)."""
    judge = getattr(run, "judge", None) or {}
    tasks = judge.get("tasks") or {}
    rows = [["rule, then judge", "decided", "undecided", "rule acc", "judged", "lost", "with judge"]]
    for name, label, depth in run.layout():
        m = run.metrics.get(name) or {}
        if "undecided" in m and depth == 0:
            t = tasks.get(name) or {}
            decided = m.get("rule_decided", "-")
            rows.append([label, str(decided), str(m["undecided"]), percent(m.get("accuracy")),
                         str(t.get("judged", "-")), str(t.get("lost", "-")), percent(t.get("judge_accuracy"))])
    if len(rows) == 1:
        return ""
    settings = judge.get("settings") or {}
    note = (f"(rule-only: rule acc is over the questions the protocol's rule decided; the undecided ones go to "
            f"its judge, never counted wrong without one. "
            + (f"Judge: {settings.get('name')} on {settings.get('model')}, fingerprint {settings.get('fingerprint')}; "
               f"with judge: rule and judge verdicts over every question with one, lost judgements left out)"
               if settings else "No judge: run with --judge-base-url and --judge-model for the protocol's own judge)"))
    return render_table(rows, text_columns=(0,)) + "\n" + wrap(note)


SAMPLED_FOOTNOTE = ("(Avg@K: the paper's accuracy averaged over K rollouts per question, its 95% interval over\n"
                    " questions (rollouts of one question are not independent); pass@k: unbiased estimator;\n"
                    " vote: accuracy of each question's majority answer; agree: share of rollouts giving it; all in %)")


def sampled_table(run) -> str:
    """A sampled run's Avg@K, interval, pass@1 .. pass@K, majority vote and agreement ("" for a
    greedy run)."""
    rows = sampled_rows(run)
    if not rows:
        return ""
    left_out = len(sampled_rows(run, width=math.inf)[0]) > len(rows[0])
    return (render_table(rows, text_columns=(0,)) + "\n" + SAMPLED_FOOTNOTE
            + ("\n(pass@k of the other k: results.json and report.html)" if left_out else ""))


def sampled_rows(run, width: float = WIDTH) -> list[list[str]]:
    """The sampled table's header and rows ([] for a greedy run); pass@k columns: 1, 2, 4, ... and K,
    those between pass@1 and pass@K left out (from the middle) where the table would pass `width`
    columns (results.json keeps them all)."""
    sampled = getattr(run, "sampled", None) or {}
    if not sampled:
        return []
    k = max(int(s.get("k") or 0) for s in sampled.values())
    shown = sorted({1, k} | {2 ** i for i in range(1, 8) if 2 ** i < k})
    while True:
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
        if len(shown) <= 2 or table_width(rows) <= width:
            return rows if len(rows) > 1 else []
        del shown[len(shown) // 2]


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
    """Tool use per task (one row per benchmark and group; MVBench's subtasks are left out), in
    the columns that fit a terminal (PRINTED_TOOL_COLUMNS; the report shows them all)."""
    rows = [["tool use", "n"] + [header for _, header in PRINTED_TOOL_COLUMNS]]
    for name, label, depth in run.layout():
        if depth == 0:
            values = run.metrics[name]
            rows.append([label, str(run.counts.get(name, ""))]
                        + [cell(keys[0], summed(values, keys)) for keys, _ in PRINTED_TOOL_COLUMNS])
    return render_table(rows, text_columns=(0,)) + "\n" + PRINTED_TOOL_FOOTNOTE


def summed(values: dict, keys) -> float | None:
    """The sum of the figures `keys` (shares of samples that add up: 2, 3 and 4+ calls), those
    missing left out; None when all are."""
    found = [values.get(key) for key in keys]
    found = [v for v in found if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(found) if found else None


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


def table_width(rows: list[list[str]]) -> int:
    """How many columns `render_table(rows)` takes."""
    return sum(max(len(row[i]) for row in rows) for i in range(len(rows[0]))) + 2 * (len(rows[0]) - 1)


def wrap(note: str, width: int = WIDTH) -> str:
    """A footnote in lines of at most `width` columns, the lines after the first indented by one."""
    return "\n".join(textwrap.wrap(note, width, subsequent_indent=" ", break_on_hyphens=False))
