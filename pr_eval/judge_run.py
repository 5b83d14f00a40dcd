"""The optional judge over a finished run's per-sample records (see pr_eval.judge).

    samples' records (runner.finish) -> [here: one JudgeItem per trajectory, judged once,
        journaled in judgements.jsonl] -> each record's "judge", results.json "judge",
        `judge_accuracy` in the task's metrics (beside, never instead of, `accuracy`)

Judging runs after every sample has run and before results.json is written, so a run killed
while it is judging resumes there: its samples come from the journal, its verdicts from
judgements.jsonl, and only the rest are asked.
"""

from __future__ import annotations

from pathlib import Path

from .judge import Judge, JudgementJournal, JudgeSettings, item_of, summarize
from .runs import leaf_tasks, record_key
from .trajectory import Trajectory

JUDGEMENTS_FILE = "judgements.jsonl"


def judge_records(folder: Path, settings: JudgeSettings, records_of: dict[str, list[dict]],
                  metrics: dict[str, dict], members: dict[str, list[str]]) -> dict:
    """Judge every record of `records_of` ({task: per-sample records}) not yet in the folder's
    judgements.jsonl; add its judgement to each record (`"judge"`) and `judge_accuracy` to the
    metrics of each task and scored group in `metrics`. Returns results.json's "judge" entry:
    {"settings": the judge's record, "tasks": {task or group: pr_eval.judge.summarize(...)}}."""
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
