"""A protocol family's own judge: its rule first, then its judge on what the rule left open.

    finished records -> Family.verdict (metrics: `accuracy` over the questions the rule decided)
        -> the undecided ones -> Family.judge_messages -> FamilyJudge (the existing transport:
           concurrency, retries, judgements.jsonl for resume) -> Family.judge_score
        -> `judge_accuracy`: rule verdicts and judge verdicts together, over the questions with one

DeepEyes, Mini-o3 and Chain-of-Focus score a question with a rule and send the rest to an LLM
judge with their own prompt (`base.JudgePrompt`). Here that judge is the family's, byte for byte,
sent to --judge-base-url/--judge-model; its settings record names the prompt, its texts' digest,
the attempt temperatures and max_tokens, so the fingerprint changes with any of them. A judgement
the transport loses (timeout, HTTP error) is lost, never scored wrong, as with pr-eval's own judge;
a reply the family's code cannot read is asked again at its next temperature and then takes the
family's `unreadable` verdict (Mini-o3 keeps 0), or is lost where the family has none.

Without a judge the undecided questions are counted (`undecided`) and the accuracy is labelled
rule-only (`rule_only`): never silently wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..families import Verdict, family_of_record
from ..families.base import Family
from ..protocol import fingerprint_of
from ..run.folder import leaf_tasks, record_key
from ..trajectory import DATA_ERROR, ENGINE_ERROR, Trajectory
from .client import STORED_REPLY_CHARS, Judge, Judgement, JudgementJournal, JudgeSettings, _Lost, check_judge
from .run import JUDGEMENTS_FILE


def judge_record(family: Family, settings: JudgeSettings) -> dict:
    """What can change a family judge's verdicts (the fingerprint's input), and where it runs."""
    prompt = family.judge
    digest = hashlib.sha256("\0".join(prompt.prompt_texts).encode()).hexdigest()[:16]
    verdict = {"name": prompt.name, "implementation": prompt.implementation, "family": family.name,
               "model": settings.model, "authors_model": prompt.model, "prompt_sha256": digest,
               "temperatures": list(prompt.temperatures), "max_tokens": prompt.max_tokens,
               "unreadable": prompt.unreadable}
    return {**verdict, "base_url": settings.base_url, "fingerprint": fingerprint_of(verdict)}


class FamilyJudge(Judge):
    """The transport of `Judge` (concurrency, retries, a bounded reply) with a family's prompt,
    attempt temperatures and reply reading. Items carry their messages (`FamilyItem`)."""

    def __init__(self, settings: JudgeSettings, family: Family, **options):
        super().__init__(settings, **options)
        self.family = family

    def _judge_item(self, item) -> Judgement:
        if item.lost_sample:
            return Judgement(item.key, None, error=f"sample lost: {item.lost_sample}")
        prompt, attempts, reply = self.family.judge, 0, ""
        for temperature in prompt.temperatures:
            try:  # the transport's retries at this temperature, counted with the earlier attempts
                reply, attempts = self._ask_retrying(item.key, item.messages, attempts, temperature=temperature,
                                                     max_tokens=prompt.max_tokens)
            except _Lost as lost:
                return Judgement(item.key, None, error=lost.reason, attempts=lost.attempts)
            verdict = self.family.judge_score(reply)
            if verdict is not None:
                return Judgement(item.key, float(verdict), reply=reply[:STORED_REPLY_CHARS], attempts=attempts)
        error = None if prompt.unreadable is not None else f"unparsable reply: {reply[:120]!r}"
        return Judgement(item.key, prompt.unreadable, reply=reply[:STORED_REPLY_CHARS], error=error, attempts=attempts)


class FamilyItem:
    """One undecided question for the family's judge: its key, the messages, the lost sample."""

    def __init__(self, key: str, messages: list[dict] | None, lost_sample: str | None = None):
        self.key, self.messages, self.lost_sample = key, messages, lost_sample


def family_of_run(records_of: dict[str, list[dict]]) -> Family | None:
    """The family of a run's records when it has a judge of its own (else None: pr-eval's judge)."""
    for records in records_of.values():
        for record in records:
            family = family_of_record(Trajectory.from_record(record))
            return family if family.judge is not None else None
    return None


