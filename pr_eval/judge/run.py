"""The optional judge over a finished run's per-sample records (see pr_eval.judge.client).

    samples' records (evaluate.finish) -> [here: one JudgeItem per trajectory, judged once,
        journaled in judgements.jsonl] -> each record's "judge", results.json "judge",
        `judge_accuracy` in the task's metrics (beside, never instead of, `accuracy`)

Judging runs after every sample has run and before results.json is written, so a run killed
while it is judging resumes there: its samples come from the journal, its verdicts from
judgements.jsonl, and only the rest are asked.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..run.folder import leaf_tasks, record_key
from ..trajectory import Trajectory
from .client import Judge, Judgement, JudgementJournal, JudgeSettings, item_of

JUDGEMENTS_FILE = "judgements.jsonl"


def judge_records(folder: Path, settings: JudgeSettings, records_of: dict[str, list[dict]],
                  metrics: dict[str, dict], members: dict[str, list[str]]) -> dict:
    """Judge every record of `records_of` ({task: per-sample records}) not yet in the folder's
    judgements.jsonl; add its judgement to each record (`"judge"`) and `judge_accuracy` to the
    metrics of each task and scored group in `metrics`. Returns results.json's "judge" entry:
    {"settings": the judge's record, "tasks": {task or group: summarize(...)}}."""
    journal = JudgementJournal(Path(folder) / JUDGEMENTS_FILE)
    keys_of: dict[str, list[str]] = {}
    items, rule, by_key = [], {}, {}
    for task, records in records_of.items():
        for record in records:
            key = record_key(task, record)
            keys_of.setdefault(task, []).append(key)
            items.append(item_of(key, Trajectory.from_record(record)))
            rule[key] = (record.get("metrics") or {}).get("accuracy")
            by_key[key] = record
    judge = Judge(settings)
    try:
        verdicts = judge.judge(items, done=journal.load(), on_judged=journal.append)
    finally:
        judge.close()
    for key, record in by_key.items():
        record["judge"] = verdicts[key].to_record()
    tasks = {}
    for name in metrics:
        keys = [k for leaf in leaf_tasks(name, members) for k in keys_of.get(leaf, [])]
        if not keys:
            continue
        tasks[name] = summarize({k: verdicts[k] for k in keys}, {k: rule[k] for k in keys})
        metrics[name]["judge_accuracy"] = tasks[name]["judge_accuracy"]
    return {"settings": settings.record(), "tasks": tasks}


def _natural(key: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key)]


def _score(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not math.isnan(value):
        return float(value)
    return None


def summarize(judgements: dict[str, Judgement], rule: dict[str, float]) -> dict:
    """One task's judge figures. `judgements`: that task's judgements by key; `rule`: key -> the
    rule-based (paper-compatible) accuracy of that trajectory (read, never changed).

    judge_accuracy: mean verdict over the judged keys (None when none was judged); judged / lost:
    counts; lost_reasons: {"timeout" | "http 500" | "unparsable reply" | ...: count}; agreement:
    the share of judged keys with a rule score where verdict == (rule >= 1) (None when none);
    compared: that many keys; rule_accuracy_judged: the rule's mean over those keys;
    disagreements: [{"key", "rule", "judge"}] in key order."""
    judged, lost_reasons = [], {}
    for key in sorted(judgements, key=_natural):
        j = judgements[key]
        if j.verdict is None:
            reason = (j.error or "unknown").split(":", 1)[0].strip() or "unknown"
            lost_reasons[reason] = lost_reasons.get(reason, 0) + 1
        else:
            judged.append(j)
    compared, agree, rule_sum, disagreements = 0, 0, 0.0, []
    for j in judged:
        score = _score(rule.get(j.key))
        if score is None:
            continue
        compared += 1
        rule_sum += score
        if (j.verdict >= 1) == (score >= 1):
            agree += 1
        else:
            disagreements.append({"key": j.key, "rule": score, "judge": j.verdict})
    return {
        "judge_accuracy": sum(j.verdict for j in judged) / len(judged) if judged else None,
        "judged": len(judged),
        "lost": sum(lost_reasons.values()),
        "lost_reasons": dict(sorted(lost_reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "agreement": agree / compared if compared else None,
        "compared": compared,
        "rule_accuracy_judged": rule_sum / compared if compared else None,
        "disagreements": disagreements,
    }
