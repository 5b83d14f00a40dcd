"""New scores from a finished run's saved trajectories, without generating again: the run judged
(again) by an LLM judge, or scored under a sibling protocol's answer rule
(pr_eval.run.rescoring_rule), into a new run folder that records what was re-scored and how.

    finished run folder (results.json, samples_<task>.jsonl, journal, images)
        -> [here: a new folder beside it; the trajectories and images as they were; every record
           judged by the judge given (pr_eval.judge.run, or the family's own rule-then-judge,
           pr_eval.judge.family); results.json's metrics with the new judge_accuracy]
        -> results.json "rescored": {"from", "at", "judge"}, and the report

Judging is the expensive, changeable part of an evaluation: a run is generated once and judged by
as many judges as wanted. The rule-based scores never change here (they are the protocol's); the
new folder is a run folder like any other (`pr-eval report`, `compare`, `check`, `table`, `submit`
read it), and judging resumes through its judgements.jsonl when interrupted.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path

from ..files import link_tree, write_atomic
from ..judge.client import JudgeSettings
from .evaluate import judge_all, sampled_figures, strict_json, write_records, write_report_safely
from .folder import RunError, load_run, read_jsonl, read_summary
from .rescoring_rule import rescore_records, sibling
from .store import JOURNAL_FILE, RESULTS_FILE

COPIED = ("run.json", JOURNAL_FILE, "run.log")
IMAGES = "images"


def rescored_folder(run_dir: Path, judge: JudgeSettings | None, scoring: str | None = None) -> Path:
    """The default folder of a re-scoring: beside the run, named after it, the rule and the judge
    and the time."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    parts = ([f"scored-{scoring}"] if scoring else []) + ([f"judged-{judge.model}"] if judge is not None else [])
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in "-".join(parts))[:60]
    return run_dir.parent / f"{run_dir.name}-{name}-{stamp}"


def check_output(run_dir: Path, out: Path) -> None:
    """RunError when `out` cannot take the re-scoring: the run itself, a finished run, or a folder
    holding something else (an interrupted re-scoring, with its judgements.jsonl, is resumed)."""
    if out.resolve() == Path(run_dir).resolve():
        raise RunError(f"{out} is the run itself; re-scoring writes a new folder")
    if out.is_dir() and (out / RESULTS_FILE).exists():
        raise RunError(f"{out} already holds a finished run; choose another --output")
    if out.is_dir() and any(out.iterdir()) and not (out / "judgements.jsonl").exists():
        raise RunError(f"{out} is not empty; choose another --output")


def rescore(run_dir: str | Path, judge: JudgeSettings | None, output: str | Path | None = None,
            scoring: str | None = None) -> Path:
    """Judge a finished run's trajectories, or score them under the sibling protocol `scoring`
    (then judge them, with a judge), into a new run folder (default: `rescored_folder`); an
    unfinished judging of the same output resumes. RunError when the run is not finished, the
    protocol is no sibling, or the output holds something else."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    run = load_run(run_dir, summary)
    meta = summary.get("pr_eval") if isinstance(summary.get("pr_eval"), dict) else {}
    protocol = meta.get("protocol") if isinstance(meta.get("protocol"), dict) else {}
    target = sibling(protocol, scoring) if scoring is not None else None
    if judge is None and target is None:
        raise RunError("nothing to re-score: give a judge, a --scoring protocol, or both")
    out = Path(output) if output is not None else rescored_folder(run_dir, judge, scoring)
    check_output(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    _mark(out, {"from": str(run_dir.resolve()), "what": "unfinished"})  # never resumed as the run itself
    if (run_dir / IMAGES).is_dir():
        link_tree(run_dir / IMAGES, out / IMAGES)  # an interrupted copy is completed
    records_of = {}
    for task in run.leaves:
        lines = read_jsonl(run_dir / f"samples_{task}.jsonl")
        if lines.damage:
            raise RunError(f"{run_dir}/samples_{task}.jsonl is damaged (line {lines.damage[0].line}); "
                           "the run cannot be re-scored")
        records_of[task] = [{k: v for k, v in record.items() if k != "judge"} for _, record in lines.records]
    if target is not None:
        rescore_records(records_of, run, target)
        meta = {**meta, "protocol": target.record()}
    judged = judge_all(out, judge, records_of, run)
    settings = protocol.get("settings") if isinstance(protocol.get("settings"), dict) else {}
    sampled = sampled_figures(run, records_of) if settings.get("sampling") else {}
    write_records(out, records_of)
    what = [w for w, given in (("scoring", target is not None), ("judge", judge is not None)) if given]
    rescored = {"from": str(run_dir.resolve()), "at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "what": "+".join(what), "judge": judged.get("settings"),
                "previous_judge": (summary.get("judge") or {}).get("settings"),
                **({"protocol": target.name, "previous_protocol": {
                    "name": protocol.get("name"), "fingerprint": protocol.get("fingerprint")}}
                   if target is not None else {})}
    # the folder's own description names what its scores are and says it is a re-scoring (so the
    # report heads it so, and `--resume` does not take it for an unfinished run of the old protocol)
    info = {**(summary.get("run") if isinstance(summary.get("run"), dict) else {}), "rescored": rescored}
    if target is not None:
        info["protocol"] = target.record()
    summary = {**summary, "pr_eval": meta, "metrics": run.metrics, "run": info, "rescored": rescored}
    summary.pop("judge", None)  # the run's judge judged the run's scores; a new one is the re-scoring's
    if judged:
        summary["judge"] = judged
    write_atomic(out / "run.json", json.dumps({**info}, indent=2, ensure_ascii=False, default=str) + "\n")
    if sampled:
        summary["sampled"] = sampled
    write_atomic(out / RESULTS_FILE, json.dumps(strict_json(summary), indent=2, ensure_ascii=False, default=str,
                                                allow_nan=False) + "\n")
    write_report_safely(out)
    return out


def _mark(out: Path, rescored: dict) -> None:
    """run.json of the new folder, marked as a re-scoring (RunStore.resume refuses it)."""
    try:
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(info, dict):
        write_atomic(out / "run.json", json.dumps({**info, "rescored": rescored}, indent=2, ensure_ascii=False) + "\n")
