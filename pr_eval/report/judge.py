"""The report's "Judge and rules" section: what the optional LLM judge said, next to the rules.

    results.json "judge" {"settings": JudgeSettings.record(), "tasks": {task: pr_eval.judge.run.summarize(...)}}
        + the samples of the disagreeing keys (question, answer, gold)
        -> [HTML here] -> the page (pr_eval.report.page, after the tool sections, before the viewer)

The section shows which judge it was (model, prompt name and version, fingerprint, the prompt
itself), per task the judge's own `judge_accuracy` beside the rules' accuracy on the same items,
how many judgements were lost and why, how often judge and rules agree, and a table of the items
where they disagree. The rule scores are shown as the rules gave them: the judge replaces none.
A run without a judge has no section. Everything that came from a model, a dataset or a server
(and from results.json, which anyone can edit) is escaped (pr_eval.report.escape).
"""

from __future__ import annotations

import math

from ..judge.client import item_of
from ..run.folder import Unreadable, read_json
from ..run.store import RESULTS_FILE, sample_key
from ..trajectory import Trajectory
from .escape import clip, esc, shown
from .view import RunView

MAX_DISAGREEMENTS = 200
NOTE = ("judge_accuracy is the judge's verdict, a metric of its own: the rule-based (paper-compatible) "
        "scores above are unchanged. A lost judgement (an HTTP error, a timeout, a reply that is not "
        "CORRECT or INCORRECT) counts neither as right nor as wrong; judge_accuracy is over the judged "
        "items only, and so is the rules' accuracy beside it. Agreement: the share of judged items where "
        "the judge's verdict equals the rules' (rule score 1 = correct).")


def judge_section(summary: dict, records_by_key: dict[str, dict] | None = None) -> str:
    """The section's HTML ("" when the run had no judge). `summary`: results.json (its "judge"
    block; the block itself is accepted too); `records_by_key`: journal key -> that sample's
    record (a trajectory record, as in samples_<task>.jsonl), for the disagreements' question,
    answer and gold."""
    if not isinstance(summary, dict):
        return ""
    block = summary.get("judge") if "judge" in summary else summary if {"settings", "tasks"} <= set(summary) else None
    if not isinstance(block, dict) or not isinstance(block.get("tasks"), dict):
        return _rule_section(summary, {}, {})
    settings = block.get("settings") if isinstance(block.get("settings"), dict) else {}
    tasks = {str(t): s for t, s in block["tasks"].items() if isinstance(s, dict)}
    if settings.get("family"):  # a peer protocol's own judge (pr_eval.judge.family)
        return _rule_section(summary, settings, tasks)
    records = records_by_key or {}
    return (f'<h2 id="judge">Judge and rules</h2>{_facts(settings)}'
            f'<div class="scroll">{_task_table(tasks)}</div><p class="note">{esc(NOTE)}</p>'
            f"{_disagreements(tasks, records)}")


def view_section(view: RunView) -> str:
    """The section of a run folder's report: results.json's judge block, with the samples of
    the view for the disagreements ("" for an unfinished run or a run without a judge)."""
    if not view.finished:
        return ""
    try:
        summary = read_json(view.folder / RESULTS_FILE)
    except Unreadable:
        return ""  # load_view already listed it among the problems
    block = summary.get("judge") if isinstance(summary, dict) else None
    if not isinstance(block, dict):
        return _rule_section(summary, {}, {}) if isinstance(summary, dict) else ""
    wanted = {str(d.get("key")) for s in (block.get("tasks") or {}).values() if isinstance(s, dict)
              for d in (s.get("disagreements") or []) if isinstance(d, dict)}
    records = {}
    for samples in view.samples.values():
        for s in samples:
            key = sample_key(s.task, s.doc_id, s.traj.rollout)
            if key in wanted:
                records[key] = s.traj.to_record()
    return judge_section(summary, records)