def judge_undecided(folder: Path, settings: JudgeSettings, family: Family, records_of: dict[str, list[dict]],
                    metrics: dict[str, dict], members: dict[str, list[str]]) -> dict:
    """Judge every question the family's rule left undecided (`rule_only` marked them; journaled in
    judgements.jsonl, so a resumed run asks only what is missing); add `judge_accuracy` (rule and
    judge verdicts together) to each task's and group's metrics. Returns results.json's "judge"."""
    journal = JudgementJournal(Path(folder) / JUDGEMENTS_FILE)
    items = []
    for task, records in records_of.items():
        for record in records:
            if record.get("undecided"):
                traj = Trajectory.from_record(record)
                verdict = family.verdict(traj, traj.target)
                messages = family.judge_messages(traj, traj.target, Verdict(None, verdict.answer))
                items.append(FamilyItem(record_key(task, record), messages))
    judge = FamilyJudge(settings, family)
    try:
        verdicts = judge.judge(items, done=journal.load(), on_judged=journal.append) if items else {}
    finally:
        judge.close()
    for task, records in records_of.items():
        for record in records:
            if record.get("undecided"):
                record["judge"] = verdicts[record_key(task, record)].to_record()
    tasks = {}
    for name in metrics:
        records = [r for task in leaf_tasks(name, members) for r in records_of.get(task, [])]
        if not records:
            continue
        known = [v for v in map(final_verdict, records) if v is not None]
        judged = [r for r in records if r.get("undecided")]
        tasks[name] = {"judge_accuracy": sum(known) / len(known) if known else None,
                       "rule_decided": len(records) - len(judged),
                       "judged": sum(1 for r in judged if final_verdict(r) is not None),
                       "lost": sum(1 for r in judged if final_verdict(r) is None)}
        metrics[name]["judge_accuracy"] = tasks[name]["judge_accuracy"]
    return {"settings": judge_record(family, settings), "tasks": tasks}


def final_verdict(record: dict) -> float | None:
    """A record's verdict under its protocol: the rule's, else its judgement's (None: undecided
    and not judged, or the judgement was lost)."""
    if not record.get("undecided"):
        accuracy = (record.get("metrics") or {}).get("accuracy")
        return None if accuracy is None else float(accuracy)
    verdict = (record.get("judge") or {}).get("verdict")
    return None if verdict is None else float(verdict)


def rule_only(family: Family, metrics: dict[str, dict], members: dict[str, list[str]],
              records_of: dict[str, list[dict]]) -> None:
    """Mark the records whose question the family's rule left to its judge (`"undecided": true`,
    accuracy null: lmms-eval's mean counted them 0), and make each task's and group's `accuracy`
    the rule's over the questions it decided, with `undecided`, `rule_decided` and `rule_only`."""
    for records in records_of.values():
        for record in records:
            traj = Trajectory.from_record(record)
            if traj.stop_reason not in (DATA_ERROR, ENGINE_ERROR) and family.verdict(traj, traj.target).score is None:
                record["undecided"] = True
                record.setdefault("metrics", {})["accuracy"] = None
    for name in metrics:
        records = [r for task in leaf_tasks(name, members) for r in records_of.get(task, [])]
        decided = [float(r["metrics"]["accuracy"]) for r in records
                   if not r.get("undecided") and isinstance((r.get("metrics") or {}).get("accuracy"), (int, float))]
        metrics[name].update(accuracy=sum(decided) / len(decided) if decided else None, rule_only=True,
                             undecided=sum(1 for r in records if r.get("undecided")), rule_decided=len(decided))


def check_family_judge(settings: JudgeSettings, family: Family) -> None:
    """Ask the family's judge once before any sample runs, with a question it must call right;
    ValueError (one line naming the fix) when it cannot be reached or its reply cannot be read."""
    judge = FamilyJudge(settings, family)
    try:
        traj = Trajectory(task="check", sample_id="check", question="What is two plus two?\n(A) 4\n(B) 5",
                          target="A", protocol="check", fingerprint="", family=family.name)
        messages = family.judge_messages(traj, "A", Verdict(None, "4"))
        try:
            reply = judge._ask(messages, temperature=family.judge.temperatures[0], max_tokens=family.judge.max_tokens)
        except _Lost as lost:
            raise ValueError(f"the judge at {settings.base_url} ({settings.model}) cannot be used: {lost.reason}; "
                             "check --judge-base-url, --judge-model and $OPENAI_API_KEY") from None
        if family.judge_score(reply) is None:
            raise ValueError(f"the judge at {settings.base_url} ({settings.model}) gave a reply {family.judge.name}'s "
                             f"code cannot read ({reply[:80]!r}); use a model that follows that prompt")
    finally:
        judge.close()


__all__ = ["FamilyJudge", "check_family_judge", "family_of_run", "final_verdict", "judge_undecided", "rule_only"]


def check_judge_for(settings: JudgeSettings, family: Family | None) -> None:
    """Ask the judge a run of `family` would use once, before any sample: the family's own judge
    where it has one (`check_family_judge`), else pr-eval's (`check_judge`). ValueError: one line."""
    if family is not None and family.judge is not None:
        check_family_judge(settings, family)
    else:
        check_judge(settings)
