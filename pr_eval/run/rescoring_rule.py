"""A finished run's trajectories scored under a sibling protocol's answer rule, without generating
again: `pr-eval rescore RUN --scoring PROTOCOL` (pr_eval.run.rescore).

    run's records -> [here: each record's protocol renamed to the sibling's, its verdict and every
        accuracy-derived figure recomputed (pr_eval.scoring.metrics.sample_metrics on the record's
        own trajectory, target, category, group and target boxes); each task's and group's
        accuracy figures pooled again] -> the re-scoring's records and results.json

A sibling is a registered protocol whose settings equal the run's in everything but its name and
its family's scoring rule (`rules.scoring`: Mini-o3's judge path "mini-o3" and its
multiple-choice rule "mini-o3-mc"), so the trajectories are exactly what the sibling would have
generated. Everything else a record holds (the benchmark's own metric, tool figures) does not
depend on the rule and is kept.
"""

from __future__ import annotations

from ..benchmarks import find
from ..families import family_of_record, get_protocol
from ..protocol import Protocol, fingerprint_of
from ..scoring import metrics
from ..scoring.metrics import sample_metrics
from ..trajectory import Trajectory
from .folder import RunError, Run, leaf_tasks, plain_value

# The figures that follow the answer rule's verdict (the rest do not depend on it).
RULE_FIGURES = ("accuracy", "accuracy_with_tools", "accuracy_without_tools", "accuracy_crop_hit",
                "accuracy_crop_miss")


def _flat(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def sibling(recorded: dict, name: str) -> Protocol:
    """The protocol `name`, with the run's overrides (caps, rollouts), checked to be a scoring
    sibling of the run's recorded protocol (its name, fingerprint and settings); RunError saying
    why not."""
    run_name = str(recorded.get("name"))
    settings = recorded.get("settings") if isinstance(recorded.get("settings"), dict) else None
    if settings is None or fingerprint_of(settings) != recorded.get("fingerprint"):
        raise RunError("the run's protocol record does not hash to its fingerprint, so which trajectories it "
                       "generated cannot be told; it cannot be re-scored")
    try:
        own = get_protocol(run_name)
    except ValueError as exc:
        raise RunError(f"the run's protocol cannot be re-scored: {exc}") from None
    if own.fingerprint != recorded.get("fingerprint"):
        raise RunError(f"the run's protocol {run_name} ({recorded.get('fingerprint')}) is not pr-eval's {run_name} "
                       f"({own.fingerprint}): its trajectories are not the ones a sibling protocol would generate")
    try:
        target = get_protocol(name)
    except ValueError as exc:
        raise RunError(f"--scoring {name}: {exc}") from None
    _, plus, changed = run_name.partition("+")
    if plus and "+" not in name:  # the run's caps and rollouts carry over
        target = get_protocol(f"{name}+{changed}")
    mine, theirs = _flat(own.settings()), _flat(target.settings())
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k) and k != "name")
    if any(k != "rules.scoring" for k in differ):
        shown = ", ".join(differ[:4]) + (" ..." if len(differ) > 4 else "")
        raise RunError(f"--scoring {name}: {target.name} differs from the run's protocol {run_name} in more than its "
                       f"answer rule ({shown}); only a protocol that generates the same trajectories can re-score them")
    return target


def doc_of(record: dict) -> dict:
    """What sample_metrics reads of a question's document, from its record."""
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return {"answer": record.get("target"), "category": meta.get("category") or "",
            "group": record.get("group") or "", "targets": meta.get("targets") or []}


def rescore_records(records_of: dict[str, list[dict]], run: Run, protocol: Protocol) -> None:
    """Every record scored under `protocol` (in place): renamed to it, its verdict's figures (and
    a rollout's answer, which majority vote reads) recomputed; then each task's and group's rule
    figures in `run.metrics` aggregated again as lmms-eval does: a question's rollouts combined
    first (pr_eval.scoring.metrics.combine), then the questions, in the run's order."""
    questions: dict[str, dict] = {}  # task -> doc_id -> the question's rollouts' weighted metrics
    for task, records in records_of.items():
        benchmark = run.benchmarks.get(task)
        if find(benchmark) is None:
            raise RunError(f"{task}: the run records no benchmark pr-eval knows ({benchmark!r}), so it cannot be re-scored")
        for record in records:
            for stale in ("undecided", "judge", "judge_accuracy"):
                record.pop(stale, None)
            record["protocol"], record["fingerprint"] = protocol.name, protocol.fingerprint
            traj = Trajectory.from_record(record)
            values = sample_metrics(traj, doc_of(record), benchmark)
            kept = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
            record["metrics"] = {**kept, **{k: plain_value(values[k]) for k in values if k in kept}}
            if record.get("rollout") is not None:
                record["answer"] = family_of_record(traj).final_answer(traj)
            questions.setdefault(task, {}).setdefault(record.get("doc_id"), []).append(values)
    for name, figures in run.metrics.items():
        per_question = [metrics.question_from(per) for task in leaf_tasks(name, run.members)
                        for _, per in sorted(questions.get(task, {}).items(), key=lambda kv: _order(kv[0]))]
        bench = find(run.benchmarks.get(name))
        for metric in list(RULE_FIGURES) + list(bench.breakdown if bench else ()):
            if metric in figures:
                value = metrics.pool([q[metric] for q in per_question if metric in q])
                figures[metric] = None if value != value else value  # NaN (no sample counts): null
        for stale in ("judge_accuracy", "rule_only", "undecided", "rule_decided"):
            figures.pop(stale, None)


def _order(doc_id) -> tuple:
    return (0, doc_id, "") if isinstance(doc_id, int) else (1, 0, str(doc_id))