def _rule_section(summary: dict, settings: dict, tasks: dict[str, dict]) -> str:
    """A peer protocol's verdicts: its rule over the questions it decided, the undecided ones, and
    with its own judge the two together ("" for a protocol whose rule decides every question)."""
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    rows = []
    for task, m in metrics.items():
        if isinstance(m, dict) and m.get("rule_only"):
            t = tasks.get(task, {})
            cells = [_count(m.get("rule_decided")), _count(m.get("undecided")), _pct(m.get("accuracy")),
                     _count(t.get("judged")), _count(t.get("lost")), _pct(t.get("judge_accuracy"))]
            rows.append(f'<tr><td class="name">{esc(task)}</td>' + "".join(f'<td class="num">{esc(c)}</td>' for c in cells)
                        + "</tr>")
    if not rows:
        return ""
    head = "<th>task</th>" + "".join(f'<th class="num">{h}</th>' for h in (
        "decided by the rule", "undecided", "rule accuracy (decided)", "judged", "lost", "with judge"))
    facts = [("judge", settings.get("name")), ("reproduces", settings.get("implementation")),
             ("judge model", settings.get("model")), ("the authors' judge model", settings.get("authors_model")),
             ("prompt sha256", settings.get("prompt_sha256")), ("fingerprint", settings.get("fingerprint")),
             ("endpoint", settings.get("base_url")),
             ("decoding", f"temperatures {settings.get('temperatures')}, max_tokens {settings.get('max_tokens')}"
              if settings else None)]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    note = ("The protocol's rule decides what it can; the questions it leaves open go to the protocol's own judge "
            "with its authors' prompt. Undecided questions are never counted as wrong: the rule's accuracy is over "
            "the decided ones, and with the judge over every question that has a verdict (lost judgements are "
            "left out). " + ("" if settings else "This run had no judge (--judge-base-url, --judge-model)."))
    return (f'<h2 id="judge">Rule, then judge</h2>{f"<dl class=meta>{meta}</dl>" if meta else ""}'
            f'<div class="scroll"><table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            f'</tbody></table></div><p class="note">{esc(note)}</p>')


def _facts(settings: dict) -> str:
    facts = [("judge model", settings.get("model")),
             ("prompt", f"{settings.get('name', '?')} version {settings.get('version', '?')}"),
             ("fingerprint", settings.get("fingerprint")), ("endpoint", settings.get("base_url")),
             ("decoding", (f"temperature {settings.get('temperature', '?')}, "
                           f"max_tokens {settings.get('max_tokens', '?')}"))]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    prompt = f"[system]\n{settings.get('system', '')}\n\n[user]\n{settings.get('template', '')}"
    return (f'<dl class="meta">{meta}</dl><details><summary class="note">judge prompt</summary>'
            f'<div class="text model">{esc(prompt)}</div></details>')


def _pct(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return f"{100 * value:.1f}"


def _count(value) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _task_table(tasks: dict[str, dict]) -> str:
    head = ("<th>task</th>" + "".join(f'<th class="num">{h}</th>' for h in (
        "judge_accuracy", "rule accuracy (same items)", "agreement", "judged", "lost", "disagree"))
        + "<th>lost judgements by reason</th>")
    rows = []
    for task, s in tasks.items():
        reasons = s.get("lost_reasons") if isinstance(s.get("lost_reasons"), dict) else {}
        why = ", ".join(f"{reason} {n}" for reason, n in reasons.items())
        disagreements = s.get("disagreements") if isinstance(s.get("disagreements"), list) else []
        cells = [_pct(s.get("judge_accuracy")), _pct(s.get("rule_accuracy_judged")), _pct(s.get("agreement")),
                 _count(s.get("judged")), _count(s.get("lost")), str(len(disagreements))]
        rows.append(f'<tr><td class="name">{esc(task)}</td>'
                    + "".join(f'<td class="num">{esc(c)}</td>' for c in cells) + f"<td>{esc(why or '-')}</td></tr>")
    return f'<table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _verdict(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return "correct" if value >= 1 else "wrong" if value <= 0 else f"{value:.2f}"


def _sample_facts(key: str, record) -> tuple[str, str, str]:
    """(question, model answer, gold) of a sample record; "" where it has none or is damaged."""
    if not isinstance(record, dict):
        return "", "", ""
    try:
        item = item_of(key, Trajectory.from_record(record))
    except (TypeError, ValueError, KeyError, AttributeError):
        return clip(str(record.get("question") or ""), 240), "", shown(record.get("target", ""))
    return clip(item.question or "", 240), clip(item.answer or "", 240), clip(shown(item.gold), 240)


def _disagreements(tasks: dict[str, dict], records: dict[str, dict]) -> str:
    rows, total = [], 0
    for s in tasks.values():
        for d in s.get("disagreements") or []:
            if not isinstance(d, dict):
                continue
            total += 1
            if len(rows) >= MAX_DISAGREEMENTS:
                continue
            key = str(d.get("key"))
            question, answer, gold = _sample_facts(key, records.get(key))
            cells = [key, question, answer, gold]
            rows.append("<tr>" + "".join(f'<td class="text">{esc(c)}</td>' for c in cells)
                        + f'<td>{esc(_verdict(d.get("rule")))}</td><td>{esc(_verdict(d.get("judge")))}</td></tr>')
    if not total:
        return '<p class="note">The judge and the rules agree on every judged item.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("sample", "question", "model answer", "gold", "rules", "judge"))
    more = (f'<p class="note">{esc(f"... and {total - len(rows)} more (results.json lists them all)")}</p>'
            if total > len(rows) else "")
    return (f'<h3>Where the judge and the rules disagree <span class="n">{total}</span></h3>'
            f'<div class="scroll"><table class="data judge"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{more}')
